"""Protocol constants. Changing one is a protocol change: bump ENVELOPE_VERSION
(beehive/security/envelope.py), which every node checks on every message."""

#: Additive secret shares live in Z/2^32: every answer and every total is taken mod this.
MODULUS = 2**32

#: Suffixes of the dispatch files shared by a node and its handler daemon.
PENDING_SUFFIX = ".pending"
COMPLETE_SUFFIX = ".complete"

#: Seconds the proposer waits past a round's deadline for aggregators' late reports.
REPORT_GRACE_SECONDS = 2.0

#: Longest a round may run (seconds). Also how long a node remembers message ids,
#: so no envelope can be replayed while any round it could belong to is open.
MAX_DEADLINE_SECONDS = 86400.0

#: Limits on what one computation may carry (checked when a spec is parsed, at
#: the node's edge): a spec travels in every task, share and decline envelope
#: (each at most 256 KiB), so it must stay well below that.
MAX_QUERY_BYTES = 16 * 1024
MAX_METADATA_BYTES = 16 * 1024
#: Most aggregators or targets one round may name.
MAX_ROUND_MEMBERS = 2048

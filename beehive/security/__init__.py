"""Identities, the pinned directory, sealed envelopes and secret shares.

Trust comes only from files `hive up` generated (key files and directory.json);
nothing learned from the network can widen it. Depends on `beehive.core` only.
"""

from beehive.security.directory import Directory, DirectoryError
from beehive.security.envelope import (
    ENVELOPE_DOMAIN,
    REASONS,
    SPEC_DOMAIN,
    Opened,
    Opener,
    Rejected,
    seal,
    sign_spec,
    verify_spec,
)
from beehive.security.identity import Identity, IdentityError, PublicIdentity, ensure_identity
from beehive.security.shares import combine, split

__all__ = [
    "ENVELOPE_DOMAIN",
    "REASONS",
    "SPEC_DOMAIN",
    "Directory",
    "DirectoryError",
    "Identity",
    "IdentityError",
    "Opened",
    "Opener",
    "PublicIdentity",
    "Rejected",
    "combine",
    "ensure_identity",
    "seal",
    "sign_spec",
    "split",
    "verify_spec",
]

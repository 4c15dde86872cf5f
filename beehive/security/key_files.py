"""Where each private key lives in a `keys/` folder: names only, no cryptography.

The state layout (`beehive.topology.layout`) and the CLI name these files
without loading the code that reads them, so a command that only prints paths
or talks to a control socket does not import cryptography or nkeys.
"""

from __future__ import annotations

from pathlib import Path

from beehive.core.names import check_name

#: The system user that creates the network's stream (embedded server only). The
#: leading '_' keeps it apart from every node: aliases may not start with one.
ADMIN_USER = "_admin"
OPERATOR_KEY_FILE = "_operator.key"


def key_path(keys_dir: Path, alias: str) -> Path:
    """`keys_dir/<alias>.key`: a node's private identity file."""
    return Path(keys_dir) / f"{check_name(alias)}.key"


def nkey_path(keys_dir: Path, alias: str) -> Path:
    """`keys_dir/<alias>.nk`: the seed of a node's NATS user."""
    return Path(keys_dir) / f"{check_name(alias)}.nk"


def admin_nkey_path(keys_dir: Path) -> Path:
    """`keys/_admin.nk`: the seed of the system user that creates the stream."""
    return Path(keys_dir) / f"{ADMIN_USER}.nk"

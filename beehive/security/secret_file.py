"""Private files (keys, seeds): written 0600 atomically, read only if still 0600.

One place for the rule, because every kind of secret the hive keeps (node keys,
NATS nkey seeds, the operator key, the CA key) must obey it the same way.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from beehive.core.errors import TrustError
from beehive.core.files import write_atomic

__all__ = ["SecretFileError", "read_private", "write_private"]

PRIVATE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


class SecretFileError(TrustError):
    """A private file is missing, unreadable or readable by others; the message says
    which file and how to fix it."""


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically with mode 0600, fsynced (`write_atomic`:
    the temp file is 0600 from the start, so the secret is never readable by
    others even for an instant), creating its folder 0700 if needed."""
    path = Path(path)
    parent = path.parent
    if not parent.exists():
        parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
        # mkdir's mode is filtered by the umask; say exactly what we mean.
        os.chmod(parent, PRIVATE_DIR_MODE)
    write_atomic(path, data, mode=PRIVATE_MODE, durable=True)


def read_private(path: Path, what: str = "key file", max_size: int = 64 * 1024) -> bytes:
    """Read a private file, refusing one that others could read.

    The mode is checked on the opened descriptor (fstat), not the path, so the file
    cannot be swapped between the check and the read; symlinks are not followed.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise SecretFileError(f"{what} {path} does not exist") from None
    except OSError as e:
        raise SecretFileError(f"cannot open {what} {path}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SecretFileError(f"{what} {path} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise SecretFileError(
                f"{what} {path} has mode {mode:04o}, readable by others; it must be "
                f"0600 (owner only). Fix with: chmod 600 {path}"
            )
        if st.st_size > max_size:
            raise SecretFileError(f"{what} {path} is too large to be a {what}")
        with os.fdopen(fd, "rb") as f:
            fd = -1
            return f.read()
    finally:
        if fd >= 0:
            os.close(fd)

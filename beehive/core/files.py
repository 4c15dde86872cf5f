"""The one way Bee-Hive writes a file: atomically, with its final mode from the start.

Readers (a watcher of the dispatch folder, a node re-reading directory.json,
supervisord reading its config) must see the old file or the new one, never a
part: every write goes to a uniquely named `.<name>.<pid>.<random>.tmp` in the
same folder, then `os.replace`. The temp file is created with `mode` (O_EXCL,
no symlink followed) and `fchmod`ed to it, so a secret is never readable by
others even for an instant, whatever the umask.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["TMP_SUFFIX", "write_atomic"]

TMP_SUFFIX = ".tmp"


def write_atomic(
    path: str | os.PathLike[str], data: bytes, *, mode: int = 0o600, durable: bool = False
) -> Path:
    """Replace `path` with `data`; return the path.

    `durable` fsyncs the data before the rename: for files that must survive a
    power cut (keys, configs). Without it a crash may lose the write but never
    leave a torn file; a dispatch file lost that way only means an unanswered
    round, and an fsync per dispatch file would cost more than a round.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target

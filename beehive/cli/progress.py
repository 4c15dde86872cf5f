"""Progress on long waits: a spinner on a terminal, plain lines in a log or CI."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from beehive.cli.common import err


@contextlib.contextmanager
def progress(title: str) -> Iterator[Callable[[str], None]]:
    """Yield `update(message)`; messages are shown with the elapsed time."""
    start = time.monotonic()
    if err.is_terminal:
        with err.status(title) as status:
            yield lambda msg: status.update(f"{title} — {msg} ({time.monotonic() - start:.1f}s)")
        return
    last: list[str] = []

    def update(msg: str) -> None:
        if not last or last[-1] != msg:
            last.append(msg)
            err.print(f"  {msg} ({time.monotonic() - start:.1f}s)")

    err.print(title)
    yield update

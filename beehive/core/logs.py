"""Log set-up shared by the node and the handler daemon: one line per record.

A message may carry text that came from elsewhere (a decline reason, a peer's
alias, a handler's error): its control characters are escaped, so no input can
forge a log line with a newline or reach the terminal of whoever runs
`hive logs` as an escape sequence. Tracebacks stay multi-line: they are ours.
"""

from __future__ import annotations

import contextvars
import logging
import sys

from beehive.core.names import printable

__all__ = ["SafeFormatter", "configure", "speaking_as"]

#: Who a record is from when one process hosts several nodes: set per node, in
#: its own task (so whatever that task starts inherits it).
_who: contextvars.ContextVar[str | None] = contextvars.ContextVar("beehive_who", default=None)


def speaking_as(who: str) -> None:
    """Records logged from the current context (and tasks it starts) say `who`."""
    _who.set(who)


class SafeFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


class _Who(logging.Filter):
    """Gives each record its `who`: the context's (`speaking_as`), else the process's."""

    def __init__(self, who: str) -> None:
        super().__init__()
        self.who = who

    def filter(self, record: logging.LogRecord) -> bool:
        record.who = _who.get() or self.who
        return True


def configure(level: str, who: str) -> None:
    """Log `level` and above to stderr (supervisord's log file), as `who` (or as
    what `speaking_as` set where the record was made)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(who)s %(message)s"))
    handler.addFilter(_Who(who))
    logging.basicConfig(level=level.upper(), handlers=[handler])

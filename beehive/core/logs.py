"""Log set-up shared by the node and the handler daemon: one line per record.

A message may carry text that came from elsewhere (a decline reason, a peer's
alias, a handler's error): its control characters are escaped, so no input can
forge a log line with a newline or reach the terminal of whoever runs
`hive logs` as an escape sequence. Tracebacks stay multi-line: they are ours.
"""

from __future__ import annotations

import logging
import sys

from beehive.core.names import printable

__all__ = ["SafeFormatter", "configure"]


class SafeFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


def configure(level: str, who: str) -> None:
    """Log `level` and above to stderr (supervisord's log file), as `who`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter(f"%(asctime)s %(levelname)s {who} %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])

"""One root for every error Bee-Hive expects, so the CLI catches it in one place.

Each part of the project raises its own subclass (topology, compile, identity,
supervisor, …), and each message names the file, field or program it is about
and what to do. Anything that is *not* a `BeehiveError` (or an `OSError` from
the machine itself) is a bug of ours and keeps its traceback.

Several subclasses also derive from a builtin (`ValueError`, `RuntimeError`)
because code that predates this tree catches those; the root is what new code
should catch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

__all__ = ["BeehiveError", "TrustError", "one_line"]


class BeehiveError(Exception):
    """An expected failure: the message says what went wrong, where, and what to do.

    `hint`, when given, is the "what to do" part kept apart, so a caller can
    print it on its own line (the CLI does).
    """

    def __init__(self, message: str = "", *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text}\n{self.hint}" if self.hint else text


def one_line(exc: ValidationError, root: str = "<file>") -> str:
    """A pydantic error as one line, `field: problem; …`, without its URLs: these
    messages end up in a terminal or a log, naming the field to fix."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or root}: {err['msg']}"
        for err in exc.errors(include_url=False)
    )


class TrustError(BeehiveError):
    """Key material or a signed directory that cannot be trusted (or read).

    A node that meets one refuses to start with exit status 78 (EX_CONFIG): not
    a crash for supervisord to retry quietly, but something a person must fix.
    """

"""The dispatch files a node and its handler daemon exchange (docs/architecture.md).

The node (`beehive.flower`) writes `<comp_id>.pending`; the handler daemon
(`beehive.nectar`) answers with `<comp_id>.complete`. The two packages must never
import each other, so the file format lives here, in `beehive.core`, and both sides
use these helpers: one definition of the format, no drift.

Every write is atomic (`beehive.core.files.write_atomic`: a uniquely named
`*.tmp` in the same folder, then `os.replace`), so a watcher of the folder never
sees a half-written file; readers ignore `*.tmp` and hidden files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_validator

from beehive.core.constants import COMPLETE_SUFFIX, MODULUS, PENDING_SUFFIX
from beehive.core.errors import BeehiveError, one_line
from beehive.core.files import TMP_SUFFIX, write_atomic
from beehive.core.models import Computation

#: Files are private to the user running the hive: answers are personal data.
FILE_MODE = 0o600
#: Dispatch folders are private too (the design's "state folders 0700").
FOLDER_MODE = 0o700

__all__ = [
    "COMPLETE_SUFFIX",
    "FILE_MODE",
    "FOLDER_MODE",
    "PENDING_SUFFIX",
    "TMP_SUFFIX",
    "CompleteRecord",
    "DispatchError",
    "check_comp_id",
    "complete_path",
    "ensure_folder",
    "is_dispatch_name",
    "pending_path",
    "read_complete",
    "read_pending",
    "result_path",
    "write_complete",
    "write_pending",
]


class DispatchError(BeehiveError, ValueError):
    """A dispatch file that cannot be read or a name that cannot be a dispatch file."""


class CompleteRecord(BaseModel):
    """The content of `<comp_id>.complete`: the handler's answer, or why there is none.

    The invariants are checked here so that neither side can write or accept a
    record that says "ok" without a valid answer: an `ok` record carries an int in
    [0, 2^32) and no error; an `error` record carries a message and no result.
    """

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    comp_id: str
    status: Literal["ok", "error"]
    result: StrictInt | None = None
    error: str | None = None
    handler: str = ""
    elapsed_ms: float = Field(default=0.0, ge=0.0)
    #: An `error` record because the call ran out of time (the node declines the
    #: round with "timeout", not "handler error"; neither carries the message).
    timed_out: bool = False

    @model_validator(mode="after")
    def _status_matches_payload(self) -> CompleteRecord:
        if self.status == "ok":
            if self.result is None:
                raise ValueError("status 'ok' needs a result")
            if not 0 <= self.result < MODULUS:
                raise ValueError(f"result {self.result} is outside [0, 2^32)")
            if self.error is not None:
                raise ValueError("status 'ok' must not carry an error")
        else:
            if self.result is not None:
                raise ValueError("status 'error' must not carry a result")
            if not self.error:
                raise ValueError("status 'error' needs an error message")
        return self

    @classmethod
    def ok(cls, comp_id: str, result: int, handler: str = "", elapsed_ms: float = 0.0):
        """An answer."""
        return cls(
            comp_id=comp_id, status="ok", result=result, handler=handler, elapsed_ms=elapsed_ms
        )

    @classmethod
    def failed(
        cls,
        comp_id: str,
        error: str,
        handler: str = "",
        elapsed_ms: float = 0.0,
        timed_out: bool = False,
    ):
        """No answer, and why (the node then declines the round)."""
        return cls(
            comp_id=comp_id,
            status="error",
            error=error,
            handler=handler,
            elapsed_ms=elapsed_ms,
            timed_out=timed_out,
        )


def check_comp_id(comp_id: str) -> str:
    """Refuse a comp_id that would escape the folder or hide from readers.

    A comp_id arrives over the network; used as a file name unchecked, `../x` would
    write outside the dispatch folder.
    """
    if (
        not comp_id
        or len(comp_id) > 200
        or comp_id.startswith(".")
        or any(c in comp_id for c in ("/", "\\", "\0"))
        or comp_id.endswith(TMP_SUFFIX)
    ):
        raise DispatchError(f"comp_id {comp_id!r} cannot be used as a dispatch file name")
    return comp_id


def is_dispatch_name(name: str, suffix: str) -> bool:
    """True for `<comp_id><suffix>` names a reader should look at (not tmp, not hidden)."""
    return name.endswith(suffix) and not name.startswith(".") and len(name) > len(suffix)


def pending_path(folder: str | os.PathLike[str], comp_id: str) -> Path:
    return Path(folder) / f"{check_comp_id(comp_id)}{PENDING_SUFFIX}"


def complete_path(folder: str | os.PathLike[str], comp_id: str) -> Path:
    return Path(folder) / f"{check_comp_id(comp_id)}{COMPLETE_SUFFIX}"


def result_path(data_dir: str | os.PathLike[str], comp_id: str) -> Path:
    """`<data_dir>/final_<comp_id>.json`: the proposer's result file (seed compatible)."""
    return Path(data_dir) / f"final_{check_comp_id(comp_id)}.json"


def ensure_folder(folder: str | os.PathLike[str]) -> Path:
    """Create a dispatch folder (and parents) owner-only, if it is not there yet."""
    path = Path(folder)
    missing = []
    p = path
    while not p.is_dir() and p != p.parent:
        missing.append(p)
        p = p.parent
    for p in reversed(missing):
        p.mkdir(mode=FOLDER_MODE, exist_ok=True)
        os.chmod(p, FOLDER_MODE)  # mkdir's mode is filtered by the umask
    return path


def write_pending(folder: str | os.PathLike[str], comp: Computation) -> Path:
    """Hand a computation to the folder's handler daemon: `<comp_id>.pending`."""
    return write_atomic(pending_path(folder, comp.comp_id), comp.model_dump_json().encode())


def read_pending(path: str | os.PathLike[str]) -> Computation:
    """Parse a `.pending` file; a garbage file is a `DispatchError` naming it."""
    data = Path(path).read_bytes()
    try:
        return Computation.model_validate_json(data)
    except ValidationError as exc:
        why = one_line(exc)
        raise DispatchError(f"{Path(path).name} is not a valid Computation: {why}") from exc


def write_complete(folder: str | os.PathLike[str], record: CompleteRecord) -> Path:
    """Answer a computation: `<comp_id>.complete` beside its `.pending`."""
    return write_atomic(complete_path(folder, record.comp_id), record.model_dump_json().encode())


def read_complete(path: str | os.PathLike[str]) -> CompleteRecord:
    """Parse a `.complete` file; a garbage or inconsistent one is a `DispatchError`."""
    data = Path(path).read_bytes()
    try:
        return CompleteRecord.model_validate_json(data)
    except ValidationError as exc:
        why = one_line(exc)
        raise DispatchError(f"{Path(path).name} is not a valid completion: {why}") from exc

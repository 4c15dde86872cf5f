"""Load the one handler a Python file defines.

Handler files are plain scripts a participant writes, not installed packages, so
they are imported by path under a fresh module name (two files named
`handler.py` never collide, and reloading one never returns a stale module). The
file's folder goes first on `sys.path` so a handler can import its sibling modules.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import re
import sys
import traceback
from pathlib import Path
from types import ModuleType

from beehive.core.errors import BeehiveError
from beehive.nectar.handler import Handler

__all__ = ["HandlerLoadError", "load_handler"]

_counter = itertools.count(1)


class HandlerLoadError(BeehiveError):
    """The file cannot give a handler: it is missing, broken, or has none or several."""


def load_handler(path: str | os.PathLike[str]) -> Handler:
    """Import `path` and return the single `Handler` (made with `@handler`) it defines."""
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise HandlerLoadError(f"{file}: no such handler file")
    module = _import_file(file)
    found = _handlers_in(module)
    if not found:
        raise HandlerLoadError(
            f"{file}: no handler found; decorate the function that answers the query "
            f"with @handler (from beehive import handler)"
        )
    if len(found) > 1:
        names = ", ".join(sorted(f"{attr} ({h.name!r})" for attr, h in found))
        raise HandlerLoadError(
            f"{file}: {len(found)} handlers found ({names}); a handler file must define "
            f"exactly one @handler"
        )
    return found[0][1]


def _import_file(file: Path) -> ModuleType:
    folder = str(file.parent)
    if folder in sys.path:
        sys.path.remove(folder)
    sys.path.insert(0, folder)

    stem = re.sub(r"\W", "_", file.stem)
    module_name = f"beehive_handler_{stem}_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise HandlerLoadError(f"{file}: cannot be imported as Python (is it a .py file?)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses, pickling etc. look modules up here
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(module_name, None)
        where = f"{exc.filename or file}:{exc.lineno}" if exc.lineno else str(file)
        raise HandlerLoadError(f"{where}: syntax error: {exc.msg}") from exc
    except (Exception, SystemExit) as exc:
        sys.modules.pop(module_name, None)
        raise HandlerLoadError(f"{_where(exc, file)}: {type(exc).__name__}: {exc}") from exc
    return module


def _where(exc: BaseException, file: Path) -> str:
    """`file:line` of the deepest frame of the error that is in the handler file itself."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename and Path(frame.filename) == file:
            line = frame.lineno
    return f"{file}:{line}" if line else str(file)


def _handlers_in(module: ModuleType) -> list[tuple[str, Handler]]:
    """The module's handlers; one imported from elsewhere is ignored if the file has its own."""
    seen: dict[int, tuple[str, Handler]] = {}
    for attr, value in vars(module).items():
        if isinstance(value, Handler) and id(value) not in seen:
            seen[id(value)] = (attr, value)
    found = list(seen.values())
    own = [(a, h) for a, h in found if getattr(h.func, "__module__", None) == module.__name__]
    return own if own else found

"""Load the one handler a Python file defines, and say where in it a failure is.

Handler files are plain scripts a participant writes, not installed packages, so
they are imported by path under a fresh module name (two files named
`handler.py` never collide, and reloading one never returns a stale module). The
file's folder goes first on `sys.path` so a handler can import its sibling modules.

Every error names `file:line`: of the error for a syntax error or a failing
import, of the `def` for a wrong signature. A failure while answering is shown
with the handler's *own* frames only (`own_traceback`): the handler file and the
modules beside it, never beehive's, the event loop's or an installed library's,
which are noise to the person who has to fix the handler.
"""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import os
import re
import sys
import sysconfig
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from beehive.core.errors import BeehiveError
from beehive.nectar.handler import Handler, HandlerDefinitionError, def_location, failure_stack

__all__ = [
    "HandlerLoadError",
    "failure_where",
    "is_own_file",
    "likely_handler",
    "load_handler",
    "own_traceback",
]

_counter = itertools.count(1)
T = TypeVar("T")
_BEEHIVE_DIR = Path(__file__).resolve().parent.parent
_LIBRARY_DIRS = ("site-packages", "dist-packages")
#: Shown above a traceback that lists the handler's own frames only.
OWN_FRAMES_HEADER = "Traceback (most recent call last; the handler's own frames only):"


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
        plain = sorted(
            (v for v in vars(module).values() if inspect.isfunction(v)),
            key=lambda f: f.__code__.co_firstlineno,
        )
        plain = [f for f in plain if f.__module__ == module.__name__]
        likely = likely_handler(
            [(f, [*inspect.signature(f).parameters], _annotations(f)) for f in plain]
        )
        first = (likely.__name__, def_location(likely) or f"{file}:1") if likely else None
        raise HandlerLoadError(no_handler_message(file, first))
    if len(found) > 1:
        names = ", ".join(sorted(f"{attr} ({h.name!r})" for attr, h in found))
        ordered = sorted(found, key=lambda item: _first_line(item[1]))
        where = def_location(ordered[1][1].func) or str(file)
        raise HandlerLoadError(several_handlers_message(where, len(found), names))
    return found[0][1]


def _first_line(h: Handler) -> int:
    code = getattr(h.func, "__code__", None)
    return code.co_firstlineno if code is not None else 0


def _annotations(func: Any) -> str:
    return " ".join(str(a) for a in getattr(func, "__annotations__", {}).values())


def likely_handler(functions: list[tuple[T, list[str], str]]) -> T | None:
    """Of a file's functions (each with its parameter names and annotations as
    text), in file order, the one most likely meant as the handler: one taking
    `comp` or a `Computation`, else the first taking one parameter, else the first."""
    for func, params, notes in functions:
        if len(params) == 1 and (params[0] == "comp" or "Computation" in notes):
            return func
    for func, params, _ in functions:
        if len(params) == 1:
            return func
    return functions[0][0] if functions else None


def no_handler_message(file: Path, first_function: tuple[str, str] | None) -> str:
    """A file without `@handler`: at its first function (the likely one to decorate)."""
    if first_function is None:
        return (
            f"{file}:1: no handler found; define the function that answers the query "
            f"and decorate it with @handler (from beehive import handler)"
        )
    name, where = first_function
    return (
        f"{where}: no handler found; decorate the function that answers the query "
        f"with @handler (from beehive import handler) — {name}() here is not decorated"
    )


def several_handlers_message(where: str, count: int, names: str) -> str:
    """More than one `@handler`: at the second one's `def`."""
    return (
        f"{where}: {count} handlers found ({names}); a handler file must define "
        f"exactly one @handler"
    )


def syntax_error_message(exc: SyntaxError, file: Path) -> str:
    where = f"{exc.filename or file}:{exc.lineno}" if exc.lineno else str(file)
    return f"{where}: syntax error: {exc.msg}"


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
        raise HandlerLoadError(syntax_error_message(exc, file)) from exc
    except HandlerDefinitionError as exc:
        sys.modules.pop(module_name, None)
        raise HandlerLoadError(f"{exc.where or _where(exc, file)}: {exc}") from exc
    except (Exception, SystemExit) as exc:
        sys.modules.pop(module_name, None)
        raise HandlerLoadError(f"{_where(exc, file)}: {type(exc).__name__}: {exc}") from exc
    return module


def _where(exc: BaseException, file: Path) -> str:
    """`file:line` of the deepest frame of the error in the handler's own files."""
    return failure_where(exc, file) or str(file)


def is_own_file(filename: str, handler_file: Path) -> bool:
    """Whether a frame's file is the handler's own: the handler file, or a module
    in its folder (a sibling it imports) that is not an installed library (a
    virtual environment kept in that folder), not beehive and not the stdlib."""
    path = Path(os.path.normpath(os.path.abspath(filename)))
    if path == handler_file:
        return True
    if not path.is_relative_to(handler_file.parent) or path.is_relative_to(_BEEHIVE_DIR):
        return False
    if any(part in _LIBRARY_DIRS for part in path.parts):
        return False
    stdlib = sysconfig.get_paths().get("stdlib")
    return not (stdlib and path.is_relative_to(stdlib))


def own_frames(exc: BaseException, handler_file: Path) -> list[traceback.FrameSummary]:
    """The frames `exc` went through that are in the handler's own files."""
    file = Path(handler_file).resolve()
    return [f for f in failure_stack(exc) if f.filename and is_own_file(f.filename, file)]


def failure_where(exc: BaseException, handler_file: Path) -> str | None:
    """`file:line` of the deepest own frame of `exc` (None: it has none)."""
    frames = own_frames(exc, handler_file)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else None


def own_traceback(exc: BaseException, handler_file: Path, *, chained_messages: bool = True) -> str:
    """`exc`'s traceback as Python prints it, with the handler's own frames only.

    Chained exceptions (`raise … from …`, an error while handling another) are
    shown as Python shows them. `chained_messages=False` leaves their messages
    out (their types and frames stay): the daemon's log shows the final error's
    message, already in its log line, but another message may quote the query.
    """
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    parts: list[str] = []
    for later, earlier in zip([None, *chain[:-1]][::-1], chain[::-1], strict=True):
        frames = own_frames(earlier, handler_file)
        if frames:
            parts.append(OWN_FRAMES_HEADER + "\n")
            parts.extend(traceback.StackSummary.from_list(frames).format())
        if chained_messages or earlier is exc:
            parts.extend(traceback.format_exception_only(type(earlier), earlier))
        else:
            parts.append(f"{_type_name(earlier)} (its message is left out of the log)\n")
        if later is not None:
            direct = later.__cause__ is earlier
            parts.append(
                "\nThe above exception was the direct cause of the following exception:\n\n"
                if direct
                else "\nDuring handling of the above exception, another exception occurred:\n\n"
            )
    return "".join(parts).rstrip("\n")


def _type_name(exc: BaseException) -> str:
    kind = type(exc)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )


def _handlers_in(module: ModuleType) -> list[tuple[str, Handler]]:
    """The module's handlers; one imported from elsewhere is ignored if the file has its own."""
    seen: dict[int, tuple[str, Handler]] = {}
    for attr, value in vars(module).items():
        if isinstance(value, Handler) and id(value) not in seen:
            seen[id(value)] = (attr, value)
    found = list(seen.values())
    own = [(a, h) for a, h in found if getattr(h.func, "__module__", None) == module.__name__]
    return own if own else found

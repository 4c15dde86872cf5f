"""The `@handler` decorator: turns a user function into something the daemon can run.

A handler answers one `Computation` with one integer, on the participant's machine.
Everything that can be checked before a query arrives is checked at decoration
time (`HandlerDefinitionError`), so a mistake shows up in `hive handler test`, not
as a declined round in production. What can only be checked at run time (the value
returned, the time taken) raises `HandlerResultError` / `HandlerTimeoutError`.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import functools
import inspect
import linecache
import threading
import traceback
import typing
from collections.abc import Callable
from typing import Any, overload

from beehive.core.constants import MODULUS
from beehive.core.errors import BeehiveError
from beehive.core.models import Computation

__all__ = [
    "Handler",
    "HandlerDefinitionError",
    "HandlerError",
    "HandlerResultError",
    "HandlerTimeoutError",
    "def_location",
    "failure_stack",
    "handler",
]

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class HandlerError(BeehiveError):
    """Base of every error the handler framework raises about a user's handler."""


class HandlerDefinitionError(HandlerError, TypeError):
    """The decorated object cannot be a handler (raised when decorating).

    `where` is `file:line` of the function's `def` (None when it has no source,
    e.g. a builtin): what the user must edit, so the loader and `hive validate`
    report that line rather than the decorator's or beehive's own.
    """

    def __init__(
        self, message: str = "", *, where: str | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.where = where


class HandlerResultError(HandlerError, ValueError):
    """The handler returned something that is not an answer."""


class HandlerTimeoutError(HandlerError, TimeoutError):
    """The handler did not answer within its timeout.

    `thread` is the thread a sync handler still runs in (None for an async one,
    whose task was cancelled): a Python thread cannot be stopped, so the daemon
    replaces its whole process when that thread does not end (nectar/daemon.py).
    """

    def __init__(self, message: str, thread: threading.Thread | None = None) -> None:
        super().__init__(message)
        self.thread = thread


class Handler:
    """A validated handler function.

    Calling it calls the function unchanged (so `my_handler(comp)` still works in a
    user's own tests); `run()` is what the daemon and the harness use: it applies
    the timeout, runs sync functions off the event loop, and checks the answer.
    """

    def __init__(self, func: Callable[[Computation], Any], name: str | None = None) -> None:
        _check_signature(func)
        functools.update_wrapper(self, func)  # keep __doc__, __module__, __wrapped__
        self.func = func
        self.name = name if name is not None else _func_name(func)
        if not isinstance(self.name, str) or not self.name:
            raise HandlerDefinitionError(f"handler name must be a non-empty string, got {name!r}")
        self.is_async = _is_async(func)

    def __call__(self, comp: Computation) -> Any:
        return self.func(comp)

    def __repr__(self) -> str:
        kind = "async" if self.is_async else "sync"
        return f"<Handler {self.name!r} ({kind})>"

    def check_result(self, value: Any) -> int:
        """Return `value` if it is a valid answer, else raise `HandlerResultError`.

        bool is refused although it is an int subclass: `True` summed as 1 is almost
        always a bug (the user meant a count, or forgot to convert).
        """
        if isinstance(value, bool):
            raise HandlerResultError(
                f"handler {self.name!r} returned bool {value!r}; return an int "
                f"(use 1/0 explicitly if you mean yes/no)"
            )
        if not isinstance(value, int):
            hint = " (convert it with int(...))" if hasattr(value, "__index__") else ""
            kind = f"{type(value).__module__}.{type(value).__qualname__}"
            raise HandlerResultError(
                f"handler {self.name!r} returned {kind} {_preview(value)}; "
                f"it must return an int in [0, 2^32){hint}"
            )
        if not 0 <= value < MODULUS:
            raise HandlerResultError(
                f"handler {self.name!r} returned {value}, outside [0, 2^32): answers are "
                f"summed as shares mod 2^32, so they must be non-negative and below {MODULUS}"
            )
        return value

    async def run(self, comp: Computation, timeout: float | None = None) -> int:
        """Run the handler on `comp` and return its checked answer.

        Exceptions raised by the function propagate unchanged. A sync function runs
        in its own daemon thread rather than `asyncio.to_thread`: a Python thread
        cannot be killed, so a timed-out sync handler keeps running; in the shared
        default executor it would pin a worker (starving later rounds once enough
        hang) and block interpreter exit on SIGTERM. A daemon thread does neither.
        """
        thread = None
        if self.is_async:
            awaitable = self.func(comp)
        else:
            awaitable, thread = _in_daemon_thread(self.func, comp, f"handler-{self.name}")
        try:
            value = await asyncio.wait_for(awaitable, timeout)
        except TimeoutError:
            raise HandlerTimeoutError(
                f"handler {self.name!r} did not answer within {timeout:g}s", thread
            ) from None
        return self.check_result(value)


@overload
def handler(func: Callable[[Computation], Any], /) -> Handler: ...
@overload
def handler(*, name: str | None = None) -> Callable[[Callable[[Computation], Any]], Handler]: ...


def handler(func: Any = None, /, *, name: str | None = None) -> Any:
    """Mark a function `f(comp: Computation) -> int` (sync or async) as a handler.

    Use it bare (`@handler`) or with a name (`@handler(name="x")`; the default name
    is the function's).
    """
    if func is None:
        return lambda f: _make_handler(f, name)
    return _make_handler(func, name)


def _make_handler(func: Any, name: str | None) -> Handler:
    if isinstance(func, str):
        raise HandlerDefinitionError(
            f"@handler({func!r}): pass the name as a keyword, @handler(name={func!r})"
        )
    if isinstance(func, Handler):  # decorated twice: keep one layer
        return Handler(func.func, name=name if name is not None else func.name)
    return Handler(func, name=name)


def _func_name(func: Any) -> str:
    return getattr(func, "__name__", None) or type(func).__name__


def _is_async(func: Any) -> bool:
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(func, "__call__", None)  # noqa: B004 - callable objects with async __call__
    return call is not None and inspect.iscoroutinefunction(call)


def _check_signature(func: Any) -> None:
    """Reject, with a message saying what to change, anything that is not f(comp) -> int.

    The error carries the `def`'s `file:line` (`HandlerDefinitionError.where`):
    the line to fix is the signature, not the `@handler` line Python reports
    for an error raised while decorating.
    """
    try:
        _check_signature_of(func)
    except HandlerDefinitionError as exc:
        if exc.where is None:
            exc.where = def_location(func)
        raise


def _check_signature_of(func: Any) -> None:
    if not callable(func):
        raise HandlerDefinitionError(
            f"@handler must decorate a function taking a Computation, got "
            f"{type(func).__name__} {_preview(func)}"
        )
    label = f"handler {_func_name(func)!r}"
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        raise HandlerDefinitionError(f"{label} is a generator; it must return one int")
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise HandlerDefinitionError(f"{label}: cannot read its signature ({exc})") from exc
    params = list(sig.parameters.values())
    if len(params) != 1 or params[0].kind not in _POSITIONAL:
        shown = ", ".join(str(p) for p in params) or "no parameters"
        raise HandlerDefinitionError(
            f"{label} must take exactly one positional parameter (the Computation), "
            f"but takes ({shown}); write it as def {_func_name(func)}(comp: Computation) -> int"
        )
    if sig.return_annotation is inspect.Signature.empty:
        return
    returns = _resolved_return(func, sig.return_annotation)
    if returns is not int:
        raise HandlerDefinitionError(
            f"{label} is annotated to return {_annotation_name(returns)}; a handler returns "
            f"int (one non-negative integer below 2^32)"
        )


def def_location(func: Any) -> str | None:
    """`file:line` of the `def` of `func` (the line of `def`, not of its first
    decorator, which is what `co_firstlineno` gives); None without source."""
    code = getattr(inspect.unwrap(func), "__code__", None) if callable(func) else None
    if code is None:
        return None
    file, first = code.co_filename, code.co_firstlineno
    line = first
    with contextlib.suppress(SyntaxError, ValueError):
        tree = ast.parse("".join(linecache.getlines(file)))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and node.name == code.co_name
                and first in (node.lineno, *(d.lineno for d in node.decorator_list))
            ):
                line = node.lineno
                break
    return f"{file}:{line}"


def _resolved_return(func: Any, annotation: Any) -> Any:
    """The return annotation as an object, also under `from __future__ import annotations`."""
    if not isinstance(annotation, str):
        return annotation
    try:
        return typing.get_type_hints(func).get("return", annotation)
    except Exception:
        return int if annotation.strip() in ("int", "builtins.int") else annotation


def _annotation_name(annotation: Any) -> str:
    if isinstance(annotation, str):
        return annotation
    if annotation is None or annotation is type(None):
        return "None"
    return getattr(annotation, "__qualname__", None) or repr(annotation)


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _in_daemon_thread(
    func: Callable[[Any], Any], arg: Any, thread_name: str
) -> tuple[asyncio.Future[Any], threading.Thread]:
    """Run `func(arg)` in a fresh daemon thread; its outcome resolves the returned
    future.

    A failure's traceback is dropped before it crosses to the loop: it holds the
    handler's frames, and with them everything the handler allocated (a
    MemoryError's gigabytes); the exception is referenced from this very frame,
    so frame and exception would keep each other alive until a full garbage
    collection, which a quiet daemon may never run.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future = loop.create_future()

    def settle(ok: bool, payload: Any) -> None:
        if future.done():  # cancelled (timed out) meanwhile: nobody wants the answer
            return
        if ok:
            future.set_result(payload)
        else:
            future.set_exception(payload)

    def target() -> None:
        try:
            outcome = (True, func(arg))
        except BaseException as exc:
            outcome = (False, _without_tracebacks(exc))
        # RuntimeError: the loop closed while we ran (shutdown), nobody wants the answer.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, *outcome)
        del outcome

    thread = threading.Thread(target=target, name=thread_name, daemon=True)
    thread.start()
    return future, thread


#: Where a handler's frames are kept, as text, once its traceback is dropped.
_STACK_ATTR = "__beehive_stack__"


def _without_tracebacks(exc: BaseException) -> BaseException:
    """`exc`, and every exception chained to it, with its traceback dropped.

    Each one's frames are first kept as text (file, line, function, source line:
    a `StackSummary`, which references no frame), so the daemon can still log
    where the handler failed (`failure_stack`) after the frames, and what they
    held, are gone. Keeping them may itself fail (after a MemoryError): then the
    error is reported without its frames rather than not at all.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if current.__traceback__ is not None:
            with contextlib.suppress(Exception):
                setattr(current, _STACK_ATTR, traceback.extract_tb(current.__traceback__))
        current.__traceback__ = None
        current = current.__cause__ or current.__context__
    return exc


def failure_stack(exc: BaseException) -> traceback.StackSummary:
    """The frames `exc` was raised through, outermost first: those of its
    traceback, then the ones kept as text when a traceback was dropped on the way
    (`_without_tracebacks`: the handler's own, in its thread; re-raised on the
    event loop, the exception has a new traceback of the loop's frames only)."""
    current = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    kept = getattr(exc, _STACK_ATTR, None)
    if not isinstance(kept, traceback.StackSummary):
        kept = []
    return traceback.StackSummary.from_list([*current, *kept])

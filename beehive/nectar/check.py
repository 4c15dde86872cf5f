"""Check or try a handler file in a process of its own (`hive validate`, `hive handler test`).

    python -m beehive.nectar.check check FILE [--static]
    python -m beehive.nectar.check run FILE [--query Q] [--timeout S]

Why a process: importing a handler runs its author's code. In the CLI process,
its side effects (threads, signal handlers, a `sys.exit`, a hanging network
call) would run inside `hive`, and a handler with `requirements:` could not be
imported at all, since those live in its own virtual environment. So the CLI
starts this module with the handler's interpreter (its environment's `python`
when it has one) and its environment variables, bounded by a timeout, and reads
one JSON object back. The handler's own output goes to stderr: stdout carries
nothing but that object.

`--static` checks a file without running any of it: syntax, that there is one
`@handler`, and its signature (the `def` is rebuilt without its body, decorators
and defaults, and given to the very check `@handler` makes). `hive validate`
uses it for a handler whose environment is not built yet: importing it with
the hive's interpreter would fail on the first import of one of its
requirements, an error that says nothing about the file, while this finds
every mistake the file itself can have except in its imports, and says so.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import faulthandler
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from beehive.nectar.handler import (
    HandlerDefinitionError,
    HandlerError,
    HandlerTimeoutError,
    _check_signature,
    def_location,
)
from beehive.nectar.loader import (
    HandlerLoadError,
    failure_where,
    is_own_file,
    likely_handler,
    load_handler,
    no_handler_message,
    own_traceback,
    several_handlers_message,
    syntax_error_message,
)

__all__ = ["Outcome", "check_file", "run_file", "static_check"]

#: Modules that export the `handler` decorator (`from beehive import handler`).
_HANDLER_MODULES = {"beehive", "nectar", "beehive.nectar", "beehive.nectar.handler"}
#: Seconds an import may take before the check gives up on it.
IMPORT_TIMEOUT = 60.0


# -- the static check ---------------------------------------------------------------


def static_check(path: str | os.PathLike[str]) -> tuple[str, str]:
    """(handler name, `file:line` of its def) of the one `@handler` in `path`,
    found without running the file; raises HandlerLoadError naming file:line."""
    file = Path(path).expanduser().resolve()
    try:
        source = file.read_bytes()
    except OSError as exc:
        raise HandlerLoadError(f"{file}: no such handler file ({exc.strerror})") from exc
    try:
        tree = ast.parse(source, filename=str(file))
        compile(tree, str(file), "exec", dont_inherit=True)  # errors ast.parse leaves
    except SyntaxError as exc:
        raise HandlerLoadError(syntax_error_message(exc, file)) from exc
    except ValueError as exc:  # a NUL byte
        raise HandlerLoadError(f"{file}: cannot be parsed as Python: {exc}") from exc
    found = _decorated(tree)
    if not found:
        plain = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        likely = likely_handler([(n, *_parameters(n)) for n in plain])
        first = (likely.name, f"{file}:{likely.lineno}") if likely else None
        raise HandlerLoadError(no_handler_message(file, first))
    if len(found) > 1:
        names = ", ".join(sorted(f"{n.name} ({name!r})" for n, name in found))
        raise HandlerLoadError(
            several_handlers_message(f"{file}:{found[1][0].lineno}", len(found), names)
        )
    node, name = found[0]
    try:
        _check_signature(_stub(node, file))
    except HandlerDefinitionError as exc:
        raise HandlerLoadError(f"{exc.where or f'{file}:{node.lineno}'}: {exc}") from exc
    return name, f"{file}:{node.lineno}"


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[list[str], str]:
    """Parameter names and annotations (as source text) of a `def`."""
    a = node.args
    params = [*a.posonlyargs, *a.args, *([a.vararg] if a.vararg else []), *a.kwonlyargs]
    params += [a.kwarg] if a.kwarg else []
    notes = [ast.unparse(p.annotation) for p in params if p.annotation is not None]
    return [p.arg for p in params], " ".join(notes)


def _decorated(tree: ast.Module) -> list[tuple[ast.FunctionDef | ast.AsyncFunctionDef, str]]:
    """The functions made handlers, in file order, with their handler names:
    `@handler`, `@handler(name=…)`, `@beehive.handler`, an alias of it, or
    `x = handler(f)` for a function `f` of the module."""
    aliases = {"handler"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in _HANDLER_MODULES:
            aliases.update(a.asname or a.name for a in node.names if a.name == "handler")

    def handler_call(expr: ast.expr) -> ast.Call | ast.expr | None:
        target = expr.func if isinstance(expr, ast.Call) else expr
        if (isinstance(target, ast.Name) and target.id in aliases) or (
            isinstance(target, ast.Attribute) and target.attr == "handler"
        ):
            return expr
        return None

    def name_of(decoration: ast.expr, default: str) -> str:
        if isinstance(decoration, ast.Call):
            for kw in decoration.keywords:
                if kw.arg == "name" and isinstance(kw.value, ast.Constant):
                    return str(kw.value.value)
        return default

    defs = {
        n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    found: dict[int, tuple[ast.FunctionDef | ast.AsyncFunctionDef, str]] = {}
    for node in defs.values():
        for decoration in node.decorator_list:
            if handler_call(decoration) is not None:
                found[id(node)] = (node, name_of(decoration, node.name))
    for stmt in tree.body:
        value = getattr(stmt, "value", None)
        if isinstance(value, ast.Call) and handler_call(value) is not None and value.args:
            arg = value.args[0]
            if isinstance(arg, ast.Name) and arg.id in defs:
                node = defs[arg.id]
                found.setdefault(id(node), (node, name_of(value, node.name)))
    return sorted(found.values(), key=lambda item: item[0].lineno)


def _stub(node: ast.FunctionDef | ast.AsyncFunctionDef, file: Path) -> Any:
    """The function `node` defines with nothing of it that could run: no
    decorators, no body (a `yield` if it had one, so a generator stays one), no
    parameter annotations, every default `None`; the return annotation is kept
    as text (`from __future__ import annotations`), which is what `@handler`
    checks. Compiled at its own line of `file`, so errors name that `def`."""
    stub = copy.deepcopy(node)
    stub.decorator_list = []
    args = stub.args
    for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
        if arg is not None:
            arg.annotation = None
    args.defaults = [ast.Constant(None) for _ in args.defaults]
    args.kw_defaults = [None if d is None else ast.Constant(None) for d in args.kw_defaults]
    body: ast.stmt = ast.Expr(ast.Yield()) if _yields(node) else ast.Pass()
    stub.body = [ast.copy_location(body, node)]
    future = ast.ImportFrom(module="__future__", names=[ast.alias("annotations")], level=0)
    module = ast.Module(body=[ast.copy_location(future, node), stub], type_ignores=[])
    namespace: dict[str, Any] = {}
    exec(compile(ast.fix_missing_locations(module), str(file), "exec"), namespace)
    return namespace[node.name]


def _yields(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Whether `node`'s own body yields (not a function or class nested in it)."""
    todo: list[ast.AST] = list(node.body)
    while todo:
        current = todo.pop()
        if isinstance(current, ast.Yield | ast.YieldFrom):
            return True
        if not isinstance(
            current, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef
        ):
            todo.extend(ast.iter_child_nodes(current))
    return False


# -- inside the child process ---------------------------------------------------------


def _check(file: Path, static: bool) -> dict[str, Any]:
    if static:
        name, where = static_check(file)
    else:
        h = load_handler(file)
        name, where = h.name, def_location(h.func) or str(file)
    return {"ok": True, "name": name, "where": where}


def _run(
    file: Path, query: str, timeout: float, node: str | None, metadata: dict[str, Any]
) -> dict[str, Any]:
    from beehive.nectar.harness import run_sample

    try:
        h = load_handler(file)
    except HandlerLoadError as exc:
        cause = exc.__cause__
        trace = None
        if cause is not None and not isinstance(cause, SyntaxError | HandlerDefinitionError):
            trace = own_traceback(cause, file)
        return {"ok": False, "error": str(exc), "traceback": trace}
    defined = def_location(h.func) or str(file)
    try:
        answer = run_sample(h, query=query, timeout=timeout, node=node, metadata=metadata)
    except (HandlerTimeoutError, HandlerError) as exc:
        return {"ok": False, "error": f"{defined}: {exc}", "traceback": None}
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SystemExit too: a handler must return, not exit
        where = failure_where(exc, file) or defined
        return {
            "ok": False,
            "error": f"{where}: {type(exc).__name__}: {exc}",
            "traceback": own_traceback(exc, file),
        }
    return {"ok": True, "name": h.name, "answer": answer}


def _result_channel() -> TextIO:
    """Our stdout, kept for the result alone; fd 1 then goes to stderr, so what
    the handler prints cannot be mistaken for (or corrupt) the result."""
    sys.stdout.flush()
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return channel


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m beehive.nectar.check")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="import the file (or, --static, only parse it)")
    check.add_argument("file", type=Path)
    check.add_argument("--static", action="store_true")
    run = sub.add_parser("run", help="run the handler once on a sample computation")
    run.add_argument("file", type=Path)
    run.add_argument("--query", default="What is your secret value")
    run.add_argument("--timeout", type=float, default=10.0)
    run.add_argument("--node", help="the alias comp.node names")
    run.add_argument("--metadata", default="{}", help="comp.metadata, as a JSON object")
    for each in (check, run):
        each.add_argument(
            "--deadline",
            type=float,
            help="seconds; past it, print where every thread is and exit (a hang)",
        )
    args = parser.parse_args(argv)
    sys.dont_write_bytecode = True  # a check writes nothing, not even __pycache__/
    channel = _result_channel()
    if args.deadline:
        # Says where a hanging import waits: the parent names that line.
        faulthandler.dump_traceback_later(args.deadline, exit=True, file=sys.stderr)
    file = args.file.expanduser().resolve()
    try:
        if args.command == "check":
            result = _check(file, args.static)
        else:
            result = _run(file, args.query, args.timeout, args.node, json.loads(args.metadata))
    except HandlerLoadError as exc:
        result = {"ok": False, "error": str(exc), "traceback": None}
    faulthandler.cancel_dump_traceback_later()
    channel.write(json.dumps(result) + "\n")
    channel.flush()
    return 0


# -- in the CLI --------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What a check or a run in the child process gave.

    `message` is one line: the error (`file:line: …`), or for a success empty.
    `traceback` (a failed run) holds the handler's own frames only.
    """

    ok: bool
    message: str = ""
    name: str | None = None
    where: str | None = None
    answer: int | None = None
    traceback: str | None = None


def check_file(
    python: str,
    file: Path,
    *,
    static: bool = False,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = IMPORT_TIMEOUT,
) -> Outcome:
    """Import (or, `static`, parse) `file` with `python`, in a process of its own."""
    cmd = [python, "-m", "beehive.nectar.check", "check", str(file)]
    cmd += ["--static"] if static else []
    return _child(cmd, file, "importing it", env=env, cwd=cwd, deadline=timeout, echo=False)


def run_file(
    python: str,
    file: Path,
    query: str,
    handler_timeout: float,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    import_timeout: float = IMPORT_TIMEOUT,
    node: str | None = None,
    metadata: dict[str, str] | None = None,
) -> Outcome:
    """Run the handler of `file` once with `python`, in a process of its own; what
    it prints is shown on our stderr once it is done (the user is watching)."""
    cmd = [python, "-m", "beehive.nectar.check", "run", str(file), "--query", query]
    cmd += ["--timeout", repr(handler_timeout), "--metadata", json.dumps(metadata or {})]
    cmd += ["--node", node] if node else []
    deadline = import_timeout + handler_timeout
    return _child(cmd, file, "running it", env=env, cwd=cwd, deadline=deadline, echo=True)


#: How faulthandler starts its dump, and a frame in it.
_DUMP_START = "Timeout ("
_DUMP_FRAME = re.compile(r'^\s*File "(?P<file>.+)", line (?P<line>\d+) in ', re.MULTILINE)


def _child(
    cmd: list[str],
    file: Path,
    doing: str,
    *,
    env: dict[str, str] | None,
    cwd: Path | None,
    deadline: float,
    echo: bool,
) -> Outcome:
    """Run `cmd` and read its result.

    Past `deadline` the child dumps its stack and exits (faulthandler), so a hang
    is reported at the handler's line that waits; should even that not end it,
    its whole process group is killed a little later (and on Ctrl-C), so a
    process the handler started cannot keep the pipe, and `hive`, waiting.
    `echo`: pass on what the handler printed (without the dump).
    """
    cmd = [*cmd, "--deadline", repr(deadline)]
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            text=True,
            process_group=0,
        )
    except OSError as exc:
        return Outcome(False, f"{file}: cannot start {cmd[0]} to check it: {exc.strerror}")
    hung = Outcome(
        False,
        f"{file}: {doing} took longer than {deadline:g}s and was stopped: does it wait "
        "for something (a network call, a lock, input) when it is imported?",
    )
    try:
        out, err = proc.communicate(timeout=deadline + 10)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return hung
    finally:
        if proc.poll() is None:  # interrupted (Ctrl-C): leave nothing behind
            _kill_group(proc)
    try:
        result = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        result = None
    printed, dump = err, None
    if result is None and _DUMP_START in err:
        printed, dump = err.rsplit(_DUMP_START, 1)
    if echo and printed:
        sys.stderr.write(printed)
        sys.stderr.flush()
    if not isinstance(result, dict):
        if dump is not None:
            return _hung_at(hung, dump, file, doing, deadline)
        tail = "; ".join(printed.strip().splitlines()[-3:])
        return Outcome(
            False,
            f"{file}: the process {doing} exited with status {proc.returncode} without a "
            f"result (os._exit, a crash or a kill?){': ' + tail if tail else ''}",
        )
    return Outcome(
        bool(result.get("ok")),
        str(result.get("error") or ""),
        result.get("name"),
        result.get("where"),
        result.get("answer"),
        result.get("traceback"),
    )


def _hung_at(hung: Outcome, dump: str, file: Path, doing: str, deadline: float) -> Outcome:
    """`hung`, at the handler's own line the dump shows waiting (most recent first)."""
    for match in _DUMP_FRAME.finditer(dump):
        if is_own_file(match["file"], file):
            return Outcome(
                False,
                f"{match['file']}:{match['line']}: {doing} took longer than {deadline:g}s "
                "and was stopped here: does this wait for something (a network call, a "
                "lock, input)?",
            )
    return hung


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.communicate(timeout=5)


if __name__ == "__main__":
    sys.exit(main())

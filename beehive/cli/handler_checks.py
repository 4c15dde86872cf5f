"""Handler files as `hive validate` and `hive handler test` see them: each in its
own environment, in a process of its own (beehive/nectar/check.py says why).

A handler's environment is what its daemon will have: the interpreter of its
virtual environment when it declares `requirements:` (`hive up` builds it under
`<state>/venvs/<hash>/`), else the hive's own, and the environment variables the
topology declares for it (`env:`, `env_file:`) on a minimal base.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.markup import escape

from beehive.cli.common import Fail, Hive, err, out
from beehive.core.handler_env import EnvFileError, handler_environment
from beehive.core.names import printable
from beehive.nectar.check import IMPORT_TIMEOUT, Outcome, check_file, run_file
from beehive.orchestrator.environments import is_built
from beehive.topology.compiler import CompileError, handler_runtime

__all__ = ["HandlerRuntime", "check_handlers", "run_handler_test", "runtime_of"]

#: How long `hive handler test` lets a handler answer without a topology to say.
DEFAULT_TEST_TIMEOUT = 10.0


@dataclass(frozen=True)
class HandlerRuntime:
    """The interpreter a handler runs with, and its environment if it has one.

    `venv` is its built virtual environment; `missing` the one it declares
    (`requirements:`) but `hive up` has not built yet (then `python` is the
    hive's own, which lacks the requirements).
    """

    python: str
    venv: Path | None = None
    missing: Path | None = None


def runtime_of(hive: Hive, name: str) -> HandlerRuntime:
    """Where handler `name`'s daemon runs, as `hive up` computes it.

    The path of the environment comes from the compiler (`handler_runtime`: a
    hash of the interpreter and the requirements), so it is the very folder
    `hive up` builds, never a copy of its rule. A multi-host handler may run on
    several hosts: the first state folder that has it built wins.
    """
    spec = hive.topology.handlers[name]
    if spec.requirements is None:
        return HandlerRuntime(sys.executable)
    roots = [hive.state_dir]
    roots += [hive.layout_of(alias).root for alias in hive.topology.bound_nodes(name)]
    first: Path | None = None
    for root in dict.fromkeys(Path(os.path.abspath(r)) for r in roots):
        try:
            python, env = handler_runtime(hive.topology, name, root, sys.executable)
        except CompileError as exc:
            raise Fail(escape(str(exc))) from exc
        assert env is not None  # it has requirements
        venv = root / env.path
        if is_built(root, env):
            return HandlerRuntime(python, venv)
        first = first or venv
    return HandlerRuntime(sys.executable, missing=first)


def environment_of(hive: Hive, name: str, runtime: HandlerRuntime) -> dict[str, str]:
    """The environment variables handler `name` gets (handler_environment), with
    its own virtual environment named in VIRTUAL_ENV and first on PATH."""
    spec = hive.topology.handlers[name]
    try:
        return handler_environment(spec.env, spec.env_file, venv=runtime.venv)
    except EnvFileError as exc:
        raise Fail(escape(f"handlers.{name}.env_file: {exc}")) from exc


def _cwd(hive: Hive, file: Path) -> Path:
    """A daemon runs in the state folder (supervisord's `directory=`): so does the
    check, once that folder exists; before `hive up`, the handler's own folder."""
    return hive.state_dir if hive.state_dir.is_dir() else file.parent


def check_handlers(hive: Hive, timeout: float = IMPORT_TIMEOUT) -> list[str]:
    """Check every handler file of the topology; the lines to print.

    Raises Fail listing every handler that fails (`handler NAME: file:line: …`),
    having checked them all, so one run shows every file to fix.
    """
    lines: list[str] = []
    problems: list[str] = []
    for name, spec in sorted(hive.topology.handlers.items()):
        file = Path(spec.file)
        try:
            runtime = runtime_of(hive, name)
            env = environment_of(hive, name, runtime)
        except Fail as exc:
            problems.append(f"handler {name}: {exc.message}")
            continue
        static = runtime.missing is not None
        outcome = check_file(
            runtime.python, file, static=static, env=env, cwd=_cwd(hive, file), timeout=timeout
        )
        if not outcome.ok:
            problems.append(escape(f"handler {name}: {printable(outcome.message)}"))
            continue
        lines.append(_ok_line(hive, name, outcome, runtime))
    if len(problems) == 1:
        raise Fail(problems[0])
    if problems:
        raise Fail(f"{len(problems)} handlers fail their check:\n  " + "\n  ".join(problems))
    return lines


def _ok_line(hive: Hive, name: str, outcome: Outcome, runtime: HandlerRuntime) -> str:
    what = f"handler {name}: {outcome.where} @handler {outcome.name!r} ok"
    if runtime.missing is not None:
        return (
            f"{what} (syntax and signature only: its imports were not checked, its "
            f"environment {_shown(hive, runtime.missing)} is not built yet; `hive up` "
            "builds it, then `hive validate` checks its imports too)"
        )
    if runtime.venv is not None:
        return f"{what} (imported in its environment {_shown(hive, runtime.venv)})"
    return f"{what} (imported)"


def _shown(hive: Hive, path: Path) -> str:
    try:
        return str(path.relative_to(hive.state_dir))
    except ValueError:
        return str(path)


def run_handler_test(
    file: Path | None,
    topology_file: Path,
    state_dir: Path | None,
    query: str,
    name: str | None,
    show_traceback: bool,
    node: str | None = None,
    metadata: dict[str, str] | None = None,
) -> None:
    """`hive handler test`: run the handler once, print one line (or raise Fail).

    With `--handler NAME` it runs as that handler of the topology runs: in its
    environment, with its settings and its timeout (and `--node`'s own settings,
    `nodes.<alias>.env`); without, with the hive's interpreter and this shell's
    environment, as before. `--node` and `--metadata` fill `comp.node` and
    `comp.metadata`.
    """
    python, env, cwd, timeout = sys.executable, None, None, DEFAULT_TEST_TIMEOUT
    if name is not None:
        hive = Hive.open(topology_file, state_dir)
        spec = hive.topology.handlers.get(name)
        if spec is None:
            declared = ", ".join(sorted(hive.topology.handlers)) or "none"
            raise Fail(
                escape(f"--handler {name}: {topology_file} declares no such handler ({declared})")
            )
        file = file or Path(spec.file)
        runtime = runtime_of(hive, name)
        if runtime.missing is not None:
            raise Fail(
                escape(
                    f"handler {name} declares requirements, and its environment "
                    f"{runtime.missing} is not built yet; build it with "
                    f"`hive up -f {topology_file}`, then run this test again"
                )
            )
        python, env, timeout = runtime.python, environment_of(hive, name, runtime), spec.timeout
        if node is not None and node in hive.topology.nodes:
            env.update(hive.topology.nodes[node].env)
        cwd = _cwd(hive, file)
    if file is None:
        raise Fail("name the handler file (hive handler test FILE) or --handler NAME")
    outcome = run_file(python, file, query, timeout, env=env, cwd=cwd, node=node, metadata=metadata)
    if not outcome.ok:
        if show_traceback and outcome.traceback:
            err.print(outcome.traceback, markup=False, highlight=False)
        raise Fail(escape(printable(outcome.message)))
    out.print(f"handler test passed: {file} answered {outcome.answer} to {query!r}", markup=False)

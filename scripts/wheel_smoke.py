#!/usr/bin/env python3
"""Smoke-test bee-hive installed from a wheel: validate, up, submit, down.

Why it exists: the test suite runs against an editable install, where the source
tree is importable and every file of the repository is reachable. A wheel ships
only what the packaging declares, so a file left out of it (the jinja2 templates
once were) goes unnoticed until a user installs the wheel. This script, run by the
interpreter of a virtual environment where bee-hive was installed FROM A WHEEL
(`tox run -e wheel`), proves the installed package works on its own:

1. `beehive` is imported from site-packages, not from the repository;
2. the installed `hive` (beside this interpreter) validates topologies/test.yaml,
   brings it up on a free port in a short temporary state folder, answers one
   query with the expected total,
3. and always takes it down again (`hive down --purge`) and removes the folder.

Every command runs with the temporary folder as working directory, so nothing can
be imported from the source tree.

    <venv>/bin/python scripts/wheel_smoke.py /path/to/repo
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

QUERY = "What is your secret value"
PROPOSER = "alice"
AGGREGATORS = ["alice", "bob"]
TARGETS = ["charlie", "dave", "eve"]
#: handlers/query_length.py answers min(len(query), 100) on every target.
EXPECTED = min(len(QUERY), 100) * len(TARGETS)
#: Variables that would point the installed package back at the repository.
SCRUBBED_ENV = ("PYTHONPATH", "BEEHIVE_TEMPLATES", "BEEHIVE_STATE_DIR", "HIVE_FILE")


class SmokeError(Exception):
    """A step failed; the message says which and why."""


def step(message: str) -> None:
    print(f"wheel_smoke: {message}", flush=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_within(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def check_installed_package(repo: Path) -> None:
    """beehive and its templates come from site-packages, not from the repository."""
    import beehive
    from beehive.topology.compiler import templates_path

    package = Path(beehive.__file__).resolve().parent
    site_packages = Path(sysconfig.get_paths()["purelib"])
    # The tox venv itself lives under the repository (.tox/), so "not from the
    # repository" means: not the source tree's own beehive/ folder.
    if not is_within(package, site_packages) or is_within(package, repo / "beehive"):
        raise SmokeError(
            f"beehive is imported from {package}, not from {site_packages}: "
            "run this with the interpreter of a venv where bee-hive was installed from a wheel"
        )
    templates = templates_path()
    missing = [
        name
        for name in ("supervisord.conf.j2", "nats-server.conf.j2")
        if not (templates / name).is_file()
    ]
    if missing or not is_within(templates, package):
        raise SmokeError(f"templates {missing} not shipped in the wheel (looked in {templates})")
    step(f"beehive {package} (templates {templates})")


def run(
    hive: Path, args: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run `hive ARGS`; raise SmokeError with its output when it fails."""
    step("$ hive " + " ".join(args))
    try:
        proc = subprocess.run(
            [str(hive), *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise SmokeError(f"`hive {args[0]}` did not finish within {timeout:.0f}s") from exc
    if proc.returncode != 0:
        raise SmokeError(
            f"`hive {args[0]}` exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout}--- stderr ---\n{proc.stderr}"
        )
    return proc


def log_tails(state: Path, lines: int = 20) -> str:
    """The end of every program log in the state folder, to explain a failure."""
    out = []
    for log in sorted((state / "logs").glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        out.append(f"--- {log.name} ---\n" + "\n".join(tail))
    return "\n".join(out)


def leftover_processes(marker: str) -> list[int]:
    """PIDs (other than ours) whose command line names `marker` (Linux /proc only)."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and int(entry.name) != os.getpid():
            pids.append(int(entry.name))
    return pids


def smoke(repo: Path) -> None:
    topology = repo / "topologies" / "test.yaml"
    if not topology.is_file():
        raise SmokeError(f"no topology at {topology}: pass the repository root")
    hive = Path(sys.executable).parent / "hive"
    if not hive.is_file():
        raise SmokeError(f"no `hive` executable beside {sys.executable}")
    check_installed_package(repo)

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env["HIVE_NATS_PORT"] = str(port)
    tmp = Path(tempfile.mkdtemp(prefix="bh-wheel-", dir="/tmp"))
    state = tmp / "state"
    step(f"state folder {state}, NATS port {port}")
    failed = False
    try:
        run(hive, ["validate", "-f", str(topology)], tmp, env, timeout=60)
        up = [str(topology), "--state-dir", str(state), "--timeout", "60"]
        run(hive, ["up", *up], tmp, env, timeout=180)
        step("up: every process healthy")
        submit = [
            *("submit", QUERY, "-f", str(topology), "--state-dir", str(state)),
            *("--proposer", PROPOSER, "--aggregators", ",".join(AGGREGATORS)),
            *("--targets", ",".join(TARGETS), "--json"),
        ]
        proc = run(hive, submit, tmp, env, timeout=120)
        try:
            result = json.loads(proc.stdout)
        except json.JSONDecodeError as exc:
            raise SmokeError(f"`hive submit --json` printed no JSON: {proc.stdout!r}") from exc
        if result.get("status") != "complete" or result.get("result") != EXPECTED:
            raise SmokeError(f"expected a complete round with result {EXPECTED}, got {result}")
        step(f"submit: complete, result {result['result']} (expected {EXPECTED})")
    except BaseException:
        failed = True
        tails = log_tails(state) if state.is_dir() else ""
        if tails:
            print(tails, file=sys.stderr, flush=True)
        raise
    finally:
        try:
            down = [str(topology), "--state-dir", str(state), "--purge"]
            run(hive, ["down", *down], tmp, env, timeout=120)
            step("down: stopped, state purged")
        except SmokeError as exc:
            if not failed:
                raise
            print(f"wheel_smoke: also failed to take the hive down: {exc}", file=sys.stderr)
        finally:
            leftovers = leftover_processes(str(tmp))
            for pid in leftovers:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            shutil.rmtree(tmp, ignore_errors=True)
            step(f"removed {tmp}")
        if leftovers and not failed:
            raise SmokeError(f"processes still running after `hive down` (killed): {leftovers}")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python scripts/wheel_smoke.py REPO_ROOT", file=sys.stderr)
        return 2
    try:
        smoke(Path(argv[0]).resolve())
    except SmokeError as exc:
        print(f"wheel_smoke: FAIL: {exc}", file=sys.stderr, flush=True)
        return 1
    step("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Build the virtual environments of handlers that declare `requirements`.

A handler's own environment holds its requirements only; beehive itself (and
the daemon's few dependencies) come from the hive's environment through a `.pth`
file that runs `site.addsitedir(<hive site-packages>)`. Why that way:

- the handler's packages are first on `sys.path` (its own site-packages is
  processed before the `.pth` appends the hive's), so a handler can pin another
  version of a library the hive also has, and two handlers can pin different ones;
- nothing of beehive is copied or re-installed: the daemon runs the very code
  `hive` runs, editable install included (addsitedir processes its `.pth` too);
- the `.pth` is written only after the installer has finished, so it sees an
  empty environment and never touches (or uninstalls from) the hive's own.

An environment is complete only once its marker file exists; a half-built one
(interrupted, failed) is deleted and built again. The installer is uv when it is
installed, else the hive's own pip driving the new interpreter (`pip --python`);
either way the environment needs no pip of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

from beehive.core.errors import BeehiveError
from beehive.topology.plan import Environment, Plan

#: Written last: its presence is what makes an environment usable.
READY_MARKER = ".beehive-env-ready"
HOST_PTH = "_beehive_host.pth"
INSTALL_TIMEOUT = 600.0


class EnvironmentBuildError(BeehiveError, RuntimeError):
    """Installing a handler's requirements failed; carries the installer's output."""


def is_built(state_dir: Path, env: Environment) -> bool:
    return (Path(state_dir) / env.path / READY_MARKER).exists()


def ensure_environments(plan: Plan, on_progress: Callable[[str], None] | None = None) -> list[str]:
    """Build every environment of `plan` that is not built yet; return their paths.

    Raises EnvironmentBuildError (with pip's output) on the first failure, having
    removed the partial environment, so a failed `hive up` starts nothing.
    """
    report = on_progress or (lambda _msg: None)
    built = []
    for env in plan.environments:
        if is_built(plan.state_dir, env):
            continue
        build_environment(Path(plan.state_dir), env, report)
        built.append(str(env.path))
    return built


def installer() -> tuple[str, str]:
    """("uv", path) when uv is available, else ("pip", our python).

    uv builds an environment in well under a second (measured: 0.4 s for a venv
    plus `humanize`); pip is the fallback that every Python has.
    `BEEHIVE_HANDLER_INSTALLER=pip|uv` forces one (the tests exercise both).
    """
    choice = os.environ.get("BEEHIVE_HANDLER_INSTALLER", "auto")
    beside = Path(sys.executable).parent / "uv"
    uv = str(beside) if beside.exists() else shutil.which("uv")
    if choice == "uv" and uv is None:
        raise EnvironmentBuildError("BEEHIVE_HANDLER_INSTALLER=uv but uv is not installed")
    if choice != "pip" and uv is not None:
        return "uv", uv
    return "pip", sys.executable


def build_environment(state_dir: Path, env: Environment, report: Callable[[str], None]) -> None:
    target = state_dir / env.path
    who = ", ".join(env.handlers)
    if target.exists():
        shutil.rmtree(target)  # no marker: an earlier build did not finish
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tool, exe = installer()
    python = target / "bin" / "python"
    report(f"creating environment {env.path} for handler {who} ({tool})")
    if tool == "uv":
        create = [exe, "venv", "--quiet", "--python", sys.executable, str(target)]
        install = [exe, "pip", "install", "--python", str(python), *env.requirements]
    else:
        create = [exe, "-m", "venv", "--without-pip", str(target)]
        install = [
            exe, "-m", "pip", "--python", str(python), "install", "--disable-pip-version-check",
            "--no-input", "--progress-bar", "off", *env.requirements,
        ]  # fmt: skip
    _run(create, tool, target, who, report)
    report(f"installing {' '.join(env.requirements)} for handler {who}")
    _run(install, tool, target, who, report)
    site_packages = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    lines = [f"import site; site.addsitedir({d!r})" for d in host_site_dirs()]
    Path(site_packages, HOST_PTH).write_text("\n".join(lines) + "\n")
    (target / READY_MARKER).write_text(" ".join(env.requirements) + "\n")
    report(f"environment {env.path} ready")


def host_site_dirs() -> list[str]:
    """The hive's own site-packages (purelib, platlib), where beehive is installed."""
    paths = sysconfig.get_paths()
    return list(dict.fromkeys(paths[k] for k in ("purelib", "platlib")))


def _run(cmd: list[str], tool: str, target: Path, who: str, report: Callable[[str], None]) -> None:
    """Run an installer step, streaming its lines as progress; fail with its output."""
    lines: list[str] = []
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        if line:
            lines.append(line)
            report(line[:120])
    code = proc.wait(timeout=INSTALL_TIMEOUT)
    if code != 0:
        shutil.rmtree(target, ignore_errors=True)
        tail = "\n".join(lines[-25:])
        raise EnvironmentBuildError(
            f"building the environment of handler {who} failed "
            f"({tool} exited {code}):\n{tail}\n"
            "fix `requirements` of that handler in the topology and run `hive up` again"
        )

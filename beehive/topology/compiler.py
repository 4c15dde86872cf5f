"""Topology → Plan: every generated file and every supervised process.

Pure and deterministic on purpose: no writes, no clocks, no randomness, JSON with
sorted keys. The same topology and the same public keys give byte-identical
artifacts, so `hive up` twice changes nothing and two plans can be diffed.

Built like NVIDIA FLARE's provisioner: a short list of builders, each adding its
artifacts and programs to one workspace. A new kind of artifact is a new builder,
not an edit of the others.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2

from beehive.security.nats_auth import (
    admin_nkey_path,
    admin_permissions,
    nkey_path,
    permissions,
)
from beehive.topology.material import SecurityMaterial
from beehive.topology.plan import Artifact, Environment, Plan, Program, Readiness, StreamSetup
from beehive.topology.schema import Topology

#: sun_path of a Unix socket holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107

#: Start order: the server first, then the handler daemons (so a dispatch folder is
#: watched before its node accepts work), then the nodes.
PRIORITY_NATS = 10
PRIORITY_HANDLER = 50
PRIORITY_NODE = 100

SUPERVISORD_SOCKET = "run/supervisord.sock"
SUPERVISORD_PID = "run/supervisord.pid"
SUPERVISORD_LOG = "logs/supervisord.log"


class CompileError(ValueError):
    """The topology cannot be turned into a working plan (e.g. a socket path too long)."""


# --------------------------------------------------------------------------- helpers


def dump_json(obj: Any) -> bytes:
    """The one JSON encoding of every artifact: stable bytes for stable input."""
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def config_hash(command: Iterable[str], *contents: bytes) -> str:
    """sha256 over a program's command and its own config bytes.

    Length-prefixed so that moving bytes between the parts cannot collide.
    """
    h = hashlib.sha256()
    for part in (*(arg.encode() for arg in command), b"\0", *contents):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def templates_path(templates_dir: Path | None = None) -> Path:
    """Where the jinja2 templates are: argument, then `BEEHIVE_TEMPLATES`, then the
    repository's top-level `templates/` (the project is installed editable)."""
    if templates_dir is not None:
        return Path(templates_dir)
    env = os.environ.get("BEEHIVE_TEMPLATES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "templates"


def _supervisor_value(value: object) -> str:
    """supervisord expands `%(name)s` in most values; a literal '%' must be doubled."""
    return str(value).replace("%", "%%")


def _environment(templates_dir: Path | None) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_path(templates_dir))),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["sv"] = _supervisor_value
    return env


def render_supervisord_conf(
    name: str,
    state_dir: Path,
    programs: Iterable[Program],
    *,
    priorities: dict[str, int] | None = None,
    templates_dir: Path | None = None,
) -> Artifact:
    """The supervisord.conf artifact for `programs`.

    Public so that tests (and any future builder) can wrap hand-made programs in
    the exact same supervisord config the compiler emits.
    """
    state = Path(state_dir)
    priorities = priorities or {}
    rows = [
        {
            "name": p.name,
            "command": shlex.join(p.command),
            "priority": priorities.get(p.name, 100),
            "log": str(state / p.log),
            "config_hash": p.config_hash,
        }
        for p in programs
    ]
    text = (
        _environment(templates_dir)
        .get_template("supervisord.conf.j2")
        .render(
            name=name,
            state_dir=str(state),
            socket=str(state / SUPERVISORD_SOCKET),
            pidfile=str(state / SUPERVISORD_PID),
            logfile=str(state / SUPERVISORD_LOG),
            programs=rows,
        )
    )
    return Artifact(PurePosixPath("supervisord.conf"), text.encode(), 0o600)


# ------------------------------------------------------------------------ workspace


@dataclass
class _Workspace:
    """What the builders share: inputs, and the plan growing entry by entry."""

    topology: Topology
    state_dir: Path
    directory_json: bytes
    python: str
    nats_server: str
    templates_dir: Path | None
    base_dir: Path | None
    security: SecurityMaterial
    artifacts: list[Artifact] = field(default_factory=list)
    programs: list[Program] = field(default_factory=list)
    priorities: dict[str, int] = field(default_factory=dict)
    directories: list[PurePosixPath] = field(default_factory=list)
    directory: Artifact | None = None
    environments: dict[PurePosixPath, Environment] = field(default_factory=dict)
    stream: StreamSetup | None = None

    def path(self, rel: str | PurePosixPath) -> Path:
        return self.state_dir / rel

    def add_artifact(self, rel: str, content: bytes, mode: int = 0o600) -> Artifact:
        art = Artifact(PurePosixPath(rel), content, mode)
        self.artifacts.append(art)
        return art

    def add_program(
        self,
        name: str,
        command: tuple[str, ...],
        configs: Iterable[Artifact],
        readiness: Readiness,
        priority: int,
        *,
        reload_on: tuple[PurePosixPath, ...] = (),
        reload_signal: str | None = None,
    ) -> None:
        digest = config_hash(command, *(a.content for a in configs))
        self.programs.append(
            Program(name, command, digest, readiness, f"logs/{name}.log", reload_on, reload_signal)
        )
        self.priorities[name] = priority

    def used_handlers(self) -> list[str]:
        """Handlers that get a daemon: bound to a node, or declared `always_run`."""
        return sorted(
            h
            for h, spec in self.topology.handlers.items()
            if spec.always_run or self.topology.bound_nodes(h)
        )


Builder = Callable[[_Workspace], None]


def _build_layout(ws: _Workspace) -> None:
    """Folders every program expects to exist: sockets, logs, dispatch folders."""
    ws.directories += [PurePosixPath("run"), PurePosixPath("logs"), PurePosixPath("data")]
    for alias in sorted(ws.topology.nodes):
        ws.directories.append(PurePosixPath("data", alias, "computation"))


def _build_topology(ws: _Workspace) -> None:
    """topology.json: the resolved topology, what `hive config` shows."""
    ws.add_artifact("topology.json", dump_json(ws.topology.model_dump(mode="json")), 0o644)


def _build_directory(ws: _Workspace) -> None:
    """directory.json: public keys only (rendered by the security module), so 0644."""
    ws.directory = ws.add_artifact("directory.json", ws.directory_json, 0o644)
    ws.add_artifact("directory.sig", ws.security.directory_sig, 0o644)


def _build_nats(ws: _Workspace) -> None:
    """The embedded nats-server, only when the topology names no external URL."""
    nats = ws.topology.nats
    if not nats.embedded:
        return
    host = f"[{nats.host}]" if ":" in nats.host else nats.host
    listen = f"{host}:{nats.port}"
    template = _environment(ws.templates_dir).get_template("nats-server.conf.j2")

    def render(authorization: str) -> bytes:
        return template.render(
            name=ws.topology.name,
            listen=listen,
            tls=ws.security.tls,
            authorization=authorization,
            jetstream_dir=str(ws.path("nats/jetstream")),
        ).encode()

    conf = ws.add_artifact("nats/nats-server.conf", render(_nats_authorization(ws)), 0o600)
    command = (ws.nats_server, "-c", str(ws.path(conf.path)))
    # The users change whenever a node is added or removed; nats-server reloads them
    # on SIGHUP without dropping a connection, so they stay out of the hash: adding a
    # node must not restart the server every node is connected to.
    hashed = Artifact(conf.path, render("{}"))
    ws.add_program(
        "nats",
        command,
        [hashed],
        Readiness("tcp", listen),
        PRIORITY_NATS,
        reload_on=(conf.path,),
        reload_signal="HUP",
    )
    tls = ws.security.tls
    ws.stream = StreamSetup(
        network=ws.topology.name,
        nats_url=_embedded_url(ws),
        ca_file=tls.ca_file if tls else None,
        nkey_seed_file=admin_nkey_path(ws.path("keys")),
    )


def _nats_authorization(ws: _Workspace) -> str:
    """One nkey user per node, allowed only the subjects the protocol needs, and
    the admin user, allowed only to create, inspect and update the stream.

    Rendered as JSON (nats-server's config format accepts it), so no value can
    break out of its quotes.
    """
    topo = ws.topology
    roles = {alias: node.role for alias, node in topo.nodes.items()}
    missing = sorted(set(roles) - set(ws.security.nkeys))
    if missing:
        raise CompileError(f"no NATS nkey for node(s) {', '.join(missing)}")
    if not ws.security.admin_nkey:
        raise CompileError("no NATS admin nkey (keys/_admin.nk) for the embedded server")
    users = [
        {"nkey": ws.security.nkeys[alias], "permissions": permissions(topo.name, alias, roles)}
        for alias in sorted(roles)
    ]
    users.append({"nkey": ws.security.admin_nkey, "permissions": admin_permissions(topo.name)})
    return json.dumps({"users": users}, indent=2, sort_keys=True)


def _nats_client(ws: _Workspace, alias: str) -> dict[str, Any]:
    """How one node reaches NATS: generated credentials and the hive's CA when the
    server is embedded, the topology's files when it is external."""
    nats = ws.topology.nats
    if nats.embedded:
        tls = ws.security.tls
        return {
            "nats_url": _embedded_url(ws),
            "nats_ca_file": str(tls.ca_file) if tls else None,
            "nats_nkey_seed_file": str(nkey_path(ws.path("keys"), alias)),
            "nats_creds_file": None,
            "nats_create_stream": False,
        }

    def per_node(value: str | None) -> str | None:
        return value.replace("{alias}", alias) if value else None

    return {
        "nats_url": nats.client_url,
        "nats_ca_file": str(nats.ca_file) if nats.ca_file else None,
        "nats_nkey_seed_file": per_node(nats.nkey_seed_file),
        "nats_creds_file": per_node(nats.creds_file),
        "nats_create_stream": True,
    }


def _embedded_url(ws: _Workspace) -> str:
    nats = ws.topology.nats
    host = f"[{nats.host}]" if ":" in nats.host else nats.host
    return f"{'tls' if ws.security.tls else 'nats'}://{host}:{nats.port}"


def _build_nodes(ws: _Workspace) -> None:
    """nodes/<alias>.json (NodeConfig) and one `node-<alias>` program each.

    A node's hash covers only its own config, not directory.json: a node watches
    the directory file and adopts a new one live (a node added or removed), so
    adding a node restarts no peer and loses no round in flight.
    """
    topo = ws.topology
    for alias in sorted(topo.nodes):
        node = topo.nodes[alias]
        sock = ws.path(f"run/{alias}.sock")
        _check_socket(sock)
        cfg = {
            "alias": alias,
            "role": node.role,
            "network": topo.name,
            **_nats_client(ws, alias),
            "key_file": str(ws.path(f"keys/{alias}.key")),
            "directory_file": str(ws.path("directory.json")),
            "directory_sig_file": str(ws.path("directory.sig")),
            "operator_key": ws.security.operator_key,
            "min_contributors": topo.defaults.min_contributors,
            "sharing": topo.defaults.sharing,
            "threshold": topo.defaults.threshold,
            "data_dir": str(ws.path(f"data/{alias}")),
            "control_socket": str(sock),
            "default_deadline": topo.defaults.deadline,
        }
        art = ws.add_artifact(f"nodes/{alias}.json", dump_json(cfg), 0o600)
        command = (ws.python, "-m", "beehive.flower.node", "--config", str(ws.path(art.path)))
        ws.add_program(
            f"node-{alias}",
            command,
            [art],
            Readiness("control_socket", str(sock)),
            PRIORITY_NODE,
        )


def _build_handlers(ws: _Workspace) -> None:
    """handlers/<name>.json (HandlerConfig) and one `handler-<name>` daemon each.

    A handler no node uses gets neither (unless `always_run`): a daemon watching
    nothing is only a process to keep alive.

    The hash leaves the attachments out: the daemon watches its config file and
    re-attaches live, so binding or unbinding a node restarts nothing; readiness
    then waits until the daemon reports watching exactly the new set.
    """
    topo = ws.topology
    for name in ws.used_handlers():
        spec = topo.handlers[name]
        ready = ws.path(f"run/handler-{name}.ready")
        bound = topo.bound_nodes(name)
        cfg = {
            "name": name,
            "file": _handler_file(spec.file, ws.base_dir),
            "timeout": spec.timeout,
            "attachments": {alias: str(ws.path(f"data/{alias}/computation")) for alias in bound},
            "ready_file": str(ready),
        }
        art = ws.add_artifact(f"handlers/{name}.json", dump_json(cfg), 0o600)
        hashed = Artifact(art.path, dump_json({k: v for k, v in cfg.items() if k != "attachments"}))
        python = _handler_python(ws, name, spec.requirements)
        command = (python, "-m", "beehive.nectar.daemon", "--config", str(ws.path(art.path)))
        ws.add_program(
            f"handler-{name}",
            command,
            [hashed],
            Readiness("ready_file", str(ready), watching=tuple(bound)),
            PRIORITY_HANDLER,
        )


def _handler_python(ws: _Workspace, handler: str, requirements: list[str] | Path | None) -> str:
    """The interpreter a handler runs with: the hive's own, or its own environment's.

    The environment lives in `venvs/<hash>/`, the hash over the base interpreter
    and the requirements (a file's content, not its name), so handlers with the
    same requirements share one environment and an edit builds a new one.
    """
    if requirements is None:
        return ws.python
    if isinstance(requirements, list):
        args = tuple(r.strip() for r in requirements)
        content = "\n".join(args).encode()
    else:
        args = ("-r", str(requirements))
        try:
            content = Path(requirements).read_bytes()
        except OSError as exc:
            raise CompileError(
                f"handlers.{handler}.requirements: cannot read {requirements}: {exc.strerror}"
            ) from exc
    digest = config_hash((ws.python, *args), content)[:16]
    rel = PurePosixPath("venvs", digest)
    known = ws.environments.get(rel)
    users = (*known.handlers, handler) if known else (handler,)
    ws.environments[rel] = Environment(rel, args, tuple(sorted(users)))
    return str(ws.path(rel / "bin" / "python"))


def _build_supervisord(ws: _Workspace) -> None:
    """supervisord.conf last: it lists every program the builders above added."""
    _check_socket(ws.path(SUPERVISORD_SOCKET))
    ws.artifacts.append(
        render_supervisord_conf(
            ws.topology.name,
            ws.state_dir,
            sorted(ws.programs, key=lambda p: (ws.priorities[p.name], p.name)),
            priorities=ws.priorities,
            templates_dir=ws.templates_dir,
        )
    )


BUILDERS: tuple[Builder, ...] = (
    _build_layout,
    _build_topology,
    _build_directory,
    _build_nats,
    _build_handlers,
    _build_nodes,
    _build_supervisord,
)


def compile_plan(
    topology: Topology,
    *,
    state_dir: Path,
    directory_json: bytes,
    python: str,
    nats_server: str,
    security: SecurityMaterial,
    templates_dir: Path | None = None,
    base_dir: Path | None = None,
) -> Plan:
    """Compile `topology` into the Plan for `state_dir` (made absolute, not resolved).

    `directory_json` is the pinned public-key directory the security module
    renders; it is placed as is, with `security.directory_sig` beside it as
    directory.sig. `security` carries every other piece of public security
    material (NATS nkeys, TLS paths, the operator key). `base_dir` is the folder
    relative handler files are resolved against (the topology file's folder); the
    loader normally makes them absolute already.
    """
    ws = _Workspace(
        topology=topology,
        state_dir=Path(os.path.abspath(state_dir)),
        directory_json=directory_json,
        python=python,
        nats_server=nats_server,
        templates_dir=templates_dir,
        base_dir=base_dir,
        security=security,
    )
    for build in BUILDERS:
        build(ws)
    programs = sorted(ws.programs, key=lambda p: (ws.priorities[p.name], p.name))
    return Plan(
        state_dir=ws.state_dir,
        artifacts=tuple(ws.artifacts),
        programs=tuple(programs),
        directories=tuple(ws.directories),
        environments=tuple(ws.environments[k] for k in sorted(ws.environments)),
        stream=ws.stream,
    )


def _handler_file(file: Path, base_dir: Path | None) -> str:
    if file.is_absolute():
        return str(file)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    return os.path.normpath(os.path.abspath(base / file))


def _check_socket(path: Path) -> None:
    """Fail at compile time with a fix, not at start-up with 'AF_UNIX path too long'."""
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise CompileError(
            f"socket path {str(path)!r} is {len(os.fsencode(path))} bytes; Unix sockets allow "
            f"{MAX_SOCKET_PATH}: choose a shorter state folder (--state-dir / BEEHIVE_STATE_DIR)"
        )

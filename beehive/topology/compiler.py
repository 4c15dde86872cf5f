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

from beehive.core.configs import (
    CompiledConfig,
    HandlerConfig,
    NatsCluster,
    NatsGuardConfig,
    NatsServerConfig,
    NatsTls,
    NodeConfig,
    dump_json,
)
from beehive.core.errors import BeehiveError
from beehive.core.handler_env import EnvFileError, env_file_digest
from beehive.security.nats_auth import admin_permissions, permissions
from beehive.topology.layout import NATS_GUARD_PROGRAM, NATS_PROGRAM, SUPERVISORD, StateLayout
from beehive.topology.material import SecurityMaterial
from beehive.topology.plan import Artifact, Environment, Plan, Program, Readiness, StreamSetup
from beehive.topology.schema import Topology

#: sun_path of a Unix socket holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107

#: Start order: the server first, then the handler daemons (so a dispatch folder is
#: watched before its node accepts work), then the nodes. The guard only reads
#: the server's log, so it starts right after it.
PRIORITY_NATS = 10
PRIORITY_GUARD = 20
PRIORITY_HANDLER = 50
PRIORITY_NODE = 100


class CompileError(BeehiveError, ValueError):
    """The topology cannot be turned into a working plan (e.g. a socket path too long)."""


# --------------------------------------------------------------------------- helpers


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
    package's own `beehive/templates/` (shipped as package data, so it is there in a
    wheel install as in an editable one)."""
    if templates_dir is not None:
        return Path(templates_dir)
    env = os.environ.get("BEEHIVE_TEMPLATES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "templates"


def _supervisor_value(value: object) -> str:
    """supervisord expands `%(name)s` in most values; a literal '%' must be doubled.

    Its values cannot be quoted: a newline or carriage return would end the value
    and start a directive of its own, so one is refused.
    """
    text = str(value)
    if "\n" in text or "\r" in text:
        raise CompileError(
            f"{text!r} cannot go into supervisord.conf: a line break would start a "
            "directive of its own"
        )
    return text.replace("%", "%%")


def _nats_string(value: object) -> str:
    """A double-quoted nats-server.conf string: JSON, which that format accepts.

    Not ASCII-escaped (nats-server reads UTF-8 but knows no `\\u` escape), so only
    `\\"` and `\\\\` are escaped; a control character, which would need one, is refused.
    """
    text = str(value)
    if any(c < " " or c == "\x7f" for c in text):
        raise CompileError(
            f"{text!r} cannot go into nats-server.conf: it holds a control character"
        )
    return json.dumps(text, ensure_ascii=False)


def _environment(templates_dir: Path | None) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_path(templates_dir))),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["sv"] = _supervisor_value
    env.filters["nats_string"] = _nats_string
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
    the exact same supervisord config the compiler emits. Its one input beyond
    the arguments is whether this process runs as root (then `user=root`).
    """
    layout = StateLayout(Path(state_dir))
    priorities = priorities or {}
    rows = [
        {
            "name": p.name,
            "command": shlex.join(p.command),
            "priority": priorities.get(p.name, 100),
            "log": str(layout.root / p.log),
            "config_hash": p.config_hash,
        }
        for p in programs
    ]
    text = (
        _environment(templates_dir)
        .get_template("supervisord.conf.j2")
        .render(
            name=name,
            state_dir=str(layout.root),
            socket=str(layout.supervisord_socket),
            # supervisord splits this on spaces and globs each part, joined to
            # supervisord.conf's folder: relative, a space in the state folder's
            # path cannot split it. (A `[`, `*` or `?` in that path still makes
            # it match nothing: supervisord then warns, and asks for no password.)
            auth_include=str(layout.rel(layout.supervisord_auth)),
            # supervisord logs CRIT when it runs as root and `user` is unset; for
            # any other uid it says nothing, and naming that user would only make
            # it look the user up (and refuse to start without a passwd entry).
            user="root" if os.getuid() == 0 else None,
            pidfile=str(layout.supervisord_pid),
            logfile=str(layout.log(SUPERVISORD)),
            programs=rows,
        )
    )
    return Artifact(layout.rel(layout.supervisord_conf), text.encode(), 0o600)


# ------------------------------------------------------------------------ workspace


@dataclass
class _Workspace:
    """What the builders share: inputs, and the plan growing entry by entry."""

    topology: Topology
    layout: StateLayout
    directory_json: bytes
    python: str
    nats_server: str
    templates_dir: Path | None
    base_dir: Path | None
    security: SecurityMaterial
    #: The host whose share this plan is (multi-host); None: the whole hive.
    host: str | None = None
    artifacts: list[Artifact] = field(default_factory=list)
    programs: list[Program] = field(default_factory=list)
    priorities: dict[str, int] = field(default_factory=dict)
    directories: list[PurePosixPath] = field(default_factory=list)
    environments: dict[PurePosixPath, Environment] = field(default_factory=dict)
    stream: StreamSetup | None = None

    def add_artifact(self, path: Path, content: bytes, mode: int = 0o600) -> Artifact:
        art = Artifact(self.layout.rel(path), content, mode)
        self.artifacts.append(art)
        return art

    def add_program(
        self,
        name: str,
        command: tuple[str, ...],
        config: CompiledConfig | list[CompiledConfig],
        readiness: Readiness,
        priority: int,
        *,
        reload_signal: str | None = None,
        nodes: tuple[str, ...] = (),
    ) -> None:
        """A supervised program whose config hash is its command and the hashed part
        of its typed config (`CompiledConfig.hashed_json`: live fields left out).

        With `reload_signal`, a change to the program's own config file alone
        (which then can only be a live field) reloads it by that signal.
        """
        configs = config if isinstance(config, list) else [config]
        digest = config_hash(command, *(c.hashed_json() for c in configs))
        own = self.layout.program_config(name)
        reload_on = (self.layout.rel(own),) if reload_signal and own else ()
        log = self.layout.rel(self.layout.log(name))
        self.programs.append(
            Program(name, command, digest, readiness, str(log), reload_on, reload_signal, nodes)
        )
        self.priorities[name] = priority

    def local_nodes(self) -> list[str]:
        """The nodes this plan runs: all of them, or the host's own."""
        return self.topology.nodes_on(self.host)

    def used_handlers(self) -> list[str]:
        """Handlers that get a daemon: bound to a node here, or declared `always_run`
        (single host only: a multi-host handler runs where its nodes are)."""
        return sorted(
            h
            for h, spec in self.topology.handlers.items()
            if (spec.always_run and self.host is None) or self.topology.bound_nodes(h, self.host)
        )

    def nats_host(self) -> str:
        """The address this plan's nats-server listens on (bracketed if IPv6)."""
        if self.host is None:
            return _bracketed(self.topology.nats.host)
        return self.host_address(self.host)

    def host_address(self, host: str) -> str:
        """A declared host's address as it goes into a URL (bracketed if IPv6)."""
        return _bracketed(self.topology.address(host))


def _bracketed(address: str) -> str:
    return f"[{address}]" if ":" in address else address


Builder = Callable[[_Workspace], None]


def _build_layout(ws: _Workspace) -> None:
    """Folders every program expects to exist: sockets, logs, dispatch folders."""
    lay = ws.layout
    folders = [lay.run_dir, lay.logs_dir, lay.data_root]
    folders += [lay.computation_dir(alias) for alias in ws.local_nodes()]
    ws.directories += [lay.rel(f) for f in folders]


def _build_topology(ws: _Workspace) -> None:
    """topology.json: the resolved topology, what `hive config` shows."""
    content = dump_json(ws.topology.dump_masked())  # 0644: no setting's value
    ws.add_artifact(ws.layout.topology_json, content, 0o644)


def _build_directory(ws: _Workspace) -> None:
    """directory.json: public keys only (rendered by the security module), so 0644."""
    ws.add_artifact(ws.layout.directory_json, ws.directory_json, 0o644)
    ws.add_artifact(ws.layout.directory_sig, ws.security.directory_sig, 0o644)
    for rel, content in sorted(ws.security.files.items()):  # public copies from trust/
        ws.add_artifact(ws.layout.root / rel, content, 0o644)


def _build_nats(ws: _Workspace) -> None:
    """The embedded nats-server, only when the topology names no external URL."""
    topo, nats = ws.topology, ws.topology.nats
    if not nats.embedded or (ws.host is not None and ws.host not in topo.nats_hosts()):
        return
    lay = ws.layout
    listen = f"{ws.nats_host()}:{nats.port}"
    tls = ws.security.tls
    config = NatsServerConfig(
        name=topo.name if ws.host is None else f"{topo.name}-{ws.host}",
        listen=listen,
        tls=NatsTls(cert_file=tls.cert_file, key_file=tls.key_file, cert_sha256=tls.cert_sha256)
        if tls
        else None,
        jetstream_dir=lay.jetstream_dir,
        authorization=_nats_authorization(ws),
        cluster=_nats_cluster(ws),
    )
    text = (
        _environment(ws.templates_dir)
        .get_template("nats-server.conf.j2")
        .render(
            **config.model_dump(mode="json", exclude={"authorization"}),
            # JSON (nats-server's config format accepts it): no value can break out
            # of its quotes.
            authorization=json.dumps(config.authorization, indent=2, sort_keys=True),
        )
    )
    ws.add_artifact(lay.nats_conf, text.encode(), 0o600)
    ws.add_program(
        NATS_PROGRAM,
        (ws.nats_server, "-c", str(lay.nats_conf)),
        config,
        Readiness("nats", listen, ca_file=str(tls.ca_file) if tls else None),
        PRIORITY_NATS,
        reload_signal="HUP",
    )
    _build_nats_guard(ws)
    if ws.host is None or ws.host == nats.host:  # one host creates the stream
        ws.stream = StreamSetup(
            network=topo.name,
            nats_url=_embedded_url(ws),
            ca_file=ws.security.client_ca,
            nkey_seed_file=lay.admin_nkey,
            aliases=tuple(sorted(topo.nodes)),
            program=NATS_PROGRAM,
            replicas=min(3, max(1, len(topo.nats_hosts()))),
        )


def _build_nats_guard(ws: _Workspace) -> None:
    """`nats-guard` beside the embedded server: JetStream stays stuck on a write
    error (a full disk) until its server restarts; the guard restarts it once the
    disk has room again (docs/reliability.md)."""
    lay = ws.layout
    config = NatsGuardConfig(
        supervisor_socket=lay.supervisord_socket,
        supervisor_auth=lay.supervisord_auth,
        program=NATS_PROGRAM,
        nats_log=lay.log(NATS_PROGRAM),
        jetstream_dir=lay.jetstream_dir,
        storage_file=lay.nats_storage,
        ready_file=lay.nats_guard_ready,
    )
    path = lay.nats_guard_config
    ws.add_artifact(path, config.to_json(), 0o600)
    ws.add_program(
        NATS_GUARD_PROGRAM,
        (ws.python, "-m", "beehive.orchestrator.nats_guard", "--config", str(path)),
        config,
        Readiness("ready_file", str(lay.nats_guard_ready)),
        PRIORITY_GUARD,
    )


def _nats_cluster(ws: _Workspace) -> NatsCluster | None:
    """The routes block of a `nats.cluster` server: every other listed host."""
    topo = ws.topology
    if ws.host is None or not topo.nats.cluster or ws.security.client_ca is None:
        return None
    at, port = ws.host_address, topo.nats.cluster_port
    return NatsCluster(
        name=f"beehive-{topo.name}",
        listen=f"{at(ws.host)}:{port}",
        routes=[f"nats-route://{at(h)}:{port}" for h in topo.nats.cluster if h != ws.host],
        ca_file=ws.security.client_ca,
    )


def _nats_authorization(ws: _Workspace) -> dict[str, Any]:
    """One nkey user per node, allowed only the subjects the protocol needs, and
    the admin user, allowed only to create, inspect and update the stream."""
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
    admin = admin_permissions(topo.name, roles)
    users.append({"nkey": ws.security.admin_nkey, "permissions": admin})
    return {"users": users}


def _nats_client(ws: _Workspace, alias: str) -> dict[str, Any]:
    """How one node reaches NATS: generated credentials and the hive's CA when the
    server is embedded, the topology's files when it is external."""
    nats = ws.topology.nats
    if nats.embedded:
        return {
            "nats_url": _embedded_url(ws),
            "nats_ca_file": ws.security.client_ca,
            "nats_nkey_seed_file": ws.layout.nkey_file(alias),
            "nats_creds_file": None,
            "nats_create_stream": False,
        }

    def per_node(value: str | None) -> Path | None:
        return Path(value.replace("{alias}", alias)) if value else None

    return {
        "nats_url": nats.client_url,
        "nats_ca_file": nats.ca_file,
        "nats_nkey_seed_file": per_node(nats.nkey_seed_file),
        "nats_creds_file": per_node(nats.creds_file),
        "nats_create_stream": True,
    }


def _embedded_url(ws: _Workspace) -> str:
    """The embedded server's URL; multi-host, every server's, comma-separated, this
    host's own first (a node fails over to the next)."""
    topo, nats = ws.topology, ws.topology.nats
    scheme = "tls" if ws.security.client_ca else "nats"
    if ws.host is None:
        return f"{scheme}://{ws.nats_host()}:{nats.port}"
    servers = sorted(topo.nats_hosts(), key=lambda h: h != ws.host)
    return ",".join(f"{scheme}://{ws.host_address(h)}:{nats.port}" for h in servers)


def _build_nodes(ws: _Workspace) -> None:
    """nodes/<alias>.json (NodeConfig) each, and the programs that run them: one
    `node-<alias>` per node, or with `runtime.nodes_per_process` K > 1 one
    `pack-<n>` per K nodes (each node in it still its own keys, NATS user, store
    and dispatch folder).

    A node's hash covers only its own config, not directory.json: a node watches
    the directory file and adopts a new one live (a node added or removed), so
    adding a node restarts no peer and loses no round in flight.
    """
    topo, lay = ws.topology, ws.layout
    configs: dict[str, NodeConfig] = {}
    for alias in ws.local_nodes():
        node = topo.nodes[alias]
        sock = lay.control_socket(alias)
        _check_socket(sock)
        config = NodeConfig(
            alias=alias,
            role=node.role,
            network=topo.name,
            **_nats_client(ws, alias),
            key_file=lay.key_file(alias),
            directory_file=lay.directory_json,
            directory_sig_file=lay.directory_sig,
            operator_key=ws.security.operator_key,
            min_contributors=topo.defaults.min_contributors,
            sharing=topo.defaults.sharing,
            threshold=topo.defaults.threshold,
            dp=topo.defaults.dp.policy().round_defaults() if topo.defaults.dp else None,
            data_dir=lay.data_dir(alias),
            control_socket=sock,
            default_deadline=topo.defaults.deadline,
            privacy=topo.privacy_floor(alias),
            keep_results_seconds=topo.defaults.keep_results,
        )
        ws.add_artifact(lay.node_config(alias), config.to_json(), 0o600)
        configs[alias] = config
    per_process = topo.runtime.nodes_per_process
    for program, aliases in lay.node_processes(list(configs), per_process).items():
        command = [ws.python, "-m", "beehive.flower.node"]
        for alias in aliases:
            command += ["--config", str(lay.node_config(alias))]
        sockets = [str(configs[alias].control_socket) for alias in aliases]
        ws.add_program(
            program,
            tuple(command),
            [configs[alias] for alias in aliases],
            Readiness("control_socket", sockets[0], also=tuple(sockets[1:])),
            PRIORITY_NODE,
            nodes=tuple(aliases),
        )


def _build_handlers(ws: _Workspace) -> None:
    """handlers/<name>.json (HandlerConfig) and one `handler-<name>` daemon each.

    A handler no node uses gets neither (unless `always_run`): a daemon watching
    nothing is only a process to keep alive. A node with its own `env:` gets a
    daemon of its own, `handler-<name>@<alias>` (one process, one environment);
    the handler's other nodes share `handler-<name>`.

    Attachments are a live field (the daemon watches its config file and
    re-attaches), so binding or unbinding a node restarts nothing; readiness then
    waits until the daemon reports watching exactly the new set.
    """
    topo = ws.topology
    for name in ws.used_handlers():
        spec = topo.handlers[name]
        digest = _env_file_digest(name, spec.env_file)
        bound = topo.bound_nodes(name, ws.host)
        shared = [a for a in bound if not topo.nodes[a].env]
        if shared or not bound:  # `always_run` with nothing bound: still runs
            _add_handler_daemon(ws, name, name, shared, spec.env, digest)
        for alias in (a for a in bound if topo.nodes[a].env):
            env = {**spec.env, **topo.nodes[alias].env}
            _add_handler_daemon(ws, f"{name}@{alias}", name, [alias], env, digest)


def _add_handler_daemon(
    ws: _Workspace,
    daemon: str,
    handler: str,
    attached: list[str],
    env: dict[str, str],
    env_file_sha256: str | None,
) -> None:
    """One handler daemon `daemon` running `handler` for the `attached` nodes."""
    lay, spec = ws.layout, ws.topology.handlers[handler]
    ready = lay.handler_ready(daemon)
    config = HandlerConfig(
        name=daemon,
        file=Path(_handler_file(spec.file, ws.base_dir)),
        timeout=spec.timeout,
        attachments={alias: lay.computation_dir(alias) for alias in attached},
        ready_file=ready,
        env=env,
        env_file=spec.env_file,
        env_file_sha256=env_file_sha256,
    )
    path = lay.handler_config(daemon)
    ws.add_artifact(path, config.to_json(), 0o600)
    python = _handler_python(ws, handler, spec.requirements)
    ws.add_program(
        lay.handler_program(daemon),
        (python, "-m", "beehive.nectar.daemon", "--config", str(path)),
        config,
        Readiness("ready_file", str(ready), watching=tuple(attached)),
        PRIORITY_HANDLER,
    )


def _env_file_digest(handler: str, env_file: Path | None) -> str | None:
    if env_file is None:
        return None
    try:
        return env_file_digest(env_file)
    except EnvFileError as exc:
        raise CompileError(f"handlers.{handler}.env_file: {exc}", hint=exc.hint) from exc


def handler_runtime(
    topology: Topology, handler: str, state_dir: Path, python: str
) -> tuple[str, Environment | None]:
    """The interpreter handler `handler`'s daemon runs with in `state_dir`, and its
    own environment (None: the hive's): what `hive up` would build, by the same
    rule, for `hive validate` and `hive handler test` to run the handler there."""
    ws = _Workspace(
        topology=topology,
        layout=StateLayout(Path(os.path.abspath(state_dir))),
        directory_json=b"",
        python=python,
        nats_server="",
        templates_dir=None,
        base_dir=None,
        security=SecurityMaterial(operator_key="", directory_sig=b""),
    )
    interpreter = _handler_python(ws, handler, topology.handlers[handler].requirements)
    return interpreter, next(iter(ws.environments.values()), None)


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
    venv = ws.layout.venv(config_hash((ws.python, *args), content)[:16])
    rel = ws.layout.rel(venv)
    known = ws.environments.get(rel)
    users = (*known.handlers, handler) if known else (handler,)
    ws.environments[rel] = Environment(rel, args, tuple(sorted(users)))
    return str(venv / "bin" / "python")


def _build_supervisord(ws: _Workspace) -> None:
    """supervisord.conf last: it lists every program the builders above added."""
    _check_socket(ws.layout.supervisord_socket)
    ws.artifacts.append(
        render_supervisord_conf(
            ws.topology.name,
            ws.layout.root,
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
    host: str | None = None,
) -> Plan:
    """Compile `topology` into the Plan for `state_dir` (made absolute, not resolved).

    `directory_json` is the pinned public-key directory the security module
    renders; it is placed as is, with `security.directory_sig` beside it as
    directory.sig. `security` carries every other piece of public security
    material (NATS nkeys, TLS paths, the operator key). `base_dir` is the folder
    relative handler files are resolved against (the topology file's folder); the
    loader normally makes them absolute already. `host` compiles only that host's
    share of a multi-host topology: its nats-server (if it runs one), its nodes
    and the handlers they use.
    """
    ws = _Workspace(
        topology=topology,
        layout=StateLayout(Path(os.path.abspath(state_dir))),
        directory_json=directory_json,
        python=python,
        nats_server=nats_server,
        templates_dir=templates_dir,
        base_dir=base_dir,
        security=security,
        host=host,
    )
    for build in BUILDERS:
        build(ws)
    programs = sorted(ws.programs, key=lambda p: (ws.priorities[p.name], p.name))
    return Plan(
        state_dir=ws.layout.root,
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

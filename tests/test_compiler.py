"""The compiler is pure and deterministic, and config hashes move only with config.

Those two properties are what make `hive up` idempotent and `hive plan` a
meaningful diff, so they are tested byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import nkeys
import pytest

from beehive.core.configs import HandlerConfig, NodeConfig
from beehive.topology.compiler import CompileError, compile_plan
from beehive.topology.material import SecurityMaterial
from beehive.topology.plan import Plan, StreamSetup
from beehive.topology.schema import Topology

STATE = Path("/tmp/bh-state/test")
DIRECTORY = b'{\n  "alice": "pk-a"\n}\n'


def topology(**changes: object) -> Topology:
    raw: dict = {
        "name": "test",
        "nats": {"port": 14222},
        "handlers": {
            "ql": {"file": "/abs/handlers/ql.py"},
            "qq": {"file": "/abs/handlers/qq.py", "timeout": 5},
            "unused": {"file": "/abs/handlers/unused.py"},
        },
        "nodes": {
            "alice": {"role": "heavy", "handler": "ql"},
            "bob": {"role": "light", "handler": "ql"},
            "carol": {"role": "light", "handler": "qq"},
            "dave": {"role": "heavy"},
        },
    }
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        target = raw
        for key in parents:
            target = target[key]
        target[leaf] = value
    return Topology.model_validate(raw)


def _nkey(n: int) -> str:
    return nkeys.from_seed(
        nkeys.encode_seed(bytes([n]) * 32, nkeys.PREFIX_BYTE_USER)
    ).public_key.decode()


SECURITY = SecurityMaterial(
    operator_key="b3BlcmF0b3I=",
    directory_sig=b"c2ln\n",
    nkeys={a: _nkey(i) for i, a in enumerate(("alice", "bob", "carol", "dave"), 1)},
    admin_nkey=_nkey(99),
)


def compile_(topo: Topology | None = None, state: Path = STATE, **kw: object) -> Plan:
    kw.setdefault("directory_json", DIRECTORY)
    kw.setdefault("security", SECURITY)
    return compile_plan(
        topo or topology(),
        state_dir=state,
        python="/venv/bin/python",
        nats_server="/venv/bin/nats-server",
        **kw,  # type: ignore[arg-type]
    )


def files(plan: Plan) -> dict[str, bytes]:
    return {str(a.path): a.content for a in plan.artifacts}


def hashes(plan: Plan) -> dict[str, str]:
    return {p.name: p.config_hash for p in plan.programs}


def test_same_inputs_give_identical_bytes() -> None:
    assert compile_() == compile_()


def test_other_state_dir_changes_only_paths() -> None:
    a, b = compile_(state=Path("/tmp/bh-a/x")), compile_(state=Path("/tmp/bh-bbb/x"))
    assert files(a).keys() == files(b).keys()
    for path, content in files(a).items():
        moved = content.replace(b"/tmp/bh-a/x", b"/tmp/bh-bbb/x")
        if path == "supervisord.conf":  # hashes cover the config paths, so they move too
            for old, new in zip(a.programs, b.programs, strict=True):
                moved = moved.replace(old.config_hash.encode(), new.config_hash.encode())
        assert moved == files(b)[path], path


def test_artifacts_and_programs() -> None:
    plan = compile_()
    assert sorted(files(plan)) == [
        "directory.json",
        "directory.sig",
        "handlers/ql.json",
        "handlers/qq.json",
        "nats/guard.json",
        "nats/nats-server.conf",
        "nodes/alice.json",
        "nodes/bob.json",
        "nodes/carol.json",
        "nodes/dave.json",
        "supervisord.conf",
        "topology.json",
    ]
    # nats (and its guard) first, then handler daemons, then nodes: start order is
    # priority order.
    assert [p.name for p in plan.programs] == [
        "nats",
        "nats-guard",
        "handler-ql",
        "handler-qq",
        "node-alice",
        "node-bob",
        "node-carol",
        "node-dave",
    ]
    assert plan.artifact("directory.json").content == DIRECTORY
    assert plan.artifact("directory.json").mode == 0o644
    assert plan.artifact("nodes/alice.json").mode == 0o600
    assert PurePosixPath("data/dave/computation") in plan.directories
    for art in plan.artifacts:
        assert art.content.endswith(b"\n")


def test_json_artifacts_are_sorted_and_indented() -> None:
    plan = compile_()
    for name in ("topology.json", "nodes/alice.json", "handlers/ql.json"):
        text = plan.artifact(name).content.decode()
        assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    assert json.loads(plan.artifact("topology.json").content) == topology().model_dump(mode="json")


def test_node_config_is_a_valid_nodeconfig() -> None:
    plan = compile_()
    cfg = NodeConfig.model_validate_json(plan.artifact("nodes/bob.json").content)
    assert cfg.role == "light"
    assert cfg.nats_url == "nats://127.0.0.1:14222"
    assert cfg.network == "test"
    assert cfg.key_file == STATE / "keys/bob.key"
    assert cfg.control_socket == STATE / "run/bob.sock"
    assert cfg.computation_dir == STATE / "data/bob/computation"
    prog = plan.program("node-bob")
    assert prog.command == (
        "/venv/bin/python",
        "-m",
        "beehive.flower.node",
        "--config",
        str(STATE / "nodes/bob.json"),
    )
    assert (prog.readiness.kind, prog.readiness.target) == (
        "control_socket",
        str(cfg.control_socket),
    )
    assert prog.log == "logs/node-bob.log"


def test_handler_config_attaches_bound_nodes_and_skips_unused() -> None:
    plan = compile_()
    cfg = json.loads(plan.artifact("handlers/ql.json").content)
    assert cfg == {
        "name": "ql",
        "file": "/abs/handlers/ql.py",
        "timeout": 10.0,
        "attachments": {
            "alice": str(STATE / "data/alice/computation"),
            "bob": str(STATE / "data/bob/computation"),
        },
        "ready_file": str(STATE / "run/handler-ql.ready"),
        "env": {},
        "env_file": None,
        "env_file_sha256": None,
    }
    assert HandlerConfig.model_validate_json(plan.artifact("handlers/ql.json").content).name == "ql"
    assert plan.program("handler-ql").readiness.kind == "ready_file"
    with pytest.raises(KeyError):
        plan.program("handler-unused")


def test_relative_handler_file_resolved_against_base_dir() -> None:
    plan = compile_(topology(handlers__ql__file="handlers/ql.py"), base_dir=Path("/proj"))
    assert json.loads(plan.artifact("handlers/ql.json").content)["file"] == "/proj/handlers/ql.py"


def test_role_change_rehashes_only_that_node() -> None:
    """nats' permissions change too (a heavy node may publish to more inboxes), but
    nats-server reloads its users on SIGHUP, so they are kept out of its hash."""
    before, after = hashes(compile_()), hashes(compile_(topology(nodes__bob__role="heavy")))
    assert {n for n in before if before[n] != after[n]} == {"node-bob"}
    conf = compile_(topology(nodes__bob__role="heavy")).artifact("nats/nats-server.conf")
    assert conf.content != compile_().artifact("nats/nats-server.conf").content


def test_nats_is_closed_one_nkey_user_per_node_with_own_inbox_only() -> None:
    conf = compile_().artifact("nats/nats-server.conf").content.decode()
    auth = json.loads(conf[conf.index("authorization: ") + len("authorization: ") :])
    users = {u["nkey"]: u["permissions"] for u in auth["users"]}
    assert set(users) == {*SECURITY.nkeys.values(), SECURITY.admin_nkey}
    bob = users[SECURITY.nkeys["bob"]]  # light
    assert bob["subscribe"] == ["beehive.test.inbox.bob", "_INBOX.test.bob.>"]
    inboxes = [s for s in bob["publish"] if s.startswith("beehive.")]
    assert inboxes == ["beehive.test.inbox.alice", "beehive.test.inbox.dave"]  # heavy
    # JetStream: only inspect and acknowledge bob's own consumer; neither create
    # (nor update) it, nor touch the stream: both are the operator's.
    assert [s for s in bob["publish"] if s.startswith("$JS")] == [
        "$JS.API.CONSUMER.INFO.BEEHIVE_test.bob",
        "$JS.ACK.BEEHIVE_test.bob.>",
    ]
    alice = users[SECURITY.nkeys["alice"]]
    assert alice["subscribe"] == ["beehive.test.inbox.alice", "_INBOX.test.alice.>"]
    assert len([s for s in alice["publish"] if s.startswith("beehive.")]) == 4
    assert "_INBOX.>" not in conf and '"beehive.>"' not in conf and '"$JS.>"' not in conf
    assert "sync_interval: always" in conf
    # The stream and the consumers are the operator's: only the admin user may
    # create or update the stream, and create each node's consumer, name *and*
    # filter pinned; no node may create any consumer.
    assert users[SECURITY.admin_nkey] == {
        "publish": [
            "$JS.API.STREAM.CREATE.BEEHIVE_test",
            "$JS.API.STREAM.INFO.BEEHIVE_test",
            "$JS.API.STREAM.UPDATE.BEEHIVE_test",
            *(
                f"$JS.API.CONSUMER.CREATE.BEEHIVE_test.{a}.beehive.test.inbox.{a}"
                for a in ("alice", "bob", "carol", "dave")
            ),
            "_INBOX.test._admin.>",
        ],
        "subscribe": ["_INBOX.test._admin.>"],
    }
    for alias in ("alice", "bob", "carol", "dave"):
        node = users[SECURITY.nkeys[alias]]
        assert not [s for s in node["publish"] if "CONSUMER.CREATE" in s], alias
    assert compile_().stream == StreamSetup(
        network="test",
        nats_url="nats://127.0.0.1:14222",
        ca_file=None,
        nkey_seed_file=STATE / "keys/_admin.nk",
        aliases=("alice", "bob", "carol", "dave"),
    )
    setup = compile_().stream
    assert setup is not None and setup.nodes == 4  # sizes the stream: 4 inboxes
    cfg = NodeConfig.model_validate_json(compile_().artifact("nodes/bob.json").content)
    assert cfg.nats_nkey_seed_file == STATE / "keys/bob.nk"
    assert cfg.nats_create_stream is False
    assert cfg.operator_key == SECURITY.operator_key
    assert compile_().artifact("directory.sig").content == SECURITY.directory_sig


def test_compile_refuses_a_node_without_an_nkey() -> None:
    partial = SecurityMaterial("k", b"s", {"alice": SECURITY.nkeys["alice"]})
    with pytest.raises(CompileError, match="no NATS nkey for node"):
        compile_(security=partial)
    no_admin = SecurityMaterial("k", b"s", SECURITY.nkeys)
    with pytest.raises(CompileError, match="no NATS admin nkey"):
        compile_(security=no_admin)


def test_external_nats_credentials_are_file_references_per_node() -> None:
    topo = topology(
        nats={
            "url": "tls://broker.example:4222",
            "ca_file": "/etc/ca.pem",
            "nkey_seed_file": "/secrets/{alias}.nk",
        }
    )
    cfg = NodeConfig.model_validate_json(compile_(topo).artifact("nodes/bob.json").content)
    assert cfg.nats_ca_file == Path("/etc/ca.pem")
    assert cfg.nats_nkey_seed_file == Path("/secrets/bob.nk")
    assert cfg.nats_creds_file is None
    # An external server's stream is created by the nodes (if its operator lets them).
    assert cfg.nats_create_stream is True and compile_(topo).stream is None
    with pytest.raises(ValueError, match="only for an external server"):
        topology(nats={"port": 1, "creds_file": "/x.creds"})
    with pytest.raises(ValueError, match="not both"):
        topology(nats={"url": "nats://x:1", "creds_file": "a", "nkey_seed_file": "b"})


def test_handler_change_rehashes_nothing_daemons_reattach_live() -> None:
    """A node does not know its handler (they meet in the dispatch folder) and a
    daemon re-reads its attachments live, so moving bob to another handler changes
    two handler configs and restarts nothing; readiness waits for the new sets."""
    moved = compile_(topology(nodes__bob={"role": "light", "handler": "qq"}))
    assert hashes(moved) == hashes(compile_())
    for name in ("ql", "qq"):
        before = json.loads(compile_().artifact(f"handlers/{name}.json").content)
        after = json.loads(moved.artifact(f"handlers/{name}.json").content)
        assert ("bob" in before["attachments"]) != ("bob" in after["attachments"])
        watching = moved.program(f"handler-{name}").readiness.watching
        assert watching == tuple(sorted(after["attachments"]))


def test_handler_timeout_change_rehashes_only_that_handler() -> None:
    before = hashes(compile_())
    after = hashes(compile_(topology(handlers__qq={"file": "/abs/handlers/qq.py", "timeout": 9})))
    assert {n for n in before if before[n] != after[n]} == {"handler-qq"}


def test_directory_change_rehashes_nothing_nodes_reload_it_live() -> None:
    before, after = hashes(compile_()), hashes(compile_(directory_json=b"{}\n"))
    assert after == before


def test_supervisord_conf_lists_every_program_with_its_hash() -> None:
    plan = compile_()
    conf = plan.artifact("supervisord.conf").content.decode()
    assert f"file={STATE}/run/supervisord.sock\nchmod=0700" in conf
    assert f"pidfile={STATE}/run/supervisord.pid" in conf
    assert "identifier=beehive-test" in conf
    for prog in plan.programs:
        section = conf.split(f"[program:{prog.name}]\n", 1)[1].split("\n[", 1)[0]
        assert f'BEEHIVE_CONFIG_HASH="{prog.config_hash}"' in section
        assert 'PYTHONUNBUFFERED="1"' in section
        assert f"stdout_logfile={STATE}/logs/{prog.name}.log" in section
        assert "stopasgroup=true" in section
    assert conf.index("[program:nats]") < conf.index("[program:node-alice]")


def test_nats_conf_listens_without_monitor_port() -> None:
    conf = compile_().artifact("nats/nats-server.conf").content.decode()
    assert 'listen: "127.0.0.1:14222"' in conf
    assert "http" not in conf.replace("# No HTTP", "").lower()
    assert compile_().program("nats").readiness.target == "127.0.0.1:14222"


def test_the_embedded_server_has_a_guard_that_reads_its_log() -> None:
    plan = compile_()
    guard = json.loads(plan.artifact("nats/guard.json").content)
    state = Path(plan.state_dir)
    assert guard == {
        "supervisor_socket": str(state / "run" / "supervisord.sock"),
        "supervisor_auth": str(state / "run" / "supervisord.auth"),
        "program": "nats",
        "nats_log": str(state / "logs" / "nats.log"),
        "jetstream_dir": str(state / "nats" / "jetstream"),
        "storage_file": str(state / "run" / "nats-storage.json"),
        "ready_file": str(state / "run" / "nats-guard.ready"),
    }
    assert plan.program("nats-guard").command[1:3] == ("-m", "beehive.orchestrator.nats_guard")


def test_external_nats_has_no_server() -> None:
    plan = compile_(topology(nats={"url": "nats://broker.example:4222"}))
    assert "nats/nats-server.conf" not in files(plan)
    assert "nats" not in hashes(plan) and "nats-guard" not in hashes(plan)
    assert json.loads(plan.artifact("nodes/alice.json").content)["nats_url"] == (
        "nats://broker.example:4222"
    )


def test_percent_in_state_dir_is_escaped_for_supervisord() -> None:
    conf = compile_(state=Path("/tmp/bh%x")).artifact("supervisord.conf").content.decode()
    assert "/tmp/bh%%x/run/supervisord.sock" in conf
    assert "/tmp/bh%x/" not in conf


def test_nats_conf_strings_are_json_quoted_so_nothing_leaves_its_quotes() -> None:
    """A plain hive's nats-server.conf reads as it always did; a quote or backslash
    in a value is escaped, and a control character never gets there."""
    import dataclasses

    from beehive.security.tls_ca import TlsFiles

    tls = TlsFiles(STATE / "tls/ca.pem", STATE / "tls/server.pem", STATE / "tls/server.key", "ab")
    plan = compile_(security=dataclasses.replace(SECURITY, tls=tls))
    lines = plan.artifact("nats/nats-server.conf").content.decode().splitlines()
    assert 'server_name: "beehive-test"' in lines
    assert 'listen: "127.0.0.1:14222"' in lines
    assert f'  cert_file: "{STATE}/tls/server.pem"' in lines
    assert f'  key_file: "{STATE}/tls/server.key"' in lines
    assert f'  store_dir: "{STATE}/nats/jetstream"' in lines

    odd = Path('/tmp/bh "x\\y')
    conf = compile_(state=odd).artifact("nats/nats-server.conf").content.decode()
    (store,) = [line for line in conf.splitlines() if line.startswith("  store_dir: ")]
    assert store == '  store_dir: "/tmp/bh \\"x\\\\y/nats/jetstream"'
    assert json.loads(store.split(": ", 1)[1]) == f"{odd}/nats/jetstream"
    with pytest.raises(CompileError, match=r"cannot go into nats-server\.conf"):
        compile_(state=Path("/tmp/bh\tx"))


def test_a_line_break_cannot_reach_supervisord_conf() -> None:
    """supervisord.conf values cannot be quoted: `sv` refuses a newline (a directive
    of its own) or a carriage return, from a program's command or a path."""
    from beehive.topology.compiler import render_supervisord_conf
    from beehive.topology.plan import Program, Readiness

    evil = Program(
        "node-x",
        ("/venv/bin/python", "-c", "pass\n[program:evil]\ncommand=/bin/sh"),
        "0" * 64,
        Readiness("nats", "127.0.0.1:1"),
        "logs/node-x.log",
    )
    with pytest.raises(CompileError, match=r"cannot go into supervisord\.conf: a line break"):
        render_supervisord_conf("test", STATE, [evil])
    external = topology(nats={"url": "nats://broker.example:4222"})  # no nats-server.conf
    for state in ("/tmp/bh\nx", "/tmp/bh\rx"):
        with pytest.raises(CompileError, match=r"cannot go into supervisord\.conf"):
            compile_(external, state=Path(state))


def test_socket_path_too_long_is_a_compile_error() -> None:
    with pytest.raises(CompileError, match="shorter state folder"):
        compile_(state=Path("/tmp/" + "x" * 100))


def test_templates_dir_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo_templates = Path(__file__).resolve().parents[1] / "beehive" / "templates"
    for name in ("supervisord.conf.j2", "nats-server.conf.j2"):
        (tmp_path / name).write_text("; custom\n" + (repo_templates / name).read_text())
    custom = compile_(templates_dir=tmp_path).artifact("supervisord.conf").content
    assert custom.startswith(b"; custom\n")
    monkeypatch.setenv("BEEHIVE_TEMPLATES", str(tmp_path))
    assert compile_().artifact("supervisord.conf").content == custom


def test_diff_against_disk(tmp_path: Path) -> None:
    plan = compile_(state=tmp_path)
    assert set(plan.diff(tmp_path).created) == {a.path for a in plan.artifacts}
    for art in plan.artifacts:
        (tmp_path / art.path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / art.path).write_bytes(art.content)
    assert plan.diff(tmp_path).empty
    (tmp_path / "nodes/bob.json").write_text("{}\n")
    (tmp_path / "nodes/zed.json").write_text("{}\n")
    diff = plan.diff(tmp_path)
    assert diff.changed == (PurePosixPath("nodes/bob.json"),)
    assert diff.removed == (PurePosixPath("nodes/zed.json"),)
    assert not diff.created

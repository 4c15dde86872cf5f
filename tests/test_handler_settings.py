"""Handler settings (`env:`, `env_file:`, `nodes.<alias>.env`), the answering node
(`comp.node`) and `submit --metadata`: loaded, compiled and run on real processes.

A handler gets a minimal base environment plus what is declared; nothing of the
environment `hive up` ran in leaks into it; a change to its settings restarts it
(and only it); `hive config` and the state folder's topology.json never show a
value written with `${…}` nor anything from an env_file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import HiveCLI, running_hive
from test_compiler import compile_

from beehive.core.handler_env import EnvFileError, handler_environment, read_env_file
from beehive.orchestrator import supervisor
from beehive.topology import TopologyError, load_topology
from beehive.topology.compiler import CompileError

SETTINGS_HANDLER = """\
import os
import time
from beehive import Computation, handler

@handler
def settings(comp: Computation) -> int:
    if comp.metadata.get("fail") == comp.node:
        raise ValueError("secret-data-123 must stay on this node")
    if comp.metadata.get("hang") == comp.node:
        time.sleep(4)  # past the handler's timeout
    if "LEAKY_SECRET" in os.environ:  # undeclared: must never get here
        return 1000
    extra = int(comp.metadata.get("extra", "0"))
    bonus = int(os.environ.get("BONUS", "0"))
    return int(os.environ["ANSWER"]) + bonus + extra + len(comp.node or "x" * 50)
"""

TOPOLOGY = """\
version: 1
name: settings
nats: {host: 127.0.0.1, port: "${HIVE_NATS_PORT}"}
handlers:
  s:
    file: h.py
    env: {ANSWER: "${HIVE_ANSWER}", PLAIN: plain}
    env_file: secrets.env
    timeout: 2
nodes:
  alice: {role: heavy, handler: s}
  bob: {role: heavy, handler: s}
  carol: {role: light, handler: s, env: {ANSWER: "7"}}
  dave: {role: light}
"""

TOKEN = "sk-test-9f3a77c1"


def write_hive(folder: Path, bonus: int = 100) -> Path:
    (folder / "h.py").write_text(SETTINGS_HANDLER)
    (folder / "secrets.env").write_text(f"# secrets\nBONUS={bonus}\nexport TOKEN='{TOKEN}'\n")
    path = folder / "hive.yaml"
    path.write_text(TOPOLOGY)
    return path


# ── loading and compiling ───────────────────────────────────────────────────


def test_env_file_lines_and_errors(tmp_path: Path) -> None:
    env = tmp_path / "x.env"
    env.write_text("# c\n\nA=1\nexport B=\"two words\"\nC='3'\nD=\n")
    assert read_env_file(env) == {"A": "1", "B": "two words", "C": "3", "D": ""}
    env.write_text("A=1\nnot a setting\n")
    with pytest.raises(EnvFileError, match=r"x\.env:2: not a KEY=VALUE line"):
        read_env_file(env)


def test_the_environment_is_the_base_plus_what_is_declared(tmp_path: Path) -> None:
    env_file = tmp_path / "s.env"
    env_file.write_text("KEY=from-file\nBOTH=file\n")
    own = {"PATH": "/usr/bin", "HOME": "/h", "LANG": "C.UTF-8", "OPENAI_API_KEY": "leak"}
    env = handler_environment({"BOTH": "declared"}, env_file, own)
    assert "OPENAI_API_KEY" not in env
    assert (env["HOME"], env["LANG"], env["KEY"], env["BOTH"]) == (
        "/h",
        "C.UTF-8",
        "from-file",
        "declared",
    )
    assert env["PATH"].endswith("/usr/bin")


@pytest.mark.parametrize(
    ("handlers", "bob", "line", "said"),
    [
        ("{file: h.py, env: {1BAD: v}}", "{role: heavy}", 4, "env name '1BAD'"),
        ("{file: h.py}", "{role: heavy, env: {A: b}}", 7, "sets env: but has no handler"),
    ],
)
def test_bad_settings_are_refused_at_their_line(
    tmp_path: Path, handlers: str, bob: str, line: int, said: str
) -> None:
    (tmp_path / "h.py").write_text(SETTINGS_HANDLER)
    path = tmp_path / "hive.yaml"
    path.write_text(
        f"version: 1\nname: x\nhandlers:\n  s: {handlers}\n"
        f"nodes:\n  alice: {{role: heavy, handler: s}}\n  bob: {bob}\n"
    )
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    assert f"hive.yaml:{line}:" in str(caught.value) and said in str(caught.value)


def test_a_node_with_its_own_env_gets_its_own_daemon(tmp_path: Path) -> None:
    topo = load_topology(write_hive(tmp_path), env={"HIVE_ANSWER": "3", "HIVE_NATS_PORT": "4999"})
    plan = compile_(topo)
    shared = json.loads(plan.artifact("handlers/s.json").content)
    own = json.loads(plan.artifact("handlers/s@carol.json").content)
    assert sorted(shared["attachments"]) == ["alice", "bob"]
    assert sorted(own["attachments"]) == ["carol"]
    assert shared["env"] == {"ANSWER": "3", "PLAIN": "plain"}
    assert own["env"] == {"ANSWER": "7", "PLAIN": "plain"}
    # The env_file is read by the daemon itself: only its digest is in the config.
    assert own["env_file"] == str(tmp_path / "secrets.env") and TOKEN not in json.dumps(own)
    assert plan.program("handler-s@carol").readiness.watching == ("carol",)
    # topology.json (0644) shows `${HIVE_ANSWER}`, as written.
    shown = json.loads(plan.artifact("topology.json").content)
    assert shown["handlers"]["s"]["env"]["ANSWER"] == "${HIVE_ANSWER}"


def test_settings_are_in_the_config_hash(tmp_path: Path) -> None:
    path = write_hive(tmp_path)

    def hashes(answer: str) -> dict[str, str]:
        topo = load_topology(path, env={"HIVE_ANSWER": answer, "HIVE_NATS_PORT": "4999"})
        return {p.name: p.config_hash for p in compile_(topo).programs}

    before = hashes("3")
    after = hashes("4")  # only the shared daemon's value changed
    changed = {n for n in before if before[n] != after[n]}
    assert changed == {"handler-s"}
    write_hive(tmp_path, bonus=200)  # the env_file's content: both daemons
    edited = hashes("3")
    assert {n for n in before if before[n] != edited[n]} == {"handler-s", "handler-s@carol"}


def test_a_bad_env_file_is_named_at_compile_time(tmp_path: Path) -> None:
    path = write_hive(tmp_path)
    (tmp_path / "secrets.env").write_text("BONUS=1\noops\n")
    topo = load_topology(path, env={"HIVE_ANSWER": "3", "HIVE_NATS_PORT": "4999"})
    with pytest.raises(CompileError, match=r"handlers\.s\.env_file: .*secrets\.env:2"):
        compile_(topo)


# ── on real processes ───────────────────────────────────────────────────────


def test_settings_reach_the_handler_and_nothing_else_does(
    short_tmp: Path, hive_env: dict[str, str]
) -> None:
    topology = write_hive(short_tmp)
    env = {**hive_env, "HIVE_ANSWER": "3", "LEAKY_SECRET": "must-not-reach-handlers"}
    with running_hive(short_tmp / "state", env, topology=topology) as hive:

        def submit(*extra: str) -> dict[str, Any]:
            return hive.json(
                "submit", "q", "--proposer", "alice", "--aggregators", "alice,bob",
                "--targets", "alice,bob,carol", "--json", *extra, check=False,
            )  # fmt: skip

        def total(*extra: str) -> int:
            res = submit(*extra)
            assert res["status"] == "complete" and res["missing_reasons"] == {}, res
            return int(res["result"])

        # ANSWER + BONUS + len(node): alice 3+100+5, bob 3+100+3, carol 7+100+5.
        assert total() == 326
        assert total("--metadata", "extra=10", "--metadata", "other=x") == 356

        pids = {p["name"]: p["pid"] for p in hive.json("status", "--json")["processes"]}
        environ = Path(f"/proc/{pids['handler-s@carol']}/environ").read_bytes().split(b"\0")
        names = {e.split(b"=", 1)[0].decode() for e in environ if e}
        assert "LEAKY_SECRET" not in names and "HIVE_ANSWER" not in names
        assert {"PATH", "HOME", "ANSWER", "BONUS", "TOKEN", "BEEHIVE_HIVE"} <= names

        shown = hive.run("config").stdout
        assert "${HIVE_ANSWER}" in shown and "TOKEN=***" in shown
        assert TOKEN not in shown
        assert TOKEN not in (hive.state_dir / "topology.json").read_text()

        write_hive(short_tmp, bonus=200)  # a secret changed: both handler daemons restart
        plan = hive.json("plan", "--json")
        assert set(plan["restart"]) == {"handler-s", "handler-s@carol"}, plan
        hive.run("up")
        after = {p["name"]: p["pid"] for p in hive.json("status", "--json")["processes"]}
        assert after["handler-s"] != pids["handler-s"]
        assert after["node-alice"] == pids["node-alice"]
        assert total() == 326 + 300

        # Why a target is missing reaches the proposer as a category, never the
        # handler's own message.
        failed = submit("--metadata", "fail=carol")
        assert (failed["status"], failed["missing"]) == ("partial", ["carol"]), failed
        assert failed["missing_reasons"] == {"carol": "declined: handler error"}, failed
        assert "secret-data-123" not in json.dumps(failed)
        slow = submit("--metadata", "hang=carol")
        assert slow["missing_reasons"] == {"carol": "declined: timeout"}, slow
        # dave has no handler; carol's is stopped: status names whom it leaves unserved.
        supervisor.client(hive.state_dir).supervisor.stopProcess("handler-s@carol")
        report = hive.json("status", "--json", check=False)
        assert report["unserved"] == {"handler-s@carol": ["carol"]} and not report["healthy"]
        unserved = hive.json(
            "submit", "q", "--proposer", "alice", "--aggregators", "alice,bob",
            "--targets", "alice,bob,carol,dave", "--deadline", "3", "--json", check=False,
        )  # fmt: skip
        assert unserved["missing_reasons"] == {
            "carol": "no handler attached",
            "dave": "no handler attached",
        }, unserved


def test_metadata_must_be_key_value(tmp_path: Path, hive_env: dict[str, str]) -> None:
    hive = HiveCLI(write_hive(tmp_path), tmp_path / "state", {**hive_env, "HIVE_ANSWER": "3"})
    done = hive.run(
        "submit", "q", "--proposer", "alice", "--aggregators", "alice", "--targets", "bob",
        "--metadata", "novalue", check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "'novalue': write KEY=VALUE" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr

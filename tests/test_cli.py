"""The `hive` command's contract on bad input: clear message, non-zero exit, nothing written."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import (
    REPO,
    TEST_TOPOLOGY,
    HiveCLI,
    free_port,
    pid_alive,
    running_hive,
    wait_until,
)

from beehive.orchestrator import down as take_down
from beehive.orchestrator import supervisor


def hive(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "beehive.cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_validate_names_the_file_and_line_and_writes_nothing(tmp_path: Path):
    (tmp_path / "h.py").write_text(
        "from beehive import handler\n@handler\ndef f(c) -> int:\n    return 1\n"
    )
    (tmp_path / "hive.yaml").write_text(
        "version: 1\nname: t\nhandlers:\n  h: {file: h.py}\nnodes:\n"
        "  alice: {role: heavy, handler: h}\n  bob: {role: medium}\n"
    )
    proc = hive("validate", cwd=tmp_path)
    assert proc.returncode == 1
    assert "hive.yaml:7" in proc.stderr and "nodes.bob.role" in proc.stderr
    proc = hive("up", cwd=tmp_path)
    assert proc.returncode == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.py", "hive.yaml"]


def test_validate_and_config_of_the_shipped_test_topology():
    proc = hive("validate", "-f", "topologies/test.yaml", cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "5 node(s)" in proc.stdout and "3 heavy" in proc.stdout
    first = hive("config", "-f", "topologies/test.yaml", cwd=REPO).stdout
    assert first == hive("config", "-f", "topologies/test.yaml", cwd=REPO).stdout
    assert "query_length" in first


def test_handler_test_runs_a_handler_without_a_network():
    proc = hive("handler", "test", "handlers/query_length.py", "--query", "hello", cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "answered 5" in proc.stdout


def test_handler_test_answers_as_a_node_with_metadata(tmp_path: Path):
    """--node fills comp.node (keyword_count picks DOCS_ROOT/<node>), --metadata comp.metadata."""
    (tmp_path / "carol").mkdir()
    (tmp_path / "carol" / "a.txt").write_text("bees, bees and more Bees; wasps")
    env = {**os.environ, "DOCS_ROOT": str(tmp_path)}
    proc = hive(
        "handler", "test", "handlers/keyword_count.py", "--node", "carol",
        "--metadata", "keyword=bees", cwd=REPO, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "answered 3" in proc.stdout
    proc = hive("handler", "test", "handlers/keyword_count.py", "--node", "Not An Alias", cwd=REPO)
    assert proc.returncode != 0 and "--node 'Not An Alias' is not valid" in proc.stderr


def test_a_first_up_that_fails_names_the_process_shows_its_log_and_leaves_nothing(
    short_tmp: Path,
):
    (short_tmp / "bad.py").write_text("import module_that_does_not_exist\n")
    (short_tmp / "hive.yaml").write_text(
        f"version: 1\nname: bad\nnats: {{port: {free_port()}}}\n"
        "handlers:\n  bad: {file: bad.py}\nnodes:\n  alice: {role: heavy, handler: bad}\n"
    )
    proc = hive("up", cwd=short_tmp)
    assert proc.returncode == 1
    assert "handler-bad" in proc.stderr
    assert "module_that_does_not_exist" in proc.stderr  # the tail of its log
    pidfile = short_tmp / ".hive" / "bad" / "run" / "supervisord.pid"
    if pidfile.exists():
        pid = int(pidfile.read_text())
        wait_until(lambda: not pid_alive(pid), 10, "supervisord to be gone")
    assert hive("status", cwd=short_tmp).returncode == 1


def test_validate_states_the_sharing_trade_off_and_checks_the_threshold(tmp_path: Path):
    base = "version: 1\nname: t\nnodes:\n  alice: {role: heavy}\n  bob: {role: heavy}\n"
    (tmp_path / "hive.yaml").write_text(base)
    proc = hive("validate", cwd=tmp_path)
    assert proc.returncode == 0 and "additive" in proc.stdout and "every aggregator" in proc.stdout
    (tmp_path / "hive.yaml").write_text(base + "defaults: {sharing: shamir, threshold: 2}\n")
    proc = hive("validate", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "shamir threshold 2" in proc.stdout and "could also learn" in proc.stdout
    (tmp_path / "hive.yaml").write_text(base + "defaults: {sharing: shamir}\n")
    proc = hive("validate", cwd=tmp_path)
    assert proc.returncode == 1 and "threshold is required" in proc.stderr
    (tmp_path / "hive.yaml").write_text(base)
    proc = hive(
        "submit", "q", "--proposer", "alice", "--aggregators", "alice", "--targets", "bob",
        "--sharing", "shamir", "--threshold", "2", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1 and "more than the 1 aggregator" in proc.stderr


def test_down_with_a_state_dir_works_when_the_file_no_longer_loads(short_tmp: Path):
    (short_tmp / "hive.yaml").write_text(
        f"version: 1\nname: t\nnats: {{port: {free_port()}}}\n"
        f"handlers:\n  q: {{file: {REPO / 'handlers' / 'query_length.py'}}}\n"
        "nodes:\n  alice: {role: heavy, handler: q}\n"
    )
    state = short_tmp / "state"
    try:
        assert hive("up", "--state-dir", str(state), cwd=short_tmp).returncode == 0
        pid = int((state / "run" / "supervisord.pid").read_text())
        (short_tmp / "hive.yaml").write_text("version: 1\nname: t\nnodes: {alice: {role: x}}\n")
        proc = hive("down", "--state-dir", str(state), cwd=short_tmp)
        assert proc.returncode == 0, proc.stderr
        assert "stopped" in proc.stdout
        wait_until(lambda: not pid_alive(pid), 10, "supervisord to be gone")
    finally:
        take_down(state)  # a no-op when the test passed


@pytest.fixture
def stopped_test_hive(short_tmp: Path, hive_env: dict[str, str]) -> Iterator[HiveCLI]:
    """topologies/test.yaml brought up once and taken down: a complete state folder
    (keys, configs) with nothing running."""
    with running_hive((short_tmp / "state").resolve(), hive_env) as cli:
        pass
    try:
        yield cli
    finally:
        take_down(cli.state_dir)  # a no-op unless a test started something


def overwrite_private(path: Path, content: bytes) -> None:
    """Replace a key file's bytes, keeping it 0600 (a key readable by others is
    refused for that reason alone, which is not what these tests are about)."""
    path.write_bytes(content)
    os.chmod(path, 0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_corrupt_operator_key_is_named_without_a_traceback(stopped_test_hive: HiveCLI):
    cli = stopped_test_hive
    key = cli.state_dir / "keys" / "_operator.key"
    overwrite_private(key, b"\x00 not an operator key {\n")
    for command in ("up", "plan"):
        proc = cli.run(command, check=False)
        assert proc.returncode != 0, proc.stdout
        assert "Traceback" not in proc.stderr, proc.stderr
        # the user's file, not the private scratch copy `hive plan` works on
        assert f"{key} is not valid" in proc.stderr, proc.stderr
        assert "hive-plan-" not in proc.stderr, proc.stderr
    assert not supervisor.is_running(cli.state_dir)  # `up` started nothing

    debug = HiveCLI(cli.topology, cli.state_dir, {**cli.env, "BEEHIVE_DEBUG": "1"})
    proc = debug.run("plan", check=False)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "OperatorKeyError" in proc.stderr, proc.stderr


def test_a_node_refuses_a_key_its_directory_does_not_pin_with_status_78(
    stopped_test_hive: HiveCLI,
):
    cli = stopped_test_hive
    keys = cli.state_dir / "keys"
    overwrite_private(keys / "eve.key", (keys / "dave.key").read_bytes())
    # Nothing runs (no NATS either): a node that tried to connect before checking
    # its key would retry until the timeout instead of exiting.
    config = cli.state_dir / "nodes" / "eve.json"
    node = [sys.executable, "-m", "beehive.flower.node", "--config", str(config)]
    proc = subprocess.run(node, capture_output=True, text=True, env=cli.env, timeout=30)
    assert proc.returncode == 78, proc.stderr
    assert "refusing to start" in proc.stderr, proc.stderr
    assert f"{keys / 'eve.key'} does not match the pinned key" in proc.stderr, proc.stderr


def test_a_corrupt_store_is_named_and_the_others_results_still_shown(stopped_test_hive: HiveCLI):
    from beehive.core.models import ComputationResult
    from beehive.flower.store import Store

    data = stopped_test_hive.state_dir / "data"
    store = Store(data / "alice" / "local.db")
    done = ComputationResult(
        comp_id="0" * 32, status="complete", result=75, contributors=["c", "d"], missing=[]
    )
    store.save_result(done)
    store.close()
    (data / "bob" / "local.db").write_bytes(b"this is not a database" * 100)
    (data / "charlie" / "local.db").write_bytes(b"")  # truncated: history lost
    proc = stopped_test_hive.run("results", "--json")
    assert [r["comp_id"] for r in json.loads(proc.stdout)] == [done.comp_id]
    for alias in ("bob", "charlie"):
        assert f"data/{alias}/local.db is not a usable node store" in proc.stderr
    assert "restore it from a backup" in proc.stderr and "Traceback" not in proc.stderr

    # the node itself refuses to start on it, naming the file (exit 74, EX_IOERR)
    node = subprocess.run(
        [sys.executable, "-m", "beehive.flower.node", "--config",
         str(stopped_test_hive.state_dir / "nodes" / "charlie.json")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert node.returncode == 74, node.stderr
    assert "data/charlie/local.db is not a usable node store (0 bytes" in node.stderr
    assert "Traceback" not in node.stderr


def test_two_commands_on_one_state_folder_take_turns(short_tmp: Path, hive_env: dict[str, str]):
    """`hive down` started while `hive up` runs waits for it (saying so), then stops
    everything: no raw supervisord message, no broken pipe, nothing left running."""
    cli = HiveCLI(TEST_TOPOLOGY, short_tmp / "state", hive_env)
    lock = cli.state_dir / ".lock"
    base = [sys.executable, "-m", "beehive.cli.main"]
    where = ["-f", str(TEST_TOPOLOGY), "--state-dir", str(cli.state_dir)]
    up = subprocess.Popen(
        [*base, "up", *where, "--timeout", "60"],
        env=hive_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_until(lambda: lock.exists() and lock.read_text().strip(), 30, "up to hold the lock")
        holder = lock.read_text().split()[0]
        assert holder == str(up.pid)
        down = cli.run("down")
        up_out, up_err = up.communicate(timeout=60)
    finally:
        if up.poll() is None:
            up.kill()
        take_down(cli.state_dir)
    assert up.returncode == 0, up_err
    assert f"waiting for `hive up` (pid {up.pid})" in down.stderr
    assert "stopped" in down.stdout
    for text in (down.stdout + down.stderr, up_out + up_err):
        assert "Broken pipe" not in text and "Traceback" not in text
    assert not (cli.state_dir / "run" / "supervisord.sock").exists() or not cli.pids()


# -- handler files: validate, handler test, the daemon's log (issue 13) ---------------


def handler_topology(folder: Path, handlers: dict[str, str], **extra: str) -> Path:
    """hive.yaml binding alice to the first of `handlers` (name -> file source);
    `extra` adds YAML to a handler's entry (`req="requirements: [humanize]"`)."""
    entries = []
    for name, source in handlers.items():
        (folder / f"{name}.py").write_text(source)
        more = f", {extra[name]}" if name in extra else ""
        entries.append(f"  {name}: {{file: {name}.py{more}}}\n")
    first = next(iter(handlers))
    topology = folder / "hive.yaml"
    topology.write_text(
        "version: 1\nname: t\nhandlers:\n" + "".join(entries)
        + f"nodes:\n  alice: {{role: heavy, handler: {first}}}\n"
    )  # fmt: skip
    return topology


GOOD = "from beehive import Computation, handler\n\n@handler\ndef good(comp: Computation) -> int:\n    return len(comp.query)\n"  # noqa: E501


def fake_environment(topology: Path, name: str, record: Path) -> Path:
    """Mark handler `name`'s environment as built, its `python` a wrapper that
    notes it ran (and with which VIRTUAL_ENV) and runs ours: no network needed."""
    from beehive.cli.common import Hive
    from beehive.cli.handler_checks import runtime_of
    from beehive.orchestrator.environments import READY_MARKER

    venv = runtime_of(Hive.open(topology, None), name).missing
    assert venv is not None
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\necho "$VIRTUAL_ENV" >> {record}\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    (venv / READY_MARKER).write_text("humanize\n")
    return venv


def test_validate_names_a_broken_handler_files_line_without_a_traceback(tmp_path: Path):
    handler_topology(
        tmp_path,
        {
            "good": GOOD,
            "broken": "from beehive import handler\n\n@handler\ndef f(comp:\n    return 1\n",
            "twoargs": "from beehive import handler\n\n@handler\ndef f(a, b):\n    return 1\n",
            "plain": "def answer(comp):\n    return 1\n",
        },
    )
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = hive("validate", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "3 handlers fail their check" in proc.stderr
    broken, twoargs, plain = tmp_path / "broken.py", tmp_path / "twoargs.py", tmp_path / "plain.py"
    assert f"handler broken: {broken}:4: syntax error: '(' was never closed" in proc.stderr
    assert f"handler twoargs: {twoargs}:4: handler 'f' must take exactly one" in proc.stderr
    assert f"handler plain: {plain}:1: no handler found" in proc.stderr
    assert "handler good" not in proc.stderr and "ok —" not in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written

    (tmp_path / "hive.yaml").write_text(
        "version: 1\nname: t\nhandlers:\n  good: {file: good.py}\n"
        "nodes:\n  alice: {role: heavy, handler: good}\n"
    )
    proc = hive("validate", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"handler good: {tmp_path / 'good.py'}:4 @handler 'good' ok (imported)" in proc.stdout


def test_validate_imports_a_handler_in_its_environment_once_built(tmp_path: Path):
    needs = "import humanize_is_not_installed_here\n" + GOOD
    topology = handler_topology(tmp_path, {"req": needs}, req="requirements: [humanize]")
    proc = hive("validate", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr  # no false error on the requirement's import
    assert "syntax and signature only: its imports were not checked" in proc.stdout
    assert "is not built yet; `hive up` builds it" in proc.stdout

    record = tmp_path / "ran"
    venv = fake_environment(topology, "req", record)
    proc = hive("validate", cwd=tmp_path)
    assert record.read_text().split() == [str(venv)]  # its interpreter, its VIRTUAL_ENV
    assert proc.returncode == 1, proc.stdout  # imported there: the missing module shows
    assert f"{tmp_path / 'req.py'}:1: ModuleNotFoundError" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_handler_test_prints_one_line_and_the_users_frames_on_request(tmp_path: Path):
    (tmp_path / "helper_div.py").write_text("def divide(n):\n    return 10 // n\n")
    (tmp_path / "h.py").write_text(
        "from beehive import handler\nfrom helper_div import divide\n\n@handler\n"
        "def h(comp) -> int:\n    print('from the handler')\n"
        "    return divide(len(comp.query) - 5)\n"
    )
    proc = hive("handler", "test", "h.py", "--query", "hello", cwd=tmp_path)
    assert proc.returncode == 1
    error = f"error: {tmp_path / 'helper_div.py'}:2: ZeroDivisionError: integer division or modulo by zero"  # noqa: E501
    assert proc.stderr.splitlines() == ["from the handler", error]
    assert proc.stdout == ""

    proc = hive("handler", "test", "h.py", "--query", "hello", "--traceback", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == error
    assert f'File "{tmp_path / "h.py"}", line 7, in h' in proc.stderr
    assert f'File "{tmp_path / "helper_div.py"}", line 2, in divide' in proc.stderr
    assert "beehive" not in proc.stderr.replace(str(tmp_path), "") and "click" not in proc.stderr

    proc = hive("handler", "test", "h.py", "--query", "hello there", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "handler test passed: h.py answered 1 to 'hello there'\n"

    bad = "from beehive import handler\n\n@handler\ndef h(comp) -> int:\n    return -1\n"
    (tmp_path / "neg.py").write_text(bad)
    proc = hive("handler", "test", "neg.py", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: {tmp_path / 'neg.py'}:4: handler 'h' returned -1")


def test_handler_test_runs_a_topology_handler_in_its_environment(tmp_path: Path):
    source = (
        "import os\nfrom beehive import handler\n\n@handler\n"
        "def h(comp) -> int:\n    return int(os.environ['ANSWER'])\n"
    )
    topology = handler_topology(
        tmp_path, {"req": source}, req="requirements: [humanize], env: {ANSWER: '42'}"
    )
    proc = hive("handler", "test", "--handler", "req", cwd=tmp_path)
    assert proc.returncode == 1
    assert "environment" in proc.stderr and "is not built yet" in proc.stderr
    assert "build it with `hive up -f hive.yaml`" in proc.stderr

    record = tmp_path / "ran"
    venv = fake_environment(topology, "req", record)
    proc = hive("handler", "test", "--handler", "req", "--query", "q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"handler test passed: {tmp_path / 'req.py'} answered 42 to 'q'\n"
    assert record.read_text().split() == [str(venv)]

    proc = hive("handler", "test", "--handler", "nope", cwd=tmp_path)
    assert proc.returncode == 1 and "declares no such handler (req)" in proc.stderr


def test_the_daemon_logs_a_failing_calls_own_frames_once(tmp_path: Path):
    """Set up as tests/test_daemon.py's `Daemon`: the real daemon on a config file."""
    from beehive.core.dispatch import write_pending
    from beehive.core.files import write_atomic
    from beehive.core.models import Computation

    handler_file = tmp_path / "failing.py"
    handler_file.write_text(
        "from beehive import handler\n\nTABLE = {}\n\n@handler\ndef failing(comp) -> int:\n"
        "    try:\n        return TABLE[comp.query]\n    except KeyError:\n"
        "        raise ValueError('not in the table')\n"
    )
    folder = tmp_path / "state" / "data" / "alice" / "computation"
    config = tmp_path / "state" / "handlers" / "failing.json"
    config.parent.mkdir(parents=True)
    ready = tmp_path / "state" / "run" / "handler-failing.ready"
    body = {
        "name": "failing",
        "file": str(handler_file),
        "timeout": 5,
        "attachments": {"alice": str(folder)},
        "ready_file": str(ready),
    }
    write_atomic(config, json.dumps(body).encode())
    env = {k: v for k, v in os.environ.items() if k != "BEEHIVE_LOG_LEVEL"}
    log_path = tmp_path / "daemon.log"
    with open(log_path, "wb") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "beehive.nectar.daemon", "--config", str(config)],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
        )  # fmt: skip
    try:
        wait_until(ready.exists, 15, f"the daemon to be ready: {log_path.read_text()}")
        comp = Computation(
            query="private words", proposer="p", aggregators=["h"], targets=["alice"]
        )
        write_pending(folder, comp)
        complete = folder / f"{comp.comp_id}.complete"
        wait_until(complete.exists, 10, f"the answer: {log_path.read_text()}")
        wait_until(lambda: "error in" in log_path.read_text(), 10, "the warning line")
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
    text = log_path.read_text()
    assert f"ERROR handler-failing comp {comp.comp_id} (alice): handler 'failing' raised " in text
    assert f"raised ValueError at {handler_file}:10\n" in text
    assert text.count(OWN_FRAMES := "Traceback (most recent call last; the handler's own") == 2
    assert f'  File "{handler_file}", line 8, in failing\n' in text
    assert f'  File "{handler_file}", line 10, in failing\n' in text
    assert "KeyError (its message is left out of the log)" in text
    assert "ValueError: not in the table" in text
    assert "private words" not in text  # the query, quoted by the KeyError only
    assert "beehive/" not in text.split(OWN_FRAMES, 1)[1]  # none of the daemon's frames

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

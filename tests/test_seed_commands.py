"""The seed's `bee-hive` and `nectar` command lines, run as the seed's script ran
them, against a temporary --data-dir: real supervisord, nats-server, nodes and a
handler daemon. Also live attach/detach: no restart, pending work kept."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, pid_alive, wait_until

from beehive.flower.control import call

HEAVY, LIGHT = ("alice", "bob", "charlie"), ("dave", "eve")


class Seed:
    """Runs `bee-hive` / `nectar` (their real entry modules) on one data folder."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir, self.env = data_dir, env

    def run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        module = {"bee-hive": "beehive.cli.seed_beehive", "nectar": "beehive.cli.seed_nectar"}
        cmd = [sys.executable, "-m", module[tool], "--data-dir", str(self.data_dir), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)} exited {proc.returncode}\n{proc}")
        return proc

    @property
    def state(self) -> Path:
        return self.data_dir / ".hive" / "bee-hive"

    def pids(self) -> dict[str, int]:
        cmd = [sys.executable, "-m", "beehive.cli.main", "status", "-f"]
        cmd += [str(self.data_dir / "hive.yaml"), "--json"]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=60)
        return {p["name"]: p["pid"] for p in json.loads(proc.stdout)["processes"] if p["pid"]}

    def submit(self, query: str, aggregators: str, targets: str) -> dict:
        proc = self.run(
            "bee-hive", "submit", query, "--proposer", "alice", "--aggregators", aggregators,
            "--targets", targets, "--deadline", "20", "--json",
        )  # fmt: skip
        return json.loads(proc.stdout)


@pytest.fixture
def seed(short_tmp: Path, hive_env: dict[str, str]):
    env = {**hive_env, "BEEHIVE_DATA_DIR": "/nonexistent-use-the-option"}
    seed = Seed(short_tmp / "d", env)
    yield seed
    supervisord = seed.state / "run" / "supervisord.pid"
    if supervisord.exists():  # a failed test: take it down all the same
        topology = str(seed.data_dir / "hive.yaml")
        subprocess.run(
            [sys.executable, "-m", "beehive.cli.main", "down", "-f", topology],
            env=env,
            capture_output=True,
            timeout=60,
        )


def register_all(seed: Seed) -> None:
    for alias in (*HEAVY, *LIGHT):
        role = "heavy" if alias in HEAVY else "light"
        seed.run(
            "bee-hive", "register", "--alias", alias, "--node-type", role,
            "--email", f"{alias}@example.org", "--password", f"pw-{alias}",
        )  # fmt: skip


def test_seed_script_flow_gives_75_and_56_and_leaves_nothing_running(seed: Seed):
    register_all(seed)
    handler = str(REPO / "handlers" / "query_length.py")
    assert "answered 25" in seed.run("nectar", "test", handler).stdout
    seed.run("nectar", "launch", handler, "query_length")
    for alias in (*HEAVY, *LIGHT):
        seed.run("nectar", "attach", "query_length", alias)
    listing = seed.run("bee-hive", "list").stdout
    assert listing.count("RUNNING") == 5
    assert "alice, bob, charlie" in seed.run("nectar", "view").stdout

    first = seed.submit("What is your secret value", "alice,bob", "charlie,dave,eve")
    assert (first["status"], first["result"]) == ("complete", 75)
    second = seed.submit("Do you have a secret genome?", "alice,bob,charlie", "dave,eve")
    assert (second["status"], second["result"]) == ("complete", 56)
    final = seed.state / "data" / "alice" / f"final_{second['comp_id']}.json"
    assert json.loads(final.read_text())["result"] == 56

    # Passwords: only a salted scrypt hash is stored; a wrong one changes nothing.
    registry = (seed.data_dir / "registry.json").read_text()
    assert "pw-alice" not in registry and "scrypt$" in registry
    assert (seed.data_dir / "registry.json").stat().st_mode & 0o077 == 0
    wrong = seed.run("bee-hive", "deregister", "alice", "--password", "nope", check=False)
    assert wrong.returncode == 1 and "wrong password" in wrong.stderr
    # One handler per node, with a message that says what to do.
    seed.run("nectar", "launch", str(REPO / "handlers" / "answer_42.py"), "other")
    clash = seed.run("nectar", "attach", "other", "alice", check=False)
    assert clash.returncode == 1 and "nectar detach query_length alice" in clash.stderr
    assert "charlie" in seed.run("bee-hive", "peers", "alice").stdout
    assert "ok in" in seed.run("nectar", "logs", "query_length").stdout

    pids = [*seed.pids().values(), int((seed.state / "run/supervisord.pid").read_text())]
    for alias in (*HEAVY, *LIGHT):
        seed.run("bee-hive", "deregister", alias, "--password", f"pw-{alias}")
        assert not (seed.state / "keys" / f"{alias}.key").exists()
        assert not (seed.state / "data" / alias).exists()
    seed.run("nectar", "stop", "query_length")
    seed.run("nectar", "stop", "other")
    wait_until(lambda: not any(pid_alive(p) for p in pids), 15, "every process to exit")
    assert "no nodes registered" in seed.run("bee-hive", "list").stdout


def test_attach_and_detach_live_keep_pids_and_pending_work(seed: Seed):
    register_all(seed)
    seed.run("nectar", "launch", str(REPO / "handlers" / "query_length.py"), "ql")
    for alias in (*HEAVY, *LIGHT):
        seed.run("nectar", "attach", "ql", alias)
    before = seed.pids()

    seed.run("nectar", "detach", "ql", "dave")
    proc = seed.run(
        "bee-hive", "submit", "What is your secret value", "--proposer", "alice",
        "--aggregators", "alice,bob", "--targets", "dave,eve", "--deadline", "30",
    )  # fmt: skip
    comp_id = proc.stdout.strip()
    folder = seed.state / "data" / "dave" / "computation"
    pending = folder / f"{comp_id}.pending"
    wait_until(pending.exists, 10, "dave to receive the computation")
    assert not (folder / f"{comp_id}.complete").exists()  # nobody answers for dave

    seed.run("nectar", "attach", "ql", "dave")
    reply = call(seed.state / "run" / "alice.sock", {"op": "wait", "comp_id": comp_id}, timeout=40)
    assert reply["result"]["status"] == "complete"
    assert reply["result"]["result"] == 50
    assert seed.pids() == before  # no node and no handler restarted


def test_password_hash_is_salted_scrypt_and_checks_only_the_right_password():
    from beehive.cli.adhoc import check_password, hash_password

    one, two = hash_password("s3cret"), hash_password("s3cret")
    assert one != two and one.startswith("scrypt$") and "s3cret" not in one
    assert check_password("s3cret", one) and check_password("s3cret", two)
    assert not check_password("s3cret!", one)
    assert not check_password("s3cret", "garbage")

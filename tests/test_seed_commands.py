"""The seed's `bee-hive` and `nectar` command lines, run as the seed's scripts ran
them, against a temporary --data-dir: real supervisord, nats-server, nodes and a
handler daemon. The seed's own flow is re-created as bash scripts calling the
installed entry points; the focused tests check each line scripts read, the `❌`
errors, and live attach/detach (no restart, pending work kept)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import REPO, free_port, pid_alive, wait_until

from beehive.flower.control import call

HEAVY, LIGHT = ("alice", "bob", "charlie"), ("dave", "eve")
BIN = Path(sys.executable).parent  # the venv's bin: `bee-hive`, `nectar`, `hive`


class Seed:
    """Runs `bee-hive` / `nectar` (their real entry modules) on one data folder."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir, self.env = data_dir, env

    def run(
        self, tool: str, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess:
        module = {"bee-hive": "beehive.cli.seed_beehive", "nectar": "beehive.cli.seed_nectar"}
        cmd = [sys.executable, "-m", module[tool], "--data-dir", str(self.data_dir), *args]
        # A session of its own, so no controlling terminal: a hidden prompt reads stdin.
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=self.env, timeout=120, input=stdin,
            start_new_session=True,
        )  # fmt: skip
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

    def all_pids(self) -> list[int]:
        """supervisord's (from its pid file) and every pid `hive status` reports."""
        pidfile = self.state / "run" / "supervisord.pid"
        return [*self.pids().values(), int(pidfile.read_text())]

    def registry(self) -> dict:
        return json.loads((self.data_dir / "registry.json").read_text())


@pytest.fixture
def seed(short_tmp: Path, hive_env: dict[str, str]):
    env = {**hive_env, "BEEHIVE_DATA_DIR": "/nonexistent-use-the-option"}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
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


def comp_id_of(submit_stdout: str) -> str:
    """What the seed's script does: `grep "ID:" | sed 's/.*ID: //' | awk '{print $1}'`."""
    (line,) = [x for x in submit_stdout.splitlines() if "ID:" in x]
    return line.split("ID: ", 1)[1].split()[0]


# ── the seed's own flow, as shell scripts ────────────────────────────────────

SCRIPTS = {
    "start_nodes.sh": r"""
        set -euo pipefail
        D="$1"
        for a in alice bob charlie; do
          bee-hive --data-dir "$D" register --alias "$a" --email "$a@example.org" \
            --node-type heavy --password "pw-$a"
        done
        for a in dave eve; do
          bee-hive --data-dir "$D" register --alias "$a" --email "$a@example.org" \
            --node-type light --password "pw-$a"
        done
        bee-hive --data-dir "$D" list
    """,
    "attach_handlers.sh": r"""
        set -euo pipefail
        D="$1"
        nectar --data-dir "$D" test handlers/query_length.py
        nectar --data-dir "$D" launch handlers/query_length.py query_length
        nectar --data-dir "$D" view | grep running
        ALIASES=$(bee-hive --data-dir "$D" list \
          | grep '  @' | sed -E 's/^[^@]*@([a-zA-Z0-9_-]+).*/\1/')
        for a in $ALIASES; do
          nectar --data-dir "$D" attach query_length "$a"
        done
    """,
    "test.sh": r"""
        set -euo pipefail
        D="$1"
        submit() {
          bee-hive --data-dir "$D" submit "$1" --proposer alice --aggregators alice,bob \
            --targets "$2" --deadline 20 | grep "ID:" | sed 's/.*ID: //' | awk '{print $1}'
        }
        result() {  # comp_id -> final_result, waiting (bounded) for the file
          f="$D/alice/data/final_$1.json"
          for _ in $(seq 1 80); do [ -f "$f" ] && break; sleep 0.5; done
          [ -f "$f" ] || { echo "❌ no result file $f" >&2; exit 1; }
          python -c 'import json, sys; print(json.load(open(sys.argv[1]))["final_result"])' "$f"
        }
        ID1=$(submit "What is your secret value" charlie,dave,eve)
        ID2=$(submit "Do you have a secret genome?" dave,eve)
        echo "first $ID1 $(result "$ID1")"
        echo "second $ID2 $(result "$ID2")"
    """,
    "cleanup.sh": r"""
        set -euo pipefail
        D="$1"
        for a in alice bob charlie dave eve; do
          bee-hive --data-dir "$D" deregister "$a" --password "pw-$a" --yes
        done
        nectar --data-dir "$D" stop query_length
    """,
}


def test_seed_shell_scripts_give_75_and_56_and_leave_nothing_running(seed: Seed, short_tmp):
    scripts = short_tmp / "scripts"
    scripts.mkdir()
    for name, body in SCRIPTS.items():
        (scripts / name).write_text("#!/usr/bin/env bash\n" + textwrap.dedent(body).lstrip())

    def sh(name: str) -> str:
        proc = subprocess.run(
            ["bash", str(scripts / name), str(seed.data_dir)],
            cwd=REPO,  # `handlers/query_length.py`, as the seed's scripts say it
            capture_output=True,
            text=True,
            env=seed.env,
            timeout=300,
        )
        assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{proc}"
        return proc.stdout

    listing = sh("start_nodes.sh")
    assert listing.count("🟢 running  @") == 5 and "Total: 5 node(s)" in listing
    attached = sh("attach_handlers.sh")
    assert "✅ Handler test passed! Result: 25" in attached
    assert attached.count("attached to") == 5

    # The seed's layout under the data folder, beside the hive's own `.hive/`.
    data = seed.data_dir
    for alias in (*HEAVY, *LIGHT):
        assert (data / alias / "keys" / f"{alias}.key").is_file()
        assert (data / alias / "data" / "computation").is_dir()
        assert (data / alias / "data" / "node.log").is_file()
    assert (data / "nectar" / "logs" / "query_length.log").is_file()

    lines = sh("test.sh").splitlines()
    results = {ln.split()[0]: (ln.split()[1], ln.split()[2]) for ln in lines}
    assert results["first"][1] == "75" and results["second"][1] == "56"
    final = json.loads((data / "alice" / "data" / f"final_{results['second'][0]}.json").read_text())
    assert final["computation_id"] == results["second"][0] and final["final_result"] == 56
    assert final["status"] == "complete" and final["contributors"] == ["dave", "eve"]
    assert final["missing"] == [] and final["timestamp"] > 0
    assert "aggregator_values" not in final  # each aggregator's sum is a share

    pids = seed.all_pids()
    assert len(pids) == 9  # supervisord, nats, nats-guard, 5 nodes, 1 handler
    sh("cleanup.sh")
    wait_until(lambda: not any(pid_alive(p) for p in pids), 15, "every process to exit")
    assert not (seed.state / "run" / "supervisord.pid").exists()
    for alias in (*HEAVY, *LIGHT):
        assert not (data / alias).exists()
        assert not (seed.state / "keys" / f"{alias}.key").exists()
    assert "Total: 0 node(s)" in seed.run("bee-hive", "list").stdout


# ── focused: the lines scripts read, live attach/detach ─────────────────────


def test_output_lines_and_live_attach_detach_keep_pids_and_pending_work(seed: Seed):
    register_all(seed)
    seed.run("nectar", "launch", str(REPO / "handlers" / "query_length.py"), "ql")
    for alias in (*HEAVY, *LIGHT):
        assert "✅" in seed.run("nectar", "attach", "ql", alias).stdout
    again = seed.run("nectar", "attach", "ql", "alice").stdout
    assert "✅" in again and "already" in again
    before = seed.pids()

    listing = seed.run("bee-hive", "list").stdout.splitlines()
    at = listing.index("  🟢 running  @alice")
    assert listing[at + 1 : at + 4] == [
        "     Type: heavy",
        "     Email: alice@example.org",
        "     Handler: ql",
    ]
    assert listing[-1] == "Total: 5 node(s)"
    as_json = json.loads(seed.run("bee-hive", "list", "--json").stdout)
    assert as_json["total"] == 5 and all(n["running"] for n in as_json["nodes"])
    view = seed.run("nectar", "view").stdout.splitlines()
    assert view[0] == "  🟢 running  ql"
    assert "alice, bob, charlie, dave, eve" in view[1]

    seed.run("nectar", "detach", "ql", "dave")
    proc = seed.run(
        "bee-hive", "submit", "What is your secret value", "--proposer", "alice",
        "--aggregators", "alice,bob", "--targets", "dave,eve", "--deadline", "30",
    )  # fmt: skip
    out = proc.stdout.splitlines()
    assert out[0] == "✅ Computation submitted"
    comp_id = comp_id_of(proc.stdout)
    assert out[1] == f"   ID: {comp_id}"
    assert "   Proposer: alice" in out and "   Aggregators: alice, bob" in out
    assert "   Deadline: 30s" in out
    folder = seed.data_dir / "dave" / "data" / "computation"
    pending = folder / f"{comp_id}.pending"
    wait_until(pending.exists, 10, "dave to receive the computation")
    assert not (folder / f"{comp_id}.complete").exists()  # nobody answers for dave

    seed.run("nectar", "attach", "ql", "dave")
    reply = call(seed.state / "run" / "alice.sock", {"op": "wait", "comp_id": comp_id}, timeout=40)
    assert reply["result"]["status"] == "complete"
    assert reply["result"]["result"] == 50
    assert seed.pids() == before  # no node and no handler restarted
    final = seed.data_dir / "alice" / "data" / f"final_{comp_id}.json"
    assert json.loads(final.read_text())["final_result"] == 50

    # --json still waits and prints the one object `hive submit --json` prints.
    waited = seed.run(
        "bee-hive", "submit", "What is your secret value", "--proposer", "alice",
        "--aggregators", "alice,bob", "--targets", "charlie,eve", "--json",
    )  # fmt: skip
    assert json.loads(waited.stdout)["result"] == 50

    # Passwords: only a salted scrypt hash is stored; a wrong one changes nothing.
    registry = (seed.data_dir / "registry.json").read_text()
    assert "pw-alice" not in registry and "scrypt$" in registry
    assert (seed.data_dir / "registry.json").stat().st_mode & 0o077 == 0
    wrong = seed.run("bee-hive", "deregister", "alice", "--password", "nope", "-y", check=False)
    assert wrong.returncode == 1 and wrong.stderr.startswith("❌ wrong password")
    # One handler per node, with a message that says what to do.
    seed.run("nectar", "launch", str(REPO / "handlers" / "answer_42.py"), "other")
    clash = seed.run("nectar", "attach", "other", "alice", check=False)
    assert clash.returncode == 1 and clash.stderr.startswith("❌ ")
    assert "nectar detach ql alice" in clash.stderr
    assert "charlie" in seed.run("bee-hive", "peers", "alice").stdout
    assert "ok in" in seed.run("nectar", "logs", "ql").stdout


# ── focused, without a running hive ──────────────────────────────────────────


def test_errors_are_seed_lines_on_stderr_with_a_nonzero_exit(seed: Seed, tmp_path: Path):
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\n")
    cases = [
        ("nectar", "test", str(bad)),
        ("nectar", "attach", "nothing", "alice"),
        ("nectar", "stop", "nothing"),
        ("bee-hive", "deregister", "nobody", "--password", "x", "--yes"),
        ("bee-hive", "peers", "nobody"),
        ("bee-hive", "register", "--alias", "Bad Alias", "--node-type", "heavy",
         "--email", "e", "--password", "p"),
    ]  # fmt: skip
    for tool, *args in cases:
        proc = seed.run(tool, *args, check=False)
        assert proc.returncode != 0, (tool, args)
        assert proc.stderr.startswith("❌ "), (tool, args, proc.stderr)
        assert "error:" not in proc.stderr and "Traceback" not in proc.stderr
    failed = seed.run("nectar", "test", str(bad), check=False)
    assert failed.returncode == 1 and failed.stderr.startswith("❌ Handler test failed")
    ok = seed.run("nectar", "test", str(REPO / "handlers" / "query_length.py"))
    assert ok.stdout.strip() == "✅ Handler test passed! Result: 25"


def test_register_prompts_in_the_seeds_order_and_deregister_asks(seed: Seed):
    # A light node alone: the hive stays down (it needs a heavy node), nothing starts.
    proc = seed.run("bee-hive", "register", stdin="light\ndave\ndave@example.org\npw\npw\n")
    prompts = [proc.stdout.index(p) for p in ("Node type", "Alias", "Email")]
    assert prompts == sorted(prompts), proc.stdout
    assert "Password" in proc.stdout + proc.stderr  # hidden: getpass may use stderr
    assert seed.registry()["nodes"]["dave"]["email"] == "dave@example.org"

    no = seed.run("bee-hive", "deregister", "dave", "--password", "pw", stdin="n\n", check=False)
    assert no.returncode != 0 and "Deregister" in no.stdout
    assert no.stderr.startswith("❌ cancelled")
    assert "dave" in seed.registry()["nodes"]  # nothing changed
    yes = seed.run("bee-hive", "deregister", "dave", "--password", "pw", stdin="y\n")
    assert "✅" in yes.stdout and "dave" not in seed.registry()["nodes"]
    assert not (seed.state / "run" / "supervisord.pid").exists()


def test_register_nats_url_writes_an_external_server_into_the_topology(seed: Seed):
    url = f"nats://127.0.0.1:{free_port()}"
    seed.run(
        "bee-hive", "register", "--alias", "dave", "--node-type", "light", "--email", "d@x",
        "--password", "pw", "--nats-url", url,
    )  # fmt: skip
    import yaml

    topology = yaml.safe_load((seed.data_dir / "hive.yaml").read_text())
    assert topology["nats"] == {"url": url}
    other = seed.run(
        "bee-hive", "register", "--alias", "eve", "--node-type", "light", "--email", "e@x",
        "--password", "pw", "--nats-url", "nats://127.0.0.1:1", check=False,
    )  # fmt: skip
    assert other.returncode == 1 and other.stderr.startswith("❌ ") and url in other.stderr
    bad = seed.run(
        "bee-hive", "register", "--alias", "eve", "--node-type", "light", "--email", "e@x",
        "--password", "pw", "--nats-url", "http://x", check=False,
    )  # fmt: skip
    assert bad.returncode == 1 and "--nats-url" in bad.stderr
    assert not (seed.state / "run" / "supervisord.pid").exists()


def test_a_taken_nats_port_is_refused_naming_it_and_nothing_starts(seed: Seed):
    with socket.socket() as other:  # "another program" on the hive's NATS port
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        env = {**seed.env, "HIVE_NATS_PORT": str(port)}
        proc = subprocess.run(
            [str(BIN / "bee-hive"), "--data-dir", str(seed.data_dir), "register",
             "--alias", "alice", "--node-type", "heavy", "--email", "a@x", "--password", "pw"],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
    assert proc.returncode == 1, proc
    # (stderr also carries the progress line "bringing up …")
    assert any(ln.startswith(f"❌ NATS port {port} ") for ln in proc.stderr.splitlines())
    assert "HIVE_NATS_PORT" in proc.stderr and "--nats-url" in proc.stderr
    assert not (seed.state / "run" / "supervisord.pid").exists()
    assert not (seed.state / "run" / "supervisord.sock").exists()
    # The refused command did not happen: alice can be registered once the port is free.
    assert not (seed.data_dir / "registry.json").exists()


def test_result_file_has_the_seeds_keys_beside_the_result():
    from beehive.core.models import ComputationResult
    from beehive.flower.store import result_json

    result = ComputationResult(
        comp_id="c1", status="complete", result=75, contributors=["a", "b"], missing=[],
        aggregators=["x", "y"], finished_at=1700000000.5,
    )  # fmt: skip
    doc = json.loads(result_json(result))
    assert doc["computation_id"] == "c1" and doc["final_result"] == 75
    assert doc["timestamp"] == 1700000000.5
    assert doc["result"] == 75 and doc["status"] == "complete" and doc["missing"] == []
    assert "aggregator_values" not in doc


def test_password_hash_is_salted_scrypt_and_checks_only_the_right_password():
    from beehive.cli.adhoc import check_password, hash_password

    one, two = hash_password("s3cret"), hash_password("s3cret")
    assert one != two and one.startswith("scrypt$") and "s3cret" not in one
    assert check_password("s3cret", one) and check_password("s3cret", two)
    assert not check_password("s3cret!", one)
    assert not check_password("s3cret", "garbage")

"""The CLI's compose habits on a real hive (issue 16): the topology found in a
parent folder, submit's defaults, logs merged/followed/tailed, restart, stop,
start, ps, top, status --watch, completion, and `hive down` after the file broke.

One hive for the module (topologies/test.yaml copied to a temporary folder as
`hive.yaml`, a free NATS port); every command runs from a subfolder without
`-f`, as a user in their project would.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO, TEST_TOPOLOGY, make_hive_env, pid_alive, wait_until

from beehive.cli.logs import Line, Source, history, line_time, merged, parse_duration

QUERY = "How long is this question?"  # query_length answers len(query) each


class Project:
    """A folder holding hive.yaml, and `hive` run from a subfolder of it."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.cwd = root / "src" / "deep"
        self.cwd.mkdir(parents=True)
        self.state = root / ".hive" / "test"

    def run(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "beehive.cli.main", *args]
        proc = subprocess.run(
            cmd, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"hive {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def status(self) -> dict:
        return json.loads(self.run("status", "--json", check=False).stdout)

    def pid(self, program: str) -> int:
        return next(p["pid"] for p in self.status()["processes"] if p["name"] == program)

    def all_pids(self) -> list[int]:
        pids = [p["pid"] for p in self.status()["processes"] if p["pid"]]
        pidfile = self.state / "run" / "supervisord.pid"
        return [*pids, int(pidfile.read_text())] if pidfile.exists() else pids


@pytest.fixture(scope="module")
def project() -> Iterator[Project]:
    root = Path(tempfile.mkdtemp(prefix="bh-", dir="/tmp"))
    text = TEST_TOPOLOGY.read_text().replace("../handlers/", f"{REPO}/handlers/")
    (root / "hive.yaml").write_text(text)
    found = Project(root, make_hive_env())
    pids: list[int] = []
    try:
        found.run("up", "--timeout", "60")
        pids = found.all_pids()
        yield found
    finally:
        found.run("down", check=False)
        wait_until(lambda: not any(pid_alive(p) for p in pids), 15, f"{pids} to exit")
        shutil.rmtree(root, ignore_errors=True)


def test_the_topology_is_found_in_a_parent_folder(project: Project) -> None:
    shown = project.run("validate").stdout
    assert shown.startswith(f"{os.path.join('..', '..', 'hive.yaml')}: ok — topology 'test'")


def test_no_topology_anywhere_says_where_it_looked(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HIVE_FILE"}
    proc = subprocess.run(
        [sys.executable, "-m", "beehive.cli.main", "status"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 1
    assert f"no hive.yaml or hive.yml in {tmp_path} or any folder above it" in proc.stderr
    assert "-f FILE" in proc.stderr and "HIVE_FILE" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_submit_defaults_to_every_heavy_aggregator_and_every_target(project: Project) -> None:
    proc = project.run("submit", QUERY, "--json")
    result = json.loads(proc.stdout)  # stdout stays exactly one object
    assert result["status"] == "complete"
    assert result["result"] == 5 * len(QUERY)
    assert sorted(result["contributors"]) == ["alice", "bob", "charlie", "dave", "eve"]
    said = proc.stderr
    assert "proposer alice" in said
    assert "aggregators alice, bob, charlie — 3 node(s) (every heavy node)" in said
    assert "targets alice, bob, charlie, dave, eve — 5 node(s) (every node)" in said


def test_too_few_targets_for_min_contributors_are_refused_before_sending(
    project: Project,
) -> None:
    before = json.loads(project.run("results", "--json").stdout)
    proc = project.run("submit", QUERY, "--targets", "dave", "--json", check=False)
    assert proc.returncode == 1
    assert "1 target(s), but a total is released only over at least min_contributors 2" in (
        proc.stderr
    )
    assert json.loads(project.run("results", "--json").stdout) == before  # nothing sent


def test_logs_of_several_programs_are_merged_in_time_order(project: Project) -> None:
    shown = project.run("logs", "alice", "nats", "--tail", "20").stdout.splitlines()
    labels = {line.split(" | ", 1)[0].strip() for line in shown}
    assert labels == {"alice", "nats"}
    times = [line_time(line.split(" | ", 1)[1]) for line in shown]
    stamped = [t for t in times if t is not None]
    assert stamped == sorted(stamped) and len(stamped) > 5


def interruptible(project: Project, *args: str) -> subprocess.Popen[str]:
    """`hive ARGS` as a shell starts it from a terminal, where Ctrl-C reaches it.
    A test run as a background job (a CI script without job control) has SIGINT
    ignored, and a child inherits that: Python then installs no handler for it."""
    return subprocess.Popen(
        [sys.executable, "-m", "beehive.cli.main", *args],
        cwd=project.cwd, env=project.env, stdout=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip


def interrupt(proc: subprocess.Popen[str]) -> int:
    """Ctrl-C, then its exit status; killed if it outlives 10 s (the test fails)."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def test_logs_follow_with_tail_0_shows_only_new_lines(project: Project) -> None:
    follower = interruptible(project, "logs", "dave", "--follow", "--tail", "0")
    shown: queue.Queue[str] = queue.Queue()
    assert follower.stdout is not None
    threading.Thread(target=lambda: [shown.put(x) for x in follower.stdout], daemon=True).start()
    rounds: list[str] = []

    def new_line() -> str | None:
        """Ask another round of dave (the follower may not watch yet) until a line comes."""
        rounds.append(project.run("submit", QUERY, "--targets", "dave,eve").stdout.strip())
        try:
            return shown.get(timeout=1)
        except queue.Empty:
            return None

    try:
        first = wait_until(new_line, 30, "a new line of dave's log")
        # The first line shown is about a round asked after the follower started:
        # none of dave's history (there is plenty) came before it.
        assert any(comp_id in first for comp_id in rounds), first
    finally:
        assert interrupt(follower) == 0


def test_restart_stop_start_through_supervisord(project: Project) -> None:
    before = project.pid("node-bob")
    shown = project.run("restart", "bob").stdout
    assert "restarted node-bob, ready" in shown
    assert project.pid("node-bob") != before
    assert project.status()["healthy"]

    handler_pid = project.pid("handler-query_length")
    project.run("restart", "query_length")
    assert project.pid("handler-query_length") != handler_pid

    project.run("stop", "eve")
    status = project.status()
    assert not status["healthy"]
    assert {p["name"]: p["state"] for p in status["processes"]}["node-eve"] == "STOPPED"
    assert project.run("ps", check=False).returncode == 1  # ps is status
    project.run("start", "eve")
    assert project.status()["healthy"]

    unknown = project.run("restart", "mallory", check=False)
    assert unknown.returncode == 1
    assert "'mallory' is no program, node, replica set or handler" in unknown.stderr
    assert "node-alice" in unknown.stderr  # the programs there are


def test_top_reports_cpu_and_memory_of_every_process(project: Project) -> None:
    top = json.loads(project.run("top", "--json", "--interval", "0.2").stdout)
    names = {p["name"] for p in top["processes"]}
    expected = {p["name"] for p in project.status()["processes"]} | {"supervisord"}
    assert names == expected
    assert all(p["rss_mib"] > 1 and p["cpu_percent"] >= 0 for p in top["processes"])
    assert top["rss_mib"] == pytest.approx(sum(p["rss_mib"] for p in top["processes"]), abs=0.5)


def test_status_watch_repeats_until_interrupted(project: Project) -> None:
    watcher = interruptible(project, "status", "--watch", "--json", "--interval", "0.2")
    try:
        assert watcher.stdout is not None
        looks = [json.loads(watcher.stdout.readline()) for _ in range(2)]
        assert all(look["healthy"] and len(look["nodes"]) == 5 for look in looks)
    finally:
        assert interrupt(watcher) == 0  # healthy at the last look


def test_completion_offers_the_topology_s_names(project: Project) -> None:
    script = project.run("completion", "bash").stdout
    assert "_HIVE_COMPLETE" in script
    env = {**project.env, "_HIVE_COMPLETE": "bash_complete", "COMP_CWORD": "4",
           "COMP_WORDS": "hive submit q --targets alice,"}  # fmt: skip
    offered = subprocess.run(
        [sys.executable, "-m", "beehive.cli.main"],
        cwd=project.cwd, env=env, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    assert "plain,alice,bob" in offered and "plain,alice,eve" in offered
    env["COMP_WORDS"], env["COMP_CWORD"] = "hive restart ", "2"
    offered = subprocess.run(
        [sys.executable, "-m", "beehive.cli.main"],
        cwd=project.cwd, env=env, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    assert {"plain,dave", "plain,query_length", "plain,nats"} <= set(offered)


def test_down_falls_back_to_the_state_folder_when_the_file_broke(project: Project) -> None:
    """Last in this module: it takes the hive down."""
    pids = project.all_pids()
    (project.root / "hive.yaml").write_text("version: 1\nname: [oops\n")
    proc = project.run("down")
    assert "so taking down the state folder found beside it" in proc.stderr
    assert str(project.state) in proc.stderr
    assert "stopped" in proc.stdout
    wait_until(lambda: not any(pid_alive(p) for p in pids), 15, "every process to exit")


# ── pure parts of `hive logs`, on real files ──────────────────────────────────


def test_durations() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("1h30m") == 5400
    assert parse_duration("2d") == 172800
    assert parse_duration("15") == 15
    for bad in ("", "10x", "h", "1h 30m", "-5m"):
        with pytest.raises(Exception, match="duration"):
            parse_duration(bad)


def test_since_and_tail_read_each_line_s_own_time(tmp_path: Path) -> None:
    now = time.time()

    def stamp(t: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S,000", time.localtime(t))

    log = tmp_path / "node-x.log"
    log.write_text(
        f"{stamp(now - 7200)} INFO node=x old\n"
        "    a traceback frame, no time of its own\n"
        f"{stamp(now - 30)} INFO node=x recent\n"
        f"{stamp(now - 20)} INFO node=y someone else\n"
    )
    source = Source("x", log, " node=x ")
    assert [line.text[-3:] for line in history(source, None, None)] == ["old", "ent"]
    assert [line.text[-6:] for line in history(source, None, now - 60)] == ["recent"]
    assert history(source, 0, None) == []
    everything = Source("all", log)
    frame = history(everything, None, None)[1]
    assert frame.when == history(everything, None, None)[0].when  # kept beside its line
    nats = [Line(now - 100, "nats", "a"), Line(now - 10, "nats", "c")]
    node = [Line(now - 50, "x", "b")]
    assert [line.text for line in merged([nats, node])] == ["a", "b", "c"]


def test_the_cli_starts_without_its_heavy_dependencies() -> None:
    """`hive --help` (and so every command before it runs) imports none of the
    libraries a command may need later: they are imported where they are used.
    A property of the code, not a time (the times are in docs/performance.md)."""
    heavy = {"pydantic", "nats", "cryptography", "jinja2", "asyncio", "yaml", "supervisor"}
    code = (
        "import sys\n"
        "from beehive.cli.main import cli\n"
        "try:\n"
        "    cli(['--help'], prog_name='hive')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "Usage: hive" in proc.stdout
    loaded = set(proc.stdout.strip().splitlines()[-1].split())
    assert "click" in loaded and not loaded & heavy, sorted(loaded & heavy)

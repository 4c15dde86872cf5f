"""Retention: `defaults.keep_results`, and a running node pruning its store."""

from __future__ import annotations

import json
import sqlite3
import textwrap
import time
from pathlib import Path

import pytest
from helpers import REPO, make_hive_env, running_hive, wait_until

from beehive.core.dispatch import result_path
from beehive.core.models import ComputationResult
from beehive.flower.node import prune_interval
from beehive.flower.store import KEEP_CLOSED, Store, result_json
from beehive.security.replay import MemoryReplayWindow, SqliteReplayWindow
from beehive.topology import TopologyError, load_topology
from beehive.topology.schema import DEFAULT_KEEP_RESULTS, Defaults, parse_duration

# ── the setting ──────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30d", 30 * 86400.0),
        ("12h", 12 * 3600.0),
        ("90m", 5400.0),
        ("3600s", 3600.0),
        ("3600", 3600.0),
        (" 1.5h ", 5400.0),
        (60, 60.0),
        (2.5, 2.5),
    ],
)
def test_durations_parse_to_seconds(value, seconds):
    assert parse_duration(value) == seconds
    assert Defaults(keep_results=value).keep_results == seconds


@pytest.mark.parametrize("value", ["", "30 days", "d", "-5", "1w", "12h30m", 0, -1, True, None])
def test_a_bad_duration_is_refused_naming_the_field(value):
    with pytest.raises(ValueError, match="keep_results"):
        Defaults(keep_results=value)


def test_keep_results_defaults_to_30_days():
    assert Defaults().keep_results == DEFAULT_KEEP_RESULTS == 30 * 86400.0


def test_the_loader_names_the_field_of_a_bad_duration(tmp_path):
    path = tmp_path / "hive.yaml"
    handler = tmp_path / "h.py"
    handler.write_text("def handle(q):\n    return 1\n")
    path.write_text(
        textwrap.dedent(f"""\
        version: 1
        name: t
        defaults: {{keep_results: soon}}
        handlers: {{h: {{file: {handler}}}}}
        nodes: {{alice: {{role: heavy, handler: h}}}}
        """)
    )
    with pytest.raises(TopologyError) as info:
        load_topology(path, env={})
    assert "keep_results" in str(info.value)


def test_the_prune_interval_follows_keep_results_within_bounds():
    assert prune_interval(30 * 86400.0) == 300.0
    assert prune_interval(60.0) == 15.0
    assert prune_interval(6.0) == 5.0


# ── the store's pruning ──────────────────────────────────────────────────────


def result(comp_id: str, finished_at: float) -> ComputationResult:
    return ComputationResult(
        comp_id=comp_id,
        status="complete",
        result=1,
        contributors=["a", "b"],
        missing=[],
        finished_at=finished_at,
    )


def test_the_store_prunes_old_results_their_files_and_closed_rounds(tmp_path):
    now = time.time()
    store = Store(tmp_path / "local.db")
    old = [result(f"old{i:04d}", now - 7200 - i) for i in range(200)]
    new = [result(f"new{i:04d}", now - 10) for i in range(5)]
    for r in old + new:
        store.save_result(r)
        result_path(tmp_path, r.comp_id).write_text(result_json(r))
    spec, sig = b"{}", b"sig"
    store.begin_round("proposer", "closedold", spec, sig, {}, now - KEEP_CLOSED - 60)
    store.close_round("proposer", "closedold")
    store.begin_round("target", "closednew", spec, sig, {}, now - 60)
    store.close_round("target", "closednew")
    store.begin_round("aggregator", "openold", spec, sig, {}, now - KEEP_CLOSED - 60)
    assert store.wal_bytes() > 0

    assert store.prune_rounds(now) == 1
    assert store.prune_results(3600.0, tmp_path, now) == len(old)
    assert store.prune_results(3600.0, tmp_path, now) == 0  # nothing left to do
    store.checkpoint()

    assert {r.comp_id for r in store.results()} == {r.comp_id for r in new}
    assert sorted(p.name for p in tmp_path.glob("final_*.json")) == sorted(
        f"final_{r.comp_id}.json" for r in new
    )
    rounds = {tuple(r) for r in store.db.execute("SELECT comp_id, role FROM rounds")}
    assert rounds == {("closednew", "target"), ("openold", "aggregator")}
    assert store.wal_bytes() == 0  # truncated by the checkpoint
    store.close()


def test_closed_rounds_past_keep_closed_go_at_start_up_too(tmp_path):
    store = Store(tmp_path / "local.db")
    store.begin_round("target", "gone", b"{}", b"s", {}, time.time() - KEEP_CLOSED - 1)
    store.close_round("target", "gone")
    store.close()
    again = Store(tmp_path / "local.db")
    assert again.db.execute("SELECT COUNT(*) FROM rounds").fetchone()[0] == 0
    again.close()


def test_the_replay_windows_expire_ids_past_their_ttl(tmp_path):
    for window in (MemoryReplayWindow(), SqliteReplayWindow(tmp_path / "w.db")):
        for i in range(50):
            assert window.remember("bob", bytes([i]), expires_at=100.0 + i, now=0.0)
        assert window.expire(now=125.0) == 25  # 100 … 124 are past
        assert len(window) == 25
        assert not window.remember("bob", bytes([30]), expires_at=999.0, now=125.0)
        assert window.expire(now=1000.0) == 25
        assert len(window) == 0


# ── a running node ───────────────────────────────────────────────────────────


def node_pid(hive, alias: str) -> int:
    status = hive.json("status", "--json")
    return next(p["pid"] for p in status["processes"] if p["name"] == f"node-{alias}")


def test_a_running_node_prunes_a_result_past_keep_results(tmp_path):
    topology = tmp_path / "hive.yaml"
    handler = REPO / "handlers" / "query_length.py"
    topology.write_text(
        textwrap.dedent(f"""\
        version: 1
        name: retention
        nats:
          host: 127.0.0.1
          port: ${{HIVE_NATS_PORT}}
        defaults: {{deadline: 30, keep_results: 6}}
        handlers: {{query_length: {{file: {handler}, timeout: 10}}}}
        nodes:
          alice: {{role: heavy, handler: query_length}}
          bob:   {{role: heavy, handler: query_length}}
          carol: {{role: light, handler: query_length}}
        """)
    )
    state = tmp_path / "state"
    with running_hive(state, make_hive_env(), topology) as hive:
        config = json.loads((state / "nodes" / "alice.json").read_text())
        assert config["keep_results_seconds"] == 6.0
        pid = node_pid(hive, "alice")
        out = hive.json(
            "submit", "hello", "--proposer", "alice", "--aggregators", "alice,bob",
            "--targets", "bob,carol", "--deadline", "20", "--json",
        )  # fmt: skip
        assert out["status"] == "complete", out
        comp_id = out["comp_id"]
        data = Path(config["data_dir"])
        final = result_path(data, comp_id)
        assert final.exists()

        def pruned() -> bool:
            db = sqlite3.connect(f"file:{data / 'local.db'}?mode=ro", uri=True)
            try:
                row = db.execute("SELECT 1 FROM results WHERE comp_id = ?", (comp_id,)).fetchone()
            finally:
                db.close()
            return row is None and not final.exists()

        wait_until(pruned, 40, "alice to prune the result and its final file", interval=0.5)
        assert node_pid(hive, "alice") == pid  # pruned while running, not at a restart

"""Replica sets (`replicas: N`) and packing (`runtime.nodes_per_process`): what the
loader accepts and refuses, what a set's name means on the command line, and what
the compiler makes of a packed hive. Pure: no process is started here (the
packed hive runs for real in tests/test_scale.py)."""

from __future__ import annotations

import json
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from test_compiler import SECURITY, _nkey, compile_

from beehive.topology import TopologyError, load_topology
from beehive.topology.layout import StateLayout
from beehive.topology.loader import topology_to_yaml

HIVE = """\
name: sim
handlers:
  q: {file: q.py}
nodes:
  queen: {role: heavy, handler: q}
  bee:   {role: light, handler: q, replicas: REPLICAS}
"""


@pytest.fixture
def write(tmp_path: Path):
    (tmp_path / "q.py").write_text("def handle(q):\n    return 1\n")

    def write(text: str) -> Path:
        path = tmp_path / "hive.yaml"
        path.write_text(textwrap.dedent(text))
        return path

    return write


def problem(path: Path) -> tuple[int | None, str | None, str]:
    with pytest.raises(TopologyError) as info:
        load_topology(path, env={})
    err = info.value
    return err.line, err.field, err.message


def test_a_replica_set_is_n_nodes_with_the_sets_role_and_handler(write):
    topo = load_topology(write(HIVE.replace("REPLICAS", "3")), env={})
    assert sorted(topo.nodes) == ["bee-1", "bee-2", "bee-3", "queen"]
    assert {topo.nodes[f"bee-{i}"].role for i in (1, 2, 3)} == {"light"}
    assert {topo.nodes[f"bee-{i}"].handler for i in (1, 2, 3)} == {"q"}
    assert topo.replica_sets() == {"bee": ["bee-1", "bee-2", "bee-3"]}
    assert topo.bound_nodes("q") == ["bee-1", "bee-2", "bee-3", "queen"]


def test_hive_config_shows_the_set_as_written_and_loads_back_the_same(write, tmp_path):
    topo = load_topology(write(HIVE.replace("REPLICAS", "250")), env={})
    text = topology_to_yaml(topo)
    assert "bee-1" not in text and "replicas: 250" in text
    again = tmp_path / "again.yaml"
    again.write_text(text)
    assert load_topology(again, env={}).nodes == topo.nodes


def test_a_sets_name_on_the_command_line_means_all_its_replicas(write):
    topo = load_topology(write(HIVE.replace("REPLICAS", "3")), env={})
    assert topo.expand(["queen", "bee"]) == ["queen", "bee-1", "bee-2", "bee-3"]
    # A replica named on its own, or twice, is one target.
    assert topo.expand(["bee-2", "bee"]) == ["bee-2", "bee-1", "bee-3"]
    assert topo.expand(["queen"]) == ["queen"]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("0", "greater than or equal to 1"),
        ("-2", "greater than or equal to 1"),
        ("'3'", "valid integer"),
        ("true", "valid integer"),
        ("2.5", "valid integer"),
        ("100001", "less than or equal to 10000"),
    ],
)
def test_bad_replica_counts_are_named_at_their_line(write, value, says):
    line, field, message = problem(write(HIVE.replace("REPLICAS", value)))
    assert (line, field) == (6, "nodes.bee.replicas")
    assert says in message


def test_a_replica_may_not_collide_with_a_declared_node(write):
    text = HIVE.replace("REPLICAS", "3") + "  bee-2: {role: light}\n"
    line, field, message = problem(write(text))
    assert (line, field) == (7, "nodes.bee-2")
    assert "'bee-2' is also a replica of 'bee'" in message and "rename" in message


def test_replica_names_longer_than_an_alias_may_be_are_refused(write):
    long = "b" * 31  # "b…b-1" is 33 characters
    line, field, message = problem(write(HIVE.replace("REPLICAS", "2").replace("bee:", f"{long}:")))
    assert (line, field) == (6, f"nodes.{long}.replicas")
    assert "longer than 32 characters" in message


def test_nodes_per_process_must_be_a_positive_integer(write):
    text = HIVE.replace("REPLICAS", "3") + "runtime: {nodes_per_process: 0}\n"
    line, field, message = problem(write(text))
    assert (line, field) == (7, "runtime.nodes_per_process")
    assert "greater than or equal to 1" in message


def test_packs_deal_sorted_nodes_in_turn_and_hold_at_most_k():
    aliases = [f"n{i:02}" for i in range(1, 11)]
    packs = StateLayout.node_processes(aliases, 4)
    assert list(packs) == ["pack-1", "pack-2", "pack-3"]
    assert packs["pack-1"] == ["n01", "n04", "n07", "n10"]
    assert sorted(a for nodes in packs.values() for a in nodes) == aliases
    assert max(len(nodes) for nodes in packs.values()) <= 4
    assert StateLayout.node_processes(aliases[:2], 1) == {"node-n01": ["n01"], "node-n02": ["n02"]}


def test_a_packed_hive_compiles_to_one_program_per_pack(write):
    text = HIVE.replace("REPLICAS", "7") + "runtime: {nodes_per_process: 3}\n"
    topo = load_topology(write(text), env={})
    keys = {alias: _nkey(i) for i, alias in enumerate(topo.nodes, 1)}
    plan = compile_(topo, security=replace(SECURITY, nkeys=keys))
    packs = [p for p in plan.programs if p.name.startswith("pack-")]
    assert [p.name for p in packs] == ["pack-1", "pack-2", "pack-3"]
    assert not [p for p in plan.programs if p.name.startswith("node-")]
    hosted = [a for p in packs for a in p.nodes]
    assert sorted(hosted) == sorted(topo.nodes)
    for program in packs:
        configs = [program.command[i + 1] for i, a in enumerate(program.command) if a == "--config"]
        layout = StateLayout(plan.state_dir)
        aliases = [json.loads(plan.artifact(layout.rel(Path(c))).content)["alias"] for c in configs]
        assert aliases == list(program.nodes)
        assert len(program.readiness.targets) == len(program.nodes)
    # Each node keeps its own config, key, store and socket.
    sockets = {t for p in packs for t in p.readiness.targets}
    assert len(sockets) == len(topo.nodes)

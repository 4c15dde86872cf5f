"""`hive graph`: the picture of a hive in SVG, dot and Mermaid, from the shipped
topologies and generated ones (a 1,000-replica set, an external server, a NATS
cluster), with a round's roles marked from a store written by the real Store.
No hive is started; one test starts a Python process (the import check)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from helpers import REPO, TEST_TOPOLOGY

from beehive.cli.main import cli
from beehive.core.models import Computation, ComputationResult
from beehive.flower.store import Store
from beehive.topology import load_topology
from beehive.topology.layout import StateLayout

FEDERATION = REPO / "topologies" / "federation.yaml"
SVG_NS = "{http://www.w3.org/2000/svg}"
FORMATS = ("svg", "dot", "mermaid")
FINISHED = "ab" * 16
OPEN = "ab" + "cd" * 15  # shares its first two digits with FINISHED


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["graph", *args])


def draw(topology: Path, fmt: str, *args: str) -> str:
    result = run("-f", str(topology), "--format", fmt, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def svg_texts(svg: str) -> list[str]:
    root = ET.fromstring(svg)  # well-formed, or this raises
    assert root.tag == f"{SVG_NS}svg"
    return [t.text or "" for t in root.iter(f"{SVG_NS}text")]


def dot_clusters(dot: str) -> dict[str, str]:
    """Each cluster's label → the text of its block (nested clusters included)."""
    found = {}
    for match in re.finditer(r"subgraph (cluster_\w+) \{\n\s+label=\"([^\"]*)\"", dot):
        found[match[2].split("\\n")[0]] = dot[match.start() :]
    return found


@pytest.fixture
def sim(tmp_path: Path) -> Path:
    """A generated hive: a queen and a replica set of 1,000 bees."""
    (tmp_path / "q.py").write_text("def handle(q):\n    return 1\n")
    path = tmp_path / "hive.yaml"
    path.write_text(
        "version: 1\nname: sim\nhandlers:\n  q: {file: q.py}\nnodes:\n"
        "  queen: {role: heavy, handler: q}\n"
        "  bee: {role: light, handler: q, replicas: 1000}\n"
    )
    return path


@pytest.mark.parametrize("topology", [TEST_TOPOLOGY, FEDERATION], ids=["test", "federation"])
def test_the_svg_is_well_formed_and_names_every_host_and_node(topology: Path):
    topo = load_topology(topology)
    texts = svg_texts(draw(topology, "svg"))
    for name in [*(topo.hosts or {"localhost": None}), *topo.nodes]:
        assert name in texts, name
    assert "query_length" in texts
    assert "nats-server" in texts


def test_the_svg_is_the_same_bytes_every_time():
    assert draw(FEDERATION, "svg") == draw(FEDERATION, "svg")


def test_the_readme_s_picture_is_what_hive_graph_draws_of_the_demo_today():
    """docs/hive-graph.svg is checked in for the README: it must not go stale."""
    shipped = (REPO / "docs" / "hive-graph.svg").read_text()
    assert shipped == draw(REPO / "topologies" / "demo.yaml", "svg"), (
        "regenerate it: hive graph -f topologies/demo.yaml -o docs/hive-graph.svg"
    )
    assert "docs/hive-graph.svg" in (REPO / "README.md").read_text()


def test_dot_has_a_cluster_per_host_and_per_role_inside_it():
    clusters = dot_clusters(draw(FEDERATION, "dot"))
    assert set(clusters) == {"hub", "clinic", "lab", "heavy · aggregator-capable", "light"}
    hub = clusters["hub"].split("subgraph cluster_host1")[0]
    assert 'label="alice"' in hub and 'label="bob"' in hub and "cylinder" in hub
    assert 'label="carol"' not in hub
    single = dot_clusters(draw(TEST_TOPOLOGY, "dot"))
    assert "localhost" in single
    heavy = single["heavy · aggregator-capable"].split("}")[0]
    assert all(f'label="{n}"' in heavy for n in ("alice", "bob", "charlie"))
    assert 'label="dave"' not in heavy


def test_mermaid_has_subgraphs_for_hosts_and_roles():
    text = draw(FEDERATION, "mermaid")
    assert text.splitlines()[3] == "flowchart TB"
    subgraphs = re.findall(r"^\s*subgraph (\w+) ", text, re.M)
    assert len(subgraphs) == 3 + 4  # hub, clinic, lab; heavy×2 (hub, clinic), light×2
    assert len(subgraphs) == len(re.findall(r"^\s*end$", text, re.M))
    for name in ("hub", "clinic", "lab", "alice", "bob", "carol", "dave", "erin"):
        assert f'"{name}' in text, name
    assert text.count("{{") == 3  # one query_length daemon on each host


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_thousand_replicas_are_one_shape(sim: Path, fmt: str):
    text = draw(sim, fmt)
    assert len(text) < 6000
    assert text.count("bee ×1000") == 1
    assert "bee-1" not in text
    assert "implicit host · 1,001 node(s)" in text
    if fmt == "svg":
        assert "bee ×1000" in svg_texts(text)


def test_an_external_server_is_one_shape_with_its_url_outside_every_host(tmp_path: Path):
    (tmp_path / "q.py").write_text("def handle(q):\n    return 1\n")
    path = tmp_path / "hive.yaml"
    path.write_text(
        "version: 1\nname: ext\nnats: {url: 'tls://nats.example.org:4222'}\n"
        "handlers:\n  q: {file: q.py}\nnodes:\n  a: {role: heavy, handler: q}\n"
    )
    dot = draw(path, "dot")
    assert dot.index("tls://nats.example.org:4222") < dot.index("subgraph cluster_")
    assert "tls://nats.example.org:4222" in svg_texts(draw(path, "svg"))


def test_a_nats_cluster_draws_each_server_and_their_routes(tmp_path: Path):
    (tmp_path / "q.py").write_text("def handle(q):\n    return 1\n")
    path = tmp_path / "hive.yaml"
    path.write_text(
        "version: 1\nname: cl\nhosts:\n  one: {address: 10.0.0.1}\n  two: {address: 10.0.0.2}\n"
        "nats: {host: one, cluster: [one, two]}\nhandlers:\n  q: {file: q.py}\nnodes:\n"
        "  a: {role: heavy, host: one, handler: q}\n  b: {role: light, host: two, handler: q}\n"
    )
    dot = draw(path, "dot")
    assert dot.count("shape=cylinder") == 2
    assert "nats0 -> nats1 [dir=none, style=dashed" in dot
    texts = svg_texts(draw(path, "svg"))
    assert {"10.0.0.1:4222", "10.0.0.2:4222"} <= set(texts)


@pytest.mark.parametrize(
    ("name", "starts"),
    [("p.svg", "<svg"), ("p.dot", "digraph"), ("p.gv", "digraph"), ("p.mmd", "---"),
     ("p.mermaid", "---"), ("picture", "<svg")],
)  # fmt: skip
def test_o_writes_the_file_in_the_format_its_suffix_says(tmp_path: Path, name: str, starts: str):
    out = tmp_path / name
    result = run("-f", str(TEST_TOPOLOGY), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith(starts)
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temp file left


def test_format_wins_over_the_suffix(tmp_path: Path):
    out = tmp_path / "p.svg"
    assert run("-f", str(TEST_TOPOLOGY), "--format", "dot", "-o", str(out)).exit_code == 0
    assert out.read_text().startswith("digraph")


def test_a_bad_format_is_refused_with_the_choices():
    result = run("-f", str(TEST_TOPOLOGY), "--format", "png")
    assert result.exit_code == 2
    assert "'png' is not one of 'svg', 'dot', 'mermaid'" in result.stderr


def test_an_unwritable_output_is_a_clear_error(tmp_path: Path):
    result = run("-f", str(TEST_TOPOLOGY), "-o", str(tmp_path / "no" / "such" / "p.svg"))
    assert result.exit_code == 1
    assert "-o " in result.stderr and "p.svg" in result.stderr


def store_round(state: Path, proposer: str, aggregators: list[str], targets: list[str]) -> None:
    """What the proposer's node keeps: a finished round's result and an open round's
    signed spec, written by the real Store as proposer.py writes them."""
    layout = StateLayout(state)
    layout.store(proposer).parent.mkdir(parents=True)
    store = Store(layout.store(proposer))
    store.save_result(
        ComputationResult(
            comp_id=FINISHED,
            status="partial",
            result=7,
            contributors=targets[:-1],
            missing=targets[-1:],
            proposer=proposer,
            aggregators=aggregators,
            finished_at=time.time(),
        )
    )
    comp = Computation(
        comp_id=OPEN, query="q", proposer=proposer, aggregators=aggregators, targets=targets
    )
    spec = comp.model_dump_json(exclude={"node"}).encode()
    store.begin_round("proposer", OPEN, spec, b"sig", {}, comp.expires_at)
    store.close()


@pytest.mark.parametrize("comp_id", [FINISHED, OPEN[:6]], ids=["finished", "open-by-prefix"])
def test_round_marks_its_proposer_and_aggregators(tmp_path: Path, comp_id: str):
    store_round(tmp_path / "state", "alice", ["alice", "bob"], ["charlie", "dave", "eve"])
    args = ("--state-dir", str(tmp_path / "state"), "--round", comp_id)
    svg = draw(TEST_TOPOLOGY, "svg", *args)
    texts = svg_texts(svg)
    assert "proposer · aggregator" in texts and texts.count("target") == 3
    assert any(t.startswith(f"round {comp_id[:6]}") for t in texts)
    assert svg.count('class="node heavy proposer"') == 1
    assert svg.count('class="node heavy aggregator"') == 1  # bob; alice shows proposer
    dot = draw(TEST_TOPOLOGY, "dot", *args)
    assert 'label="alice\\nproposer · aggregator"' in dot and dot.count("penwidth=3") == 2
    assert "class node0 proposer" in draw(TEST_TOPOLOGY, "mermaid", *args)


def test_round_on_a_replica_set_counts_its_replicas(sim: Path, tmp_path: Path):
    bees = [f"bee-{i}" for i in range(1, 1001)]
    store_round(tmp_path / "state", "queen", ["queen", "bee-1"], bees)
    text = draw(sim, "svg", "--state-dir", str(tmp_path / "state"), "--round", FINISHED)
    assert "aggregator ×1 · target ×1000" in svg_texts(text)
    assert len(text) < 6000


def test_an_unknown_round_fails_naming_it_and_writes_nothing(tmp_path: Path):
    store_round(tmp_path / "state", "alice", ["alice", "bob"], ["charlie", "dave"])
    out = tmp_path / "p.svg"
    out.write_text("the old picture")
    state = ("-f", str(TEST_TOPOLOGY), "--state-dir", str(tmp_path / "state"))
    result = run(*state, "--round", "ffff", "-o", str(out))
    assert result.exit_code == 1
    assert "--round ffff: no round with that id" in result.stderr
    assert out.read_text() == "the old picture"
    empty = run("-f", str(TEST_TOPOLOGY), "--state-dir", str(tmp_path / "none"), "--round", "ab")
    assert empty.exit_code == 1 and "--round ab" in empty.stderr


def test_an_ambiguous_or_empty_round_is_refused(tmp_path: Path):
    store_round(tmp_path / "state", "alice", ["alice", "bob"], ["charlie", "dave"])
    state = ("-f", str(TEST_TOPOLOGY), "--state-dir", str(tmp_path / "state"))
    result = run(*state, "--round", "ab")
    assert result.exit_code == 1
    assert "--round ab: ambiguous, 2 rounds" in result.stderr and FINISHED in result.stderr
    result = run(*state, "--round", "")
    assert result.exit_code == 1 and "--round: empty" in result.stderr


def test_the_command_module_imports_no_heavy_module():
    code = (
        "import sys, beehive.cli.graph; "
        "heavy = [m for m in ('pydantic', 'beehive.topology.schema', 'beehive.orchestrator', "
        "'sqlite3') if m in sys.modules]; print(heavy)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"

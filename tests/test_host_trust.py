"""Multi-host trust without processes: the topology's hosts, `hive keys`, `hive
trust sign` and what `hive up --host` admits (real keys, real files, real crypto).

The running side (namespaces, rounds, a host killed) is tests/test_multi_host.py.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from beehive.orchestrator.trust import (
    NotAdmitted,
    TrustSignError,
    admit_host,
    make_host_keys,
    sign_trust,
)
from beehive.security.host_keys import HostKeys
from beehive.topology import TopologyError, load_topology
from beehive.topology.layout import TrustLayout

HANDLER = Path(__file__).resolve().parent.parent / "handlers" / "query_length.py"


def write_topology(folder: Path, *, extra_node: bool = False, **changes: object) -> Path:
    doc: dict = {
        "version": 1,
        "name": "fed",
        "hosts": {"hub": {"address": "10.9.0.1"}, "clinic": {"address": "10.9.0.2"}},
        "nats": {"host": "hub", "port": 4222},
        "handlers": {"q": {"file": str(HANDLER)}},
        "nodes": {
            "alice": {"role": "heavy", "host": "hub", "handler": "q"},
            "bob": {"role": "heavy", "host": "hub", "handler": "q"},
            "dave": {"role": "light", "host": "clinic", "handler": "q"},
        },
    }
    if extra_node:
        doc["nodes"]["eve"] = {"role": "light", "host": "clinic", "handler": "q"}
    doc.update(changes)
    path = folder / "hive.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def signed(tmp_path: Path):
    """keys on both hosts, then the operator's signature: the normal order."""
    file = write_topology(tmp_path)
    topo, trust = load_topology(file), TrustLayout.beside(file)
    states = {h: tmp_path / "states" / h for h in ("hub", "clinic")}
    for host, state in states.items():
        make_host_keys(topo, host, state, trust)
    sign_trust(topo, trust, tmp_path / "operator")
    return topo, trust, states, tmp_path


# ── the topology ────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("node", "nats", "message", "line"),
    [
        ({"role": "light", "host": "lab"}, None, "names host 'lab', which is not declared", 8),
        ({"role": "light"}, None, "has no host", 8),
        ({"role": "light", "host": "hub"}, {"host": "10.0.0.1"}, "nats.host '10.0.0.1'", 4),
    ],
)
def test_host_errors_name_the_line(
    tmp_path: Path, node: dict, nats: dict | None, message: str, line: int
) -> None:
    text = [
        "version: 1",
        "name: fed",
        "nats:",
        f"  host: {(nats or {}).get('host', 'hub')}",
        "hosts:",
        "  hub: {address: 10.0.0.1}",
        "nodes:",
        f"  dave: {json.dumps(node)}",
        "  alice: {role: heavy, host: hub}",
    ]
    file = tmp_path / "hive.yaml"
    file.write_text("\n".join(text) + "\n")
    with pytest.raises(TopologyError) as caught:
        load_topology(file)
    assert message in str(caught.value)
    assert caught.value.line == line, str(caught.value)


def test_the_federation_example_loads() -> None:
    topo = load_topology(HANDLER.parent.parent / "topologies" / "federation.yaml")
    assert topo.nats_hosts() == ["hub"] and topo.nodes_on("lab") == ["erin"]


def test_a_topology_without_hosts_refuses_host_fields(tmp_path: Path) -> None:
    file = tmp_path / "hive.yaml"
    file.write_text("version: 1\nname: solo\nnodes:\n  alice: {role: heavy, host: hub}\n")
    with pytest.raises(TopologyError, match="declares no hosts") as caught:
        load_topology(file)
    assert caught.value.line == 4


# ── hive keys ───────────────────────────────────────────────────────────────


def test_keys_are_made_once_and_publish_only_public_halves(tmp_path: Path) -> None:
    file = write_topology(tmp_path)
    topo, trust = load_topology(file), TrustLayout.beside(file)
    state = tmp_path / "hub-state"
    first = make_host_keys(topo, "hub", state, trust)
    assert first.changed and "keys/alice.key" in first.generated
    published = first.host_file.read_bytes()
    again = make_host_keys(topo, "hub", state, trust)
    assert not again.changed and again.generated == []
    assert first.host_file.read_bytes() == published  # deterministic proofs: same bytes
    for key in (state / "keys").iterdir():
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((state / "tls" / "server.key").stat().st_mode) == 0o600
    host = HostKeys.load(first.host_file)
    assert host.problems() == [] and sorted(host.nodes) == ["alice", "bob"]
    assert host.nats is not None and host.nats.admin_nkey is not None
    private = json.loads((state / "keys" / "alice.key").read_text())["signing_key"]
    assert private not in published.decode() and b"PRIVATE" not in published


def test_a_state_folder_serves_one_host(tmp_path: Path) -> None:
    file = write_topology(tmp_path)
    topo, trust = load_topology(file), TrustLayout.beside(file)
    make_host_keys(topo, "hub", tmp_path / "state", trust)
    with pytest.raises(Exception, match="state folder of"):
        make_host_keys(topo, "clinic", tmp_path / "state", trust)


# ── hive trust sign ─────────────────────────────────────────────────────────


def test_sign_names_every_problem_and_writes_nothing(tmp_path: Path) -> None:
    file = write_topology(tmp_path)
    topo, trust = load_topology(file), TrustLayout.beside(file)
    make_host_keys(topo, "hub", tmp_path / "hub", trust)
    # A stray host file, and hub's file edited after `hive keys`.
    (trust.hosts_dir / "lab.json").write_text("{}")
    doc = json.loads(trust.host_file("hub").read_text())
    doc["nodes"]["bob"]["hpke_key"] = doc["nodes"]["alice"]["hpke_key"]
    trust.host_file("hub").write_text(json.dumps(doc))
    with pytest.raises(TrustSignError) as caught:
        sign_trust(topo, trust, tmp_path / "operator")
    text = str(caught.value)
    assert "missing" in text and "clinic.json" in text and "hive keys --host clinic" in text
    assert "lab.json" in text and "not declared" in text
    assert "bob: the proof by its signing key does not verify" in text
    assert not trust.directory_json.exists() and not (tmp_path / "operator").exists()


def test_sign_refuses_keys_published_by_the_wrong_host(tmp_path: Path) -> None:
    file = write_topology(tmp_path)
    topo, trust = load_topology(file), TrustLayout.beside(file)
    make_host_keys(topo, "hub", tmp_path / "hub", trust)
    make_host_keys(topo, "clinic", tmp_path / "clinic", trust)
    moved = write_topology(tmp_path, nodes={**topo.model_dump()["nodes"]})
    doc = yaml.safe_load(moved.read_text())
    doc["nodes"]["bob"]["host"] = "clinic"  # bob moved, but its keys are still hub's
    moved.write_text(yaml.safe_dump(doc))
    with pytest.raises(TrustSignError) as caught:
        sign_trust(load_topology(moved), trust, tmp_path / "operator")
    assert "keys for bob, which the topology does not place on hub" in str(caught.value)
    assert "no keys for bob (placed on clinic" in str(caught.value)


def test_sign_twice_changes_nothing(signed) -> None:
    topo, trust, _, tmp = signed
    before = {p: p.read_bytes() for p in trust.root.rglob("*") if p.is_file()}
    assert sign_trust(topo, trust, tmp / "operator").written == []
    assert {p: p.read_bytes() for p in trust.root.rglob("*") if p.is_file()} == before
    assert not list((tmp / "operator").rglob("*.nk"))  # the operator holds no node key


# ── hive up --host: admission ───────────────────────────────────────────────


def test_admission_pins_the_operator_and_refuses_another(signed) -> None:
    topo, trust, states, tmp = signed
    admitted = admit_host(topo, "clinic", states["clinic"], trust)
    assert admitted.pins and sorted(admitted.directory) == ["alice", "bob", "dave"]
    assert admitted.material.tls is None and admitted.material.ca_file is not None
    states["clinic"].joinpath("operator.pub").write_text(admitted.operator_key + "\n")
    sign_trust(topo, trust, tmp / "another-operator")  # someone else signs trust/
    with pytest.raises(NotAdmitted, match="--pin-operator"):
        admit_host(topo, "clinic", states["clinic"], trust)
    again = hive(
        "trust", "sign", "-f", str(tmp / "hive.yaml"), "--state-dir", str(tmp / "another-operator"),
        "--json",
    )  # fmt: skip
    new = json.loads(again.stdout)
    repinned = admit_host(topo, "clinic", states["clinic"], trust, pin_operator=new["fingerprint"])
    assert repinned.pins and repinned.operator_key != admitted.operator_key


def test_admission_refuses_a_tampered_directory(signed) -> None:
    topo, trust, states, _ = signed
    doc = json.loads(trust.directory_json.read_text())
    doc["roles"]["dave"] = "heavy"
    trust.directory_json.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    for host in ("hub", "clinic"):
        with pytest.raises(NotAdmitted, match="refused"):
            admit_host(topo, host, states[host], trust)


def test_admission_refuses_keys_that_are_not_the_signed_ones(signed) -> None:
    topo, trust, states, _ = signed
    make_host_keys(topo, "clinic", states["clinic"], trust, rotate=["dave"])  # not yet signed
    with pytest.raises(NotAdmitted, match=r"dave: .* holds signing key"):
        admit_host(topo, "clinic", states["clinic"], trust)


def test_admission_refuses_a_topology_changed_since_signing(signed) -> None:
    _, trust, states, tmp = signed
    changed = load_topology(write_topology(tmp, extra_node=True))
    with pytest.raises(NotAdmitted, match="node eve is in the topology but not signed"):
        admit_host(changed, "hub", states["hub"], trust)


# ── the CLI ─────────────────────────────────────────────────────────────────


def hive(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "beehive.cli.main", *args], capture_output=True, text=True
    )


def test_cli_says_which_host_and_what_to_run(tmp_path: Path) -> None:
    file = write_topology(tmp_path)
    up = hive("up", str(file))
    assert up.returncode == 1 and "spans hosts" in up.stderr and "--host" in up.stderr
    unsigned = hive("up", str(file), "--host", "hub", "--state-dir", str(tmp_path / "s"))
    assert unsigned.returncode == 1 and "hive trust sign" in unsigned.stderr
    assert "Traceback" not in unsigned.stderr + up.stderr
    solo = tmp_path / "solo.yaml"
    solo.write_text("version: 1\nname: solo\nnodes:\n  a: {role: heavy}\n")
    keys = hive("keys", "-f", str(solo), "--host", "hub")
    assert keys.returncode == 1 and "declares no hosts" in keys.stderr
    sign = hive("trust", "sign", "-f", str(solo))
    assert sign.returncode == 1 and "declares no hosts" in sign.stderr

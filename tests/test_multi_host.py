"""Multi-host hives on real processes: each host a network namespace.

Every host runs its own `hive keys --host` and `hive up --host` inside its own
namespace, with its own state folder; the operator runs `hive trust sign` in
the root namespace, reading only the topology folder (the git checkout) and
its own state folder. What is shared is exactly what would be in git.

Without `ip netns` (not root), tests/netns.py falls back to loopback addresses
(127.0.0.x) and says so in the test report; CI runs as root and uses namespaces.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from helpers import free_port, pid_alive, wait_until
from netns import HostNet, Network

from beehive.core.dispatch import PENDING_SUFFIX

HANDLER = '''\
"""Test handler: the length of the query; a query containing "slow" first waits
3 s, so a test can act while the answer is being computed."""
import time

from beehive import Computation, handler


@handler
def answer(comp: Computation) -> int:
    if "slow" in comp.query:
        time.sleep(3)
    return len(comp.query)
'''

#: host → its nodes (alias → role). hub also runs the nats-server.
PLACEMENT = {
    "hub": {"alice": "heavy", "bob": "heavy"},
    "clinic": {"carol": "heavy", "dave": "light"},
    "lab": {"erin": "light"},
}


def topology_doc(
    net: Network, placement: dict[str, dict[str, str]], port: int, name: str = "fed", **nats
) -> dict:
    return {
        "version": 1,
        "name": name,
        "hosts": {h: {"address": net.hosts[h].address} for h in placement},
        "nats": {"host": "hub", "port": port, **nats},
        "defaults": {"deadline": 20},
        "handlers": {"answer": {"file": "answer.py", "timeout": 10}},
        "nodes": {
            alias: {"role": role, "host": host, "handler": "answer"}
            for host, nodes in placement.items()
            for alias, role in nodes.items()
        },
    }


def hive_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "beehive.cli.main", *args]


@dataclass
class Host:
    """`hive` run on one host: inside its namespace, on its own state folder."""

    net: HostNet
    topology: Path
    state: Path
    env: dict[str, str]

    @property
    def name(self) -> str:
        return self.net.name

    def run(
        self, *args: str, check: bool = True, timeout: float = 120, topology: Path | None = None
    ):
        argv = hive_argv(
            args[0],
            "-f",
            str(topology or self.topology),
            "--state-dir",
            str(self.state),
            "--host",
            self.name,
            *args[1:],
        )
        proc = subprocess.run(
            self.net.wrap(argv), capture_output=True, text=True, env=self.env, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"[{self.name}] {' '.join(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def up(self, **kw):
        return self.run("up", "--timeout", "60", **kw)

    def start_up(self) -> subprocess.Popen:
        """`hive up` in the background (cluster servers come up together)."""
        argv = hive_argv(
            "up", "-f", str(self.topology), "--state-dir", str(self.state), "--host", self.name,
            "--timeout", "90",
        )  # fmt: skip
        return subprocess.Popen(
            self.net.wrap(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=self.env,
        )  # fmt: skip

    def status(self) -> dict:
        return json.loads(self.run("status", "--json", check=False).stdout)

    def pids(self) -> dict[str, int]:
        """program → pid of what this host's supervisord runs."""
        return {p["name"]: p["pid"] for p in self.status()["processes"] if p["pid"]}

    def all_pids(self) -> list[int]:
        pids = list(self.pids().values())
        pidfile = self.state / "run" / "supervisord.pid"
        if pidfile.exists():
            pids.append(int(pidfile.read_text()))
        return pids

    def down(self) -> None:
        pids = self.all_pids() if (self.state / "run" / "supervisord.sock").exists() else []
        self.run("down", check=False)
        wait_until(lambda: not any(pid_alive(p) for p in pids), 20, f"{self.name}'s processes")

    def kill(self) -> list[int]:
        """Unplug the host: SIGKILL every process it runs, at once."""
        if self.net.netns is not None:
            return self.net.kill_all()
        pids = self.all_pids()  # loopback fallback: what its supervisord runs
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not any(pid_alive(p) for p in pids), 10, f"{self.name} killed")
        return pids


class Federation:
    """A topology folder (the git checkout), the operator's folder and one Host each."""

    def __init__(self, root: Path, net: Network, doc: dict) -> None:
        self.root, self.net = root, net
        self.folder = root / "checkout"
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "answer.py").write_text(HANDLER)
        self.topology = self.folder / "hive.yaml"
        self.operator = root / "operator"
        self.env = {
            k: v for k, v in os.environ.items() if k not in ("BEEHIVE_STATE_DIR", "HIVE_HOST")
        }
        self.hosts: dict[str, Host] = {}
        self.write(doc)

    def write(self, doc: dict) -> None:
        self.doc = doc
        self.topology.write_text(yaml.safe_dump(doc, sort_keys=False))
        for name in doc["hosts"]:
            if name not in self.hosts:
                self.hosts[name] = Host(
                    self.net.hosts[name], self.topology, self.root / "hosts" / name, self.env
                )

    def sign(
        self,
        *extra: str,
        check: bool = True,
        folder: Path | None = None,
        operator: Path | None = None,
    ):
        topology = (folder or self.folder) / "hive.yaml"
        argv = hive_argv(
            "trust",
            "sign",
            "-f",
            str(topology),
            "--state-dir",
            str(operator or self.operator),
            *extra,
        )
        proc = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"trust sign exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def provision(self) -> None:
        """keys on every host, the operator's signature, then up on every host."""
        for host in self.hosts.values():
            host.run("keys")
        self.sign()
        for host in self.hosts.values():
            host.up()

    def submit(
        self, on: str, query: str, proposer: str, aggregators: str, targets: str, *extra: str
    ) -> dict:
        proc = self.hosts[on].run(
            "submit", query, "--proposer", proposer, "--aggregators", aggregators,
            "--targets", targets, "--json", *extra, check=False,
        )  # fmt: skip
        assert proc.stdout.strip(), proc.stderr
        return json.loads(proc.stdout)

    def down(self) -> None:
        for host in self.hosts.values():
            host.down()


@pytest.fixture(scope="module")
def net() -> Iterator[Network]:
    with Network(list(PLACEMENT)) as network:
        if network.mode == "loopback":
            print("multi-host tests: no network namespaces here, hosts are 127.0.0.x addresses")
        yield network


@pytest.fixture(scope="module")
def fed(net: Network, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    federation = Federation(
        tmp_path_factory.mktemp("mh"), net, topology_doc(net, PLACEMENT, free_port())
    )
    try:
        federation.provision()
        yield federation
    finally:
        federation.down()


ALL = "alice,bob,carol,dave,erin"


def test_rounds_across_hosts_give_exact_totals(fed: Federation) -> None:
    """Proposed from the hub and from a participant host; carol (on clinic)
    aggregates shares that come from hub and lab."""
    q = "how many records mention the term?"
    from_hub = fed.submit("hub", q, "alice", "alice,carol", ALL)
    assert from_hub["status"] == "complete", from_hub
    assert from_hub["result"] == 5 * len(q)
    from_clinic = fed.submit("clinic", q + "!", "dave", "carol,bob", ALL)
    assert from_clinic["status"] == "complete", from_clinic
    assert from_clinic["result"] == 5 * len(q + "!")
    assert sorted(from_clinic["contributors"]) == sorted(ALL.split(","))
    # The result lives on the proposer's host only.
    results = json.loads(fed.hosts["clinic"].run("results", "--json").stdout)
    assert [r["comp_id"] for r in results] == [from_clinic["comp_id"]]


def test_up_refuses_a_host_that_cannot_work(
    net: Network, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Signed, but the server host is not up yet: a participant refuses (nothing
    started, saying to start the hub first); and the hub's share started on
    another machine (here: clinic's namespace) refuses its foreign address."""
    placement = {"hub": PLACEMENT["hub"], "clinic": PLACEMENT["clinic"]}
    early = Federation(
        tmp_path_factory.mktemp("early"), net, topology_doc(net, placement, free_port(), "early")
    )
    for host in early.hosts.values():
        host.run("keys")
    early.sign()
    clinic = early.hosts["clinic"]
    proc = clinic.run("up", check=False)
    assert proc.returncode == 1 and "cannot reach the NATS server" in proc.stderr, proc.stderr
    assert "hive up --host hub" in proc.stderr
    assert not (clinic.state / "run" / "supervisord.sock").exists()
    if net.mode == "netns":  # loopback addresses are every host's: nothing to refuse
        hub = early.hosts["hub"]
        argv = ["up", "-f", str(early.topology), "--state-dir", str(hub.state), "--host", "hub"]
        proc = subprocess.run(  # hub's share, started inside clinic's namespace
            net.hosts["clinic"].wrap(hive_argv(*argv)),
            capture_output=True,
            text=True,
            env=early.env,
        )
        assert proc.returncode == 1 and "not an address of this machine" in proc.stderr
        assert not (hub.state / "run" / "supervisord.sock").exists()


def _private_material(state: Path) -> list[str]:
    """Every private key in a state folder, as the strings a leak would contain."""
    found = []
    keys = state / "keys"
    for path in keys.glob("*.key") if keys.is_dir() else []:
        doc = json.loads(path.read_text())
        found += [v for k, v in doc.items() if k.endswith("key") and isinstance(v, str)]
    for path in keys.glob("*.nk") if keys.is_dir() else []:
        found.append(path.read_text().strip())
    for path in (state / "tls").glob("*.key") if (state / "tls").is_dir() else []:
        body = "".join(path.read_text().splitlines()[1:-1])
        found.append(body[:64])
    return found


def _texts(folder: Path) -> Iterator[tuple[Path, str]]:
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            yield path, path.read_bytes().decode("latin-1")


def test_no_private_key_leaves_its_host(fed: Federation) -> None:
    seed = re.compile(r"\bS[UAONC][A-Z2-7]{50,}")
    for path, text in _texts(fed.folder):
        assert "PRIVATE KEY" not in text, path
        assert not seed.search(text), f"an nkey seed in {path}"
    secrets = {name: _private_material(h.state) for name, h in fed.hosts.items()}
    secrets["operator"] = _private_material(fed.operator)
    assert all(secrets.values()) and len(secrets["hub"]) >= 6
    everywhere = {name: h.state for name, h in fed.hosts.items()} | {"operator": fed.operator}
    for owner, material in secrets.items():
        for where, folder in [("checkout", fed.folder), *everywhere.items()]:
            if where == owner:
                continue
            for path, text in _texts(folder):
                leaked = [m for m in material if m in text]
                assert not leaked, f"{owner}'s private key material found in {path}"
    # Each host's keys folder names only its own nodes (and the server host its admin).
    for name, host in fed.hosts.items():
        own = {f"{a}.key" for a in PLACEMENT[name]} | {f"{a}.nk" for a in PLACEMENT[name]}
        own |= {"_admin.nk"} if name == "hub" else set()
        assert {p.name for p in (host.state / "keys").iterdir()} == own


def _copy_checkout(fed: Federation, name: str) -> Path:
    copy = fed.root / name
    shutil.copytree(fed.folder, copy)
    return copy


def test_tampered_or_foreign_directory_is_refused_by_every_host(fed: Federation) -> None:
    before = {name: h.pids() for name, h in fed.hosts.items()}
    tampered = _copy_checkout(fed, "tampered")
    directory = tampered / "trust" / "directory.json"
    doc = json.loads(directory.read_text())
    doc["roles"]["erin"] = "heavy"  # a light node promoted after signing
    directory.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    foreign = _copy_checkout(fed, "foreign")
    fed.sign(folder=foreign, operator=fed.root / "other-operator")  # another operator key
    for host in fed.hosts.values():
        proc = host.run("up", check=False, topology=tampered / "hive.yaml")
        assert proc.returncode == 1, proc.stdout
        assert "refused" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        proc = host.run("up", check=False, topology=foreign / "hive.yaml")
        assert proc.returncode == 1, proc.stdout
        assert "pinned" in proc.stderr and "--pin-operator" in proc.stderr, proc.stderr
    assert {name: h.pids() for name, h in fed.hosts.items()} == before  # nothing restarted


def test_host_killed_mid_round_gives_partial_then_serves_again(fed: Federation) -> None:
    lab, hub = fed.hosts["lab"], fed.hosts["hub"]
    pending = lab.state / "data" / "erin" / "computation"
    argv = hive_argv(
        "submit", "slow question", "-f", str(fed.topology), "--state-dir", str(hub.state),
        "--host", "hub", "--proposer", "alice", "--aggregators", "alice,carol",
        "--targets", ALL, "--deadline", "8", "--json",
    )  # fmt: skip
    with subprocess.Popen(
        hub.net.wrap(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=fed.env
    ) as submit:
        wait_until(lambda: list(pending.glob(f"*{PENDING_SUFFIX}")), 15, "erin to get the task")
        assert lab.kill()
        out, err = submit.communicate(timeout=60)
    result = json.loads(out or "{}")
    assert result.get("status") == "partial", (result, err)
    assert result["missing"] == ["erin"]
    assert result["result"] == 4 * len("slow question")
    lab.up()
    again = fed.submit("hub", "are you back?", "alice", "alice,carol", ALL)
    assert again["status"] == "complete", again
    assert again["result"] == 5 * len("are you back?")


def test_adding_a_host_is_adopted_live(fed: Federation) -> None:
    annex = fed.net.add_host("annex")
    before = {name: h.pids() for name, h in fed.hosts.items()}
    placement = {**PLACEMENT, "annex": {"gina": "light"}}
    doc = topology_doc(fed.net, placement, fed.doc["nats"]["port"])
    fed.write(doc)
    assert fed.hosts["annex"].net is annex
    fed.hosts["annex"].run("keys")
    fed.sign()
    for host in fed.hosts.values():
        host.up()
    after = {name: h.pids() for name, h in fed.hosts.items() if name in before}
    assert after == before, "an unchanged program was restarted"
    targets = ALL + ",gina"
    result = fed.submit("annex", "hello from the annex", "gina", "alice,carol", targets)
    assert result["status"] == "complete", result
    assert result["result"] == 6 * len("hello from the annex")


def test_cluster_of_three_survives_a_server_killed_mid_round(
    net: Network, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """nats.cluster [hub, clinic, lab]: three servers joined by routes, the stream
    on all three. clinic's server dies while the round is in flight; its nodes
    (carol aggregates) fail over to the others and the total is exact."""
    doc = topology_doc(
        net, PLACEMENT, free_port(), "cfed", cluster=list(PLACEMENT), cluster_port=free_port()
    )
    cluster = Federation(tmp_path_factory.mktemp("cluster"), net, doc)
    try:
        for host in cluster.hosts.values():
            host.run("keys")
        cluster.sign()
        ups = {name: host.start_up() for name, host in cluster.hosts.items()}
        for name, proc in ups.items():
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0, f"{name}: {out}"
        conf = (cluster.hosts["clinic"].state / "nats" / "nats-server.conf").read_text()
        assert "routes" in conf and net.hosts["hub"].address in conf
        first = cluster.submit("hub", "warm up", "alice", "alice,carol", ALL)
        assert first["status"] == "complete", first
        clinic, hub = cluster.hosts["clinic"], cluster.hosts["hub"]
        nats_pid = clinic.pids()["nats"]
        pending = clinic.state / "data" / "dave" / "computation"
        argv = hive_argv(
            "submit", "slow cluster question", "-f", str(cluster.topology),
            "--state-dir", str(hub.state), "--host", "hub", "--proposer", "alice",
            "--aggregators", "alice,carol", "--targets", ALL, "--json",
        )  # fmt: skip
        with subprocess.Popen(
            hub.net.wrap(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cluster.env,
        ) as submit:
            wait_until(lambda: list(pending.glob(f"*{PENDING_SUFFIX}")), 15, "dave's task")
            os.kill(nats_pid, signal.SIGKILL)
            out, err = submit.communicate(timeout=60)
        result = json.loads(out or "{}")
        assert result.get("status") == "complete", (result, err)
        assert result["result"] == 5 * len("slow cluster question")
    finally:
        cluster.down()

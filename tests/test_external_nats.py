"""`nats: {url: …}`: the hive uses a NATS server it did not start, and starts none.

The "external" server here is a real nats-server (JetStream on, no auth) that the
test starts itself on a free port and stops by its handle.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO, free_port, make_hive_env, running_hive, wait_until

from beehive.orchestrator.prepare import find_nats_server


def accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def external_nats(short_tmp: Path) -> Iterator[int]:
    port = free_port()
    server = subprocess.Popen(
        [find_nats_server(), "-js", "-sd", str(short_tmp / "js"), "-a", "127.0.0.1",
         "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: accepts(port), 10, "the external nats-server to listen")
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_hive_on_an_external_server_answers_and_runs_no_server_of_its_own(
    short_tmp: Path, external_nats: int
) -> None:
    topology = short_tmp / "hive.yaml"
    topology.write_text(
        "version: 1\nname: ext\n"
        f'nats: {{url: "nats://127.0.0.1:{external_nats}"}}\n'
        f"handlers:\n  ql: {{file: {REPO / 'handlers' / 'query_length.py'}}}\n"
        "nodes:\n"
        "  alice: {role: heavy, handler: ql}\n  bob: {role: heavy, handler: ql}\n"
        "  dave: {role: light, handler: ql}\n  eve: {role: light, handler: ql}\n"
    )
    with running_hive(short_tmp / "state", make_hive_env(), topology) as hive:
        status = hive.json("status", "--json")
        assert "nats" not in {p["name"] for p in status["processes"]}
        result = hive.json(
            "submit", "What is your secret value", "--proposer", "alice",
            "--aggregators", "alice,bob", "--targets", "dave,eve", "--json",
        )  # fmt: skip
        assert (result["status"], result["result"]) == ("complete", 50)
        assert not (hive.state_dir / "nats" / "nats-server.conf").exists()
        final = hive.state_dir / "data" / "alice" / f"final_{result['comp_id']}.json"
        assert json.loads(final.read_text())["result"] == 50

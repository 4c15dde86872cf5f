"""Key changes and FATAL programs, against a real hive (issue 9, finding F12).

A node's key file replaced behind `hive up`'s back must not be re-signed into the
directory silently (the running node keeps the key it loaded, so it would fail
every decryption while reported ready): `hive up` and `hive plan` refuse, naming
the node, and `hive up --rotate-keys` gives it new keys and restarts it. And a
program supervisord gave up on (FATAL) is started again by `hive up`.

Each test brings up its own hive: both change it.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from helpers import HiveCLI, wait_until

from beehive.orchestrator import supervisor
from beehive.orchestrator.prepare import fingerprint
from beehive.security import Directory, Identity, PublicIdentity
from beehive.security.operator import load_signed_directory

QUERY = "What is your secret value"  # query_length answers 25 per target
SIGNED = ("directory.json", "directory.sig")


def signed_directory(hive: HiveCLI) -> Directory:
    """directory.json, only if it verifies against the operator key the nodes pin."""
    cfg = json.loads((hive.state_dir / "nodes" / "bob.json").read_text())
    return load_signed_directory(
        hive.state_dir / "directory.json", hive.state_dir / "directory.sig", cfg["operator_key"]
    )


def programs(hive: HiveCLI) -> dict[str, supervisor.ProcessInfo]:
    return {p.name: p for p in supervisor.processes(hive.state_dir)}


def error_text(stderr: str) -> str:
    """The error a command printed, without `hive up`'s progress lines before it."""
    assert "error:" in stderr, stderr
    return stderr[stderr.index("error:") :]


def assert_refused(proc, *needles: str) -> str:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    text = error_text(proc.stderr)
    for needle in needles:
        assert needle in text, (needle, text)
    return text


def test_a_replaced_key_file_is_refused_until_rotated(test_hive: HiveCLI) -> None:
    hive, state = test_hive, test_hive.state_dir
    key, nkey = state / "keys" / "eve.key", state / "keys" / "eve.nk"
    pinned: PublicIdentity = signed_directory(hive)["eve"]
    signed_before = {name: (state / name).read_bytes() for name in SIGNED}
    before = programs(hive)

    # Someone replaces eve's key file with a fresh identity of their own.
    key.unlink()
    Identity.generate("eve").save(key)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    planted = Identity.load(key).public()
    planted_bytes = key.read_bytes()

    needles = (
        "eve",
        str(key),
        "hive up --rotate-keys eve",
        "restore",
        f"signing key {fingerprint(pinned.signing_key)}",
        fingerprint(planted.signing_key),
        f"encryption key {fingerprint(pinned.hpke_key)}",
        fingerprint(planted.hpke_key),
    )
    up = assert_refused(hive.run("up", "--timeout", "60", check=False), *needles)
    plan = assert_refused(hive.run("plan", check=False), *needles)
    assert up == plan  # the same refusal, word for word
    assert "alice" not in up and "dave" not in up  # only the changed node is named

    # Nothing was written, re-signed or restarted.
    assert {name: (state / name).read_bytes() for name in SIGNED} == signed_before
    assert key.read_bytes() == planted_bytes
    now = programs(hive)
    assert now["node-eve"].pid == before["node-eve"].pid
    assert now["node-eve"].state == "RUNNING"

    # --rotate-keys refuses an alias the topology does not declare, rotating nothing.
    unknown = hive.run("up", "--rotate-keys", "eve,mallory", check=False)
    assert_refused(unknown, "--rotate-keys: unknown node(s) mallory")
    assert key.read_bytes() == planted_bytes
    assert {name: (state / name).read_bytes() for name in SIGNED} == signed_before

    # The intended change: eve gets NEW keys (not the planted ones), pinned, signed,
    # and node-eve restarts to load them; nobody else restarts.
    nkey_before = nkey.read_bytes()
    rotated = hive.run("up", "--timeout", "60", "--rotate-keys", "eve")
    assert "restarted (keys rotated): node-eve" in rotated.stdout, rotated.stdout
    assert "Traceback" not in rotated.stderr
    fresh = Identity.load(key).public()
    assert fresh not in (pinned, planted)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert signed_directory(hive)["eve"] == fresh
    assert nkey.read_bytes() != nkey_before
    after = programs(hive)
    assert after["node-eve"].pid != before["node-eve"].pid
    assert after["node-eve"].state == "RUNNING"
    for name in ("node-alice", "node-bob", "node-charlie", "node-dave", "nats"):
        assert after[name].pid == before[name].pid, name

    result = hive.json(
        "submit",
        QUERY,
        "--proposer",
        "alice",
        "--aggregators",
        "alice,bob",
        "--targets",
        "charlie,dave,eve",
        "--json",
    )
    assert (result["status"], result["result"]) == ("complete", 75), result
    assert result["contributors"] == ["charlie", "dave", "eve"]

    # Rotated once: the next `hive up` has nothing to do, and `hive plan` agrees.
    assert "up to date" in hive.run("up", "--timeout", "60").stdout
    assert "no changes" in hive.run("plan").stdout


def test_a_deleted_key_file_of_a_pinned_node_is_refused(test_hive: HiveCLI, short_tmp) -> None:
    hive, state = test_hive, test_hive.state_dir
    key = state / "keys" / "dave.key"
    aside = short_tmp / "dave.key"
    signed_before = {name: (state / name).read_bytes() for name in SIGNED}
    os.replace(key, aside)
    try:
        proc = hive.run("up", "--timeout", "60", check=False)
        assert_refused(proc, "dave", f"{key} is missing", "hive up --rotate-keys dave")
        assert not key.exists()  # no new key generated behind the operator's back
        assert {name: (state / name).read_bytes() for name in SIGNED} == signed_before
    finally:
        os.replace(aside, key)
    assert "up to date" in hive.run("up", "--timeout", "60").stdout


def test_hive_up_starts_a_fatal_program_again(test_hive: HiveCLI, short_tmp: Path) -> None:
    hive, state = test_hive, test_hive.state_dir
    key = state / "keys" / "eve.key"
    aside = short_tmp / "eve.key"
    rpc = supervisor.client(state)
    before = programs(hive)

    # Without its key file node-eve exits 78 at every start: supervisord gives up.
    rpc.supervisor.stopProcess("node-eve", True)
    os.replace(key, aside)
    try:
        rpc.supervisor.startProcess("node-eve", False)
        wait_until(lambda: programs(hive)["node-eve"].state == "FATAL", 60, "node-eve FATAL")
    finally:
        os.replace(aside, key)
    assert "refusing to start" in (state / "logs" / "node-eve.log").read_text()

    up = hive.run("up", "--timeout", "60")
    assert "restarted: node-eve (was FATAL)" in up.stdout, up.stdout
    assert "node-eve was FATAL: starting it again" in up.stderr, up.stderr
    after = programs(hive)
    assert after["node-eve"].state == "RUNNING"
    for name in ("node-alice", "node-bob", "node-charlie", "node-dave", "nats"):
        assert after[name].pid == before[name].pid, name
    status = hive.json("status", "--json")  # exits 0 only when healthy
    assert status["healthy"] and status["nodes"]["eve"]["subscribed"], status
    assert "up to date" in hive.run("up", "--timeout", "60").stdout

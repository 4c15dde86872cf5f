"""What the attack tests share: an attacker holding a member's real keys.

The attacker reads a member's identity and NATS seed from the state folder, so
it can sign, seal and publish anything that member may. Used by
tests/test_attacks*.py (split by area, each with its own hive, because some
attacks stop nodes or fill inboxes that the others need intact).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import nats
from helpers import HiveCLI

from beehive.core.configs import NodeConfig
from beehive.security import Directory, Identity, seal
from beehive.security.nats_auth import inbox_subject, reply_prefix
from beehive.security.operator import load_signed_directory
from beehive.security.tls_ca import client_context

NET = "test"  # topologies/test.yaml
QUERY = "What is your secret value"  # query_length answers 25 per target


def port(hive: HiveCLI) -> int:
    return int(hive.env["HIVE_NATS_PORT"])


def tls_context(hive: HiveCLI) -> ssl.SSLContext:
    return client_context(hive.state_dir / "tls" / "ca.pem")


def directory(hive: HiveCLI) -> Directory:
    cfg = NodeConfig.load(hive.state_dir / "nodes" / "bob.json")
    return load_signed_directory(cfg.directory_file, cfg.directory_sig_file, cfg.operator_key)


def identity(hive: HiveCLI, alias: str) -> Identity:
    return Identity.load(hive.state_dir / "keys" / f"{alias}.key")


def rejected(hive: HiveCLI, alias: str) -> dict[str, int]:
    status = hive.json("status", "--json", check=False)
    return dict(status["nodes"][alias].get("rejected", {}))


async def connect_as(hive: HiveCLI, alias: str | None, **kw: Any) -> nats.NATS:
    """Connect with `alias`'s real credentials, replies under its own prefix
    (None: TLS but no credentials)."""
    options: dict[str, Any] = {"tls": tls_context(hive)}
    if alias is not None:
        options["nkeys_seed"] = str(hive.state_dir / "keys" / f"{alias}.nk")
        options["inbox_prefix"] = reply_prefix(NET, alias)
    options.update(kw)
    return await nats.connect(
        f"tls://127.0.0.1:{port(hive)}",
        allow_reconnect=False,
        max_reconnect_attempts=0,
        connect_timeout=3,
        **options,
    )


def send_as(hive: HiveCLI, sender: str, messages: list[tuple[str, str, str, bytes]]) -> None:
    """Seal and publish (recipient, msg_type, comp_id, payload) with `sender`'s keys."""
    me, members = identity(hive, sender), directory(hive)

    async def go() -> None:
        nc = await connect_as(hive, sender)
        try:
            for recipient, kind, cid, payload in messages:
                wire = seal(me, members[recipient], kind, cid, payload, network=NET)
                await nc.publish(inbox_subject(NET, recipient), wire)
            await nc.flush()
        finally:
            await nc.close()

    asyncio.run(go())


def submit_in_background(hive: HiveCLI, *args: str) -> subprocess.Popen[str]:
    """`hive submit … --json` in the background: the round runs during the attack."""
    cmd = [sys.executable, "-m", "beehive.cli.main", "submit", QUERY, "-f", str(hive.topology)]
    cmd += ["--state-dir", str(hive.state_dir), "--deadline", "20", "--json", *args]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=hive.env
    )


def finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=60)
    assert out.strip(), err
    return json.loads(out)


async def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 10) -> None:
    """`wait_until` for coroutines: poll without blocking the event loop."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)

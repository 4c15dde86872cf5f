"""Self-test of tests/netns.py: namespace hosts really are separate hosts on one LAN."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from netns import NO_NETNS_ENV, HostNet, Network, netns_available

PORT = 7000  # any port: each namespace is a fresh network stack
GREETING = b"hello from A"

# Serves GREETING to every connection; says "ready" once it listens.
SERVER = f"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen()
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.sendall({GREETING!r})
    c.close()
"""

# Prints what the server sent, or the name of the error.
CLIENT = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3) as c:
        sys.stdout.write(c.recv(100).decode())
except OSError as exc:
    sys.stdout.write(type(exc).__name__)
"""


@pytest.fixture
def netns_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip without namespaces; undo an inherited BEEHIVE_TEST_NO_NETNS=1."""
    if not netns_available():
        pytest.skip("needs root and `ip netns add` (network namespaces) on this machine")
    monkeypatch.delenv(NO_NETNS_ENV, raising=False)


def start_server(host: HostNet) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        host.wrap([sys.executable, "-c", SERVER, host.address, str(PORT)]),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"  # blocks until it listens (or dies: "")
    return proc


def connect(client: HostNet, address: str) -> str:
    argv = client.wrap([sys.executable, "-c", CLIENT, address, str(PORT)])
    return subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True).stdout


def link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", "dev", name], capture_output=True).returncode == 0


def netns_list() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


@pytest.mark.timeout(60)
def test_hosts_talk_over_the_bridge_and_are_cleaned_up(netns_mode: None) -> None:
    net = Network(["a", "b"])
    a, b = net.hosts["a"], net.hosts["b"]
    try:
        assert net.mode == "netns"
        assert a.address != b.address and a.netns != b.netns
        server = start_server(a)
        try:
            assert connect(b, a.address) == GREETING.decode()
            # On B, 127.0.0.1 is B's own loopback, where nothing listens.
            assert connect(b, "127.0.0.1") == "ConnectionRefusedError"
            assert server.pid in a.pids()
            assert server.pid not in b.pids()

            assert server.pid in a.kill_all()
            assert server.wait(timeout=5) == -9
            assert a.pids() == []
        finally:
            server.kill()
            server.wait()
    finally:
        net.close()
    for host in (a, b):
        assert host.netns is not None and host.veth is not None
        assert host.netns not in netns_list()
        assert not link_exists(host.veth)
    assert net.bridge is not None and not link_exists(net.bridge)
    net.close()  # idempotent


@pytest.mark.timeout(60)
def test_add_host_joins_a_running_network(netns_mode: None) -> None:
    with Network(["a", "b"]) as net:
        server = start_server(net.hosts["a"])
        try:
            c = net.add_host("c")
            assert c.address not in {h.address for h in net.hosts.values() if h is not c}
            assert net.subnet is not None and c.address.startswith(str(net.subnet)[:-4])
            assert connect(c, net.hosts["a"].address) == GREETING.decode()
        finally:
            server.kill()
            server.wait()
        # close() kills what is still running in the hosts, by itself.
        sleeper = subprocess.Popen(c.wrap(["sleep", "60"]))
    assert sleeper.wait(timeout=5) == -9
    assert c.netns is not None and c.netns not in netns_list()


def test_loopback_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NO_NETNS_ENV, "1")
    with Network(["a", "b"]) as net:
        assert net.mode == "loopback"
        a, b = net.hosts["a"], net.hosts["b"]
        assert (a.address, b.address) == ("127.0.0.2", "127.0.0.3")
        assert a.netns is None and b.netns is None
        assert a.wrap(["hive", "up"]) == ["hive", "up"]
        assert a.pids() == [] and a.kill_all() == []
        assert net.add_host("c").address == "127.0.0.4"
        # All of 127/8 is loopback: a listener on A's address is reachable.
        with socket.create_server((a.address, 0)) as server:
            port = server.getsockname()[1]
            with socket.create_connection((a.address, port), timeout=3):
                pass

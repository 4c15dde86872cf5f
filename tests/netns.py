"""Hosts for multi-host tests, made of Linux network namespaces on one bridge.

    from netns import HostNet, Network, netns_available  # like helpers: tests/ is on sys.path

    with Network(["hub", "clinic", "lab"]) as net:
        hub = net.hosts["hub"]
        subprocess.Popen(hub.wrap(["hive", "up", ...]))   # runs "on" hub, bound to hub.address

Why: a process can bind to its host's own address only, so a test can tell a
listener on the wrong interface, or a peer that reaches another one on 127.0.0.1,
from a real cross-host connection; and a host can be "unplugged" (all of its
processes SIGKILLed at once) with `kill_all()`.

Each host is a namespace with its own loopback and one veth whose other end is
on a private bridge; the hosts share a random /24 in 10.0.0.0/8. The root
namespace has no address on that bridge: the tests talk to the hosts through
processes started in them, never from outside.

Without root (or without `ip netns`), and when BEEHIVE_TEST_NO_NETNS=1, a
Network is in "loopback" mode: the hosts get 127.0.0.2, 127.0.0.3, … (all of
127/8 is loopback on Linux) and the processes run unwrapped on this machine,
so the same test can still run, minus the isolation.

Everything a Network creates it records, and `close()` removes exactly that,
never anything found by a name pattern: other test runs may be using the
machine at the same time.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType

from helpers import wait_until  # tests/ is on sys.path under pytest (see helpers.py)

__all__ = ["HostNet", "Network", "netns_available"]

NO_NETNS_ENV = "BEEHIVE_TEST_NO_NETNS"
KILL_TIMEOUT = 10.0  # seconds for SIGKILLed processes to leave a namespace
_HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")


def _run(argv: list[str]) -> str:
    """Run a command and return its stdout; a failure names the command and its stderr."""
    try:
        proc = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(
            f"command failed (exit {exc.returncode}): {shlex.join(argv)}\n{exc.stderr.strip()}"
        ) from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"command failed: {shlex.join(argv)}\n{exc}") from exc
    return proc.stdout


def _suffix() -> str:
    """6 random hex digits; `secrets`, not `random`, which tests may seed identically."""
    return secrets.token_hex(3)


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", "dev", name], capture_output=True).returncode == 0


def _netns_names() -> set[str]:
    # `ip netns list` lines look like "bh-hub-3fa2c1 (id: 3)" or just "bh-hub-3fa2c1".
    return {line.split()[0] for line in _run(["ip", "netns", "list"]).splitlines() if line.strip()}


@functools.cache
def netns_available() -> bool:
    """True when this process may create network namespaces (root, iproute2, kernel support).

    Probed once by really adding and deleting a namespace with a random name:
    being root is not enough in some containers. BEEHIVE_TEST_NO_NETNS is not
    looked at here but by Network, so that the cached answer cannot go stale
    when a test sets that variable.
    """
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    probe = f"bh-probe-{_suffix()}"
    try:
        _run(["ip", "netns", "add", probe])
    except RuntimeError:
        return False
    # It worked: that is the answer, even if deleting fails (an empty namespace is harmless).
    with contextlib.suppress(RuntimeError):
        _run(["ip", "netns", "delete", probe])
    return True


def _used_networks() -> list[ipaddress.IPv4Network]:
    """The IPv4 networks of this machine's addresses and routes (the default route aside)."""
    used: list[ipaddress.IPv4Network] = []
    for line in _run(["ip", "-4", "-o", "addr"]).splitlines():
        words = line.split()
        if "inet" in words:
            used.append(ipaddress.IPv4Interface(words[words.index("inet") + 1]).network)
    for line in _run(["ip", "-4", "route"]).splitlines():
        # "10.1.0.0/16 dev eth1 …", or a route type first: "unreachable 10.2.0.0/16".
        for word in line.split()[:2]:
            if word == "default":
                break
            try:
                used.append(ipaddress.IPv4Network(word, strict=False))
                break
            except ValueError:
                continue
    return used


def _pick_subnet() -> ipaddress.IPv4Network:
    """A random 10.x.y.0/24 that overlaps nothing on this machine.

    The hosts never talk to the root namespace, but a subnet that clashes with a
    real one would confuse whoever reads addresses in a test's logs (and break
    the day someone gives the bridge an address).
    """
    used = _used_networks()
    for _ in range(1000):
        candidate = ipaddress.IPv4Network(
            f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.0/24"
        )
        if not any(candidate.overlaps(net) for net in used):
            return candidate
    raise RuntimeError("no free /24 in 10.0.0.0/8 on this machine")


@dataclass(frozen=True)
class HostNet:
    """One host of a Network: where its processes run and the address they bind to."""

    name: str
    address: str
    netns: str | None  # None in loopback mode
    veth: str | None = field(default=None, repr=False)  # root-side veth end; None in loopback

    def wrap(self, argv: list[str]) -> list[str]:
        """`argv` run inside this host's namespace (unchanged in loopback mode).

        `ip netns exec` execs the command, so a Popen of the result has the
        command's own PID, which is what `pids()` lists.
        """
        if self.netns is None:
            return list(argv)
        return ["ip", "netns", "exec", self.netns, *argv]

    def pids(self) -> list[int]:
        """PIDs of every process now in this host's namespace (zombies are not listed).

        In loopback mode the host has no boundary to count processes by, so this
        is always [] (and `kill_all()` kills nothing): stop those processes yourself.
        """
        if self.netns is None:
            return []
        return [int(word) for word in _run(["ip", "netns", "pids", self.netns]).split()]

    def kill_all(self, sig: int = signal.SIGKILL, timeout: float = KILL_TIMEOUT) -> list[int]:
        """Send `sig` to every process in the host and wait until they have left it.

        This is "pulling the plug" on a host. Returns the PIDs signalled. A
        process counts as gone once it has exited (a zombie left for its parent
        to reap counts as gone). Raises AssertionError if, after `timeout`
        seconds, some are still there (e.g. one that ignores a SIGTERM).
        """
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # it exited since we listed it
                os.kill(pid, sig)
        if pids:
            wait_until(
                lambda: not set(pids) & set(self.pids()),
                timeout,
                f"processes {pids} to leave host {self.name} after signal {sig}",
                interval=0.05,
            )
        return pids


class Network:
    """A set of hosts that reach each other over TCP on one private bridge.

    A context manager; `close()` does the same as leaving the `with` block and
    may be called more than once. If setting up fails half way, what was
    created is removed and the error is raised again.
    """

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.hosts: dict[str, HostNet] = {}
        # Checked here, not in netns_available(), whose answer is cached.
        forced = os.environ.get(NO_NETNS_ENV, "") not in ("", "0")
        self.mode: str = "loopback" if forced or not netns_available() else "netns"
        self.subnet: ipaddress.IPv4Network | None = None
        self.bridge: str | None = None  # its name, kept after close() for checking
        self._next = 2  # last octet of the next host's address
        self._closed = False
        # What we created and so must delete, in the order it was created.
        self._namespaces: list[str] = []
        self._veths: list[str] = []
        self._bridge_made = False
        try:
            if self.mode == "netns":
                self._make_bridge()
            for name in names:
                self.add_host(name)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Network:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Network(mode={self.mode!r}, subnet={self.subnet}, hosts={list(self.hosts)})"

    def _make_bridge(self) -> None:
        self.subnet = _pick_subnet()
        bridge = f"bhbr{_suffix()}"
        self.bridge = bridge
        _run(["ip", "link", "add", bridge, "type", "bridge"])
        self._bridge_made = True
        # With br_netfilter loaded, bridged frames go through the host's iptables
        # FORWARD chain, whose policy may be DROP (Docker sets it so). Opt this
        # bridge out; best effort, since the knob exists only with br_netfilter.
        subprocess.run(
            ["ip", "link", "set", bridge, "type", "bridge", "nf_call_iptables", "0"],
            capture_output=True,
        )
        _run(["ip", "link", "set", bridge, "up"])

    def add_host(self, name: str) -> HostNet:
        """Add a host (a namespace on the same bridge and subnet); fine while others run."""
        if self._closed:
            raise RuntimeError("this Network is closed")
        if name in self.hosts:
            raise ValueError(f"host {name!r} already exists")
        if not _HOST_NAME.fullmatch(name):
            raise ValueError(f"host name {name!r}: letters, digits, - and _ only, ≤ 32")
        if self._next > 254:
            raise RuntimeError("a Network holds at most 253 hosts")
        number = self._next
        if self.mode == "loopback":
            host = HostNet(name, f"127.0.0.{number}", None)
        else:
            host = self._make_netns_host(name, number)
        self._next += 1
        self.hosts[name] = host
        return host

    def _make_netns_host(self, name: str, number: int) -> HostNet:
        assert self.subnet is not None and self.bridge is not None
        address = str(self.subnet.network_address + number)
        suffix = _suffix()
        while _link_exists(f"bhv{suffix}a") or f"bh-{name}-{suffix}" in _netns_names():
            suffix = _suffix()
        netns, veth, peer = f"bh-{name}-{suffix}", f"bhv{suffix}a", f"bhv{suffix}b"
        try:
            _run(["ip", "netns", "add", netns])
            self._namespaces.append(netns)
            _run(["ip", "-n", netns, "link", "set", "lo", "up"])
            # Created with its peer end already in the namespace: no window in
            # which both ends are in the root namespace.
            _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", peer, "netns", netns])
            self._veths.append(veth)
            _run(
                [
                    "ip",
                    "-n",
                    netns,
                    "addr",
                    "add",
                    f"{address}/{self.subnet.prefixlen}",
                    "dev",
                    peer,
                ]
            )
            _run(["ip", "-n", netns, "link", "set", peer, "up"])
            _run(["ip", "link", "set", veth, "master", self.bridge])
            _run(["ip", "link", "set", veth, "up"])
        except BaseException as exc:
            # Only this host's parts: the hosts already there stay usable.
            errors = self._remove(netns, veth)
            if errors:
                raise RuntimeError(
                    f"add_host({name!r}) failed ({exc}); cleaning up failed: " + "; ".join(errors)
                ) from exc
            raise
        return HostNet(name, address, netns, veth)

    def _remove(self, netns: str | None, veth: str | None) -> list[str]:
        """Kill what runs in `netns`, delete it and `veth` if we made them; return the errors."""
        errors: list[str] = []
        if netns in self._namespaces:
            try:
                self._kill_everything(netns)
            except (RuntimeError, AssertionError) as exc:
                errors.append(str(exc))
        if veth in self._veths:
            # Deleting the namespace would take the pair with it, but only once the
            # last process in it has gone: delete it now to be sure.
            if _link_exists(veth):
                try:
                    _run(["ip", "link", "delete", veth])
                except RuntimeError as exc:
                    errors.append(str(exc))
            if not _link_exists(veth):
                self._veths.remove(veth)
        if netns in self._namespaces:
            try:
                if netns in _netns_names():
                    _run(["ip", "netns", "delete", netns])
                self._namespaces.remove(netns)
            except RuntimeError as exc:
                errors.append(str(exc))
        return errors

    @staticmethod
    def _kill_everything(netns: str) -> None:
        """SIGKILL the processes in `netns` until none is left (a dying one may fork)."""
        if netns not in _netns_names():
            return
        host = HostNet("", "", netns)
        for _ in range(5):
            if not host.kill_all(signal.SIGKILL):
                return
        if host.pids():
            raise RuntimeError(f"processes keep appearing in namespace {netns}: {host.pids()}")

    def close(self) -> None:
        """Kill every process in the hosts, delete their veths, namespaces and the bridge.

        Only what this Network created. Idempotent: what is already gone is
        skipped, and a failure does not stop the rest from being removed (the
        errors are raised together at the end, as a RuntimeError).
        """
        self._closed = True
        errors: list[str] = []
        veth_of = {host.netns: host.veth for host in self.hosts.values()}
        for netns in list(self._namespaces):
            errors += self._remove(netns, veth_of.get(netns))
        for veth in list(self._veths):  # a veth whose namespace went first
            errors += self._remove(None, veth)
        if self._bridge_made and self.bridge is not None:
            try:
                if _link_exists(self.bridge):
                    _run(["ip", "link", "delete", self.bridge])
                self._bridge_made = False
            except RuntimeError as exc:
                errors.append(str(exc))
        if errors:
            raise RuntimeError("Network.close() left things behind:\n" + "\n".join(errors))

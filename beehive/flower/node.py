"""A node: the wiring of its roles to NATS, the directory and its store.

Every role lives in one process because a node may be proposer, aggregator and
target of the same round at once; each role is its own module (`proposer.py`,
`aggregator.py`, `target.py`), NATS is `transport.py`. Here: the pinned
directory (reloaded live), opening envelopes and dispatching them to a role,
acknowledging each message once its effect is persisted, the control channel.
Anything that does not open against the pinned directory is counted and dropped.

    python -m beehive.flower.node --config <state>/nodes/<alias>.json [--config …]

One process runs one node, or several (`runtime.nodes_per_process`): each keeps
its own keys, NATS connection and user, store, dispatch folder and control
socket; they share the event loop and one folder watcher (`run_nodes`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import fcntl
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from pathlib import Path
from typing import IO, Any

from beehive.core import logs
from beehive.core.configs import NodeConfig
from beehive.core.constants import COMPLETE_SUFFIX, MAX_DEADLINE_SECONDS, REPORT_GRACE_SECONDS
from beehive.core.errors import TrustError
from beehive.core.models import Computation, RoundError, RoundRequest
from beehive.core.names import is_comp_id
from beehive.core.settings import Settings
from beehive.core.watch import Change, FolderWatch
from beehive.flower import messages as m
from beehive.flower.aggregator import Aggregator
from beehive.flower.context import require
from beehive.flower.control import ControlError, serve
from beehive.flower.faults import Faults
from beehive.flower.proposer import Proposer
from beehive.flower.rounds import Equivocation, ResumRefused
from beehive.flower.store import Store, StoreError, storage_failure
from beehive.flower.target import Target
from beehive.flower.transport import Delivery, PublishDenied, Transport
from beehive.security import (
    Directory,
    DirectoryError,
    Identity,
    Opened,
    Opener,
    Rejected,
    seal,
    verify_spec,
)
from beehive.security.identity import IdentityError
from beehive.security.operator import load_signed_directory
from beehive.security.replay import SqliteReplayWindow

log = logging.getLogger("beehive.node")

#: The verified-spec cache holds at most this many rounds (the oldest cached go
#: first); rounds that ended more than SPEC_CACHE_KEEP_SECONDS ago go anyway.
SPEC_CACHE_PRUNE_AT = 1024
SPEC_CACHE_KEEP_SECONDS = 120.0

#: A running node prunes its store (closed rounds past KEEP_CLOSED, results past
#: `keep_results`, expired message ids) and checkpoints its WAL this often:
#: a quarter of `keep_results`, within these bounds.
PRUNE_INTERVAL_MAX = 300.0
PRUNE_INTERVAL_MIN = 5.0


def prune_interval(keep_results: float) -> float:
    return max(PRUNE_INTERVAL_MIN, min(PRUNE_INTERVAL_MAX, keep_results / 4))


#: Exit status of a node that refuses its keys or directory (supervisord shows it).
EXIT_UNTRUSTED = 78  # EX_CONFIG
#: Exit status of a node whose store is corrupt or truncated.
EXIT_STORE = 74  # EX_IOERR
#: Another process holds this node's identity (its lock in the data folder).
EXIT_TAKEN = 75  # EX_TEMPFAIL


class Unstored(Exception):
    """A message whose effects the disk refused to store: left unacknowledged."""


class Node:
    def __init__(self, config: NodeConfig, faults: Faults | None = None) -> None:
        self.config = config
        self.alias = config.alias
        self.identity = Identity.load(config.key_file)
        self.directory = self._load_directory()
        if self.alias not in self.directory:
            raise DirectoryError(
                f"{config.directory_file} has no entry for {self.alias!r}: run `hive up` "
                "again to recompile it"
            )
        if self.directory[self.alias] != self.identity.public():
            raise IdentityError(
                f"{config.key_file} does not match the pinned key of {self.alias!r} in "
                f"{config.directory_file}: run `hive up` again to recompile"
            )
        config.computation_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.store = Store(config.data_dir / "local.db")
        # Ids are kept as long as any round can last, in the node's own database,
        # so neither time nor a restart reopens the window for a captured envelope;
        # each is committed with the effects of its message (one fsync for both).
        self.replay_window = SqliteReplayWindow(self.store.db, write=self.store.write)
        self.opener = Opener(
            self.identity,
            self.directory,
            replay_ttl=MAX_DEADLINE_SECONDS + REPORT_GRACE_SECONDS,
            replay_window=self.replay_window,
        )
        self.transport = Transport(config, self._on_delivery)
        self.specs: dict[str, Computation] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self.target = Target(self, faults)
        self.aggregator = Aggregator(self)
        self.proposer = Proposer(self)
        #: The node's own context (its log name) once it runs: what the shared
        #: watcher calls it in.
        self.context: contextvars.Context | None = None

    # ── lifecycle ────────────────────────────────────────────────────────────

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set. The caller watches the folders the node
        follows (`run_nodes`) from before this starts."""
        logs.speaking_as(f"node={self.alias}")
        self.context = contextvars.copy_context()
        self._reload_directory()  # it may have changed before the watcher was live
        # Rounds first, then the inbox: redelivered messages find their rounds.
        self.target.resume()
        self.aggregator.resume()
        self.proposer.resume()
        await self.transport.start()
        server = await serve(self.config.control_socket, self._control)
        self._prune_later(self.replay_window)
        log.info("node %s (%s) ready on %s", self.alias, self.config.role, self.config.nats_url)
        try:
            await stop.wait()
        finally:
            server.close()
            self.config.control_socket.unlink(missing_ok=True)
            for timer in self._timers:
                timer.cancel()
            for task in list(self._tasks):
                task.cancel()
            await self.transport.stop()
            self.store.close()

    async def drain_inbox(self, timeout: float) -> bool:
        return await self.transport.drained(timeout)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def later(self, delay: float, coro_fn: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        def fire() -> None:
            self._timers.discard(handle)
            self.spawn(coro_fn())

        handle = asyncio.get_running_loop().call_later(max(delay, 0.0), fire)
        self._timers.add(handle)

    def _prune_later(self, window: SqliteReplayWindow) -> None:
        """Prune once the interval has passed, then re-arm: a timer, not a loop."""

        async def tick() -> None:
            try:
                self.prune(window)
            finally:
                self._prune_later(window)

        self.later(prune_interval(self.config.keep_results_seconds), tick)

    def prune(self, window: SqliteReplayWindow, now: float | None = None) -> dict[str, int]:
        """What a long-running node no longer needs, each kind in one transaction;
        then the WAL is checkpointed (and truncated). One INFO line if anything went."""
        now = time.time() if now is None else now
        store = self.store
        pruned = {
            "rounds": store.prune_rounds(now),
            "results": store.prune_results(
                self.config.keep_results_seconds, self.config.data_dir, now
            ),
            "seen_messages": window.expire(now),
        }
        store.checkpoint()
        self._forget_old_specs()
        if any(pruned.values()):
            log.info(
                "pruned %d closed round(s), %d result(s) and their final files, "
                "%d expired message id(s)",
                pruned["rounds"],
                pruned["results"],
                pruned["seen_messages"],
            )
        return pruned

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        exc = None if task.cancelled() else task.exception()
        if isinstance(exc, PublishDenied):  # a timer's send (a failover task) NATS refused
            self.opener.count("denied")
            log.warning("not sent: %s", exc)
        elif exc is not None:
            log.error("task failed", exc_info=exc)

    # ── the pinned directory, live ───────────────────────────────────────────

    def on_file_change(self, _change: Change, path: Path) -> None:
        """A file arrived in the dispatch folder, or the directory was rewritten."""
        if path.name.endswith(COMPLETE_SUFFIX):
            self.target.collect(path)
        elif path in (self.config.directory_file, self.config.directory_sig_file):
            self._reload_directory()

    def _load_directory(self) -> Directory:
        """The directory, only if the operator key pinned in our config signed it."""
        return load_signed_directory(
            self.config.directory_file, self.config.directory_sig_file, self.config.operator_key
        )

    def _reload_directory(self) -> None:
        """Adopt a rewritten directory.json without restarting (`hive up` added or
        removed a node). Rounds in flight keep their state; a directory that is
        unreadable or pins another key for this node is refused and the old one kept.
        """
        try:
            new = self._load_directory()
        except DirectoryError as exc:
            log.error("ignoring a changed directory: %s", exc)
            return
        if new == self.directory:
            return
        if new.members.get(self.alias) != self.identity.public():
            log.error("ignoring a changed directory: it does not pin this node's key")
            return
        self.opener.directory = new
        old, self.directory = set(self.directory), new
        log.info(
            "directory reloaded: %d member(s), added %s, removed %s",
            len(new),
            ", ".join(sorted(set(new) - old)) or "none",
            ", ".join(sorted(old - set(new))) or "none",
        )

    # ── sending and receiving ────────────────────────────────────────────────

    async def send(self, recipient: str, msg_type: str, comp_id: str, **fields: Any) -> None:
        payload = m.pack(**fields)
        if recipient == self.alias:
            await self._deliver_locally(msg_type, comp_id, payload)
            return
        await self.transport.publish(recipient, self._seal(recipient, msg_type, comp_id, payload))

    async def send_all(
        self, recipients: Sequence[str], msg_type: str, comp_id: str, **fields: Any
    ) -> None:
        """`send` the same fields to every recipient: the remote ones as one fan-out
        (`Transport.publish_all`: atomic batches when it is large), this node's own
        role directly. Every message is sent (or refused) either way; then the
        first failure is raised, as `send` would have raised it."""
        payload = m.pack(**fields)
        wires = [
            (recipient, self._seal(recipient, msg_type, comp_id, payload))
            for recipient in recipients
            if recipient != self.alias
        ]
        sends: list[Coroutine[Any, Any, object]] = [self.transport.publish_all(wires)]
        if self.alias in recipients:
            sends.append(self._deliver_locally(msg_type, comp_id, payload))
        for outcome in await asyncio.gather(*sends, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome

    def _seal(self, recipient: str, msg_type: str, comp_id: str, payload: bytes) -> bytes:
        return seal(
            self.identity,
            self.directory[recipient],
            msg_type,
            comp_id,
            payload,
            network=self.config.network,
        )

    async def _deliver_locally(self, msg_type: str, comp_id: str, payload: bytes) -> None:
        """A message from one of this node's roles to another (a proposer that also
        aggregates, an aggregator that also answers) never leaves the process: no
        envelope, no network hop. It is handled before `send` returns, so whatever
        acknowledges the message that caused it does so after its effect too; and
        every role resumes from SQLite what such a message started."""
        local = Opened(
            sender=self.alias,
            recipient=self.alias,
            msg_type=msg_type,
            comp_id=comp_id,
            msg_id=secrets.token_bytes(16),
            timestamp=time.time(),
            payload=payload,
        )
        await self._handle(local)

    async def _on_delivery(self, delivery: Delivery) -> None:
        """Open, act, then acknowledge once what it changed is committed
        (`_ack_when_stored`: meanwhile the next message is handled, and its writes
        may share that commit), so the ack never runs ahead of the state. A message
        that is refused is acknowledged too: redelivering it cannot help. One
        whose effects NATS refused for good (PublishDenied: not permitted, the
        recipient's inbox full) is terminated, counted as "denied", and the node
        goes on with the next. One whose effects could not be sent on (NATS away
        past the publish give-up) is not acknowledged: the stream delivers it
        again and the idempotent handlers redo it."""
        try:
            await self._on_msg(delivery)
        except PublishDenied as exc:
            self.opener.count("denied")
            log.warning("terminated a message, never to be redelivered: %s", exc)
            await delivery.term()
            return
        except (ConnectionError, Unstored) as exc:
            log.warning("not acknowledged, the stream will redeliver it: %s", exc)
            return
        self.spawn(self._ack_when_stored(delivery))

    async def _ack_when_stored(self, delivery: Delivery) -> None:
        try:
            await self.store.flushed()
        except Exception as exc:
            why = storage_failure(exc)
            if why is None:
                raise
            self.store.failure = why
            log.warning("not acknowledged, the stream will redeliver it: %s", why)
            return
        self.store.failure = None  # its effects are on disk: the disk takes writes again
        await delivery.ack()

    async def _on_msg(self, delivery: Delivery) -> None:
        """Whatever a message does wrong, it is counted under its reason and
        dropped: no input can stop the node serving everyone else."""
        try:
            opened = self.opener.open(
                delivery.data, now=delivery.stored_at, redelivered=delivery.redelivered
            )
        except Rejected as exc:
            log.warning("rejected a message (%s)", exc.reason)
            return
        if not is_comp_id(opened.comp_id):
            # It would become a file name and a log field: held to the id format here,
            # once, so no role ever sees another (and a newline forges no log line).
            self.opener.count("malformed")
            log.warning(
                "rejected a %s from %s: not a computation id", opened.msg_type, opened.sender
            )
            return
        await self._handle(opened)

    async def _handle(self, opened: Opened) -> None:
        try:
            await self._dispatch(opened)
        except (ConnectionError, PublishDenied):
            raise  # the transport gave up sending, or NATS refused: see _on_delivery
        except Equivocation as exc:
            self._drop(opened, "equivocation", exc)
        except ResumRefused as exc:
            self._drop(opened, "resum_refused", exc)
        except (m.BadPayload, PermissionError, KeyError, ValueError) as exc:
            self._drop(opened, "protocol", exc)
        except Exception as exc:  # a bug of ours must not become a remote kill switch
            why = storage_failure(exc)
            if why is not None:
                # The disk refused a write (full, read-only): not the message's
                # fault. Unacknowledged, it comes back (ack_wait) until the disk takes it.
                self.store.failure = why
                raise Unstored(why) from exc
            log.exception("unexpected error handling %s from %s", opened.msg_type, opened.sender)
            self._drop(opened, "protocol", exc)

    def _drop(self, env: Opened, reason: str, exc: BaseException) -> None:
        self.opener.count(reason)
        # Names and the rule broken only: never payload values.
        log.warning(
            "dropped %s from %s for %s (%s): %s",
            env.msg_type,
            env.sender,
            env.comp_id,
            reason,
            str(exc)[:200],
        )

    async def _dispatch(self, env: Opened) -> None:
        data = m.unpack(env.payload)
        kind, sender = env.msg_type, env.sender
        if kind in (m.SPEC, m.TASK, m.SHARE, m.DECLINE):
            signed = m.signed_spec(data)
            comp = self._verified(env, signed)
            if kind == m.SPEC:
                require(sender == comp.proposer, "spec not sent by its proposer")
                await self.aggregator.on_spec(comp, signed)
            elif kind == m.TASK:
                require(sender in comp.aggregators, "task not from an aggregator of the round")
                require(self.alias in comp.targets, "task for a round I am not a target of")
                await self.target.on_task(comp, signed)
            elif kind == m.SHARE:
                share = m.field(data, "share", int)
                await self.aggregator.on_share(comp, signed, sender, share)
            else:
                reason = m.field(data, "reason", str)
                await self.aggregator.on_decline(comp, signed, sender, reason)
        elif kind == m.SUM:
            total, names = m.field(data, "sum", int), m.names(data, "contributors")
            attest = m.field(data, "attest", bytes)
            why = m.reasons(data, "missing")
            await self.proposer.on_sum(env.comp_id, sender, total, names, attest, why)
        elif kind == m.RESUM:
            await self.aggregator.on_resum(
                env.comp_id, sender, m.names(data, "contributors"), m.reports(data)
            )
        elif kind == m.REFUSE:
            await self.proposer.on_refusal(env.comp_id, sender, m.field(data, "reason", str))
        else:
            raise m.BadPayload(f"unknown message type {kind!r}")

    def _verified(self, env: Opened, signed: m.SignedSpec) -> Computation:
        """The signed computation, checked once per comp_id: proposer's key, names me."""
        known = self.specs.get(env.comp_id)
        if known is not None:
            return known
        comp = Computation.model_validate_json(signed.spec)
        require(comp.comp_id == env.comp_id, "envelope and spec disagree on comp_id")
        require(comp.proposer in self.directory, f"unknown proposer {comp.proposer!r}")
        unknown = sorted({*comp.aggregators, *comp.targets} - set(self.directory))
        require(not unknown, f"spec names node(s) not in the directory: {', '.join(unknown)}")
        light = [a for a in comp.aggregators if self.directory.role(a) != "heavy"]
        require(not light, f"spec names {', '.join(light)} as aggregator: not a heavy node")
        require(
            verify_spec(self.directory, comp.proposer, signed.spec, signed.sig),
            "spec signature does not verify against the proposer's pinned key",
        )
        require(
            self.alias in comp.aggregators or self.alias in comp.targets, "spec does not name me"
        )
        self._forget_old_specs()
        self.specs[comp.comp_id] = comp
        return comp

    def _forget_old_specs(self) -> None:
        """Keep the cache of verified specs bounded: a round's messages all arrive
        before its deadline plus a grace, so older specs are never asked for again
        (a late message is verified afresh, then refused by its role as too late)."""
        horizon = time.time() - SPEC_CACHE_KEEP_SECONDS
        # Oldest cached first (about deadline order): amortized O(1) per round, and
        # never more than SPEC_CACHE_PRUNE_AT entries whatever the rounds' deadlines.
        while self.specs:
            comp_id, comp = next(iter(self.specs.items()))
            if comp.expires_at >= horizon and len(self.specs) < SPEC_CACHE_PRUNE_AT:
                return
            del self.specs[comp_id]

    # ── control channel ──────────────────────────────────────────────────────

    async def _control(self, req: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        op = req.get("op")
        if op == "health":
            yield self.health()
        elif op == "submit":
            try:
                request = RoundRequest.parse({k: v for k, v in req.items() if k != "op"})
            except RoundError as exc:
                raise ControlError(str(exc)) from exc
            try:
                comp_id = await self.proposer.submit(request)
            except PublishDenied as exc:
                raise ControlError(f"NATS refused the computation: {exc}") from exc
            yield {"ok": True, "comp_id": comp_id}
        elif op == "wait":
            async for event in self.proposer.wait(str(req.get("comp_id", ""))):
                yield event
        else:
            raise ControlError(f"unknown op {op!r}")

    def health(self) -> dict[str, Any]:
        return {
            "ok": True,
            "alias": self.alias,
            "role": self.config.role,
            "pid": os.getpid(),
            "connected": self.transport.connected,
            "subscribed": self.transport.subscribed,
            "storage": self.store.failure,
            "rounds": {
                "proposing": len(self.proposer.rounds),
                "aggregating": len(self.aggregator.rounds),
                **self.target.health(),
            },
            "dp": self.target.dp_budget(),
            "rejected": dict(self.opener.rejected),
            # authenticated, then refused by a round rule: derived, not kept twice
            "dropped": sum(self.opener.rejected[r] for r in ("protocol", "equivocation")),
        }


def main(argv: list[str] | None = None, faults: Faults | None = None) -> None:
    """The node process: one node per `--config`. `faults` is for fault-injection
    tests (tests/fault_node.py) only: production passes none."""
    parser = argparse.ArgumentParser(prog="beehive.flower.node", description=__doc__)
    parser.add_argument(
        "--config",
        type=Path,
        required=True,
        action="append",
        help="nodes/<alias>.json; repeat it to host several nodes in this process",
    )
    args = parser.parse_args(argv)
    os.umask(0o077)
    configs = [NodeConfig.load(path) for path in args.config]
    who = configs[0].alias if len(configs) == 1 else f"{configs[0].alias}…{configs[-1].alias}"
    logs.configure(Settings().log_level, f"node={who}")
    locks = [_hold_identity(config) for config in configs]
    if None in locks:
        sys.exit(EXIT_TAKEN)
    try:
        asyncio.run(_run(configs, faults))
    except TrustError as exc:
        # Trust material that does not verify is not a crash to retry quietly:
        # say what is wrong, in the node's log, and exit non-zero.
        log.error("refusing to start: %s", exc)
        sys.exit(EXIT_UNTRUSTED)
    except StoreError as exc:
        log.error("refusing to start: %s", exc)
        sys.exit(EXIT_STORE)


def _hold_identity(config: NodeConfig) -> IO[str] | None:
    """An exclusive lock on `<data>/node.lock`, held for the process's life: two
    processes answering as one alias would each consume half its inbox and trip
    each other's replay window. None (logged, naming the holder) when taken."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    path = config.data_dir / "node.lock"
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        log.error(
            "refusing to start: node %s is already running as pid %s (it holds %s); "
            "`hive down` then `hive up` stops every copy",
            config.alias,
            holder,
            path,
        )
        return None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


async def _run(configs: list[NodeConfig], faults: Faults | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run_nodes([Node(config, faults) for config in configs], stop)


async def run_nodes(nodes: list[Node], stop: asyncio.Event) -> None:
    """Run `nodes` in this event loop until `stop` is set, with one folder watcher
    (one inotify descriptor) for all of them: each node's dispatch folder goes to
    that node, a rewritten directory to every node. Live before any node starts,
    so nothing written meanwhile is missed."""
    by_folder = {node.config.computation_dir: node for node in nodes}
    folders = [*by_folder, *{node.config.directory_file.parent for node in nodes}]

    def route(change: Change, path: Path) -> None:
        owner = by_folder.get(path.parent)
        for node in [owner] if owner is not None else nodes:
            if node.context is None:
                node.on_file_change(change, path)
            else:
                node.context.run(node.on_file_change, change, path)

    watch = FolderWatch(folders, route)
    await watch.start()
    try:
        await asyncio.gather(*(node.run(stop) for node in nodes))
    finally:
        await watch.stop()


if __name__ == "__main__":
    main()

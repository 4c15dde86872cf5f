"""One node process: joins NATS, reads its inbox, and plays each role a round gives it.

Every role lives in one process because a node may be proposer, aggregator and
target of the same round at once. Messages arrive as sealed envelopes; anything
that does not open against the pinned directory is counted and dropped.

    python -m beehive.flower.node --config <state>/nodes/<alias>.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from watchfiles import Change

from beehive.core.constants import (
    COMPLETE_SUFFIX,
    MAX_DEADLINE_SECONDS,
    MODULUS,
    PENDING_SUFFIX,
    REPORT_GRACE_SECONDS,
)
from beehive.core.dispatch import CompleteRecord, read_complete, write_atomic, write_pending
from beehive.core.models import Computation, ComputationResult, new_comp_id
from beehive.core.watch import FolderWatch
from beehive.flower import messages as m
from beehive.flower.config import NodeConfig, inbox_subject
from beehive.flower.control import ControlError, serve
from beehive.flower.rounds import AggregatorRound, Equivocation, ProposerRound, below_policy
from beehive.flower.store import Store, result_json
from beehive.security import (
    Directory,
    DirectoryError,
    Identity,
    Opened,
    Opener,
    Rejected,
    seal,
    sign_spec,
    split,
    verify_spec,
)
from beehive.security.identity import IdentityError
from beehive.security.operator import load_signed_directory
from beehive.security.replay import SqliteReplayWindow

log = logging.getLogger("beehive.node")

#: Exit status of a node that refuses its keys or directory (supervisord shows it).
EXIT_UNTRUSTED = 78  # EX_CONFIG


class Node:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.alias = config.alias
        self.identity = Identity.load(config.key_file)
        self.directory = self._load_directory()
        if self.alias not in self.directory:
            raise SystemExit(f"{config.directory_file} has no entry for {self.alias!r}")
        if self.directory[self.alias] != self.identity.public():
            raise SystemExit(
                f"{config.key_file} does not match the pinned key of {self.alias!r} in "
                f"{config.directory_file}: run `hive up` again to recompile"
            )
        config.computation_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.store = Store(config.data_dir / "local.db")
        # Ids are kept as long as any round can last, in the node's own database,
        # so neither time nor a restart reopens the window for a captured envelope.
        self.opener = Opener(
            self.identity,
            self.directory,
            replay_ttl=MAX_DEADLINE_SECONDS + REPORT_GRACE_SECONDS,
            replay_window=SqliteReplayWindow(self.store.db),
        )
        self.nc: NATS | None = None
        self.subscribed = False
        self.specs: dict[str, Computation] = {}
        self.aggregating: dict[str, AggregatorRound] = {}
        self.proposing: dict[str, ProposerRound] = {}
        self.listeners: dict[str, list[asyncio.Queue[dict[str, Any]]]] = {}
        self.answers: dict[str, asyncio.Future[CompleteRecord]] = {}
        self.dropped = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watch = FolderWatch([config.computation_dir], self._on_dispatch_change)
        self._directory_watch = FolderWatch(
            [config.directory_file.parent], self._on_directory_change
        )

    # ── lifecycle ────────────────────────────────────────────────────────────

    async def run(self, stop: asyncio.Event) -> None:
        await self._watch.start()
        await self._directory_watch.start()
        self._reload_directory()  # it may have changed before the watcher was live
        self.nc = await self._connect()
        await self.nc.subscribe(inbox_subject(self.config.network, self.alias), cb=self._on_msg)
        await self.nc.flush()
        self.subscribed = True
        server = await serve(self.config.control_socket, self._control)
        log.info("node %s (%s) ready on %s", self.alias, self.config.role, self.config.nats_url)
        try:
            await stop.wait()
        finally:
            server.close()
            self.config.control_socket.unlink(missing_ok=True)
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.drain(), 1.0)  # never outlive stopwaitsecs
            with contextlib.suppress(Exception):
                await self.nc.close()
            await self._watch.stop()
            await self._directory_watch.stop()
            self.store.close()

    def _nats_auth(self) -> dict[str, Any]:
        """TLS that trusts only the configured CA, and this node's own credentials."""
        cfg = self.config
        options: dict[str, Any] = {}
        if cfg.nats_ca_file is not None:
            options["tls"] = ssl.create_default_context(cafile=str(cfg.nats_ca_file))
        if cfg.nats_nkey_seed_file is not None:
            options["nkeys_seed"] = str(cfg.nats_nkey_seed_file)
        elif cfg.nats_creds_file is not None:
            options["user_credentials"] = str(cfg.nats_creds_file)
        return options

    async def _connect(self) -> NATS:
        """Connect, retrying while the server starts: supervisord starts all at once."""
        attempt = 0
        auth = self._nats_auth()
        while True:
            try:
                return await nats.connect(
                    self.config.nats_url,
                    name=self.alias,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.25,
                    connect_timeout=2,
                    allow_reconnect=True,
                    # Per-node reply prefix: nothing here uses request/reply, and
                    # the server grants no one a blanket `_INBOX.>`.
                    inbox_prefix=f"_INBOX.{self.config.network}.{self.alias}",
                    **auth,
                )
            except Exception as exc:
                attempt += 1
                if attempt % 20 == 1:
                    log.warning("cannot reach NATS at %s yet: %s", self.config.nats_url, exc)
                await asyncio.sleep(min(0.05 * attempt, 1.0))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task failed", exc_info=task.exception())

    # ── the pinned directory, live ───────────────────────────────────────────

    def _on_directory_change(self, change: Change, path: Path) -> None:
        if change != Change.deleted and path in (
            self.config.directory_file,
            self.config.directory_sig_file,
        ):
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

    async def _send(self, recipient: str, msg_type: str, comp_id: str, **fields: Any) -> None:
        assert self.nc is not None
        wire = seal(
            self.identity,
            self.directory[recipient],
            msg_type,
            comp_id,
            m.pack(**fields),
            network=self.config.network,
        )
        await self.nc.publish(inbox_subject(self.config.network, recipient), wire)

    async def _on_msg(self, msg: Msg) -> None:
        """Open, then act. Whatever a message does wrong, it is counted under its
        reason and dropped: no input can stop the node serving everyone else."""
        try:
            opened = self.opener.open(msg.data)
        except Rejected as exc:
            log.warning("rejected a message (%s)", exc.reason)
            return
        try:
            await self._dispatch(opened)
        except Equivocation as exc:
            self._drop(opened, "equivocation", exc)
        except (m.BadPayload, PermissionError, KeyError, ValueError) as exc:
            self._drop(opened, "protocol", exc)
        except Exception as exc:  # a bug of ours must not become a remote kill switch
            log.exception("unexpected error handling %s from %s", opened.msg_type, opened.sender)
            self._drop(opened, "protocol", exc)

    def _drop(self, env: Opened, reason: str, exc: BaseException) -> None:
        self.dropped += 1
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
        kind = env.msg_type
        if kind in (m.SPEC, m.TASK, m.SHARE, m.DECLINE):
            comp = self._verified(env, m.signed_spec(data))
            if kind == m.SPEC:
                self._require(env.sender == comp.proposer, "spec not sent by its proposer")
                await self._aggregator_got_spec(comp, m.signed_spec(data))
            elif kind == m.TASK:
                self._require(env.sender == comp.aggregators[0], "task not from the coordinator")
                self._require(self.alias in comp.targets, "task for a round I am not a target of")
                self._spawn(self._answer(comp, m.signed_spec(data)))
            elif kind == m.SHARE:
                await self._aggregator_got_share(comp, env.sender, m.field(data, "share", int))
            else:
                await self._aggregator_got_decline(comp, env.sender, m.field(data, "reason", str))
        elif kind == m.SUM:
            await self._proposer_got_sum(
                env, m.field(data, "sum", int), m.names(data, "contributors")
            )
        elif kind == m.RESUM:
            await self._aggregator_resum(env, m.names(data, "contributors"))
        elif kind == m.REFUSE:
            await self._proposer_got_refusal(env, m.field(data, "reason", str))
        else:
            raise m.BadPayload(f"unknown message type {kind!r}")

    def _verified(self, env: Opened, signed: m.SignedSpec) -> Computation:
        """The signed computation, checked once per comp_id: proposer's key, names me."""
        known = self.specs.get(env.comp_id)
        if known is not None:
            return known
        comp = Computation.model_validate_json(signed.spec)
        self._require(comp.comp_id == env.comp_id, "envelope and spec disagree on comp_id")
        self._require(comp.proposer in self.directory, f"unknown proposer {comp.proposer!r}")
        self._require(
            verify_spec(self.directory, comp.proposer, signed.spec, signed.sig),
            "spec signature does not verify against the proposer's pinned key",
        )
        self._require(
            self.alias in comp.aggregators or self.alias in comp.targets, "spec does not name me"
        )
        self.specs[comp.comp_id] = comp
        return comp

    @staticmethod
    def _require(condition: bool, why: str) -> None:
        if not condition:
            raise PermissionError(why)

    # ── target ───────────────────────────────────────────────────────────────

    async def _answer(self, comp: Computation, signed: m.SignedSpec) -> None:
        """Hand the computation to the handler, then share its answer (or decline)."""
        cid = comp.comp_id
        if cid in self.answers or not self.store.mark_answered(cid, "started"):
            return  # already answering or answered: never twice
        folder = self.config.computation_dir
        future: asyncio.Future[CompleteRecord] = asyncio.get_running_loop().create_future()
        self.answers[cid] = future
        try:
            remaining = comp.expires_at - time.time()
            if remaining <= 0:
                raise TimeoutError
            write_pending(folder, comp)
            self._collect(folder / f"{cid}{COMPLETE_SUFFIX}")  # answered before we watched?
            record = await asyncio.wait_for(future, remaining)
        except TimeoutError:
            await self._decline(comp, signed, "no answer from a handler before the deadline")
            return
        finally:
            self.answers.pop(cid, None)
            for suffix in (PENDING_SUFFIX, COMPLETE_SUFFIX):
                (folder / f"{cid}{suffix}").unlink(missing_ok=True)
        if record.status != "ok" or record.result is None:
            await self._decline(comp, signed, f"handler error: {record.error}")
            return
        parts = split(record.result, len(comp.aggregators))
        for aggregator, share in zip(comp.aggregators, parts, strict=True):
            await self._send(
                aggregator, m.SHARE, cid, spec=signed.spec, sig=signed.sig, share=share
            )
        log.info("answered %s: sent %d shares", cid, len(parts))

    async def _decline(self, comp: Computation, signed: m.SignedSpec, reason: str) -> None:
        log.info("declined %s: %s", comp.comp_id, reason)
        for aggregator in comp.aggregators:
            await self._send(
                aggregator,
                m.DECLINE,
                comp.comp_id,
                spec=signed.spec,
                sig=signed.sig,
                reason=reason[:500],
            )

    def _on_dispatch_change(self, change: Change, path: Path) -> None:
        if change != Change.deleted and path.name.endswith(COMPLETE_SUFFIX):
            self._collect(path)

    def _collect(self, path: Path) -> None:
        future = self.answers.get(path.name.removesuffix(COMPLETE_SUFFIX))
        if future is None or future.done() or not path.exists():
            return
        try:
            future.set_result(read_complete(path))
        except Exception as exc:
            future.set_result(
                CompleteRecord(
                    comp_id=path.stem,
                    status="error",
                    result=None,
                    error=f"unreadable answer file: {exc}",
                )
            )

    # ── aggregator ───────────────────────────────────────────────────────────

    def _round(self, comp: Computation) -> AggregatorRound:
        self._require(self.alias in comp.aggregators, "not an aggregator of this round")
        rnd = self.aggregating.get(comp.comp_id)
        if rnd is None:
            rnd = self.aggregating[comp.comp_id] = AggregatorRound(comp)
            delay = max(comp.expires_at - time.time(), 0.0)
            asyncio.get_running_loop().call_later(
                delay, lambda: self._spawn(self._report(rnd, at_deadline=True))
            )
        return rnd

    async def _aggregator_got_spec(self, comp: Computation, signed: m.SignedSpec) -> None:
        rnd = self._round(comp)
        if comp.aggregators[0] == self.alias:
            for target in comp.targets:
                await self._send(target, m.TASK, comp.comp_id, spec=signed.spec, sig=signed.sig)
        await self._maybe_report(rnd)

    async def _aggregator_got_share(self, comp: Computation, sender: str, share: int) -> None:
        self._require(sender in comp.targets, f"{sender} is not a target of this round")
        rnd = self._round(comp)
        if rnd.reported:
            if sender in rnd.shares and rnd.shares[sender] != share % MODULUS:
                raise Equivocation(f"{sender} sent a second, different share after the report")
            log.info("late share from %s for %s ignored (already reported)", sender, comp.comp_id)
            return
        rnd.add_share(sender, share)
        await self._maybe_report(rnd)

    async def _aggregator_got_decline(self, comp: Computation, sender: str, reason: str) -> None:
        self._require(sender in comp.targets, f"{sender} is not a target of this round")
        rnd = self._round(comp)
        if not rnd.reported:
            rnd.decline(sender, reason)
            await self._maybe_report(rnd)

    async def _maybe_report(self, rnd: AggregatorRound) -> None:
        if rnd.all_in:
            await self._report(rnd, at_deadline=False)

    async def _report(self, rnd: AggregatorRound, *, at_deadline: bool) -> None:
        if rnd.reported:
            return
        rnd.reported = True
        total, contributors = rnd.sum_over()
        if await self._refused(rnd.comp, contributors):
            return
        await self._send(
            rnd.comp.proposer, m.SUM, rnd.comp.comp_id, sum=total, contributors=contributors
        )
        log.info(
            "reported %s: %d contributor(s)%s",
            rnd.comp.comp_id,
            len(contributors),
            " at the deadline" if at_deadline else "",
        )

    async def _aggregator_resum(self, env: Opened, contributors: list[str]) -> None:
        rnd = self.aggregating.get(env.comp_id)
        self._require(rnd is not None, "re-sum for a round I do not hold")
        assert rnd is not None
        self._require(env.sender == rnd.comp.proposer, "re-sum not from the proposer")
        total, names = rnd.sum_over(contributors)
        if await self._refused(rnd.comp, names):
            return
        await self._send(rnd.comp.proposer, m.SUM, env.comp_id, sum=total, contributors=names)
        log.info("re-summed %s over %d contributor(s)", env.comp_id, len(names))

    async def _refused(self, comp: Computation, contributors: list[str]) -> bool:
        """Apply the signed privacy policy: below it, tell the proposer why instead
        of releasing a sum. The policy is enforced here, by the aggregator, because
        the proposer is the party it protects the targets from."""
        why = below_policy(comp, len(contributors))
        if why is None:
            return False
        await self._send(comp.proposer, m.REFUSE, comp.comp_id, reason=why)
        log.info("refused to release a sum for %s: %s", comp.comp_id, why)
        return True

    # ── proposer ─────────────────────────────────────────────────────────────

    async def submit(
        self,
        query: str,
        aggregators: list[str],
        targets: list[str],
        deadline: float,
        metadata: dict[str, Any] | None = None,
        min_contributors: int | None = None,
    ) -> str:
        unknown = sorted({*aggregators, *targets} - set(self.directory))
        if unknown:
            raise ControlError(f"unknown node(s): {', '.join(unknown)}")
        if not aggregators or not targets:
            raise ControlError("a computation needs at least one aggregator and one target")
        if not 0 < deadline <= MAX_DEADLINE_SECONDS:
            raise ControlError(f"deadline must be in (0, {MAX_DEADLINE_SECONDS}] seconds")
        policy = self.config.min_contributors if min_contributors is None else min_contributors
        if type(policy) is not int or policy < 1:
            raise ControlError(f"min_contributors must be an integer >= 1, got {policy!r}")
        comp = Computation(
            comp_id=new_comp_id(),
            query=query,
            proposer=self.alias,
            aggregators=list(dict.fromkeys(aggregators)),
            targets=list(dict.fromkeys(targets)),
            deadline=deadline,
            metadata=metadata or {},
            min_contributors=policy,
        )
        spec = comp.model_dump_json().encode()
        sig = sign_spec(self.identity, spec)
        rnd = self.proposing[comp.comp_id] = ProposerRound(comp)
        self.specs[comp.comp_id] = comp
        asyncio.get_running_loop().call_later(
            comp.deadline + REPORT_GRACE_SECONDS, lambda: self._spawn(self._finish(rnd))
        )
        for aggregator in comp.aggregators:
            await self._send(aggregator, m.SPEC, comp.comp_id, spec=spec, sig=sig)
        log.info(
            "proposed %s to %d aggregator(s), %d target(s)",
            comp.comp_id,
            len(comp.aggregators),
            len(comp.targets),
        )
        return comp.comp_id

    async def _proposer_got_sum(self, env: Opened, total: int, contributors: list[str]) -> None:
        rnd = self.proposing.get(env.comp_id)
        self._require(rnd is not None and rnd.result is None, "sum for no open round of mine")
        assert rnd is not None
        self._require(env.sender in rnd.comp.aggregators, f"{env.sender} is not an aggregator")
        self._require(set(contributors) <= set(rnd.comp.targets), "contributors outside targets")
        rnd.add_report(env.sender, total, contributors)
        self._notify(
            rnd.comp.comp_id,
            {"event": "progress", "reported": sorted(rnd.reports), "waiting": rnd.waiting_for()},
        )
        step = rnd.next_step()
        if step is None:
            return
        action, stale = step
        if action == "final":
            await self._finish(rnd)
            return
        common = sorted(rnd.common_contributors())
        log.info(
            "aggregators disagree on contributors of %s: asking %s to re-sum",
            env.comp_id,
            ", ".join(stale),
        )
        for aggregator in stale:
            await self._send(aggregator, m.RESUM, env.comp_id, contributors=common)

    async def _proposer_got_refusal(self, env: Opened, reason: str) -> None:
        rnd = self.proposing.get(env.comp_id)
        if rnd is None and self.store.result(env.comp_id) is not None:
            return  # a second aggregator's refusal of a round already failed: harmless
        self._require(rnd is not None and rnd.result is None, "refusal for no open round of mine")
        assert rnd is not None
        self._require(env.sender in rnd.comp.aggregators, f"{env.sender} is not an aggregator")
        rnd.refusals[env.sender] = reason[:500]
        await self._finish(rnd)

    async def _finish(self, rnd: ProposerRound) -> None:
        if rnd.result is not None:
            return
        result = rnd.finish()
        self.store.save_result(result)
        write_atomic(
            self.config.data_dir / f"final_{result.comp_id}.json", result_json(result).encode()
        )
        log.info(
            "round %s %s: %d contributor(s), %d missing",
            result.comp_id,
            result.status,
            len(result.contributors),
            len(result.missing),
        )
        self._notify(
            result.comp_id,
            {"event": "result", "ok": True, "result": result.model_dump(mode="json")},
        )
        self.listeners.pop(result.comp_id, None)
        self.proposing.pop(result.comp_id, None)

    def _notify(self, comp_id: str, event: dict[str, Any]) -> None:
        for queue in self.listeners.get(comp_id, []):
            queue.put_nowait(event)

    # ── control channel ──────────────────────────────────────────────────────

    async def _control(self, req: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        op = req.get("op")
        if op == "health":
            yield self.health()
        elif op == "submit":
            comp_id = await self.submit(
                str(req.get("query", "")),
                list(req.get("aggregators") or []),
                list(req.get("targets") or []),
                float(req.get("deadline") or self.config.default_deadline),
                req.get("metadata") or {},
                req.get("min_contributors"),
            )
            yield {"ok": True, "comp_id": comp_id}
        elif op == "wait":
            async for event in self._wait(str(req.get("comp_id", ""))):
                yield event
        else:
            raise ControlError(f"unknown op {op!r}")

    async def _wait(self, comp_id: str) -> AsyncIterator[dict[str, Any]]:
        rnd = self.proposing.get(comp_id)
        if rnd is None:
            stored: ComputationResult | None = self.store.result(comp_id)
            if stored is None:
                raise ControlError(f"{self.alias} proposed no computation {comp_id!r}")
            yield {"event": "result", "ok": True, "result": stored.model_dump(mode="json")}
            return
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.listeners.setdefault(comp_id, []).append(queue)
        yield {"event": "progress", "reported": sorted(rnd.reports), "waiting": rnd.waiting_for()}
        while True:
            event = await queue.get()
            yield event
            if event["event"] == "result":
                return

    def health(self) -> dict[str, Any]:
        return {
            "ok": True,
            "alias": self.alias,
            "role": self.config.role,
            "pid": os.getpid(),
            "connected": bool(self.nc and self.nc.is_connected),
            "subscribed": self.subscribed,
            "rounds": {
                "proposing": len(self.proposing),
                "aggregating": len(self.aggregating),
                "answering": len(self.answers),
            },
            "rejected": dict(self.opener.rejected),
            "dropped": self.dropped,
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="beehive.flower.node", description=__doc__)
    parser.add_argument("--config", type=Path, required=True, help="nodes/<alias>.json")
    args = parser.parse_args(argv)
    os.umask(0o077)
    config = NodeConfig.load(args.config)
    logging.basicConfig(
        level=os.environ.get("BEEHIVE_LOG_LEVEL", "INFO").upper(),
        format=f"%(asctime)s %(levelname)s node={config.alias} %(message)s",
        stream=sys.stderr,
    )
    try:
        asyncio.run(_run(config))
    except (DirectoryError, IdentityError) as exc:
        # Trust material that does not verify is not a crash to retry quietly:
        # say what is wrong, in the node's log, and exit non-zero.
        log.error("refusing to start: %s", exc)
        sys.exit(EXIT_UNTRUSTED)


async def _run(config: NodeConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await Node(config).run(stop)


if __name__ == "__main__":
    main()

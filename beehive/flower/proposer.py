"""The proposer role: sign a computation, collect the aggregators' sums, decide.

The open round (signed spec, reports, refusals) is in SQLite before the spec is
sent and before each report is acknowledged. A restarted proposer reloads its
open rounds, re-arms their finish timers (or finishes at once if the deadline
passed while it was down), and re-sends the spec (aggregators take it again
harmlessly), so `final_<comp_id>.json` still appears.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from typing import Any, Final

from beehive.core.constants import REPORT_GRACE_SECONDS
from beehive.core.dispatch import result_path
from beehive.core.files import write_atomic
from beehive.core.models import Computation, ComputationResult, RoundError, RoundRequest
from beehive.flower import messages as m
from beehive.flower.context import NodeContext, require
from beehive.flower.control import ControlError
from beehive.flower.rounds import ProposerRound
from beehive.flower.store import result_json, storage_failure
from beehive.security import sign_spec
from beehive.security.reports import verify_report

log = logging.getLogger("beehive.node")

ROLE: Final = "proposer"
#: Seconds (one try each) a result the disk refuses is tried again before the
#: round is failed with the disk's reason (inside the waiting client's bound).
SAVE_RETRIES = 5


class Proposer:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.rounds: dict[str, ProposerRound] = {}
        self.signed: dict[str, m.SignedSpec] = {}
        self.listeners: dict[str, list[asyncio.Queue[dict[str, Any]]]] = {}

    def resume(self) -> None:
        for stored in self.ctx.store.open_rounds(ROLE):
            comp = Computation.model_validate_json(stored.spec)
            rnd = ProposerRound.restore(comp, stored.state)
            self.rounds[comp.comp_id] = rnd
            self.signed[comp.comp_id] = m.SignedSpec(stored.spec, stored.sig)
            log.info("resumed %s as proposer (%d report(s))", comp.comp_id, len(rnd.reports))
            # Past its deadline: reports may wait in our inbox stream; read them first.
            self._arm(rnd, at_least=REPORT_GRACE_SECONDS)
            if comp.expires_at > time.time():
                self.ctx.spawn(self._send_specs(comp, self.signed[comp.comp_id]))

    def _arm(self, rnd: ProposerRound, at_least: float = 0.0) -> None:
        delay = rnd.comp.expires_at + REPORT_GRACE_SECONDS - time.time()
        self.ctx.later(max(delay, at_least), lambda: self._finish(rnd))

    async def submit(self, request: RoundRequest) -> str:
        """Sign and send the round `request` asks for; its defaults are this node's
        (the topology's). Refused with a ControlError naming what is wrong."""
        cfg = self.ctx.config
        if request.comp_id in self.rounds or self.ctx.store.result(request.comp_id) is not None:
            return request.comp_id  # asked again (a retry after a timeout): one round per id
        unknown = sorted({*request.aggregators, *request.targets} - set(self.ctx.directory))
        if unknown:
            raise ControlError(f"unknown node(s): {', '.join(unknown)}")
        try:
            full = request.with_defaults(
                deadline=cfg.default_deadline,
                min_contributors=cfg.min_contributors,
                sharing=cfg.sharing,
                threshold=cfg.threshold,
                dp=cfg.dp,
            )
        except RoundError as exc:
            raise ControlError(str(exc)) from exc
        comp = full.computation(self.ctx.alias)
        why = cfg.privacy.refuses(comp)
        if why is not None:  # the participants would refuse it: say so now
            raise ControlError(f"refused by {self.ctx.alias}'s privacy floor: {why}")
        spec = comp.model_dump_json(exclude={"node"}).encode()  # a handler's, not the spec's
        signed = m.SignedSpec(spec, sign_spec(self.ctx.identity, spec))
        rnd = self.rounds[comp.comp_id] = ProposerRound(comp)
        self.signed[comp.comp_id] = signed
        self.ctx.store.begin_round(
            ROLE, comp.comp_id, signed.spec, signed.sig, rnd.state(), comp.expires_at
        )
        self.ctx.store.flush()  # a round that was sent is one a restart resumes
        self._arm(rnd)
        await self._send_specs(comp, signed)
        log.info(
            "proposed %s to %d aggregator(s), %d target(s)",
            comp.comp_id,
            len(comp.aggregators),
            len(comp.targets),
        )
        return comp.comp_id

    async def _send_specs(self, comp: Computation, signed: m.SignedSpec) -> None:
        """The spec to every aggregator; each is `unsent` until NATS acknowledged it."""
        rnd = self.rounds.get(comp.comp_id)

        async def send(a: str) -> None:
            await self.ctx.send(a, m.SPEC, comp.comp_id, spec=signed.spec, sig=signed.sig)
            if rnd is not None:
                rnd.unsent.discard(a)

        if rnd is not None:
            rnd.unsent.update(comp.aggregators)
        await asyncio.gather(*(send(a) for a in comp.aggregators))

    def _open_round(self, comp_id: str, sender: str, what: str) -> ProposerRound | None:
        """The open round a report is for; None if it is already final (a late or
        repeated report — harmless); a breach of the rules otherwise."""
        rnd = self.rounds.get(comp_id)
        if rnd is None and self.ctx.store.result(comp_id) is not None:
            return None
        require(rnd is not None and rnd.result is None, f"{what} for no open round of mine")
        assert rnd is not None
        require(sender in rnd.comp.aggregators, f"{sender} is not an aggregator")
        return rnd

    async def on_sum(
        self,
        comp_id: str,
        sender: str,
        total: int,
        contributors: list[str],
        attest: bytes,
        why_missing: dict[str, str] | None = None,
    ) -> None:
        rnd = self._open_round(comp_id, sender, "sum")
        if rnd is None:
            return
        require(set(contributors) <= set(rnd.comp.targets), "contributors outside targets")
        require(
            verify_report(self.ctx.directory, sender, comp_id, contributors, attest),
            "sum without its aggregator's signature over the contributor set",
        )
        rnd.add_report(sender, total, contributors, attest)
        rnd.learn_why_missing(why_missing or {})
        self.ctx.store.save_round(ROLE, comp_id, rnd.state())
        self._notify(
            comp_id,
            {"event": "progress", "reported": sorted(rnd.reports), "waiting": rnd.waiting_for()},
        )
        await self._step(rnd)

    async def on_refusal(self, comp_id: str, sender: str, reason: str) -> None:
        rnd = self._open_round(comp_id, sender, "refusal")
        if rnd is None:
            return
        rnd.refusals[sender] = reason[:500]
        self.ctx.store.save_round(ROLE, comp_id, rnd.state())
        await self._step(rnd)

    async def _step(self, rnd: ProposerRound) -> None:
        step = rnd.next_step()
        if step is None:
            return
        action, stale = step
        if action == "final":
            await self._finish(rnd)
            return
        self.ctx.store.save_round(ROLE, rnd.comp.comp_id, rnd.state())
        common = sorted(rnd.common_contributors())
        log.info(
            "aggregators disagree on contributors of %s: asking %s to re-sum",
            rnd.comp.comp_id,
            ", ".join(stale),
        )
        evidence = rnd.evidence()
        for aggregator in stale:
            await self.ctx.send(
                aggregator, m.RESUM, rnd.comp.comp_id, contributors=common, reports=evidence
            )

    async def _finish(self, rnd: ProposerRound, attempt: int = 0) -> None:
        """Decide the round, store its result, tell whoever waits. A disk that
        refuses the result (full, read-only) is tried again every second for
        SAVE_RETRIES s; then the round is `failed` with that reason, unreleased:
        a waiting client always gets an answer."""
        if rnd.comp.comp_id not in self.rounds or (rnd.result is not None and not attempt):
            return
        result = rnd.result or rnd.finish()
        try:
            self._save(result)
        except (sqlite3.Error, OSError) as exc:
            why = storage_failure(exc)
            if why is None:
                raise
            self.ctx.store.failure = why
            if attempt < SAVE_RETRIES:
                log.warning("round %s: cannot store its result (%s); retrying", result.comp_id, why)
                self.ctx.later(1.0, lambda: self._finish(rnd, attempt + 1))
                return
            log.error("round %s failed: its result could not be stored: %s", result.comp_id, why)
            result = result.model_copy(
                update={
                    "status": "failed",
                    "result": None,
                    "reason": f"{why}: the result could not be stored, so it is not released",
                }
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
        self.rounds.pop(result.comp_id, None)
        self.signed.pop(result.comp_id, None)

    def _save(self, result: ComputationResult) -> None:
        """The result in the store and in final_<id>.json (each idempotent)."""
        store = self.ctx.store
        store.save_result(result)
        store.close_round(ROLE, result.comp_id)
        store.flush()  # committed before anyone is told: `hive results` reads it
        write_atomic(
            result_path(self.ctx.config.data_dir, result.comp_id),
            result_json(result).encode(),
        )
        store.failure = None

    def _notify(self, comp_id: str, event: dict[str, Any]) -> None:
        for queue in self.listeners.get(comp_id, []):
            queue.put_nowait(event)

    async def wait(self, comp_id: str) -> AsyncIterator[dict[str, Any]]:
        rnd = self.rounds.get(comp_id)
        if rnd is None:
            stored: ComputationResult | None = self.ctx.store.result(comp_id)
            if stored is None:
                raise ControlError(f"{self.ctx.alias} proposed no computation {comp_id!r}")
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

"""The target role: hand a computation to the handler, share its answer once.

A target's round goes through three persisted phases, each written to SQLite
before anything leaves the node:

    pending   `<comp_id>.pending` written; waiting for the handler's `.complete`
    shares    the answer split into shares, the exact shares stored, being sent
    done      shares sent (or a decline sent); nothing more to do

A restarted target resumes from the phase it reached: it re-watches for the
answer, or resends the *same* shares (fresh ones would be two different shares
for one round — equivocation, excluded by the aggregators), or does nothing.
Aggregators may forward the task more than once (failover); the first starts the round
(`Store.begin_round` is one INSERT), the rest are ignored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Final

from beehive.core.constants import COMPLETE_SUFFIX
from beehive.core.dispatch import (
    CompleteRecord,
    complete_path,
    pending_path,
    read_complete,
    write_pending,
)
from beehive.core.models import Computation
from beehive.core.processes import served
from beehive.flower import messages as m
from beehive.flower.context import NodeContext
from beehive.flower.faults import Faults
from beehive.flower.rounds import NO_ANSWER, NO_HANDLER
from beehive.security import shamir, split

log = logging.getLogger("beehive.node")

ROLE: Final = "target"


def decline_lead(deadline: float) -> float:
    """How long before the round's deadline a target stops waiting for its
    handler and declines, saying why: early enough that the decline reaches the
    aggregators before they report (a tenth of the deadline, at most a second)."""
    return min(1.0, deadline / 10)


def make_shares(comp: Computation, value: int) -> list[int]:
    """One share per aggregator, in `comp.aggregators` order, per the signed scheme."""
    if comp.sharing == "shamir":
        assert comp.threshold is not None  # the model guarantees it
        return shamir.split(value, len(comp.aggregators), comp.threshold)
    return split(value, len(comp.aggregators))


class Target:
    def __init__(self, ctx: NodeContext, faults: Faults | None = None) -> None:
        self.ctx = ctx
        #: Fault-injection tests only (see faults.py); None in production.
        self.faults = faults
        self.folder = ctx.config.computation_dir
        self.answers: dict[str, asyncio.Future[CompleteRecord]] = {}

    def resume(self) -> None:
        """Pick up every round this target had not finished when it stopped."""
        now = time.time()
        for stored in self.ctx.store.open_rounds(ROLE):
            comp = Computation.model_validate_json(stored.spec)
            signed = m.SignedSpec(stored.spec, stored.sig)
            phase = stored.state.get("phase")
            if comp.expires_at <= now:
                self.ctx.store.close_round(ROLE, comp.comp_id)
                self._cleanup(comp.comp_id)
                continue
            log.info("resuming %s as target (%s)", comp.comp_id, phase)
            if phase == "pending":
                self._begin(comp, signed)
            elif phase == "shares":
                self.ctx.spawn(self._send_shares(comp, signed, list(stored.state["shares"])))
            elif phase == "declined":
                self.ctx.spawn(self._send_declines(comp, signed, str(stored.state["reason"])))

    async def on_task(self, comp: Computation, signed: m.SignedSpec) -> None:
        """Start answering, once per computation, unless it is already too late."""
        if comp.expires_at <= time.time():
            log.info("task %s arrived after its deadline: not executed", comp.comp_id)
            return
        if not self.ctx.store.begin_round(
            ROLE, comp.comp_id, signed.spec, signed.sig, {"phase": "pending"}, comp.expires_at
        ):
            return
        why = self.ctx.config.privacy.refuses(comp)
        if why is not None:  # this participant's own policy: no answer leaves for it
            await self._decline(comp, signed, f"privacy floor: {why}")
            return
        self._begin(comp, signed)

    # ── the handler, through the dispatch folder ─────────────────────────────

    def _begin(self, comp: Computation, signed: m.SignedSpec) -> None:
        cid = comp.comp_id
        if cid in self.answers:
            return
        future: asyncio.Future[CompleteRecord] = asyncio.get_running_loop().create_future()
        self.answers[cid] = future
        pending, complete = self._paths(cid)
        if not pending.exists() and not complete.exists():
            write_pending(self.folder, comp)
        self.collect(complete)  # answered before we watched?
        self.ctx.spawn(self._await_answer(comp, signed, future))

    async def _await_answer(
        self, comp: Computation, signed: m.SignedSpec, future: asyncio.Future[CompleteRecord]
    ) -> None:
        cid = comp.comp_id
        try:
            answer_by = comp.expires_at - decline_lead(comp.deadline)
            record = await asyncio.wait_for(future, max(answer_by - time.time(), 0.0))
        except TimeoutError:
            run_dir = self.ctx.config.control_socket.parent
            why = NO_ANSWER if served(run_dir, self.ctx.alias) else NO_HANDLER
            await self._decline(comp, signed, why)
            return
        finally:
            self.answers.pop(cid, None)
        if record.status != "ok" or record.result is None:
            # The category only: the handler's message may quote the node's data,
            # and a decline travels to the aggregators (and its reason, to the
            # proposer). The message is in this node's handler log.
            await self._decline(comp, signed, "timeout" if record.timed_out else "handler error")
            return
        shares = make_shares(comp, record.result)
        # On disk before the first one leaves: a restart resends these, never new ones.
        self.ctx.store.save_round(ROLE, cid, {"phase": "shares", "shares": shares})
        self.ctx.store.flush()
        await self._send_shares(comp, signed, shares)

    async def _send_shares(
        self, comp: Computation, signed: m.SignedSpec, shares: list[int]
    ) -> None:
        cid = comp.comp_id
        sends = [
            self.ctx.send(aggregator, m.SHARE, cid, spec=signed.spec, sig=signed.sig, share=share)
            for aggregator, share in zip(comp.aggregators, shares, strict=True)
        ]
        if self.faults is None:
            await asyncio.gather(*sends)
        else:  # one at a time, so a fault can land between two shares
            for sent, send in enumerate(sends, 1):
                await send
                if sent < len(sends) and not self.faults.after_share(cid, sent, len(sends)):
                    for unsent in sends[sent:]:
                        unsent.close()  # never awaited: close, or Python warns
                    break
        self.ctx.store.close_round(ROLE, cid, {"phase": "done"})
        self._cleanup(cid)
        log.info("answered %s: sent %d shares", cid, len(shares))

    async def _decline(self, comp: Computation, signed: m.SignedSpec, reason: str) -> None:
        reason = reason[:500]
        self.ctx.store.save_round(ROLE, comp.comp_id, {"phase": "declined", "reason": reason})
        self.ctx.store.flush()  # a restart resends this decline, never an answer
        await self._send_declines(comp, signed, reason)

    async def _send_declines(self, comp: Computation, signed: m.SignedSpec, reason: str) -> None:
        log.info("declined %s: %s", comp.comp_id, reason)
        await asyncio.gather(
            *(
                self.ctx.send(
                    aggregator, m.DECLINE, comp.comp_id, spec=signed.spec, sig=signed.sig,
                    reason=reason,
                )
                for aggregator in comp.aggregators
            )
        )  # fmt: skip
        self.ctx.store.close_round(ROLE, comp.comp_id, {"phase": "done"})
        self._cleanup(comp.comp_id)

    def _paths(self, cid: str) -> tuple[Path, Path]:
        return pending_path(self.folder, cid), complete_path(self.folder, cid)

    def _cleanup(self, cid: str) -> None:
        for path in self._paths(cid):
            path.unlink(missing_ok=True)

    def collect(self, path: Path) -> None:
        """A `.complete` appeared (the node watches the folder): hand it to its round."""
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

    def health(self) -> dict[str, Any]:
        return {"answering": len(self.answers)}

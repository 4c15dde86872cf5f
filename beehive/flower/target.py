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
from beehive.core.models import Computation, DpPolicy
from beehive.core.processes import served
from beehive.flower import messages as m
from beehive.flower.context import NodeContext
from beehive.flower.faults import Faults
from beehive.flower.rounds import NO_ANSWER, NO_HANDLER, modulus
from beehive.flower.store import DP_UNITS
from beehive.security import noise, shamir, split

log = logging.getLogger("beehive.node")

ROLE: Final = "target"


def decline_lead(deadline: float) -> float:
    """How long before the round's deadline a target stops waiting for its
    handler and declines, saying why: early enough that the decline reaches the
    aggregators before they report (a tenth of the deadline, at most a second)."""
    return min(1.0, deadline / 10)


#: Why a target declines a round its DP budget cannot pay for: all the
#: proposer learns (the spent amounts stay on the target's machine).
DP_EXHAUSTED = "dp budget exhausted"


def noisy_answer(comp: Computation, value: int, policy: DpPolicy | None) -> int:
    """A DP round's answer as it may leave: clipped into the round's range (and
    this participant's own, if it has one), plus this contributor's share of the
    noise, calibrated so that any `min_contributors` contributions alone make
    the total epsilon-DP (beehive/security/noise.py). Reduced into the round's
    ring by `make_shares`' caller: the noise may make it negative."""
    dp = comp.dp
    assert dp is not None
    clip = dp.range if policy is None else policy.clip_range(dp)
    assert clip is not None  # policy.refuses() declined a disjoint range
    clipped = min(max(value, clip[0]), clip[1])
    alpha = noise.alpha_for(dp.epsilon, dp.width)
    return clipped + noise.contribution(comp.min_contributors, alpha)


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
        floor = self.ctx.config.privacy
        why = floor.refuses(comp)
        if why is None and floor.dp is not None:
            why = floor.dp.refuses(comp.dp)
        if why is not None:  # this participant's own policy: no answer leaves for it
            await self._decline(comp, signed, f"privacy floor: {why}")
            return
        # Paid before the handler runs, in the transaction that recorded the round:
        # both are on disk before any share leaves (the shares' flush commits them).
        if floor.dp is not None and comp.dp is not None:
            dp = floor.dp
            if not self.ctx.store.spend_dp(
                comp.comp_id, comp.proposer, comp.dp.epsilon, dp.budget, dp.window
            ):
                await self._decline(comp, signed, DP_EXHAUSTED)
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
        value = record.result
        if comp.dp is not None:  # noise before splitting: no one sees a clean answer
            value = noisy_answer(comp, value, self.ctx.config.privacy.dp) % modulus(comp)
        shares = make_shares(comp, value)
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

    def dp_budget(self) -> dict[str, Any] | None:
        """This participant's DP policy and what each proposer spent of it in the
        current window (`hive status`), None without a policy."""
        dp = self.ctx.config.privacy.dp
        if dp is None:
            return None
        spent = {p: units / DP_UNITS for p, units in self.ctx.store.dp_spenders(dp.window).items()}
        return {
            "epsilon": dp.epsilon,
            "budget": dp.budget,
            "window_s": dp.window,
            "range": list(dp.range),
            "spent": spent,
            "remaining": {p: max(dp.budget - s, 0.0) for p, s in spent.items()},
        }

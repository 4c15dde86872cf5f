"""The aggregator role: forward the task, keep every share, report a sum.

The round's first aggregator (the coordinator) forwards the signed task to every
target at once. So that no single aggregator is a point of failure, every other
aggregator forwards it too, to each target it has heard nothing from, once
TASK_FAILOVER of the deadline has passed (targets answer once, whoever asks
first): a failover, not a wait — with a live coordinator nothing waits on it, and
each target gets one task instead of one per aggregator.
It keeps each contributor's share until the round is over, to re-sum once over
the set the aggregators agreed on (never any other: beehive/security/reports.py),
and reports as soon as every target answered or declined — or at the deadline.
It takes part only in rounds at least as private as its own floor
(`PrivacyFloor`), and it forgets the shares once the round is over, keeping only
what it reported. Its state (shares, declines, exclusions, whether
it reported) is in SQLite before the message that changed it is acknowledged; a
restarted aggregator reloads it, re-arms its deadline, and reports if it was
all-in but had not reported yet.
"""

from __future__ import annotations

import logging
import time
from typing import Final

from beehive.core.constants import REPORT_GRACE_SECONDS
from beehive.core.models import Computation
from beehive.flower import messages as m
from beehive.flower.context import NodeContext, require
from beehive.flower.rounds import (
    AggregatorRound,
    Equivocation,
    ResumRefused,
    below_policy,
    why_missing,
)
from beehive.security.reports import sign_report, verify_report

log = logging.getLogger("beehive.node")

ROLE: Final = "aggregator"

#: How long past its deadline a round's shares are kept for a re-sum: the
#: proposer decides by its deadline plus REPORT_GRACE_SECONDS; a few seconds on
#: top for the message in flight. Then the shares are deleted (the round stays as
#: a tombstone without them, so a late duplicate still finds "already done").
KEEP_AFTER_DEADLINE = REPORT_GRACE_SECONDS + 5.0
#: How long an aggregator whose deadline fired may read what is already in its
#: inbox before it reports: well inside the proposer's REPORT_GRACE_SECONDS.
DRAIN_SECONDS = 1.0
#: Share of the deadline after which a non-coordinating aggregator forwards the
#: task to the targets it has not heard from (the coordinator may be down).
TASK_FAILOVER = 0.25


class Aggregator:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.rounds: dict[str, AggregatorRound] = {}
        self.signed: dict[str, m.SignedSpec] = {}  # to forward the task on failover

    def resume(self) -> None:
        now = time.time()
        for stored in self.ctx.store.open_rounds(ROLE):
            comp = Computation.model_validate_json(stored.spec)
            rnd = AggregatorRound.restore(comp, stored.state)
            if comp.expires_at + KEEP_AFTER_DEADLINE < now:
                rnd.forget_shares()
                self.ctx.store.close_round(ROLE, comp.comp_id, rnd.state())
                continue
            self.rounds[comp.comp_id] = rnd
            self.signed[comp.comp_id] = m.SignedSpec(stored.spec, stored.sig)
            self._arm(rnd)
            log.info("resumed %s as aggregator (%d share(s))", comp.comp_id, len(rnd.shares))
            if rnd.all_in and not rnd.reported:
                self.ctx.spawn(self._report(rnd, at_deadline=False))

    async def _round(self, comp: Computation, signed: m.SignedSpec) -> AggregatorRound | None:
        """This node's round for `comp`, created (and persisted) on first sight;
        None for a round that ended before we heard of it."""
        require(self.ctx.alias in comp.aggregators, "not an aggregator of this round")
        rnd = self.rounds.get(comp.comp_id)
        if rnd is not None:
            return rnd
        if comp.expires_at + REPORT_GRACE_SECONDS < time.time():
            log.info("message for %s arrived after its deadline: ignored", comp.comp_id)
            return None
        rnd = AggregatorRound(comp)
        if not self.ctx.store.begin_round(
            ROLE, comp.comp_id, signed.spec, signed.sig, rnd.state(), comp.expires_at
        ):
            return None  # held before and already closed
        why = self.ctx.config.privacy.refuses(comp)
        if why is not None:
            # Never opened: closed at once, so its later shares find a tombstone.
            self.ctx.store.close_round(ROLE, comp.comp_id)
            await self._refuse(comp, f"privacy floor: {why}")
            return None
        self.rounds[comp.comp_id] = rnd
        self.signed[comp.comp_id] = signed
        self._arm(rnd)
        return rnd

    def _arm(self, rnd: AggregatorRound) -> None:
        """Report at the deadline at the latest; forget the round a while after."""
        cid = rnd.comp.comp_id
        now = time.time()
        self.ctx.later(rnd.comp.expires_at - now, lambda: self._report(rnd, at_deadline=True))
        if rnd.comp.aggregators[0] != self.ctx.alias:
            failover = rnd.comp.timestamp + TASK_FAILOVER * rnd.comp.deadline - now
            self.ctx.later(failover, lambda: self._forward_to_silent(rnd))
        self.ctx.later(rnd.comp.expires_at + KEEP_AFTER_DEADLINE - now, lambda: self._forget(cid))

    async def _forget(self, comp_id: str) -> None:
        self.signed.pop(comp_id, None)
        rnd = self.rounds.pop(comp_id, None)
        if rnd is not None:
            rnd.forget_shares()
            self.ctx.store.close_round(ROLE, comp_id, rnd.state())
            self.ctx.store.checkpoint()

    def _save(self, rnd: AggregatorRound) -> None:
        """Saved with the next commit, from the round as it is then: a thousand
        shares between two commits are one write of the round, not a thousand."""
        self.ctx.store.save_round_later(ROLE, rnd.comp.comp_id, rnd.state)

    # ── messages ─────────────────────────────────────────────────────────────

    async def on_spec(self, comp: Computation, signed: m.SignedSpec) -> None:
        rnd = await self._round(comp, signed)
        if rnd is None:
            return
        if comp.aggregators[0] == self.ctx.alias:
            await self._forward(rnd, comp.targets)
        await self._maybe_report(rnd)

    async def _forward_to_silent(self, rnd: AggregatorRound) -> None:
        """Failover: the task to every target this aggregator has not heard from."""
        silent = [t for t in rnd.comp.targets if t not in rnd.shares and t not in rnd.declined]
        if silent and not rnd.reported and rnd.comp.comp_id in self.rounds:
            log.info("forwarding %s to %d silent target(s)", rnd.comp.comp_id, len(silent))
            await self._forward(rnd, silent)

    async def _forward(self, rnd: AggregatorRound, targets: list[str]) -> None:
        signed = self.signed[rnd.comp.comp_id]
        await self.ctx.send_all(targets, m.TASK, rnd.comp.comp_id, spec=signed.spec, sig=signed.sig)

    async def on_share(
        self, comp: Computation, signed: m.SignedSpec, sender: str, share: int
    ) -> None:
        require(sender in comp.targets, f"{sender} is not a target of this round")
        rnd = await self._round(comp, signed)
        if rnd is None:
            return
        if rnd.reported:
            if sender in rnd.shares and rnd.shares[sender] != share % rnd.modulus:
                raise Equivocation(f"{sender} sent a second, different share after the report")
            log.info("late share from %s for %s ignored (already reported)", sender, comp.comp_id)
            return
        try:
            if not rnd.add_share(sender, share):
                return  # an identical resend (a restarted target): nothing changed
        finally:
            self._save(rnd)  # an exclusion for equivocation is state too
        await self._maybe_report(rnd)

    async def on_decline(
        self, comp: Computation, signed: m.SignedSpec, sender: str, reason: str
    ) -> None:
        require(sender in comp.targets, f"{sender} is not a target of this round")
        rnd = await self._round(comp, signed)
        if rnd is None or rnd.reported:
            return
        rnd.decline(sender, reason)
        self._save(rnd)
        await self._maybe_report(rnd)

    async def on_resum(
        self,
        comp_id: str,
        sender: str,
        contributors: list[str],
        reports: dict[str, tuple[list[str], bytes]],
    ) -> None:
        """Sum once more, over exactly the set every aggregator's signed report
        shares with ours; refuse (and count `resum_refused`) anything else."""
        rnd = self.rounds.get(comp_id)
        if rnd is None:
            raise ResumRefused("re-sum for a round I do not hold (over, or never mine)")
        require(sender == rnd.comp.proposer, "re-sum not from the proposer")
        others: dict[str, frozenset[str]] = {}
        for agg, (names_, sig) in reports.items():
            if agg in rnd.comp.aggregators and agg != self.ctx.alias:
                if not verify_report(self.ctx.directory, agg, comp_id, names_, sig):
                    raise ResumRefused(f"the report attributed to {agg} is not signed by it")
                others[agg] = frozenset(names_)
        why = rnd.resum_refusal(contributors, others, self.ctx.alias)
        if why is not None:
            await self._refuse(rnd.comp, f"re-sum refused: {why}")
            raise ResumRefused(why)
        total, names = rnd.sum_over(contributors)
        rnd.resummed = True
        rnd.forget_shares()  # no further sum can be asked for
        await self._send_sum(rnd, total, names)
        self._save(rnd)
        log.info("re-summed %s over %d contributor(s)", comp_id, len(names))

    # ── reporting ────────────────────────────────────────────────────────────

    async def _maybe_report(self, rnd: AggregatorRound) -> None:
        if rnd.all_in:
            await self._report(rnd, at_deadline=False)

    async def _report(self, rnd: AggregatorRound, *, at_deadline: bool) -> None:
        if rnd.reported:
            return
        if at_deadline and not rnd.all_in:
            # Shares that reached the inbox in time count, even when this node
            # was too slow (frozen, overloaded) to read them before its timer.
            await self.ctx.drain_inbox(DRAIN_SECONDS)
            if rnd.reported:
                return  # the last share came in while draining and reported
        rnd.reported = True  # before any await: another report may be under way
        total, contributors = rnd.sum_over()
        if not await self._refused(rnd, contributors):
            rnd.reported_set = contributors
            await self._send_sum(rnd, total, contributors)
            log.info(
                "reported %s: %d contributor(s)%s",
                rnd.comp.comp_id,
                len(contributors),
                " at the deadline" if at_deadline else "",
            )
        # Saved after the send: a crash in between reports again on restart,
        # which the proposer takes as the same report. At the deadline no message
        # is being acknowledged, whose commit would carry it: commit it now.
        self._save(rnd)
        if at_deadline:
            self.ctx.store.flush()

    async def _send_sum(self, rnd: AggregatorRound, total: int, contributors: list[str]) -> None:
        """A sum, with this aggregator's signature over its contributor set: the
        evidence a re-sum at another aggregator needs (beehive/security/reports.py);
        and why each other target is missing (categories: `why_missing`)."""
        cid = rnd.comp.comp_id
        attest = sign_report(self.ctx.identity, cid, contributors)
        missing = why_missing(rnd.comp.targets, set(contributors), rnd.declined)
        await self.ctx.send(
            rnd.comp.proposer, m.SUM, cid, sum=total, contributors=contributors, attest=attest,
            missing=missing,
        )  # fmt: skip

    async def _refused(self, rnd: AggregatorRound, contributors: list[str]) -> bool:
        """Apply the signed privacy policy: below it, tell the proposer why instead
        of releasing a sum. The policy is enforced here, by the aggregator, because
        the proposer is the party it protects the targets from. The reason says
        what happened to the others: silent, or declined (and why)."""
        why = below_policy(rnd.comp, len(contributors))
        if why is None:
            return False
        silent = [t for t in rnd.comp.targets if t not in rnd.shares and t not in rnd.declined]
        causes = []
        if silent:
            causes.append(f"no answer from {', '.join(silent)} before the deadline")
        if rnd.declined:
            causes.append(
                "declined: " + ", ".join(f"{t} ({r})" for t, r in sorted(rnd.declined.items()))
            )
        await self._refuse(rnd.comp, "; ".join([why, *causes]))
        return True

    async def _refuse(self, comp: Computation, why: str) -> None:
        await self.ctx.send(comp.proposer, m.REFUSE, comp.comp_id, reason=why)
        log.info("refused %s: %s", comp.comp_id, why)

"""The round's bookkeeping, free of I/O so every rule can be tested directly.

An aggregator keeps each contributor's share until the round is final, so it can
re-sum over any subset the proposer asks for. The proposer combines only sums
over one identical contributor set: a result is never silently wrong.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from beehive.core.constants import MODULUS
from beehive.core.models import Computation, ComputationResult


class Equivocation(ValueError):
    """A target sent two different shares for one computation."""


def below_policy(comp: Computation, contributors: int) -> str | None:
    """Why a sum over `contributors` answers may not be released, or None if it may.

    A sum over one answer *is* that answer; the policy is what makes a total an
    aggregate.
    """
    if contributors < comp.min_contributors:
        return (
            f"only {contributors} contributor(s); the privacy policy of this computation "
            f"needs at least {comp.min_contributors} (min_contributors)"
        )
    return None


@dataclass
class AggregatorRound:
    comp: Computation
    shares: dict[str, int] = field(default_factory=dict)
    declined: dict[str, str] = field(default_factory=dict)
    equivocated: set[str] = field(default_factory=set)
    reported: bool = False

    def add_share(self, target: str, share: int) -> bool:
        """Record a share; False for a harmless identical resend.

        A second, different share excludes the target from the round: we cannot
        tell which one is honest, and keeping either could make the total wrong.
        Its slot becomes a decline, so the round still ends without waiting.
        """
        share %= MODULUS
        if target in self.equivocated:
            raise Equivocation(f"{target} equivocated earlier and is excluded from this round")
        known = self.shares.get(target)
        if known is not None:
            if known != share:
                del self.shares[target]
                self.equivocated.add(target)
                self.declined[target] = "excluded: sent two different shares"
                raise Equivocation(f"{target} sent a second, different share; excluded")
            return False
        self.declined.pop(target, None)
        self.shares[target] = share
        return True

    def decline(self, target: str, reason: str) -> None:
        if target not in self.shares and target not in self.equivocated:
            self.declined[target] = reason

    @property
    def all_in(self) -> bool:
        """Every target answered or declined: report now instead of at the deadline."""
        return len(self.shares) + len(self.declined) >= len(set(self.comp.targets))

    def sum_over(self, contributors: list[str] | None = None) -> tuple[int, list[str]]:
        """The sum over `contributors` (default: everyone we hold a share of)."""
        names = sorted(self.shares if contributors is None else contributors)
        missing = [n for n in names if n not in self.shares]
        if missing:
            raise KeyError(f"no share held for {', '.join(missing)}")
        return sum(self.shares[n] for n in names) % MODULUS, names


@dataclass
class Report:
    total: int
    contributors: frozenset[str]


@dataclass
class ProposerRound:
    """Collects one report per aggregator; decides combine, re-sum or wait."""

    comp: Computation
    reports: dict[str, Report] = field(default_factory=dict)
    refusals: dict[str, str] = field(default_factory=dict)
    result: ComputationResult | None = None

    def add_report(self, aggregator: str, total: int, contributors: list[str]) -> None:
        self.reports[aggregator] = Report(total % MODULUS, frozenset(contributors))

    def waiting_for(self) -> list[str]:
        return [a for a in self.comp.aggregators if a not in self.reports]

    def next_step(self) -> tuple[str, list[str]] | None:
        """('final', []) when combinable, ('resum', aggregators) when sets differ, else None.

        For a re-sum, the reports of the named aggregators are dropped: they are
        asked for a new sum over `common_contributors()`.
        """
        if self.waiting_for():
            return None
        sets = {r.contributors for r in self.reports.values()}
        if len(sets) == 1:
            return ("final", [])
        common = self.common_contributors()
        stale = [a for a, r in self.reports.items() if r.contributors != common]
        for a in stale:
            del self.reports[a]
        return ("resum", sorted(stale))

    def common_contributors(self) -> frozenset[str]:
        sets = [r.contributors for r in self.reports.values()]
        return frozenset.intersection(*sets) if sets else frozenset()

    def finish(self, reason: str | None = None) -> ComputationResult:
        """The result from agreeing reports, or `failed` when some never came."""
        comp = self.comp
        now = time.time()
        if self.refusals:
            why = "; ".join(
                f"aggregator {a} refused: {r}" for a, r in sorted(self.refusals.items())
            )
            return self._result("failed", None, [], sorted(comp.targets), why, now)
        waiting = self.waiting_for()
        sets = {r.contributors for r in self.reports.values()}
        if waiting or len(sets) != 1:
            why = reason or f"no report from aggregator(s) {', '.join(waiting)} before the deadline"
            return self._result("failed", None, [], sorted(comp.targets), why, now)
        contributors = sorted(sets.pop())
        missing = sorted(set(comp.targets) - set(contributors))
        if not contributors:
            return self._result("failed", None, [], missing, "no target contributed", now)
        refused = below_policy(comp, len(contributors))
        if refused is not None:  # an aggregator should have refused already
            return self._result("failed", None, [], sorted(comp.targets), refused, now)
        total = sum(r.total for r in self.reports.values()) % MODULUS
        status = "partial" if missing else "complete"
        return self._result(status, total, contributors, missing, None, now)

    def _result(self, status, total, contributors, missing, reason, now) -> ComputationResult:
        self.result = ComputationResult(
            comp_id=self.comp.comp_id,
            status=status,
            result=total,
            contributors=contributors,
            missing=missing,
            query=self.comp.query,
            proposer=self.comp.proposer,
            aggregators=list(self.comp.aggregators),
            reason=reason,
            started_at=self.comp.timestamp,
            finished_at=now,
        )
        return self.result

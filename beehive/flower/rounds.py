"""The round's bookkeeping, free of I/O so every rule can be tested directly.

An aggregator keeps each contributor's share until the round is final, so it can
re-sum over any subset the proposer asks for. The proposer combines only sums
over one identical contributor set: a result is never silently wrong.

Each round can turn into a plain dict (`state()`) and back (`restore`), which is
what the node persists in SQLite before it acknowledges the message that changed
the round, so a restarted node resumes exactly where it was.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from beehive.core.constants import MODULUS
from beehive.core.errors import BeehiveError
from beehive.core.models import Computation, ComputationResult
from beehive.security.shamir import PRIME, Inconsistent, reconstruct


def modulus(comp: Computation) -> int:
    """The ring shares and sums of this round live in."""
    return PRIME if comp.sharing == "shamir" else MODULUS


class Equivocation(BeehiveError, ValueError):
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

    @property
    def modulus(self) -> int:
        return modulus(self.comp)

    def state(self) -> dict[str, Any]:
        return {
            "shares": self.shares,
            "declined": self.declined,
            "equivocated": sorted(self.equivocated),
            "reported": self.reported,
        }

    @classmethod
    def restore(cls, comp: Computation, state: dict[str, Any]) -> AggregatorRound:
        return cls(
            comp,
            shares={k: int(v) for k, v in state.get("shares", {}).items()},
            declined=dict(state.get("declined", {})),
            equivocated=set(state.get("equivocated", [])),
            reported=bool(state.get("reported", False)),
        )

    def add_share(self, target: str, share: int) -> bool:
        """Record a share; False for a harmless identical resend.

        A second, different share excludes the target from the round: we cannot
        tell which one is honest, and keeping either could make the total wrong.
        Its slot becomes a decline, so the round still ends without waiting.
        """
        share %= self.modulus
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
        return sum(self.shares[n] for n in names) % self.modulus, names


@dataclass
class Report:
    total: int
    contributors: frozenset[str]


@dataclass
class ProposerRound:
    """Collects one report per aggregator; decides combine, re-sum or wait.

    Additive rounds need every aggregator's sum over one contributor set. Shamir
    rounds need `threshold` of them: re-sums are asked as soon as two reports
    disagree (an aggregator may never come back), the round finishes early once
    every aggregator answered, else at the deadline with whatever agrees.
    """

    comp: Computation
    reports: dict[str, Report] = field(default_factory=dict)
    refusals: dict[str, str] = field(default_factory=dict)
    result: ComputationResult | None = None

    @property
    def shamir(self) -> bool:
        return self.comp.sharing == "shamir"

    def state(self) -> dict[str, Any]:
        return {
            "reports": {
                a: {"total": r.total, "contributors": sorted(r.contributors)}
                for a, r in self.reports.items()
            },
            "refusals": self.refusals,
        }

    @classmethod
    def restore(cls, comp: Computation, state: dict[str, Any]) -> ProposerRound:
        rnd = cls(comp, refusals=dict(state.get("refusals", {})))
        for agg, rep in state.get("reports", {}).items():
            rnd.add_report(agg, int(rep["total"]), list(rep["contributors"]))
        return rnd

    def add_report(self, aggregator: str, total: int, contributors: list[str]) -> None:
        self.reports[aggregator] = Report(total % modulus(self.comp), frozenset(contributors))
        self.refusals.pop(aggregator, None)

    def waiting_for(self) -> list[str]:
        return [a for a in self.comp.aggregators if a not in self.reports]

    def next_step(self) -> tuple[str, list[str]] | None:
        """('final', []) when combinable, ('resum', aggregators) when sets differ, else None.

        For a re-sum, the reports of the named aggregators are dropped: they are
        asked for a new sum over `common_contributors()`.
        """
        answered = set(self.reports) | set(self.refusals)
        everyone = answered >= set(self.comp.aggregators)
        if self.refusals and not self.shamir:
            return ("final", [])  # one refusal is enough to fail an n-of-n round
        if not self.reports or (not everyone and not self.shamir):
            return None
        sets = {r.contributors for r in self.reports.values()}
        if len(sets) > 1:
            common = self.common_contributors()
            stale = [a for a, r in self.reports.items() if r.contributors != common]
            for a in stale:
                del self.reports[a]
            return ("resum", sorted(stale))
        return ("final", []) if everyone else None

    def common_contributors(self) -> frozenset[str]:
        sets = [r.contributors for r in self.reports.values()]
        return frozenset.intersection(*sets) if sets else frozenset()

    def finish(self, reason: str | None = None) -> ComputationResult:
        """The result from agreeing reports, or `failed` (with why) when there are too few."""
        comp = self.comp
        now = time.time()
        refused = "; ".join(
            f"aggregator {a} refused: {r}" for a, r in sorted(self.refusals.items())
        )
        if self.refusals and not self.shamir:
            return self._result("failed", None, [], sorted(comp.targets), refused, now)
        agreeing = self._agreeing()
        if agreeing is None:
            waiting = [a for a in self.waiting_for() if a not in self.refusals]
            if self.shamir:
                why = (
                    f"only {self._best_agreement()} of {len(comp.aggregators)} aggregator(s) "
                    f"reported sums over one contributor set; threshold {comp.threshold} needed"
                )
                if waiting:
                    why += f" (no report from {', '.join(waiting)} before the deadline)"
            else:
                why = f"no report from aggregator(s) {', '.join(waiting)} before the deadline"
            why = reason or "; ".join(w for w in (why, refused) if w)
            return self._result("failed", None, [], sorted(comp.targets), why, now)
        contributor_set, sums = agreeing
        contributors = sorted(contributor_set)
        missing = sorted(set(comp.targets) - set(contributors))
        if not contributors:
            return self._result("failed", None, [], missing, "no target contributed", now)
        below = below_policy(comp, len(contributors))
        if below is not None:  # an aggregator should have refused already
            return self._result("failed", None, [], sorted(comp.targets), below, now)
        if self.shamir:
            position = {a: i + 1 for i, a in enumerate(comp.aggregators)}
            try:
                total = reconstruct({position[a]: t for a, t in sums.items()}, comp.needed)
            except Inconsistent as exc:
                why = f"aggregator sums are inconsistent, no total released: {exc}"
                return self._result("failed", None, [], sorted(comp.targets), why, now)
        else:
            total = sum(sums.values()) % MODULUS
        status = "partial" if missing else "complete"
        return self._result(status, total, contributors, missing, None, now)

    def _agreeing(self) -> tuple[frozenset[str], dict[str, int]] | None:
        """The contributor set enough aggregators summed over, with their sums.

        Additive: every aggregator, one set. Shamir: the set most aggregators agree
        on (at least `threshold`); all of them go into the reconstruction, so any
        extra sum is checked against the others.
        """
        groups: dict[frozenset[str], dict[str, int]] = {}
        for agg, rep in self.reports.items():
            groups.setdefault(rep.contributors, {})[agg] = rep.total
        if not self.shamir:
            if self.waiting_for() or len(groups) != 1:
                return None
            return next(iter(groups.items()))
        best = max(groups.items(), key=lambda g: (len(g[1]), len(g[0])), default=None)
        if best is None or len(best[1]) < self.comp.needed:
            return None
        return best

    def _best_agreement(self) -> int:
        counts: dict[frozenset[str], int] = {}
        for rep in self.reports.values():
            counts[rep.contributors] = counts.get(rep.contributors, 0) + 1
        return max(counts.values(), default=0)

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

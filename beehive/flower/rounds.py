"""The round's bookkeeping, free of I/O so every rule can be tested directly.

An aggregator keeps each contributor's share until the round is final, so it can
re-sum once, over the contributor set the aggregators agreed on (the
intersection of their signed reports), and then forgets the shares. The
proposer combines only sums over one identical contributor set: a result is
never silently wrong.

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
from beehive.core.models import Computation, ComputationResult, NoiseReport
from beehive.security import noise
from beehive.security.shamir import PRIME, Inconsistent, reconstruct


def modulus(comp: Computation) -> int:
    """The ring shares and sums of this round live in."""
    return PRIME if comp.sharing == "shamir" else MODULUS


class Equivocation(BeehiveError, ValueError):
    """A target sent two different shares for one computation."""


class ResumRefused(BeehiveError, PermissionError):
    """A re-sum the privacy rules forbid (counted as `resum_refused`)."""


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


#: Why a target is missing when nothing came from it in time (a target whose
#: handler did not answer sends it too, at the deadline, so it may arrive late).
NO_ANSWER = "no answer by the deadline"
#: Why a target is missing when, at the deadline, no live handler daemon said it
#: watches the target's folder (none bound, or it keeps crashing).
NO_HANDLER = "no handler attached"


def why_missing(targets: list[str], answered: set[str], declined: dict[str, str]) -> dict[str, str]:
    """target → why it is not among the contributors, as one aggregator saw it:
    "declined: <category>" (the part of a decline reason before any ':', so a
    privacy floor's detail stays with the aggregator), NO_HANDLER or NO_ANSWER."""
    out: dict[str, str] = {}
    for t in targets:
        if t in answered:
            continue
        reason = declined.get(t, NO_ANSWER)
        plain = reason in (NO_ANSWER, NO_HANDLER)
        out[t] = reason if plain else f"declined: {reason.split(':')[0]}"
    return out


@dataclass
class AggregatorRound:
    comp: Computation
    shares: dict[str, int] = field(default_factory=dict)
    declined: dict[str, str] = field(default_factory=dict)
    equivocated: set[str] = field(default_factory=set)
    reported: bool = False
    #: The contributor set of this aggregator's report (what it signed).
    reported_set: list[str] | None = None
    #: It re-summed once: never again, and its shares are gone.
    resummed: bool = False

    @property
    def modulus(self) -> int:
        return modulus(self.comp)

    def state(self) -> dict[str, Any]:
        return {
            "shares": self.shares,
            "declined": self.declined,
            "equivocated": sorted(self.equivocated),
            "reported": self.reported,
            "reported_set": self.reported_set,
            "resummed": self.resummed,
        }

    @classmethod
    def restore(cls, comp: Computation, state: dict[str, Any]) -> AggregatorRound:
        reported_set = state.get("reported_set")
        return cls(
            comp,
            shares={k: int(v) for k, v in state.get("shares", {}).items()},
            declined=dict(state.get("declined", {})),
            equivocated=set(state.get("equivocated", [])),
            reported=bool(state.get("reported", False)),
            reported_set=list(reported_set) if reported_set is not None else None,
            resummed=bool(state.get("resummed", False)),
        )

    def forget_shares(self) -> None:
        """Keep no individual share once no sum can be asked for any more."""
        self.shares.clear()

    def resum_refusal(
        self, contributors: list[str], others: dict[str, frozenset[str]], me: str
    ) -> str | None:
        """Why a re-sum over `contributors` is refused, or None when it is the one
        allowed: once, after reporting, over exactly the intersection of this
        aggregator's reported set with the other aggregators' signed reports
        (`others`, already verified), no repeats, at least the floor.

        Anything else would let a proposer difference one answer out of two sums.
        """
        comp = self.comp
        if not self.reported or self.reported_set is None:
            return "re-sum before this aggregator reported"
        if self.resummed:
            return "this round was re-summed already (once per round)"
        if len(set(contributors)) != len(contributors):
            return "re-sum names a contributor more than once"
        if not others or me in others or not set(others) <= set(comp.aggregators):
            return "re-sum without the other aggregators' signed reports"
        common = frozenset(self.reported_set).intersection(*others.values())
        if set(contributors) != common:
            return "re-sum is not over the aggregators' common contributor set"
        if len(contributors) < comp.min_contributors:
            return f"re-sum over {len(contributors)} contributor(s), below min_contributors"
        return None

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
        return len(self.shares) + len(self.declined) >= len(self.comp.targets)  # distinct

    def sum_over(self, contributors: list[str] | None = None) -> tuple[int, list[str]]:
        """The sum over `contributors` (default: everyone we hold a share of)."""
        names = sorted(self.shares if contributors is None else set(contributors))
        missing = [n for n in names if n not in self.shares]
        if missing:
            raise KeyError(f"no share held for {', '.join(missing)}")
        return sum(self.shares[n] for n in names) % self.modulus, names


@dataclass
class Report:
    total: int
    contributors: frozenset[str]
    #: The aggregator's signature of `contributors` (beehive/security/reports.py).
    attest: bytes = b""


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
    #: Each aggregator's first, signed report: the evidence a re-sum request
    #: carries (kept when a re-sum drops the report itself).
    first_reports: dict[str, Report] = field(default_factory=dict)
    #: Aggregators whose spec NATS has not acknowledged yet (this process's
    #: sends only): silent for that reason, not because they are down.
    unsent: set[str] = field(default_factory=set)
    #: target → why it is missing, from the aggregators' reports (`why_missing`).
    why: dict[str, str] = field(default_factory=dict)

    @property
    def shamir(self) -> bool:
        return self.comp.sharing == "shamir"

    def state(self) -> dict[str, Any]:
        def dump(reports: dict[str, Report]) -> dict[str, Any]:
            return {
                a: {
                    "total": r.total,
                    "contributors": sorted(r.contributors),
                    "attest": r.attest.hex(),
                }
                for a, r in reports.items()
            }

        return {
            "reports": dump(self.reports),
            "first_reports": dump(self.first_reports),
            "refusals": self.refusals,
            "why": self.why,
        }

    @classmethod
    def restore(cls, comp: Computation, state: dict[str, Any]) -> ProposerRound:
        rnd = cls(comp, refusals=dict(state.get("refusals", {})), why=dict(state.get("why", {})))
        for agg, rep in state.get("first_reports", {}).items():
            rnd.first_reports[agg] = Report(
                int(rep["total"]), frozenset(rep["contributors"]), bytes.fromhex(rep["attest"])
            )
        for agg, rep in state.get("reports", {}).items():
            attest = bytes.fromhex(rep.get("attest", ""))
            rnd.add_report(agg, int(rep["total"]), list(rep["contributors"]), attest)
        return rnd

    def add_report(
        self, aggregator: str, total: int, contributors: list[str], attest: bytes = b""
    ) -> None:
        report = Report(total % modulus(self.comp), frozenset(contributors), attest)
        self.reports[aggregator] = report
        self.first_reports.setdefault(aggregator, report)
        self.refusals.pop(aggregator, None)

    def learn_why_missing(self, why: dict[str, str]) -> None:
        """Keep the most telling reason per target of the round: a decline (with its
        category) over "no answer", which another aggregator may have seen instead."""
        for target, reason in why.items():
            if target in self.comp.targets and self.why.get(target, NO_ANSWER) == NO_ANSWER:
                self.why[target] = reason

    def evidence(self) -> dict[str, list[Any]]:
        """The signed first reports, as a re-sum request carries them."""
        return {a: [sorted(r.contributors), r.attest] for a, r in self.first_reports.items()}

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
            silent = _named(comp, waiting, self.unsent)
            if self.shamir:
                why = (
                    f"only {self._best_agreement()} of {len(comp.aggregators)} aggregator(s) "
                    f"reported sums over one contributor set; threshold {comp.threshold} needed"
                )
                if waiting:
                    why += f" (no report from {silent} before the deadline)"
            else:
                why = f"no report from aggregator(s) {silent} before the deadline"
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
        if comp.dp is not None:
            # Noise may take a total below zero: the ring's upper half is negative.
            ring = modulus(comp)
            total = total - ring if total > ring // 2 else total
        if missing:
            each = ", ".join(f"{t} ({self.why.get(t, NO_ANSWER)})" for t in missing)
            why = f"no contribution from {each}"
            return self._result("partial", total, contributors, missing, why, now)
        return self._result("complete", total, contributors, missing, None, now)

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
            # A failed round lists every target as missing: only the known reasons.
            missing_reasons={
                t: self.why.get(t, NO_ANSWER)
                for t in missing
                if status != "failed" or t in self.why
            },
            noise=noise_report(self.comp, len(contributors)) if total is not None else None,
            started_at=self.comp.timestamp,
            finished_at=now,
        )
        return self.result


def noise_report(comp: Computation, contributors: int) -> NoiseReport | None:
    """The noise a total over `contributors` answers carries in `comp`, None without DP:
    each contributed the difference of two Pólya(1/min_contributors, α) variates."""
    if comp.dp is None or contributors < 1:
        return None
    alpha = noise.alpha_for(comp.dp.epsilon, comp.dp.width)
    m = comp.min_contributors
    return NoiseReport(
        mechanism=noise.MECHANISM,
        epsilon=comp.dp.epsilon,
        stddev=round(noise.stddev(alpha, contributors, m), 3),
        interval95=noise.interval(alpha, contributors, m),
    )


def _named(comp: Computation, aggregators: list[str], unsent: set[str]) -> str:
    """Aggregator names for a reason. One whose spec NATS never stored is marked
    so (its disk full, or the server stopped); else the coordinator (the first,
    which sends the tasks) is: silent, it may never have reached the targets."""

    def name(a: str) -> str:
        if a in unsent:
            return f"{a} (NATS never stored its spec: see `hive status`)"
        return f"{a} (the coordinator: unreachable or down?)" if a == comp.aggregators[0] else a

    return ", ".join(name(a) for a in aggregators)

"""The seed's data models, with the seed's field names, so seed handlers keep working.

A handler receives a `Computation` and returns an `int`; the proposer ends a round
with a `ComputationResult`.

Every model here (and in `configs` and `dispatch`) is built with `defer_build`:
pydantic builds a validator on first use, not on import, so a node process (100
of them start at once on a `hive up`) pays only for the models it uses.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from beehive.core.constants import (
    MAX_DEADLINE_SECONDS,
    MAX_METADATA_BYTES,
    MAX_QUERY_BYTES,
    MAX_ROUND_MEMBERS,
)
from beehive.core.errors import BeehiveError, one_line
from beehive.core.names import ALIAS_PATTERN, COMP_ID_PATTERN

ResultStatus = Literal["complete", "partial", "failed"]
#: heavy nodes aggregate (and may answer); light nodes only answer.
Role = Literal["heavy", "light"]
#: How a target's answer is split among the aggregators (docs/reliability.md).
Sharing = Literal["additive", "shamir"]
#: A node alias, checked by pydantic's own (Rust) regex, not a Python loop: a
#: spec over a thousand targets is parsed by every target and handler.
_Alias = Annotated[str, Field(pattern=ALIAS_PATTERN)]


def new_comp_id() -> str:
    """A fresh computation id: random, so it reveals nothing and never collides."""
    return uuid.uuid4().hex


class IntegerResponse(BaseModel):
    """The only response schema today: one integer per target."""

    model_config = ConfigDict(defer_build=True, extra="forbid")

    type: Literal["integer"] = "integer"
    description: str = "an integer answer, summed privately across targets"


class Computation(BaseModel):
    """A query put to a set of targets, summed by a set of aggregators.

    `deadline` is a duration in seconds counted from `timestamp` (seconds since the
    epoch); `expires_at` is the absolute bound every node works towards.
    """

    # Every field is checked here because a signed spec is parsed into this model
    # at the node's edge: whatever a proposer (or anyone who can sign as one) puts
    # on the wire is held to these bounds before any role looks at it.
    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True, allow_inf_nan=False)

    comp_id: str = Field(default_factory=new_comp_id, pattern=COMP_ID_PATTERN)
    query: str = Field(max_length=MAX_QUERY_BYTES)
    proposer: _Alias
    aggregators: list[_Alias] = Field(min_length=1, max_length=MAX_ROUND_MEMBERS)
    targets: list[_Alias] = Field(min_length=1, max_length=MAX_ROUND_MEMBERS)
    deadline: float = Field(default=30.0, gt=0, le=MAX_DEADLINE_SECONDS)
    timestamp: float = Field(default_factory=time.time, gt=0)
    metadata: dict[str, Any] = Field(default_factory=dict)
    response_schema: IntegerResponse = Field(default_factory=IntegerResponse)
    #: Privacy policy, signed with the rest of the spec so no one on the path can
    #: lower it: aggregators release no sum over fewer contributors than this.
    min_contributors: int = Field(default=2, ge=1)
    #: `additive`: n-of-n shares mod 2^32, every aggregator needed. `shamir`: any
    #: `threshold` of the aggregators reconstruct (beehive/security/shamir.py).
    #: Signed too: the scheme decides how much the aggregators can learn together.
    sharing: Sharing = "additive"
    threshold: int | None = Field(default=None, ge=1)
    #: Differential privacy: signed, so no one on the path can lower it; each
    #: target still holds it to its own policy (`DpPolicy.refuses`).
    dp: DpRound | None = None
    #: The node a handler is answering for (one daemon may serve several nodes,
    #: each with its own data). Set by the handler daemon from the folder the
    #: computation came from, whatever the file says; None in a signed spec.
    node: _Alias | None = None

    @field_validator("aggregators", "targets")
    @classmethod
    def _distinct_aliases(cls, names: list[str]) -> list[str]:
        """Each alias once: a repeated aggregator would receive two shares of one
        answer, a repeated target would count twice."""
        if len(set(names)) != len(names):
            raise ValueError("names a node more than once")
        return names

    @field_validator("query")
    @classmethod
    def _query_size(cls, query: str) -> str:
        if len(query.encode()) > MAX_QUERY_BYTES:
            raise ValueError(f"query is longer than {MAX_QUERY_BYTES} bytes")
        return query

    @field_validator("metadata")
    @classmethod
    def _metadata_size(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(metadata, separators=(",", ":"), default=str).encode())
        if size > MAX_METADATA_BYTES:
            raise ValueError(f"metadata is {size} bytes, more than {MAX_METADATA_BYTES}")
        return metadata

    @model_validator(mode="after")
    def _threshold_fits(self) -> Computation:
        if self.sharing == "additive":
            if self.threshold is not None:
                raise ValueError("threshold applies to sharing 'shamir' only")
        elif self.threshold is None or self.threshold > len(self.aggregators):
            raise ValueError(
                f"sharing 'shamir' needs a threshold between 1 and the number of "
                f"aggregators ({len(self.aggregators)}), got {self.threshold}"
            )
        return self

    @property
    def needed(self) -> int:
        """How many aggregators' sums make a total."""
        return len(self.aggregators) if self.threshold is None else self.threshold

    @property
    def expires_at(self) -> float:
        return self.timestamp + self.deadline


#: Fewer aggregators and one of them (or the proposer, if it is one) holds every
#: share of every answer: no participant's floor may go below this.
MIN_AGGREGATORS = 2
#: A Shamir threshold of 1 lets every single aggregator read every answer.
MIN_THRESHOLD = 2


#: The widest noise scale (range width / epsilon) a policy may ask for: the
#: exact sampler walks about that many steps per draw (beehive/security/noise.py).
MAX_DP_SCALE = 10_000


def _check_range(lo: int, hi: int, epsilon: float) -> None:
    if lo >= hi:
        raise ValueError(f"dp range [{lo}, {hi}]: the first bound must be below the second")
    if (hi - lo) / epsilon > MAX_DP_SCALE:
        raise ValueError(
            f"dp range width {hi - lo} / epsilon {epsilon} is above {MAX_DP_SCALE}: "
            "narrow the range or raise epsilon"
        )


class DpRound(BaseModel):
    """A round's differential privacy, signed with the spec: each target clips its
    answer into `range` and adds its share of noise calibrated to `epsilon`, that
    range's width and the round's min_contributors (docs/privacy.md)."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True, allow_inf_nan=False)

    epsilon: float = Field(gt=0)
    range: tuple[StrictInt, StrictInt]

    @model_validator(mode="after")
    def _sane(self) -> DpRound:
        _check_range(*self.range, self.epsilon)
        return self

    @property
    def width(self) -> int:
        """How far one answer can move the total: the sensitivity."""
        return self.range[1] - self.range[0]


class DpPolicy(BaseModel):
    """A participant's own differential-privacy policy, enforced by its node as a
    target: compiled from the topology's `defaults.dp` and the node's own `dp:`
    (which may only be stricter). The proposer cannot loosen it."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True, allow_inf_nan=False)

    #: The most a round may spend (the round's signed epsilon must not exceed it).
    epsilon: float = Field(gt=0)
    #: The most all rounds of one proposer may spend within `window` seconds.
    budget: float = Field(gt=0)
    window: float = Field(gt=0)
    range: tuple[StrictInt, StrictInt]

    @model_validator(mode="after")
    def _sane(self) -> DpPolicy:
        _check_range(*self.range, self.epsilon)
        if self.budget < self.epsilon:
            raise ValueError(
                f"dp budget {self.budget} is below epsilon {self.epsilon}: no round could run"
            )
        return self

    def refuses(self, dp: DpRound | None) -> str | None:
        """Why this participant will not answer a round with `dp`, or None."""
        if dp is None:
            return "this participant answers only with differential privacy (dp)"
        if dp.epsilon > self.epsilon:
            return f"dp epsilon {dp.epsilon} is above this participant's {self.epsilon}"
        if self.clip_range(dp) is None:
            return f"dp range {list(dp.range)} does not overlap this participant's"
        return None

    def clip_range(self, dp: DpRound) -> tuple[int, int] | None:
        """Where this participant's answers are clipped: inside its own range and
        the round's (whose width the noise is calibrated to); None if disjoint."""
        lo, hi = max(self.range[0], dp.range[0]), min(self.range[1], dp.range[1])
        return (lo, hi) if lo <= hi else None

    def round_defaults(self) -> DpRound:
        return DpRound(epsilon=self.epsilon, range=self.range)


class NoiseReport(BaseModel):
    """The noise a DP round's total carries (`noise` in `hive submit --json`)."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    mechanism: str
    epsilon: float
    #: Standard deviation of the total's noise, for the contributors it has.
    stddev: float
    #: `result ± interval95` covers the clean total with probability >= 95 %.
    interval95: int


class PrivacyFloor(BaseModel):
    """The weakest round a participant takes part in: its own, enforced by its own
    node (as a target it declines, as an aggregator it refuses), whatever the
    proposer signed. Compiled from the topology's `defaults` and the node's own
    `privacy:` (which may only be stricter) into the node's config.

    The proposer may ask for more privacy than this, never less.
    """

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    min_contributors: int = Field(default=2, ge=1)
    min_threshold: int = Field(default=MIN_THRESHOLD, ge=MIN_THRESHOLD)
    #: Differential privacy this participant requires of the rounds it answers
    #: (as a target; beehive/security/noise.py), None for none.
    dp: DpPolicy | None = None

    def refuses(self, comp: Computation) -> str | None:
        """Why this participant will not take part in `comp`, or None."""
        if comp.min_contributors < self.min_contributors:
            return (
                f"min_contributors {comp.min_contributors} is below this participant's "
                f"floor of {self.min_contributors}"
            )
        if len(comp.aggregators) < MIN_AGGREGATORS:
            return (
                f"{len(comp.aggregators)} aggregator(s): at least {MIN_AGGREGATORS} are needed, "
                "or one party holds every share of every answer"
            )
        if comp.sharing == "shamir" and comp.needed < self.min_threshold:
            return (
                f"shamir threshold {comp.needed} is below this participant's floor of "
                f"{self.min_threshold}"
            )
        if comp.proposer in comp.aggregators and comp.needed <= 1:
            return "the proposer alone would hold enough shares to read an answer"
        return None


class RoundError(BeehiveError, ValueError):
    """A round request that cannot run; the message names the field."""


class RoundRequest(BaseModel):
    """What a proposer is asked to run: the one shape of a round request.

    The CLI builds it, the control socket carries its fields (beside `"op":
    "submit"`), and `Proposer.submit` takes it; each field is validated here,
    once. Fields left None take the topology's defaults (`with_defaults`), which
    the proposing node holds. Adding a round parameter is a field here, its
    `Computation` counterpart, and its CLI option.
    """

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    #: Chosen by whoever asks (the CLI does, before it sends anything), so a
    #: submit that timed out can be checked (`hive results ID`) or sent again:
    #: a proposer runs one round per comp_id, however often it is asked.
    comp_id: str = Field(default_factory=new_comp_id, pattern=COMP_ID_PATTERN)
    query: str
    aggregators: list[str] = Field(min_length=1)
    targets: list[str] = Field(min_length=1)
    deadline: float | None = Field(default=None, gt=0, le=MAX_DEADLINE_SECONDS)
    metadata: dict[str, Any] = Field(default_factory=dict)
    #: Privacy policy: aggregators release no sum over fewer answers.
    min_contributors: int | None = Field(default=None, ge=1, strict=True)
    sharing: Sharing | None = None
    threshold: int | None = Field(default=None, ge=1, strict=True)
    #: Differential privacy of the round (each target adds noise, clipped to the
    #: range); None takes the proposer's default (the topology's `defaults.dp`).
    dp: DpRound | None = None

    @field_validator("aggregators", "targets")
    @classmethod
    def _unique(cls, names: list[str]) -> list[str]:
        """Order kept, repeats dropped: naming a node twice does not count it twice."""
        return list(dict.fromkeys(names))

    @model_validator(mode="after")
    def _threshold_fits(self) -> RoundRequest:
        if self.sharing == "additive" and self.threshold is not None:
            raise ValueError("threshold applies to sharing 'shamir' only")
        if self.threshold is not None and self.threshold > len(self.aggregators):
            raise ValueError(
                f"threshold {self.threshold} is more than the {len(self.aggregators)} "
                "aggregator(s) of this round"
            )
        return self

    def with_defaults(
        self,
        *,
        deadline: float,
        min_contributors: int,
        sharing: Sharing,
        threshold: int | None,
        dp: DpRound | None = None,
    ) -> RoundRequest:
        """Every field filled: the request's own values, else these defaults. The
        default threshold goes with the default scheme only."""
        if self.sharing is not None:
            sharing, threshold = self.sharing, self.threshold
        elif self.threshold is not None:
            threshold = self.threshold
        if sharing == "shamir" and threshold is None:
            raise RoundError("sharing 'shamir' needs a threshold")
        filled = {
            "deadline": deadline if self.deadline is None else self.deadline,
            "min_contributors": min_contributors
            if self.min_contributors is None
            else self.min_contributors,
            "sharing": sharing,
            "threshold": threshold if sharing == "shamir" else None,
            "dp": dp if self.dp is None else self.dp,
        }
        return RoundRequest.parse({**self.model_dump(), **filled})

    @classmethod
    def parse(cls, fields: dict[str, Any]) -> RoundRequest:
        """Validate `fields` (from the CLI or the control socket); a bad one is a
        RoundError naming the field, in one line."""
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise RoundError(f"invalid round: {one_line(exc, 'request')}") from None

    def computation(self, proposer: str) -> Computation:
        """The round to sign, for a request already `with_defaults`."""
        assert self.deadline is not None and self.min_contributors is not None
        assert self.sharing is not None
        return Computation(
            comp_id=self.comp_id,
            query=self.query,
            proposer=proposer,
            aggregators=self.aggregators,
            targets=self.targets,
            deadline=self.deadline,
            metadata=self.metadata,
            min_contributors=self.min_contributors,
            sharing=self.sharing,
            threshold=self.threshold,
            dp=self.dp,
        )


class ComputationResult(BaseModel):
    """What the proposer learns: the total, and exactly whose answers it covers."""

    model_config = ConfigDict(defer_build=True, extra="forbid")

    comp_id: str
    status: ResultStatus
    result: int | None
    contributors: list[str]
    missing: list[str]
    query: str = ""
    proposer: str = ""
    aggregators: list[str] = Field(default_factory=list)
    reason: str | None = None
    #: Why each missing target did not contribute, as its aggregators saw it:
    #: "declined: handler error", "declined: timeout", "declined: privacy floor"
    #: or "no answer by the deadline". A category, never a handler's message.
    missing_reasons: dict[str, str] = Field(default_factory=dict)
    #: The noise the total carries (a DP round), None without DP.
    noise: NoiseReport | None = None
    started_at: float = 0.0
    finished_at: float = 0.0

    def public_json(self) -> dict[str, Any]:
        """The CLI contract's object (`hive submit --json`): the five documented
        keys, `reason` (null unless the status is failed or partial),
        `missing_reasons` (target → why it did not contribute) and `noise`
        (null without differential privacy)."""
        return {
            "comp_id": self.comp_id,
            "status": self.status,
            "result": self.result,
            "contributors": self.contributors,
            "missing": self.missing,
            "reason": None if self.status == "complete" else self.reason,
            "missing_reasons": self.missing_reasons,
            "noise": None if self.noise is None else self.noise.model_dump(),
        }

"""The seed's data models, with the seed's field names, so seed handlers keep working.

A handler receives a `Computation` and returns an `int`; the proposer ends a round
with a `ComputationResult`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from beehive.core.constants import MAX_DEADLINE_SECONDS
from beehive.core.errors import BeehiveError

ResultStatus = Literal["complete", "partial", "failed"]
#: heavy nodes aggregate (and may answer); light nodes only answer.
Role = Literal["heavy", "light"]
#: How a target's answer is split among the aggregators (docs/reliability.md).
Sharing = Literal["additive", "shamir"]


def new_comp_id() -> str:
    """A fresh computation id: random, so it reveals nothing and never collides."""
    return uuid.uuid4().hex


class IntegerResponse(BaseModel):
    """The only response schema today: one integer per target."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["integer"] = "integer"
    description: str = "an integer answer, summed privately across targets"


class Computation(BaseModel):
    """A query put to a set of targets, summed by a set of aggregators.

    `deadline` is a duration in seconds counted from `timestamp` (seconds since the
    epoch); `expires_at` is the absolute bound every node works towards.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    comp_id: str = Field(default_factory=new_comp_id)
    query: str
    proposer: str
    aggregators: list[str]
    targets: list[str]
    deadline: float = 30.0
    timestamp: float = Field(default_factory=time.time)
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

    model_config = ConfigDict(extra="forbid", frozen=True)

    query: str
    aggregators: list[str] = Field(min_length=1)
    targets: list[str] = Field(min_length=1)
    deadline: float | None = Field(default=None, gt=0, le=MAX_DEADLINE_SECONDS)
    metadata: dict[str, Any] = Field(default_factory=dict)
    #: Privacy policy: aggregators release no sum over fewer answers.
    min_contributors: int | None = Field(default=None, ge=1, strict=True)
    sharing: Sharing | None = None
    threshold: int | None = Field(default=None, ge=1, strict=True)

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
        }
        return RoundRequest.parse({**self.model_dump(), **filled})

    @classmethod
    def parse(cls, fields: dict[str, Any]) -> RoundRequest:
        """Validate `fields` (from the CLI or the control socket); a bad one is a
        RoundError naming the field, in one line."""
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(x) for x in e['loc']) or 'request'}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            raise RoundError(f"invalid round: {problems}") from None

    def computation(self, proposer: str) -> Computation:
        """The round to sign, for a request already `with_defaults`."""
        assert self.deadline is not None and self.min_contributors is not None
        assert self.sharing is not None
        return Computation(
            query=self.query,
            proposer=proposer,
            aggregators=self.aggregators,
            targets=self.targets,
            deadline=self.deadline,
            metadata=self.metadata,
            min_contributors=self.min_contributors,
            sharing=self.sharing,
            threshold=self.threshold,
        )


class ComputationResult(BaseModel):
    """What the proposer learns: the total, and exactly whose answers it covers."""

    model_config = ConfigDict(extra="forbid")

    comp_id: str
    status: ResultStatus
    result: int | None
    contributors: list[str]
    missing: list[str]
    query: str = ""
    proposer: str = ""
    aggregators: list[str] = Field(default_factory=list)
    reason: str | None = None
    started_at: float = 0.0
    finished_at: float = 0.0

    def public_json(self) -> dict[str, Any]:
        """The CLI contract's exact object (`hive submit --json`)."""
        return {
            "comp_id": self.comp_id,
            "status": self.status,
            "result": self.result,
            "contributors": self.contributors,
            "missing": self.missing,
        }

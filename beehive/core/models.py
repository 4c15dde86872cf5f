"""The seed's data models, with the seed's field names, so seed handlers keep working.

A handler receives a `Computation` and returns an `int`; the proposer ends a round
with a `ComputationResult`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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

"""An aggregator's signed statement of whose answers its sum covers.

The proposer may ask an aggregator to re-sum over a smaller contributor set when
the aggregators' sets differ (a target reached some of them, not others). Asked
for any smaller set at will, every aggregator's two sums would differ by one
answer: the proposer would learn it. So a re-sum is only over the set the
aggregators *agreed* on, and the proposer proves it: each aggregator signs the
contributor set of its report (`sign_report`), and a re-sum request carries the
other aggregators' signed reports; an aggregator re-sums only over exactly the
intersection of its own set and theirs (beehive/flower/aggregator.py).

Signed under its own domain, so a report signature can never pass as an
envelope or spec signature.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgpack

from beehive.security.directory import Directory
from beehive.security.identity import Identity

__all__ = ["REPORT_DOMAIN", "sign_report", "verify_report"]

REPORT_DOMAIN = b"beehive/report/v1"


def _statement(comp_id: str, contributors: Iterable[str]) -> bytes:
    return msgpack.packb([comp_id, sorted(contributors)], use_bin_type=True)


def sign_report(identity: Identity, comp_id: str, contributors: Iterable[str]) -> bytes:
    """`identity` (an aggregator) states that its sum for `comp_id` covers exactly
    `contributors`."""
    return identity.sign(REPORT_DOMAIN, _statement(comp_id, contributors))


def verify_report(
    directory: Directory,
    aggregator: str,
    comp_id: str,
    contributors: Iterable[str],
    signature: bytes,
) -> bool:
    """True only if `aggregator` (pinned in `directory`) signed exactly this set."""
    if aggregator not in directory or not isinstance(signature, bytes):
        return False
    return directory[aggregator].verify(REPORT_DOMAIN, _statement(comp_id, contributors), signature)

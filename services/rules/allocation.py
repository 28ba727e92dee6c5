"""The allocation rules: pool, claims and split, as pure functions (docs/money.md).

For a revenue event R of service S in period P, under agreement A, over the snapshots of
deployments D1..Dn:

1. pool_micros = R.amount_minor x micros-per-minor(currency) x A.share_bps / 10000,
   truncated toward zero (the sub-micro remainder stays with the consumer). Exact
   integer arithmetic; an adjustment's pool is computed the same way from its signed
   delta.
2. Claims: every contribution in the union of the deployments' snapshots, less those
   withdrawn before P began, weighted by accepted tokens (from its contribution.processed
   fact) x the agreement's weight (1 for WEIGHTING_RULE_ACCEPTED_TOKENS).
3. Split |pool| by the largest-remainder method: each claim gets floor(|pool| x w / W);
   the micro-units left over go one each to the claims with the largest remainders
   (|pool| x w mod W), ties broken by ascending contribution id. The sign of the pool is
   then applied to every part. The parts sum to the pool exactly and each is within one
   micro-unit of its exact rational share.

Which agreement and which deployments apply is the rules' choice, not the publisher's:
services.rules.terms selects them, and services.rules.admission admits a revenue event
only if it names exactly those.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from itertools import islice, pairwise, repeat
from operator import eq, floordiv, itemgetter, lt, mod, mul, neg
from typing import NamedTuple

import numpy as np

from services.common import periods
from services.common.money import BPS_PER_UNIT, INT64_MAX, micros_per_minor
from tt.facts.v1 import ledger_pb2

# The allocation.made fact's fields, in field order: an allocation's record wherever one is
# stored or compared (the ledger's and payout's tables, the audit).
ALLOCATION_FIELDS: tuple[str, ...] = tuple(
    field.name for field in ledger_pb2.AllocationMade.DESCRIPTOR.fields
)
WEIGHT_PER_TOKEN = {1: 1}  # WeightingRule -> multiplier; ACCEPTED_TOKENS = 1


class AllocationError(ValueError):
    """The facts named cannot be allocated; the message says why, in words."""


class NothingToAllocate(AllocationError):
    """No claim has weight: the pool stays with the consumer (the revenue is
    "unallocated", not rejected)."""


# -- periods -----------------------------------------------------------------------------


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """[start, end) of a calendar month 'YYYY-MM' (ASCII digits) in UTC, between
    periods.FIRST_PERIOD and periods.LAST_PERIOD (services.common.periods)."""
    try:
        return periods.period_bounds(period)
    except periods.PeriodError as error:
        raise AllocationError(str(error)) from None


# -- the pool ----------------------------------------------------------------------------


def pool_micros(amount_minor: int, currency: str, share_bps: int) -> int:
    """The contributors' pool for a revenue amount (or a signed adjustment)."""
    if not 0 <= share_bps <= BPS_PER_UNIT:
        raise AllocationError(f"share_bps must be 0..{BPS_PER_UNIT}, got {share_bps}")
    numerator = abs(amount_minor) * micros_per_minor(currency) * share_bps
    pool = numerator // BPS_PER_UNIT
    if pool > INT64_MAX:
        raise AllocationError(
            f"the pool ({pool} micros) does not fit a 64-bit amount; record the revenue in "
            "smaller parts"
        )
    return -pool if amount_minor < 0 else pool


# -- the split ---------------------------------------------------------------------------


class Claim(NamedTuple):
    contribution_id: str
    contributor_id: str
    weight: int


_ID, _CONTRIBUTOR, _WEIGHT = itemgetter(0), itemgetter(1), itemgetter(2)


class Part(NamedTuple):
    contribution_id: str
    contributor_id: str
    weight: int
    total_weight: int
    micros: int


def split(pool: int, claims: Sequence[Claim]) -> list[Part]:
    """Split `pool` micro-units over the claims by weight (largest remainder).

    Claims of weight zero take no part (they are not returned). Returns parts ordered by
    contribution id. Raises AllocationError if no claim has weight, if a contribution is
    claimed twice, or if a weight is negative. Linear apart from two sorts; a million
    claims take about a second (`make bench`)."""
    with _collector_paused():
        return _split(pool, claims)


@contextmanager
def _collector_paused():
    """A split makes millions of small acyclic objects; the cycle collector's passes over
    them would double its time, and find nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _split(pool: int, claims: Sequence[Claim]) -> list[Part]:
    # Written with map/itemgetter over plain lists so that the per-claim work runs in C:
    # this is the one place where the ledger's work grows with the number of contributions.
    ids = list(map(_ID, claims))
    if not all(map(lt, ids, islice(ids, 1, None))):  # not already in strict id order
        claims = sorted(claims, key=_ID)
        ids = list(map(_ID, claims))
        if any(map(eq, ids, islice(ids, 1, None))):
            twice = next(a for a, b in pairwise(ids) if a == b)
            raise AllocationError(f"contribution {twice} is claimed twice")
    weights = list(map(_WEIGHT, claims))
    if weights and min(weights) < 0:
        bad = next(claim for claim in claims if claim.weight < 0)
        raise AllocationError(f"contribution {bad.contribution_id} has negative weight")
    contributors = list(map(_CONTRIBUTOR, claims))
    if 0 in weights:  # zero-weight claims take no part
        keep = [i for i, weight in enumerate(weights) if weight]
        ids = [ids[i] for i in keep]
        contributors = [contributors[i] for i in keep]
        weights = [weights[i] for i in keep]
    total = sum(weights)
    if total == 0:
        raise NothingToAllocate(
            "no contribution with accepted tokens is eligible: the snapshots are empty, "
            "every member was withdrawn before the period began, or none kept any tokens"
        )
    magnitude = abs(pool)
    products = list(map(mul, repeat(magnitude), weights))
    floors = list(map(floordiv, products, repeat(total)))
    leftover = magnitude - sum(floors)
    if leftover:
        remainders = list(map(mod, products, repeat(total)))
        for index in _largest_remainders(remainders, leftover):
            floors[index] += 1
    if pool < 0:
        floors = list(map(neg, floors))
    # tuple.__new__ called from C builds each Part without a Python-level __new__.
    return list(
        map(
            tuple.__new__,
            repeat(Part),
            zip(ids, contributors, weights, repeat(total), floors, strict=False),
        )
    )


def _largest_remainders(remainders: list[int], count: int) -> list[int]:
    """Indices of the `count` largest remainders; equal remainders in index order (the
    claims are in contribution-id order, so ties go to the smaller id). Remainders are
    below the total weight; when that fits 64 bits numpy sorts them, else Python does."""
    if max(remainders) <= INT64_MAX:
        values = np.fromiter(remainders, dtype=np.int64, count=len(remainders))
        # A stable sort of the negated values keeps ties in index order.
        return np.argsort(-values, kind="stable")[:count].tolist()
    ordered = sorted(range(len(remainders)), key=remainders.__getitem__, reverse=True)
    return ordered[:count]


# -- who is eligible ---------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """A snapshot member, with the token count of the processed fact it names."""

    contribution_id: str
    contributor_id: str
    tokens_accepted: int


def claims_for(
    snapshots: Sequence[tuple[str, Sequence[Member]]],
    withdrawn_at: Mapping[str, datetime],
    period: str,
    weight_per_token: int = 1,
) -> list[Claim]:
    """The union of the snapshots' members, less those withdrawn before the period began.

    `snapshots` is (snapshot_id, members); a contribution in several snapshots counts
    once, with the member entry of the snapshot whose id sorts first."""
    start, _ = period_bounds(period)
    chosen: dict[str, Member] = {}
    for _, members in sorted(snapshots, key=lambda item: item[0]):
        for member in members:
            chosen.setdefault(member.contribution_id, member)
    claims = []
    for contribution_id in sorted(chosen):
        member = chosen[contribution_id]
        withdrawn = withdrawn_at.get(contribution_id)
        if withdrawn is not None and withdrawn < start:
            continue
        claims.append(
            Claim(contribution_id, member.contributor_id, member.tokens_accepted * weight_per_token)
        )
    return claims

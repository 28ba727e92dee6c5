"""The money rules' pure core (services/rules/allocation.py, terms.py): properties of the pool and
the largest-remainder split, checked against exact rationals and against a second, simple
implementation written here, plus table cases for who and what a revenue event names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.money import INT64_MAX, UnknownCurrencyError
from services.rules.allocation import (
    AllocationError,
    Claim,
    Member,
    claims_for,
    period_bounds,
    pool_micros,
    split,
)
from services.rules.terms import (
    AgreementTerms,
    Deployment,
    agreement_in_force,
    covers,
    deployments_for,
)

WEIGHT_MAX = 10**12

pools = st.integers(min_value=-INT64_MAX, max_value=INT64_MAX)
small_pools = st.integers(min_value=-1000, max_value=1000)
contribution_ids = st.text(alphabet="0123456789abcdef", min_size=1, max_size=6)
claim_lists = st.lists(
    st.builds(
        Claim,
        contribution_id=contribution_ids,
        contributor_id=st.sampled_from(["alice", "bob", "carol"]),
        weight=st.one_of(st.integers(0, 5), st.integers(0, WEIGHT_MAX)),
    ),
    min_size=1,
    max_size=25,
    unique_by=lambda claim: claim.contribution_id,
).filter(lambda claims: any(claim.weight for claim in claims))


def reference_split(pool: int, claims: list[Claim]) -> dict[str, int]:
    """Largest remainder the slow, obvious way: exact shares as Fractions, floor each, then
    one unit each to the claims sorted by (largest remainder first, contribution id)."""
    weighted = [claim for claim in claims if claim.weight > 0]
    total = sum(claim.weight for claim in weighted)
    magnitude = abs(pool)
    shares = {c.contribution_id: Fraction(magnitude * c.weight, total) for c in weighted}
    floors = {cid: share.numerator // share.denominator for cid, share in shares.items()}
    leftover = magnitude - sum(floors.values())
    order = sorted(
        weighted,
        key=lambda c: (-(shares[c.contribution_id] - floors[c.contribution_id]), c.contribution_id),
    )
    for claim in order[:leftover]:
        floors[claim.contribution_id] += 1
    sign = -1 if pool < 0 else 1
    return {cid: sign * amount for cid, amount in floors.items()}


def as_dict(parts) -> dict[str, int]:
    return {part.contribution_id: part.micros for part in parts}


# -- split: properties ---------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(pool=st.one_of(pools, small_pools, st.just(0)), claims=claim_lists)
def test_parts_sum_to_the_pool_exactly_and_each_is_within_one_micro_of_its_exact_share(
    pool, claims
):
    parts = split(pool, claims)
    assert sum(part.micros for part in parts) == pool
    total = sum(claim.weight for claim in claims)
    for part in parts:
        exact = Fraction(pool * part.weight, total)
        assert abs(part.micros - exact) < 1, (part, exact)
        assert part.total_weight == total
        assert part.micros == 0 or (part.micros > 0) == (pool > 0)


@settings(max_examples=200, deadline=None)
@given(pool=st.one_of(pools, small_pools), claims=claim_lists)
def test_split_agrees_with_a_simple_reference_implementation(pool, claims):
    assert as_dict(split(pool, claims)) == reference_split(pool, claims)


@settings(max_examples=200, deadline=None)
@given(pool=st.one_of(pools, small_pools), data=st.data(), claims=claim_lists)
def test_any_order_of_the_claims_gives_the_same_parts(pool, data, claims):
    shuffled = data.draw(st.permutations(claims))
    assert split(pool, shuffled) == split(pool, claims)


@settings(max_examples=200, deadline=None)
@given(pool=st.one_of(pools, small_pools), claims=claim_lists)
def test_a_negative_pool_is_the_mirror_of_the_positive_one(pool, claims):
    positive = as_dict(split(abs(pool), claims))
    assert as_dict(split(-abs(pool), claims)) == {cid: -m for cid, m in positive.items()}


@settings(max_examples=200, deadline=None)
@given(pool=pools, claims=claim_lists)
def test_zero_weight_claims_take_no_part_and_parts_come_ordered_by_id(pool, claims):
    parts = split(pool, claims)
    ids = [part.contribution_id for part in parts]
    assert ids == sorted(c.contribution_id for c in claims if c.weight > 0)
    by_id = {claim.contribution_id: claim for claim in claims}
    for part in parts:
        assert part.weight == by_id[part.contribution_id].weight
        assert part.contributor_id == by_id[part.contribution_id].contributor_id


@given(pool=pools, weight=st.integers(1, WEIGHT_MAX))
def test_one_claim_gets_everything(pool, weight):
    (part,) = split(pool, [Claim("only", "alice", weight), Claim("none", "bob", 0)])
    assert (part.contribution_id, part.micros, part.total_weight) == ("only", pool, weight)


# -- split: table cases ---------------------------------------------------------------------


def test_ties_go_to_the_smallest_contribution_ids():
    claims = [Claim("c", "x", 1), Claim("a", "x", 1), Claim("b", "x", 1)]
    assert as_dict(split(2, claims)) == {"a": 1, "b": 1, "c": 0}
    assert as_dict(split(-2, claims)) == {"a": -1, "b": -1, "c": 0}


def test_the_largest_remainder_wins_before_the_id():
    # 10 x 1/6 = 1.67, 10 x 2/6 = 3.33, 10 x 3/6 = 5: one unit left, to "z" (remainder 4/6).
    claims = [Claim("a", "x", 2), Claim("z", "x", 1), Claim("m", "x", 3)]
    assert as_dict(split(10, claims)) == {"a": 3, "m": 5, "z": 2}


@pytest.mark.parametrize(
    "claims", [[], [Claim("a", "x", 0)], [Claim("a", "x", 0), Claim("b", "y", 0)]]
)
def test_no_weight_at_all_is_an_allocation_error(claims):
    with pytest.raises(AllocationError, match="no contribution with accepted tokens"):
        split(100, claims)


def test_a_contribution_claimed_twice_is_refused():
    with pytest.raises(AllocationError, match="contribution a is claimed twice"):
        split(100, [Claim("a", "x", 1), Claim("b", "x", 1), Claim("a", "y", 2)])


def test_a_negative_weight_is_refused():
    with pytest.raises(AllocationError, match="negative weight"):
        split(100, [Claim("a", "x", 1), Claim("b", "x", -1)])


def test_the_largest_pool_over_the_largest_weights_is_exact():
    claims = [Claim(f"c{i:02d}", "x", WEIGHT_MAX - i) for i in range(30)]
    parts = split(INT64_MAX, claims)
    assert sum(part.micros for part in parts) == INT64_MAX
    assert as_dict(parts) == reference_split(INT64_MAX, claims)


# -- the pool -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount_minor", "currency", "share_bps", "expected_micros"),
    [
        (1_000_000, "USD", 1500, 1_500_000_000),  # 10,000.00 USD x 15%
        (1, "USD", 1, 1),  # one cent x 0.01% = 1 micro
        (1, "USD", 10_000, 10_000),
        (12_345, "USD", 0, 0),
        (-25_000, "USD", 1500, -37_500_000),
        (1000, "JPY", 2500, 250_000_000),  # 1,000 yen x 25%
        (-7, "JPY", 10_000, -7_000_000),
        (1, "BHD", 1, 0),  # one fils x 0.01% = 0.1 micro: truncated
        (-1, "BHD", 1, 0),  # toward zero, not -1
        (3, "BHD", 3333, 999),  # 999.9 micros -> 999
        (-3, "BHD", 3333, -999),
        (12_345, "BHD", 10_000, 12_345_000),
    ],
)
def test_pool_micros(amount_minor, currency, share_bps, expected_micros):
    assert pool_micros(amount_minor, currency, share_bps) == expected_micros


@given(
    amount=st.integers(-(2**63), INT64_MAX),
    currency=st.sampled_from(["USD", "JPY", "BHD", "EUR", "KWD", "CLP"]),
    share_bps=st.integers(0, 10_000),
)
def test_pool_is_the_exact_share_truncated_toward_zero(amount, currency, share_bps):
    exponent = {"USD": 2, "EUR": 2, "JPY": 0, "CLP": 0, "BHD": 3, "KWD": 3}[currency]
    exact = Fraction(amount * 10**6, 10**exponent) * Fraction(share_bps, 10_000)
    truncated = int(exact)  # int() of a Fraction truncates toward zero
    if abs(truncated) > INT64_MAX:
        with pytest.raises(AllocationError, match="does not fit a 64-bit amount"):
            pool_micros(amount, currency, share_bps)
    else:
        assert pool_micros(amount, currency, share_bps) == truncated


def test_a_pool_over_int64_is_refused():
    with pytest.raises(AllocationError, match="does not fit a 64-bit amount"):
        pool_micros(INT64_MAX, "JPY", 10_000)
    with pytest.raises(AllocationError, match="does not fit a 64-bit amount"):
        pool_micros(-INT64_MAX, "USD", 10_000)


@pytest.mark.parametrize("share_bps", [-1, 10_001])
def test_a_share_outside_0_to_10000_is_refused(share_bps):
    with pytest.raises(AllocationError, match=r"share_bps must be 0\.\.10000"):
        pool_micros(100, "USD", share_bps)


def test_an_unknown_currency_is_refused_by_name():
    with pytest.raises(UnknownCurrencyError, match="'XYZ'"):
        pool_micros(100, "XYZ", 1000)


# -- periods --------------------------------------------------------------------------------


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("period", "start", "end"),
    [
        ("2026-11", utc(2026, 11, 1), utc(2026, 12, 1)),
        ("2026-12", utc(2026, 12, 1), utc(2027, 1, 1)),
        ("2027-01", utc(2027, 1, 1), utc(2027, 2, 1)),
        ("2028-02", utc(2028, 2, 1), utc(2028, 3, 1)),
    ],
)
def test_period_bounds(period, start, end):
    assert period_bounds(period) == (start, end)


@given(year=st.integers(2000, 2198), month=st.integers(1, 12))
def test_periods_tile_time(year, month):
    start, end = period_bounds(f"{year:04d}-{month:02d}")
    following = f"{year + month // 12:04d}-{month % 12 + 1:02d}"
    assert start.day == 1 and start < end and period_bounds(following)[0] == end
    assert timedelta(days=28) <= end - start <= timedelta(days=31)


@pytest.mark.parametrize(
    "period",
    [
        "2026/11",
        "2026-13",
        "2026-00",
        "november",
        "2026-11-01",
        "\uff12\uff10\uff12\uff16-11",
        "2026-11\n",
    ],
)
def test_a_malformed_period_is_an_allocation_error(period):
    with pytest.raises(AllocationError, match="period must be a month written YYYY-MM"):
        period_bounds(period)


@pytest.mark.parametrize("period", ["0000-01", "1999-12", "2200-01", "9999-12"])
def test_a_period_outside_the_accepted_years_is_an_allocation_error(period):
    with pytest.raises(AllocationError, match="outside the months the platform accepts"):
        period_bounds(period)


# -- agreements -----------------------------------------------------------------------------


def terms(agreement_id, start, until=None, service="chat", share_bps=1000) -> AgreementTerms:
    return AgreementTerms(agreement_id, service, share_bps, "USD", start, until)


def test_the_agreement_in_force_at_the_period_start_wins_over_one_starting_mid_period():
    old = terms("old", utc(2026, 1, 1))
    new = terms("new", utc(2026, 11, 15))
    assert agreement_in_force([new, old], "chat", "2026-11") == old
    assert agreement_in_force([new, old], "chat", "2026-12") == new
    assert agreement_in_force([new, old], "chat", "2026-10") == old


def test_of_several_in_force_at_the_start_the_most_recently_effective_wins():
    first = terms("first", utc(2026, 1, 1))
    second = terms("second", utc(2026, 6, 1))
    third = terms("third", utc(2026, 11, 1))  # effective exactly at the start: in force
    assert agreement_in_force([second, third, first], "chat", "2026-11") == third
    assert agreement_in_force([second, first], "chat", "2026-11") == second


def test_with_none_at_the_start_the_first_to_start_during_the_period_applies():
    later = terms("later", utc(2026, 11, 20))
    earlier = terms("earlier", utc(2026, 11, 10))
    assert agreement_in_force([later, earlier], "chat", "2026-11") == earlier


def test_other_services_and_expired_or_future_agreements_are_ignored():
    other = terms("other", utc(2026, 1, 1), service="search")
    expired = terms("expired", utc(2026, 1, 1), until=utc(2026, 11, 1))
    future = terms("future", utc(2026, 12, 1))
    assert agreement_in_force([other, expired, future], "chat", "2026-11") is None
    ending = terms("ending", utc(2026, 1, 1), until=utc(2026, 11, 2))
    assert agreement_in_force([other, expired, ending], "chat", "2026-11") == ending
    assert agreement_in_force([], "chat", "2026-11") is None


@pytest.mark.parametrize(
    ("start", "until", "covered"),
    [
        (utc(2026, 1, 1), None, True),
        (utc(2026, 11, 30), None, True),
        (utc(2026, 12, 1), None, False),
        (utc(2026, 1, 1), utc(2026, 11, 1), False),
        (utc(2026, 1, 1), utc(2026, 11, 1, 0, 0, 1), True),
    ],
)
def test_covers(start, until, covered):
    assert covers(terms("a", start, until), "2026-11") is covered


# -- deployments ----------------------------------------------------------------------------


def deployed(deployment_id, when, service="chat") -> Deployment:
    return Deployment(deployment_id, service, (f"snap-{deployment_id}",), when)


def test_the_deployment_live_at_the_start_and_those_during_the_period_apply():
    older = deployed("older", utc(2026, 3, 1))
    live = deployed("live", utc(2026, 9, 1))
    during = deployed("during", utc(2026, 11, 15))
    at_start = deployed("at-start", utc(2026, 11, 1))
    later = deployed("later", utc(2026, 12, 1))
    other = deployed("other", utc(2026, 11, 2), service="search")
    everything = [later, during, other, live, older]
    assert deployments_for(everything, "chat", "2026-11") == [live, during]
    assert deployments_for([*everything, at_start], "chat", "2026-11") == [at_start, during]
    assert deployments_for([later, other], "chat", "2026-11") == []
    assert deployments_for([during], "chat", "2026-11") == [during]


# -- claims ---------------------------------------------------------------------------------


def test_claims_are_the_union_of_the_snapshots_counted_once():
    first = ("s1", [Member("a", "alice", 10), Member("b", "bob", 20)])
    second = ("s2", [Member("b", "bob", 20), Member("c", "carol", 30)])
    expected = [Claim("a", "alice", 10), Claim("b", "bob", 20), Claim("c", "carol", 30)]
    assert claims_for([second, first], {}, "2026-11") == expected
    assert claims_for([first, second], {}, "2026-11", weight_per_token=3) == [
        Claim(c.contribution_id, c.contributor_id, 3 * c.weight) for c in expected
    ]


def test_a_member_in_two_snapshots_is_taken_from_the_snapshot_whose_id_sorts_first():
    first = ("s1", [Member("a", "alice", 10)])
    second = ("s2", [Member("a", "alice", 99)])
    assert claims_for([second, first], {}, "2026-11") == [Claim("a", "alice", 10)]


def test_withdrawn_before_the_period_began_is_excluded_during_or_after_is_kept():
    snapshot = (
        "s1",
        [Member(cid, "alice", 10) for cid in ("before", "at-start", "during", "after", "kept")],
    )
    withdrawn_at = {
        "before": utc(2026, 10, 31, 23, 59, 59),
        "at-start": utc(2026, 11, 1),
        "during": utc(2026, 11, 15),
        "after": utc(2027, 1, 1),
    }
    claims = claims_for([snapshot], withdrawn_at, "2026-11")
    assert [c.contribution_id for c in claims] == ["after", "at-start", "during", "kept"]


def test_no_snapshots_no_claims():
    assert claims_for([], {}, "2026-11") == []
    assert claims_for([("s1", [])], {}, "2026-11") == []

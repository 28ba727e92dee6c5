"""Settlement (services/rules/settlement.py): table cases for each outcome of `settle` (paid
with the sub-minor remainder carried, under the minimum carried whole, exactly the minimum
paid, a negative balance carried and never paid, nothing due, an opening carry added) in
currencies of 2, 0 and 3 minor-unit digits, and the balance invariant as a property."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.money import (
    MINOR_UNIT_EXPONENT,
    UnknownCurrencyError,
    micros_per_minor,
)
from services.rules.settlement import (
    BELOW_MINIMUM,
    NEGATIVE,
    NOTHING,
    PAID,
    Settlement,
    minimum_payout,
    settle,
)


def balanced(outcome: Settlement, opening_micros: int, currency: str) -> bool:
    """amount_minor x micros_per_minor + carried == opening + allocated."""
    return (
        outcome.amount_minor * micros_per_minor(currency) + outcome.carried_forward_micros
        == opening_micros + outcome.allocated_micros
    )


# -- table cases ---------------------------------------------------------------------------

BELOW = BELOW_MINIMUM

# (case, opening carried, allocations, currency, minimum payout) -> (paid, carried, outcome);
# micro-units everywhere except `minimum` and `paid`, which are minor units.
CASES = [
    ("usd-paid-sub-minor-remainder-carried", 0, [12_345_678], "USD", 0, 1234, 5678, PAID),
    ("usd-allocations-summed", 0, [7_000_000, 5_345_678], "USD", 0, 1234, 5678, PAID),
    ("usd-below-minimum-carried-whole", 0, [9_999_999], "USD", 1000, 0, 9_999_999, BELOW),
    ("usd-exactly-the-minimum-paid", 0, [10_000_000], "USD", 1000, 1000, 0, PAID),
    ("usd-minimum-paid-remainder-carried", 0, [10_009_999], "USD", 1000, 1000, 9999, PAID),
    ("usd-under-a-cent-carried-without-minimum", 0, [9_999], "USD", 0, 0, 9_999, BELOW),
    ("usd-clawback-carried-never-paid", 0, [-5_000_000], "USD", 0, 0, -5_000_000, NEGATIVE),
    ("usd-clawback-above-the-carry", 3_000_000, [-5_000_000], "USD", 0, 0, -2_000_000, NEGATIVE),
    ("usd-negative-opening-netted", -15_000_000, [100_000_000], "USD", 1000, 8500, 0, PAID),
    ("usd-negative-opening-unrepaid", -15_000_000, [10_000_000], "USD", 0, 0, -5_000_000, NEGATIVE),
    ("usd-nothing-allocated", 0, [], "USD", 1000, 0, 0, NOTHING),
    ("usd-zero-allocations", 0, [0, 0], "USD", 0, 0, 0, NOTHING),
    ("usd-clawback-cancels-the-carry", 5_000_000, [-5_000_000], "USD", 0, 0, 0, NOTHING),
    ("usd-opening-carry-reaches-minimum", 5_000, [9_995_000], "USD", 1000, 1000, 0, PAID),
    ("usd-opening-carry-alone-paid", 9_000_000, [], "USD", 500, 900, 0, PAID),
    ("usd-opening-carry-added-under-a-cent", 1_234, [8_765], "USD", 0, 0, 9_999, BELOW),
    ("jpy-whole-yen", 0, [1_234_567_890], "JPY", 0, 1234, 567_890, PAID),
    ("jpy-under-one-yen-carried", 0, [999_999], "JPY", 0, 0, 999_999, BELOW),
    ("jpy-below-a-minimum", 0, [999_000_000], "JPY", 1000, 0, 999_000_000, BELOW),
    ("jpy-exactly-the-minimum", 0, [1_000_000_000], "JPY", 1000, 1000, 0, PAID),
    ("bhd-whole-fils", 0, [1_234_567], "BHD", 0, 1234, 567, PAID),
    ("bhd-under-one-fils-carried", 0, [999], "BHD", 0, 0, 999, BELOW),
    ("bhd-below-the-minimum", 0, [4_999_999], "BHD", 5000, 0, 4_999_999, BELOW),
    ("bhd-exactly-the-minimum", 0, [5_000_000], "BHD", 5000, 5000, 0, PAID),
]


@pytest.mark.parametrize(
    ("opening", "allocated", "currency", "minimum", "paid", "carried", "outcome"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_settle(opening, allocated, currency, minimum, paid, carried, outcome):
    settlement = settle(opening, allocated, currency, minimum)
    assert settlement == Settlement(paid, carried, sum(allocated), outcome)
    assert balanced(settlement, opening, currency)


def test_the_minimum_defaults_to_none():
    assert settle(0, [10_000], "USD") == Settlement(1, 0, 10_000, PAID)


def test_an_unknown_currency_is_refused_by_name():
    with pytest.raises(UnknownCurrencyError, match="XTS"):
        settle(0, [1_000_000], "XTS", 0)


# -- properties ----------------------------------------------------------------------------

currencies = st.sampled_from(sorted(MINOR_UNIT_EXPONENT))
micro_amounts = st.one_of(st.integers(-(10**15), 10**15), st.integers(-20_000, 20_000), st.just(0))


@settings(max_examples=500, deadline=None)
@given(
    opening=micro_amounts,
    allocated=st.lists(micro_amounts, max_size=12),
    currency=currencies,
    minimum=st.one_of(st.integers(0, 10**7), st.just(0), st.just(1000)),
)
def test_nothing_is_created_or_lost_and_only_whole_payable_amounts_are_paid(
    opening, allocated, currency, minimum
):
    outcome = settle(opening, allocated, currency, minimum)
    unit = micros_per_minor(currency)
    balance = opening + sum(allocated)

    assert outcome.allocated_micros == sum(allocated)
    assert outcome.amount_minor * unit + outcome.carried_forward_micros == balance
    assert outcome.amount_minor >= 0
    if balance < 0:
        assert (outcome.amount_minor, outcome.carried_forward_micros) == (0, balance)
        assert outcome.outcome == NEGATIVE
    elif outcome.amount_minor > 0:
        # Paid: the floor of the balance in minor units, at least the minimum, and only
        # the sub-minor remainder carried.
        assert outcome.amount_minor == balance // unit
        assert outcome.amount_minor >= minimum
        assert 0 <= outcome.carried_forward_micros < unit
        assert outcome.outcome == PAID
    else:
        # Not paid: the whole balance carried, because it is nothing or under the minimum.
        assert outcome.carried_forward_micros == balance
        assert balance == 0 or balance // unit < max(minimum, 1)
        assert outcome.outcome == (NOTHING if balance == 0 else BELOW_MINIMUM)


@pytest.mark.parametrize(
    "minimums, expected",
    [([], 0), ([0], 0), ([500, 2000, 0], 2000), ([2000, 2000], 2000)],
)
def test_the_minimum_payout_is_the_largest_of_the_settled_allocations_agreements(
    minimums, expected
):
    assert minimum_payout(minimums) == expected
    assert minimum_payout(iter(minimums)) == expected  # any iterable, read once

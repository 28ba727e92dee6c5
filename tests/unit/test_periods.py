"""The one definition of a period that validation, the ledger and every endpoint share."""

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.periods import (
    FIRST_PERIOD,
    LAST_PERIOD,
    PeriodError,
    check_period,
    period_bounds,
    period_of,
)


@pytest.mark.parametrize("period", [FIRST_PERIOD, "2026-11", LAST_PERIOD])
def test_the_first_and_last_accepted_months_and_one_between(period):
    assert check_period(period) == period
    start, end = period_bounds(period)
    assert period_of(start) == period and start < end


@pytest.mark.parametrize(
    ("period", "phrase"),
    [
        ("0000-01", "outside the months the platform accepts (2000-01 to 2199-12)"),
        ("9999-12", "outside the months the platform accepts"),
        ("1999-12", "check the year"),
        ("2200-01", "check the year"),
        ("2026-13", "YYYY-MM"),
        ("2026-11\n", "YYYY-MM"),
        ("\uff12\uff10\uff12\uff16-11", "YYYY-MM"),
        (None, "YYYY-MM"),
    ],
)
def test_a_period_that_is_not_accepted_says_why(period, phrase):
    with pytest.raises(PeriodError, match=r".*" + phrase.replace("(", r"\(").replace(")", r"\)")):
        check_period(period)
    with pytest.raises(PeriodError):
        period_bounds(period)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2199, 12, 31)))
def test_every_moment_falls_in_the_period_it_names(moment):
    moment = moment.replace(tzinfo=UTC)
    start, end = period_bounds(period_of(moment))
    assert start <= moment < end

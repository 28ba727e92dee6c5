"""Periods: the calendar months ("YYYY-MM", UTC) that revenue is recorded in and payouts are
run for. One definition for the schema validation, the ledger's rules and every endpoint
that takes a period, so that they accept and refuse exactly the same strings.

A period is only meaningful between FIRST_PERIOD and LAST_PERIOD: the platform has no
revenue before 2000, and a month in the 23rd century is a typo or an attack. Refusing
them here keeps "0000-01" and "9999-12" (whose bounds Python's datetime cannot even
represent) from ever reaching a projection or a query.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

# fullmatch, [0-9]: no trailing newline, no non-ASCII digits.
PERIOD_PATTERN = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")
FIRST_PERIOD = "2000-01"
LAST_PERIOD = "2199-12"


class PeriodError(ValueError):
    """Not a period the platform accepts; the message says what to write instead."""


def check_period(period: object) -> str:
    """`period` if it is a month written YYYY-MM between FIRST_PERIOD and LAST_PERIOD,
    else PeriodError saying which rule it breaks."""
    if not isinstance(period, str) or not PERIOD_PATTERN.fullmatch(period):
        raise PeriodError(f"period must be a month written YYYY-MM, e.g. 2026-11, got {period!r}")
    # Zero-padded and fixed-width, so string order is calendar order.
    if not FIRST_PERIOD <= period <= LAST_PERIOD:
        raise PeriodError(
            f"period {period} is outside the months the platform accepts "
            f"({FIRST_PERIOD} to {LAST_PERIOD}); check the year"
        )
    return period


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """[start, end) of the period in UTC; PeriodError if it is not an accepted period."""
    check_period(period)
    year, month = int(period[:4]), int(period[5:])
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def period_of(moment: datetime) -> str:
    """The period (UTC month) an aware datetime falls in."""
    moment = moment.astimezone(UTC)
    return f"{moment.year:04d}-{moment.month:02d}"

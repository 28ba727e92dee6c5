"""Money units. Every amount is an integer whose unit is in its name:

- `*_minor`: the currency's minor unit (cents for USD, yen for JPY, fils for BHD);
- `*_micros`: millionths of the currency's major unit, so that a contributor's share of a
  small pool is not rounded away before it is paid.

No float ever holds money.
"""

from __future__ import annotations

MICROS_PER_MAJOR = 1_000_000
BPS_PER_UNIT = 10_000
# The largest amount a fact's int64 field can hold.
INT64_MAX = 2**63 - 1

# ISO 4217 minor-unit exponents of the currencies the platform settles in. A currency not
# listed is refused with a message naming it, never guessed.
MINOR_UNIT_EXPONENT: dict[str, int] = {
    "AUD": 2,
    "BHD": 3,
    "BRL": 2,
    "CAD": 2,
    "CHF": 2,
    "CLP": 0,
    "CNY": 2,
    "CZK": 2,
    "DKK": 2,
    "EUR": 2,
    "GBP": 2,
    "HKD": 2,
    "INR": 2,
    "ISK": 0,
    "JOD": 3,
    "JPY": 0,
    "KRW": 0,
    "KWD": 3,
    "MXN": 2,
    "NOK": 2,
    "NZD": 2,
    "OMR": 3,
    "PLN": 2,
    "SEK": 2,
    "SGD": 2,
    "TND": 3,
    "USD": 2,
    "ZAR": 2,
}


class UnknownCurrencyError(ValueError):
    pass


def minor_exponent(currency: str) -> int:
    try:
        return MINOR_UNIT_EXPONENT[currency]
    except KeyError:
        known = ", ".join(sorted(MINOR_UNIT_EXPONENT))
        raise UnknownCurrencyError(
            f"currency {currency!r} is not one the platform settles in; use one of {known}"
        ) from None


def micros_per_minor(currency: str) -> int:
    """How many micro-units one minor unit is: 10,000 for USD, 1,000,000 for JPY."""
    return MICROS_PER_MAJOR // 10 ** minor_exponent(currency)


def minor_to_micros(amount_minor: int, currency: str) -> int:
    return amount_minor * micros_per_minor(currency)


def floor_micros_to_minor(amount_micros: int, currency: str) -> tuple[int, int]:
    """Split a non-negative micro amount into (whole minor units, micro remainder)."""
    if amount_micros < 0:
        raise ValueError(f"cannot pay a negative amount ({amount_micros} micros)")
    return divmod(amount_micros, micros_per_minor(currency))


def format_minor(amount_minor: int, currency: str) -> str:
    """'12.34 USD' from 1234 USD cents, exactly (no float)."""
    exponent = minor_exponent(currency)
    sign = "-" if amount_minor < 0 else ""
    whole, fraction = divmod(abs(amount_minor), 10**exponent)
    if exponent == 0:
        return f"{sign}{whole:,} {currency}"
    return f"{sign}{whole:,}.{fraction:0{exponent}d} {currency}"


def format_micros(amount_micros: int, currency: str) -> str:
    """'0.123456 USD' from 123456 micros, exactly."""
    sign = "-" if amount_micros < 0 else ""
    whole, fraction = divmod(abs(amount_micros), MICROS_PER_MAJOR)
    return f"{sign}{whole:,}.{fraction:06d} {currency}"

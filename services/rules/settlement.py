"""Settlement: turning a contributor's allocations into a payable amount (pure).

For one contributor, currency and payout period:

    balance = opening carried balance + the allocations not yet paid (micro-units)
    if balance <= 0:                      pay nothing, carry the balance (a clawback is
                                          carried, never paid)
    whole, rest = divmod(balance, micros per minor unit)
    if whole < minimum payout or 0:       pay nothing, carry the whole balance
    otherwise:                            pay `whole` minor units, carry `rest`

so that amount_minor x micros_per_minor + carried_forward = opening + allocated, always.

The minimum payout of a payout (`minimum_payout`) is the largest `min_payout_minor` of the
agreements of the allocations that this payout and every earlier payout of the same
contributor and currency settle (0 if none): a carried balance stays under the terms it
was earned under, and an allocation counts once it is settled, never before.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from services.common.money import micros_per_minor

PAID = "paid"
BELOW_MINIMUM = "below the minimum payout: carried forward"
NEGATIVE = "negative balance (a clawback): carried forward, never paid"
NOTHING = "nothing due"


@dataclass(frozen=True)
class Settlement:
    amount_minor: int
    carried_forward_micros: int
    allocated_micros: int
    outcome: str


def settle(
    opening_carried_micros: int,
    allocated: Sequence[int],
    currency: str,
    min_payout_minor: int = 0,
) -> Settlement:
    total_allocated = sum(allocated)
    balance = opening_carried_micros + total_allocated
    if balance == 0:
        return Settlement(0, 0, total_allocated, NOTHING)
    if balance < 0:
        return Settlement(0, balance, total_allocated, NEGATIVE)
    whole, rest = divmod(balance, micros_per_minor(currency))
    if whole == 0 or whole < min_payout_minor:
        return Settlement(0, balance, total_allocated, BELOW_MINIMUM)
    return Settlement(whole, rest, total_allocated, PAID)


def minimum_payout(agreement_minimums: Iterable[int]) -> int:
    """The minimum payout, from the `min_payout_minor` of the agreement of every allocation
    this payout and the contributor's earlier payouts in the currency settle."""
    return max(agreement_minimums, default=0)

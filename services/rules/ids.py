"""Identifiers. Derived ids are UUIDv5 over a fixed namespace, so the same cause always
yields the same id: that is what makes a resend or a replay idempotent."""

from __future__ import annotations

import uuid

# Fixed forever: changing it would change every derived id on the log.
PLATFORM_NAMESPACE = uuid.UUID("6f1c2d1e-8a4b-5c3d-9e7f-1a2b3c4d5e6f")
_SEPARATOR = "\x1f"  # ASCII unit separator: cannot appear in the parts we join


def derived_id(kind: str, *parts: str) -> str:
    """A deterministic id for `kind` (e.g. "revenue.recorded") caused by `parts`.

    The parts are joined with a separator that ids and names never contain, so
    ("a", "bc") and ("ab", "c") give different ids.
    """
    if not kind:
        raise ValueError("derived_id needs a kind")
    for part in parts:
        if _SEPARATOR in part:
            raise ValueError(f"id part {part!r} contains the reserved separator U+001F")
    return str(uuid.uuid5(PLATFORM_NAMESPACE, _SEPARATOR.join((kind, *parts))))


def new_id() -> str:
    """A fresh random id, for origin facts that have no client-supplied key."""
    return str(uuid.uuid4())


# -- the ids of money facts (docs/money.md, "Identifiers") -----------------------------------
# The ledger, payout and the consumer's client derive these; the audit recomputes every one
# from the fact's other fields and reports any that differs.


def allocation_id(revenue_id: str, contribution_id: str) -> str:
    """An allocation's id, and its allocation.made fact's event id."""
    return derived_id("allocation.made", revenue_id, contribution_id)


def payout_id(contributor_id: str, period: str, currency: str) -> str:
    """A payout's id, and its payout.issued fact's event id: one per contributor, period
    and currency, so a second run for the period can never pay twice."""
    return derived_id("payout.issued", contributor_id, period, currency)


def payout_run_id(period: str) -> str:
    return derived_id("payout.run", period)


def revenue_id(consumer_id: str, external_id: str) -> str:
    """A revenue.recorded fact's revenue_id: the consumer's own id for the revenue (an
    invoice number) within the consumer."""
    return derived_id("revenue.recorded", consumer_id, external_id)


def adjustment_id(consumer_id: str, external_id: str) -> str:
    """A revenue.adjusted fact's adjustment_id, likewise."""
    return derived_id("revenue.adjusted", consumer_id, external_id)

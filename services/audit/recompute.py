"""Recompute, from the facts alone, the allocations and payouts the published rules give
(docs/allocation.md, docs/audit.md). Pure: facts in, expected results out.

The facts are given in log order per partition (every fact about one id shares a key,
hence a partition, so "the first fact under an id" is well defined). A second, different
fact under an id already used is refused, as the ledger refuses it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.common.facts import Envelope, payload_of
from services.common.ids import derived_id
from services.common.money import UnknownCurrencyError, minor_exponent
from services.ledger import rules
from services.ledger.merkle import merkle_root
from services.payout.rules import settle


@dataclass(frozen=True)
class Allocation:
    allocation_id: str
    revenue_id: str
    service_id: str
    agreement_id: str
    contributor_id: str
    contribution_id: str
    period: str
    currency: str
    allocated_micros: int
    pool_micros: int
    weight: int
    total_weight: int

    def canonical(self) -> str:
        return ",".join(
            str(v)
            for v in (
                self.allocation_id,
                self.revenue_id,
                self.contribution_id,
                self.contributor_id,
                self.period,
                self.currency,
                self.allocated_micros,
                self.weight,
                self.total_weight,
                self.pool_micros,
            )
        )


@dataclass
class Expected:
    allocations: dict[str, Allocation] = field(default_factory=dict)
    # revenue or adjustment id -> "allocated" | "unallocated" | "rejected: why" | "parked: why"
    outcomes: dict[str, str] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)  # facts the ledger dead-letters
    revenue_minor: dict[str, int] = field(default_factory=dict)  # per currency, allocated
    pool_micros: dict[str, int] = field(default_factory=dict)


def _ts(stamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def _first(facts: Iterable[Envelope], id_field: str, refused: list[str], what: str) -> dict:
    chosen: dict = {}
    for envelope in facts:
        fact = payload_of(envelope)
        key = getattr(fact, id_field)
        if key in chosen:
            if chosen[key] != fact:
                refused.append(f"{what} {key}: a second, different fact under the same id")
            continue
        chosen[key] = fact
    return chosen


def recompute(by_type: dict[str, list[Envelope]]) -> Expected:
    expected = Expected()
    refused = expected.refused
    processed = {e.event_id: payload_of(e) for e in by_type.get("contribution.processed", [])}
    withdrawn: dict[str, datetime] = {}
    for envelope in by_type.get("contribution.withdrawn", []):
        fact = payload_of(envelope)
        at = _ts(fact.effective_at)
        withdrawn[fact.contribution_id] = min(at, withdrawn.get(fact.contribution_id, at))
    agreements = _first(
        by_type.get("agreement.published", []), "agreement_id", refused, "agreement"
    )
    deployments = _first(
        by_type.get("service.deployed", []), "deployment_id", refused, "deployment"
    )
    snapshots = {}
    for snapshot_id, fact in _first(
        by_type.get("snapshot.created", []), "snapshot_id", refused, "snapshot"
    ).items():
        if merkle_root(fact.members) != fact.merkle_root:
            refused.append(f"snapshot {snapshot_id}: merkle_root does not match its members")
            continue
        snapshots[snapshot_id] = fact
    revenue = {}
    seen_external: dict[tuple[str, str], str] = {}
    for envelope in by_type.get("revenue.recorded", []):
        fact = payload_of(envelope)
        known = revenue.get(fact.revenue_id)
        if known is None:
            other = seen_external.get((fact.consumer_id, fact.external_id))
            if other is not None and other != fact.revenue_id:
                refused.append(f"revenue {fact.external_id}: external id reused")
                continue
            revenue[fact.revenue_id] = fact
            seen_external[(fact.consumer_id, fact.external_id)] = fact.revenue_id
        elif known != fact:
            refused.append(f"revenue {fact.external_id}: recorded twice with different content")
    adjustments = _first(
        by_type.get("revenue.adjusted", []), "adjustment_id", refused, "adjustment"
    )
    shares: dict[str, int] = {}
    claims_of: dict[str, list[rules.Claim]] = {}
    for revenue_id in sorted(revenue):
        fact = revenue[revenue_id]
        outcome = _recorded(fact, agreements, deployments, snapshots, processed, withdrawn)
        if isinstance(outcome, str):
            expected.outcomes[revenue_id] = outcome
            continue
        shares[revenue_id], claims_of[revenue_id] = outcome
        expected.outcomes[revenue_id] = _split(
            expected, revenue_id, fact, fact.amount_minor, *outcome
        )
    for adjustment_id in sorted(adjustments):
        fact = adjustments[adjustment_id]
        original = revenue.get(fact.revenue_id)
        status = expected.outcomes.get(fact.revenue_id, "")
        if original is None or status.startswith("parked"):
            outcome = "parked: waiting for the revenue it corrects"
        elif status.startswith("rejected"):
            outcome = "rejected: corrects a rejected revenue event"
        elif (original.currency, original.service_id, original.consumer_id) != (
            fact.currency,
            fact.service_id,
            fact.consumer_id,
        ):
            outcome = "rejected: does not match the revenue it corrects"
        else:
            outcome = _split(
                expected,
                adjustment_id,
                original,
                fact.delta_minor,
                shares[fact.revenue_id],
                claims_of[fact.revenue_id],
            )
        expected.outcomes[adjustment_id] = outcome
    return expected


def _recorded(fact, agreements, deployments, snapshots, processed, withdrawn):
    """(share_bps, claims) if the revenue event can be allocated; else its outcome."""
    try:
        minor_exponent(fact.currency)
    except UnknownCurrencyError as error:
        return f"rejected: {error}"
    if not fact.agreement_id or not fact.deployment_ids:
        return "rejected: names no agreement or no deployment"
    agreement = agreements.get(fact.agreement_id)
    missing = [] if agreement else [f"agreement {fact.agreement_id}"]
    named = [deployments.get(d) for d in fact.deployment_ids]
    missing += [
        f"deployment {d}" for d, dep in zip(fact.deployment_ids, named, strict=True) if not dep
    ]
    snapshot_ids = sorted({s for dep in named if dep for s in dep.snapshot_ids})
    missing += [f"snapshot {s}" for s in snapshot_ids if s not in snapshots]
    members = [m for s in snapshot_ids if s in snapshots for m in snapshots[s].members]
    missing += [
        f"processed {m.processed_event_id}"
        for m in members
        if m.processed_event_id not in processed
    ]
    if missing:
        return "parked: waiting for " + "; ".join(missing[:3])
    _, end = rules.period_bounds(fact.period)
    terms = rules.AgreementTerms(
        agreement.agreement_id,
        agreement.service_id,
        agreement.share_bps,
        agreement.currency,
        _ts(agreement.effective_from),
        _ts(agreement.effective_until) if agreement.HasField("effective_until") else None,
    )
    if (
        agreement.service_id != fact.service_id
        or agreement.consumer_id != fact.consumer_id
        or agreement.currency != fact.currency
        or not rules.covers(terms, fact.period)
    ):
        return "rejected: the agreement does not cover this service, consumer, currency or period"
    for dep in named:
        if dep.service_id != fact.service_id or _ts(dep.deployed_from) >= end:
            return "rejected: a deployment is of another service or began after the period"
    by_snapshot = []
    for snapshot_id in snapshot_ids:
        rows = []
        for m in snapshots[snapshot_id].members:
            p = processed[m.processed_event_id]
            if (p.contribution_id, p.contributor_id) != (m.contribution_id, m.contributor_id):
                return "rejected: a snapshot member names another contribution's processed fact"
            if p.tokens_accepted != m.tokens_accepted:
                return "rejected: a snapshot's token count differs from the processed fact"
            rows.append(rules.Member(m.contribution_id, m.contributor_id, p.tokens_accepted))
        by_snapshot.append((snapshot_id, rows))
    weight = rules.WEIGHT_PER_TOKEN.get(agreement.weighting_rule)
    if weight is None:
        return "rejected: unknown weighting rule"
    return agreement.share_bps, rules.claims_for(by_snapshot, withdrawn, fact.period, weight)


def _split(expected: Expected, revenue_id, revenue, amount_minor, share_bps, claims) -> str:
    try:
        pool = rules.pool_micros(amount_minor, revenue.currency, share_bps)
        parts = rules.split(pool, claims)
    except rules.AllocationError as error:
        return f"unallocated: {error}" if "eligible" in str(error) else f"rejected: {error}"
    currency = revenue.currency
    expected.revenue_minor[currency] = expected.revenue_minor.get(currency, 0) + amount_minor
    expected.pool_micros[currency] = expected.pool_micros.get(currency, 0) + pool
    for part in parts:
        allocation_id = derived_id("allocation.made", revenue_id, part.contribution_id)
        expected.allocations[allocation_id] = Allocation(
            allocation_id,
            revenue_id,
            revenue.service_id,
            revenue.agreement_id,
            part.contributor_id,
            part.contribution_id,
            revenue.period,
            currency,
            part.micros,
            pool,
            part.weight,
            part.total_weight,
        )
    return "allocated"


@dataclass(frozen=True)
class PayoutCheck:
    payout_id: str
    problems: tuple[str, ...]


def check_payouts(
    payouts: Iterable, allocations: dict[str, Allocation], agreements_min: dict[str, int]
) -> list[str]:
    """Every payout.issued fact against the rules: covered allocations exist and are
    covered once; the opening balance is the previous payout's carry; the amount and
    carry are what settlement gives."""
    problems = []
    covered: dict[str, str] = {}
    last_carry: dict[tuple[str, str], int] = {}
    # The minimum payout is the largest of the agreements the contributor was ever
    # allocated under in that currency, up to this payout (docs/payout.md).
    minimums: dict[tuple[str, str], int] = {}
    for fact in sorted(payouts, key=lambda p: (p.contributor_id, p.currency, p.period)):
        key = (fact.contributor_id, fact.currency)
        expected_opening = last_carry.get(key, 0)
        if fact.opening_carried_micros != expected_opening:
            problems.append(
                f"payout {fact.payout_id}: opening carried {fact.opening_carried_micros} but "
                f"the previous payout carried {expected_opening}"
            )
        amounts = []
        minimum = minimums.get(key, 0)
        for allocation_id in fact.allocation_ids:
            allocation = allocations.get(allocation_id)
            if allocation is None:
                problems.append(
                    f"payout {fact.payout_id}: covers unknown allocation {allocation_id}"
                )
                continue
            if allocation.contributor_id != fact.contributor_id:
                problems.append(f"payout {fact.payout_id}: covers another contributor's allocation")
            if allocation_id in covered:
                problems.append(
                    f"allocation {allocation_id} paid twice: by {covered[allocation_id]} and "
                    f"{fact.payout_id}"
                )
            covered[allocation_id] = fact.payout_id
            amounts.append(allocation.allocated_micros)
            minimum = max(minimum, agreements_min.get(allocation.agreement_id, 0))
        result = settle(fact.opening_carried_micros, amounts, fact.currency, minimum)
        if (result.amount_minor, result.carried_forward_micros) != (
            fact.amount_minor,
            fact.carried_forward_micros,
        ):
            problems.append(
                f"payout {fact.payout_id}: paid {fact.amount_minor} and carried "
                f"{fact.carried_forward_micros}, but the rules give {result.amount_minor} and "
                f"{result.carried_forward_micros}"
            )
        last_carry[key] = fact.carried_forward_micros
        minimums[key] = minimum
    return problems

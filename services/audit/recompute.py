"""Recompute, from the facts alone, the allocations and payouts the published rules give
(docs/allocation.md, docs/audit.md). Pure: facts in, expected results out.

The facts are given in log order per partition (every fact about one id shares a key,
hence a partition, so "the first fact under an id" is well defined). A second, different
fact under an id already used is refused, as the ledger refuses it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.common.facts import Envelope, payload_of
from services.rules import admission, ids
from services.rules.allocation import AllocationError, NothingToAllocate, pool_micros, split
from services.rules.merkle import snapshot_root
from services.rules.settlement import minimum_payout, settle
from services.rules.terms import Deployment


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


def _published(facts: Iterable[Envelope], id_field: str, appended_at) -> dict:
    """When the first fact under each id was appended to the log (None if not known)."""
    when: dict = {}
    for envelope in facts:
        when.setdefault(getattr(payload_of(envelope), id_field), appended_at.get(envelope.event_id))
    return when


def recompute(
    by_type: dict[str, list[Envelope]], appended_at: Mapping[str, datetime] | None = None
) -> Expected:
    """`appended_at`: when the broker appended each fact, by event id (the first record
    under that id): the terms a revenue event is judged by are those published before it."""
    appended_at = appended_at or {}
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
        if snapshot_root(fact.members) != fact.merkle_root:
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
    agreed_at = _published(by_type.get("agreement.published", []), "agreement_id", appended_at)
    deployed_at = _published(by_type.get("service.deployed", []), "deployment_id", appended_at)
    recorded_at = _published(by_type.get("revenue.recorded", []), "revenue_id", appended_at)
    agreement_terms = {i: _agreement(fact, agreed_at[i]) for i, fact in agreements.items()}
    deployment_terms = {
        i: Deployment(
            i,
            fact.service_id,
            tuple(fact.snapshot_ids),
            _ts(fact.deployed_from),
            deployed_at[i],
            fact.consumer_id,
        )
        for i, fact in deployments.items()
    }
    published = admission.Published(list(agreement_terms.values()), list(deployment_terms.values()))
    listed = {
        i: [
            admission.SnapshotMember(
                m.contribution_id, m.contributor_id, m.tokens_accepted, m.processed_event_id
            )
            for m in fact.members
        ]
        for i, fact in snapshots.items()
    }
    said = {
        i: admission.Processed(fact.contribution_id, fact.contributor_id, fact.tokens_accepted)
        for i, fact in processed.items()
    }
    allocated: dict[str, admission.Allocate] = {}
    for revenue_id in sorted(revenue):
        fact = revenue[revenue_id]
        event = admission.RevenueEvent(
            revenue_id,
            fact.consumer_id,
            fact.service_id,
            fact.period,
            fact.currency,
            fact.amount_minor,
            fact.agreement_id,
            tuple(fact.deployment_ids),
            recorded_at[revenue_id],
        )
        outcome = admission.admit(
            event,
            agreement_terms.get(fact.agreement_id),
            deployment_terms,
            listed,
            said,
            withdrawn,
            published,
        )
        if isinstance(outcome, admission.Allocate):
            allocated[revenue_id] = outcome
            expected.outcomes[revenue_id] = _split(
                expected, revenue_id, fact, fact.amount_minor, outcome.share_bps, outcome.claims
            )
        else:
            expected.outcomes[revenue_id] = _status(outcome)
    for adjustment_id in sorted(adjustments):
        fact = adjustments[adjustment_id]
        original = revenue.get(fact.revenue_id)
        standing = None
        if original is not None:
            status, _, reason = expected.outcomes[fact.revenue_id].partition(": ")
            standing = admission.Outcome(
                "recorded",
                status,
                reason,
                original.consumer_id,
                original.service_id,
                original.currency,
            )
        elif fact.revenue_id in adjustments:
            standing = admission.Outcome("adjusted", "", "", "", "", "")
        waits = admission.admit_adjustment(
            admission.Adjustment(
                adjustment_id,
                fact.revenue_id,
                fact.consumer_id,
                fact.service_id,
                fact.currency,
                fact.delta_minor,
            ),
            standing,
        )
        if waits is not None:
            expected.outcomes[adjustment_id] = _status(waits)
            continue
        terms = allocated[fact.revenue_id]
        expected.outcomes[adjustment_id] = _split(
            expected, adjustment_id, original, fact.delta_minor, terms.share_bps, terms.claims
        )
    return expected


def _agreement(fact, published_at: datetime | None) -> admission.Agreement:
    return admission.Agreement(
        fact.agreement_id,
        fact.service_id,
        fact.share_bps,
        fact.currency,
        _ts(fact.effective_from),
        _ts(fact.effective_until) if fact.HasField("effective_until") else None,
        fact.min_payout_minor,
        fact.weighting_rule,
        published_at,
        consumer_id=fact.consumer_id,
    )


def _status(outcome: admission.Park | admission.Reject) -> str:
    kind = "parked" if isinstance(outcome, admission.Park) else "rejected"
    return f"{kind}: {outcome.reason}"


def _split(expected: Expected, revenue_id, revenue, amount_minor, share_bps, claims) -> str:
    try:
        pool = pool_micros(amount_minor, revenue.currency, share_bps)
        parts = split(pool, claims)
    except NothingToAllocate as error:
        return f"unallocated: {error}; the pool stays with the consumer"
    except AllocationError as error:
        return f"rejected: {error}"
    currency = revenue.currency
    expected.revenue_minor[currency] = expected.revenue_minor.get(currency, 0) + amount_minor
    expected.pool_micros[currency] = expected.pool_micros.get(currency, 0) + pool
    for part in parts:
        allocation_id = ids.allocation_id(revenue_id, part.contribution_id)
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


def check_ids(by_type: dict[str, list[Envelope]]) -> list[str]:
    """Every id the platform derives, recomputed from the fact's other fields
    (services.rules.ids, docs/money.md "Identifiers")."""
    problems = []
    for envelope in by_type.get("allocation.made", []):
        fact = payload_of(envelope)
        want = ids.allocation_id(fact.revenue_id, fact.contribution_id)
        if fact.allocation_id != want or envelope.event_id != want:
            problems.append(
                f"allocation.made {envelope.event_id}: allocation id {fact.allocation_id} is not "
                f"the one derived from revenue {fact.revenue_id} and contribution "
                f"{fact.contribution_id} ({want})"
            )
    for envelope in by_type.get("payout.issued", []):
        fact = payload_of(envelope)
        want = ids.payout_id(fact.contributor_id, fact.period, fact.currency)
        if fact.payout_id != want or envelope.event_id != want:
            problems.append(
                f"payout.issued {envelope.event_id}: payout id {fact.payout_id} is not the one "
                f"derived from contributor {fact.contributor_id}, period {fact.period} and "
                f"currency {fact.currency} ({want})"
            )
        if fact.payout_run_id != ids.payout_run_id(fact.period):
            problems.append(
                f"payout.issued {fact.payout_id}: run id {fact.payout_run_id} is not the one "
                f"derived from period {fact.period} ({ids.payout_run_id(fact.period)})"
            )
    return problems


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
    # The agreements of the allocations each contributor's payouts in a currency settled
    # so far: the minimum payout is over these (services.rules.settlement.minimum_payout).
    settled_under: dict[tuple[str, str], list[int]] = {}
    for fact in sorted(payouts, key=lambda p: (p.contributor_id, p.currency, p.period)):
        key = (fact.contributor_id, fact.currency)
        expected_opening = last_carry.get(key, 0)
        if fact.opening_carried_micros != expected_opening:
            problems.append(
                f"payout {fact.payout_id}: opening carried {fact.opening_carried_micros} but "
                f"the previous payout carried {expected_opening}"
            )
        amounts = []
        minimums = settled_under.setdefault(key, [])
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
            minimums.append(agreements_min.get(allocation.agreement_id, 0))
        result = settle(
            fact.opening_carried_micros, amounts, fact.currency, minimum_payout(minimums)
        )
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
    return problems

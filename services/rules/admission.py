"""Admission: may a revenue event (or an adjustment) be allocated now, must it wait for a
fact it names, or can it never be allocated as published? (docs/money.md, "Admission".)

`admit` and `admit_adjustment` are pure: the caller looks up the facts the event names
(the ledger in its tables, the audit in the log) and passes what it found; a fact not
found is simply absent. The answer is one of

- `Allocate`: the terms and the claims to split the pool over;
- `Park`: the facts still missing, named, in a fixed order; the event waits for them;
- `Reject`: why these facts can never be allocated, in words a consumer can act on.

The ledger records the outcome and its reason as the revenue's status; the audit
recomputes both and compares. Checks run in a fixed order, so the first reason found is
the same for both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from services.common.money import UnknownCurrencyError, minor_exponent
from services.rules.allocation import WEIGHT_PER_TOKEN, Claim, Member, claims_for, period_bounds
from services.rules.terms import (
    AgreementTerms,
    Deployment,
    agreement_in_force,
    covers,
    deployments_for,
)

# How many missing facts a parked event names (the first ones, in a fixed order).
_MISSING_NAMED = 3

# The selection rule in one sentence, for every refusal of the consumer's choice.
_WHICH_TERMS = (
    "Of the terms published before a revenue event, the agreement and deployment in force "
    "when its period began govern the whole period; terms take effect no earlier than "
    "they are published, so a change published during a period applies from the next one, "
    "and a period that ended without terms takes the earliest published ones that cover "
    'it (docs/allocation.md, "Which terms apply")'
)


@dataclass(frozen=True)
class RevenueEvent:
    """What the rules read of a revenue.recorded fact."""

    revenue_id: str
    consumer_id: str
    service_id: str
    period: str
    currency: str
    amount_minor: int
    agreement_id: str
    deployment_ids: tuple[str, ...]
    # When the broker appended the fact; None for one not yet published (the consumer's
    # client checking before it publishes), which lets every published term count.
    published_at: datetime | None = None


@dataclass(frozen=True)
class Published:
    """The agreements and deployments the revenue's consumer has published (the caller
    may pass more: `admit` keeps those of the revenue's consumer and service published no
    later than the revenue). The terms of a revenue event are chosen among these by the
    rules (services.rules.terms), never by the event."""

    agreements: Sequence[Agreement]
    deployments: Sequence[Deployment]


@dataclass(frozen=True)
class Adjustment:
    """What the rules read of a revenue.adjusted fact."""

    adjustment_id: str
    revenue_id: str  # the revenue.recorded event it corrects
    consumer_id: str
    service_id: str
    currency: str
    delta_minor: int


@dataclass(frozen=True)
class Outcome:
    """Where the revenue event it corrects stands, for an adjustment: its kind
    ("recorded" or "adjusted"), status ("parked", "allocated", "unallocated", "rejected")
    and reason, and the fields an adjustment must match."""

    kind: str
    status: str
    reason: str
    consumer_id: str
    service_id: str
    currency: str


@dataclass(frozen=True)
class SnapshotMember:
    """A member as its snapshot.created fact lists it: the tokens it claims, and the
    contribution.processed fact (by event id) that must say the same."""

    contribution_id: str
    contributor_id: str
    tokens_accepted: int
    processed_event_id: str


@dataclass(frozen=True)
class Processed:
    """What a contribution.processed fact says of its contribution."""

    contribution_id: str
    contributor_id: str
    tokens_accepted: int


@dataclass(frozen=True)
class Agreement(AgreementTerms):
    consumer_id: str = ""


@dataclass(frozen=True)
class Allocate:
    agreement_id: str
    share_bps: int
    claims: list[Claim]


@dataclass(frozen=True)
class Park:
    waiting_for: tuple[str, ...]

    @property
    def reason(self) -> str:
        return "waiting for " + "; ".join(self.waiting_for)


@dataclass(frozen=True)
class Reject:
    reason: str


Admission = Allocate | Park | Reject


def admit(
    revenue: RevenueEvent,
    agreement: Agreement | None,
    deployments: Mapping[str, Deployment],
    snapshots: Mapping[str, Sequence[SnapshotMember]],
    processed: Mapping[str, Processed],
    withdrawn_at: Mapping[str, datetime],
    published: Published,
) -> Admission:
    """The outcome for `revenue`, given the facts found under the ids it names: its
    agreement (None if not found), its deployments and their snapshots by id, the
    processed facts the snapshots' members name, by event id, and the earliest withdrawal
    of each contribution; and the terms its consumer had published when it was recorded."""
    try:
        minor_exponent(revenue.currency)
    except UnknownCurrencyError as error:
        return Reject(str(error))
    if not revenue.agreement_id:
        return Reject(
            "the revenue fact names no agreement (agreement_id); publish it with the consumer "
            "client, which names the agreement in force for the service and period"
        )
    if not revenue.deployment_ids:
        return Reject("the revenue fact names no deployment (deployment_ids)")

    missing = [] if agreement is not None else [f"agreement {revenue.agreement_id}"]
    named = sorted(set(revenue.deployment_ids))
    missing += [f"deployment {d}" for d in named if d not in deployments]
    snapshot_ids = sorted(
        {s for d in named if d in deployments for s in deployments[d].snapshot_ids}
    )
    missing += [f"snapshot {s}" for s in snapshot_ids if s not in snapshots]
    members = [m for s in snapshot_ids if s in snapshots for m in snapshots[s]]
    unprocessed = sorted({m.processed_event_id for m in members} - processed.keys())
    if unprocessed:
        missing.append(
            f"{len(unprocessed)} contribution.processed fact(s) named by the snapshots "
            f"(first: {unprocessed[0]})"
        )
    if missing:
        return Park(tuple(missing[:_MISSING_NAMED]))

    if rejected := _terms_refusal(revenue, agreement, [deployments[d] for d in named]):
        return Reject(rejected)
    if rejected := _selection_refusal(revenue, published):
        return Reject(rejected)
    by_snapshot: list[tuple[str, list[Member]]] = []
    for snapshot_id in snapshot_ids:
        rows = []
        for m in snapshots[snapshot_id]:
            fact = processed[m.processed_event_id]
            if (fact.contribution_id, fact.contributor_id) != (m.contribution_id, m.contributor_id):
                return Reject(
                    f"snapshot {snapshot_id} lists contribution {m.contribution_id} with "
                    f"processed fact {m.processed_event_id}, which is about another contribution"
                )
            if m.tokens_accepted != fact.tokens_accepted:
                return Reject(
                    f"snapshot {snapshot_id} claims {m.tokens_accepted} accepted tokens for "
                    f"contribution {m.contribution_id}, but its processed fact says "
                    f"{fact.tokens_accepted}"
                )
            rows.append(Member(m.contribution_id, m.contributor_id, fact.tokens_accepted))
        by_snapshot.append((snapshot_id, rows))
    weight_per_token = WEIGHT_PER_TOKEN.get(agreement.weighting_rule)
    if weight_per_token is None:
        return Reject(f"weighting rule {agreement.weighting_rule} is not known")
    claims = claims_for(by_snapshot, withdrawn_at, revenue.period, weight_per_token)
    return Allocate(agreement.agreement_id, agreement.share_bps, claims)


def _terms_refusal(
    revenue: RevenueEvent, agreement: Agreement, deployments: Sequence[Deployment]
) -> str | None:
    """Why the named agreement and deployments cannot govern this revenue, if they cannot."""
    if agreement.service_id != revenue.service_id:
        return (
            f"agreement {agreement.agreement_id} is for service {agreement.service_id!r}, "
            f"not {revenue.service_id!r}"
        )
    if agreement.consumer_id != revenue.consumer_id:
        return f"agreement {agreement.agreement_id} is another consumer's"
    if agreement.currency != revenue.currency:
        return (
            f"the revenue is in {revenue.currency} but agreement {agreement.agreement_id} "
            f"settles in {agreement.currency}; currencies never mix"
        )
    if not covers(agreement, revenue.period):
        return f"agreement {agreement.agreement_id} is not in force during {revenue.period}"
    _, period_end = period_bounds(revenue.period)
    for deployment in sorted(deployments, key=lambda d: d.deployment_id):
        if deployment.service_id != revenue.service_id:
            return (
                f"deployment {deployment.deployment_id} is of service "
                f"{deployment.service_id!r}, not {revenue.service_id!r}"
            )
        if deployment.deployed_from >= period_end:
            return f"deployment {deployment.deployment_id} began after {revenue.period} ended"
    return None


def _selection_refusal(revenue: RevenueEvent, published: Published) -> str | None:
    """Why the named agreement or deployments are not the ones the rules select for the
    revenue's service and period among the terms published before it, if they are not."""

    def before(item) -> bool:
        return (
            item.consumer_id == revenue.consumer_id
            and item.service_id == revenue.service_id
            and (
                revenue.published_at is None
                or item.published_at is None
                or item.published_at <= revenue.published_at
            )
        )

    agreements = [a for a in published.agreements if before(a)]
    chosen = agreement_in_force(agreements, revenue.service_id, revenue.period)
    if chosen is None or chosen.agreement_id != revenue.agreement_id:
        if all(a.agreement_id != revenue.agreement_id for a in agreements):
            return (
                f"agreement {revenue.agreement_id} was published after this revenue was "
                "recorded; a revenue event is allocated under the terms published before it"
            )
        return (
            f"agreement {revenue.agreement_id} is not the one in force for service "
            f"{revenue.service_id!r} in {revenue.period}: the rules select "
            f"{chosen.agreement_id} ({chosen.share_bps} bps). {_WHICH_TERMS}"
        )
    live = deployments_for(
        [d for d in published.deployments if before(d)], revenue.service_id, revenue.period
    )
    live_ids = sorted(d.deployment_id for d in live)
    named = sorted(set(revenue.deployment_ids))
    if named != live_ids:
        return (
            f"the deployments named ({', '.join(named)}) are not the ones live for service "
            f"{revenue.service_id!r} in {revenue.period} ({', '.join(live_ids) or 'none'}); "
            f"name exactly those (the consumer client does). {_WHICH_TERMS}"
        )
    return None


def admit_adjustment(adjustment: Adjustment, original: Outcome | None) -> Park | Reject | None:
    """Whether an adjustment waits or is refused; None if it may be allocated (with the
    original's agreement, share and claims)."""
    try:
        minor_exponent(adjustment.currency)
    except UnknownCurrencyError as error:
        return Reject(str(error))
    if original is None:
        return Park((f"revenue {adjustment.revenue_id}, which this adjustment corrects",))
    if original.kind != "recorded":
        return Reject(f"{adjustment.revenue_id} is an adjustment; adjust the original")
    if original.status == "parked":
        return Park((f"revenue {adjustment.revenue_id} to be allocated first",))
    if original.status == "rejected":
        return Reject(
            f"it corrects revenue {adjustment.revenue_id}, which was rejected: {original.reason}"
        )
    if original.currency != adjustment.currency:
        return Reject(
            f"the adjustment is in {adjustment.currency} but revenue {adjustment.revenue_id} "
            f"is in {original.currency}; currencies never mix"
        )
    if original.service_id != adjustment.service_id:
        return Reject(f"revenue {adjustment.revenue_id} is of another service")
    if original.consumer_id != adjustment.consumer_id:
        return Reject(f"revenue {adjustment.revenue_id} is another consumer's")
    return None

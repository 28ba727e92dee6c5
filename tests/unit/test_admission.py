"""`admit` and `admit_adjustment` (services/rules/admission.py), one case per outcome and
reason: what the ledger records as a revenue event's status and the audit recomputes."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from services.rules.admission import (
    Adjustment,
    Agreement,
    Allocate,
    Outcome,
    Park,
    Processed,
    Published,
    Reject,
    RevenueEvent,
    SnapshotMember,
    admit,
    admit_adjustment,
)
from services.rules.allocation import Claim
from services.rules.terms import Deployment

JAN = datetime(2026, 1, 1, tzinfo=UTC)
NOV = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)

REVENUE = RevenueEvent("r1", "acme", "chat", "2026-11", "USD", 10_000, "a1", ("d1",))
AGREEMENT = Agreement("a1", "chat", 1_500, "USD", JAN, None, 0, 1, consumer_id="acme")
DEPLOYMENT = Deployment("d1", "chat", ("s1",), JAN, consumer_id="acme")
MEMBERS = [
    SnapshotMember("c1", "alice", 700, "p1"),
    SnapshotMember("c2", "bob", 300, "p2"),
]
PROCESSED = {"p1": Processed("c1", "alice", 700), "p2": Processed("c2", "bob", 300)}


def world(**changes):
    """The facts of one admissible revenue event, with `changes` applied."""
    facts = {
        "revenue": REVENUE,
        "agreement": AGREEMENT,
        "deployments": {"d1": DEPLOYMENT},
        "snapshots": {"s1": MEMBERS},
        "processed": PROCESSED,
        "withdrawn_at": {},
    }
    facts.update(changes)
    if "published" not in facts:  # the consumer published just the terms the event names
        facts["published"] = Published(
            [facts["agreement"]] if facts["agreement"] else [],
            list(facts["deployments"].values()),
        )
    return facts


def test_an_admissible_event_is_allocated_over_its_claims():
    outcome = admit(**world())
    assert outcome == Allocate("a1", 1_500, [Claim("c1", "alice", 700), Claim("c2", "bob", 300)])


def test_a_contribution_withdrawn_before_the_period_takes_no_part():
    outcome = admit(**world(withdrawn_at={"c2": datetime(2026, 10, 31, tzinfo=UTC)}))
    assert outcome.claims == [Claim("c1", "alice", 700)]
    # withdrawn during the period: it still takes part in that period
    outcome = admit(**world(withdrawn_at={"c2": datetime(2026, 11, 2, tzinfo=UTC)}))
    assert len(outcome.claims) == 2


PARKED = {
    "the agreement": (dict(agreement=None), ["agreement a1"]),
    "a deployment": (dict(deployments={}), ["deployment d1"]),
    "a snapshot": (dict(snapshots={}), ["snapshot s1"]),
    "processed facts": (
        dict(processed={}),
        ["2 contribution.processed fact(s) named by the snapshots (first: p1)"],
    ),
    "at most three things, the first in a fixed order": (
        dict(
            agreement=None,
            revenue=dataclasses.replace(REVENUE, deployment_ids=("d9", "d1", "d8")),
            deployments={},
        ),
        ["agreement a1", "deployment d1", "deployment d8"],
    ),
}


@pytest.mark.parametrize("changes, waiting", PARKED.values(), ids=PARKED)
def test_an_event_waits_for_the_facts_it_names(changes, waiting):
    outcome = admit(**world(**changes))
    assert outcome == Park(tuple(waiting))
    assert outcome.reason == "waiting for " + "; ".join(waiting)


REJECTED = {
    "unknown currency": (
        dict(revenue=dataclasses.replace(REVENUE, currency="XXX")),
        "currency 'XXX' is not one the platform settles in",
    ),
    "no agreement named": (
        dict(revenue=dataclasses.replace(REVENUE, agreement_id="")),
        "the revenue fact names no agreement (agreement_id)",
    ),
    "no deployment named": (
        dict(revenue=dataclasses.replace(REVENUE, deployment_ids=())),
        "the revenue fact names no deployment (deployment_ids)",
    ),
    "agreement of another service": (
        dict(agreement=dataclasses.replace(AGREEMENT, service_id="search")),
        "agreement a1 is for service 'search', not 'chat'",
    ),
    "agreement of another consumer": (
        dict(agreement=dataclasses.replace(AGREEMENT, consumer_id="rival")),
        "agreement a1 is another consumer's",
    ),
    "agreement in another currency": (
        dict(agreement=dataclasses.replace(AGREEMENT, currency="EUR")),
        "the revenue is in USD but agreement a1 settles in EUR; currencies never mix",
    ),
    "agreement not in force": (
        dict(agreement=dataclasses.replace(AGREEMENT, effective_from=DEC)),
        "agreement a1 is not in force during 2026-11",
    ),
    "agreement ended before the period": (
        dict(agreement=dataclasses.replace(AGREEMENT, effective_until=NOV)),
        "agreement a1 is not in force during 2026-11",
    ),
    "deployment of another service": (
        dict(deployments={"d1": dataclasses.replace(DEPLOYMENT, service_id="search")}),
        "deployment d1 is of service 'search', not 'chat'",
    ),
    "deployment after the period": (
        dict(deployments={"d1": dataclasses.replace(DEPLOYMENT, deployed_from=DEC)}),
        "deployment d1 began after 2026-11 ended",
    ),
    "member names another contribution's processed fact": (
        dict(processed={**PROCESSED, "p2": Processed("c9", "bob", 300)}),
        "snapshot s1 lists contribution c2 with processed fact p2, which is about another "
        "contribution",
    ),
    "member claims more tokens than processed": (
        dict(processed={**PROCESSED, "p1": Processed("c1", "alice", 600)}),
        "snapshot s1 claims 700 accepted tokens for contribution c1, but its processed fact "
        "says 600",
    ),
    "unknown weighting rule": (
        dict(agreement=dataclasses.replace(AGREEMENT, weighting_rule=7)),
        "weighting rule 7 is not known",
    ),
}


@pytest.mark.parametrize("changes, reason", REJECTED.values(), ids=REJECTED)
def test_an_event_that_can_never_be_allocated_is_rejected_with_its_reason(changes, reason):
    outcome = admit(**world(**changes))
    assert isinstance(outcome, Reject)
    assert outcome.reason.startswith(reason), outcome.reason


ADJUSTMENT = Adjustment("j1", "r1", "acme", "chat", "USD", -2_000)
ALLOCATED = Outcome("recorded", "allocated", "", "acme", "chat", "USD")

ADJUSTMENTS = {
    "allocated original": (ALLOCATED, None),
    "unallocated original (nothing to claw back, still admitted)": (
        dataclasses.replace(ALLOCATED, status="unallocated"),
        None,
    ),
    "original not on the log": (None, Park(("revenue r1, which this adjustment corrects",))),
    "original parked": (
        dataclasses.replace(ALLOCATED, status="parked"),
        Park(("revenue r1 to be allocated first",)),
    ),
    "original rejected": (
        dataclasses.replace(ALLOCATED, status="rejected", reason="no agreement"),
        Reject("it corrects revenue r1, which was rejected: no agreement"),
    ),
    "original is an adjustment": (
        dataclasses.replace(ALLOCATED, kind="adjusted"),
        Reject("r1 is an adjustment; adjust the original"),
    ),
    "another currency": (
        dataclasses.replace(ALLOCATED, currency="EUR"),
        Reject("the adjustment is in USD but revenue r1 is in EUR; currencies never mix"),
    ),
    "another service": (
        dataclasses.replace(ALLOCATED, service_id="search"),
        Reject("revenue r1 is of another service"),
    ),
    "another consumer": (
        dataclasses.replace(ALLOCATED, consumer_id="rival"),
        Reject("revenue r1 is another consumer's"),
    ),
}


@pytest.mark.parametrize("original, expected", ADJUSTMENTS.values(), ids=ADJUSTMENTS)
def test_an_adjustment_follows_the_revenue_it_corrects(original, expected):
    assert admit_adjustment(ADJUSTMENT, original) == expected


def test_an_adjustment_in_an_unknown_currency_is_rejected():
    outcome = admit_adjustment(dataclasses.replace(ADJUSTMENT, currency="XXX"), ALLOCATED)
    assert isinstance(outcome, Reject) and "XXX" in outcome.reason


# -- the terms are the rules' choice, not the consumer's ----------------------------------

OCT = datetime(2026, 10, 1, tzinfo=UTC)
REVENUE_AT = datetime(2026, 12, 2, tzinfo=UTC)  # December 2: November's revenue is recorded


def at(moment: datetime, **fields):
    return dict(published_at=moment, **fields)


STANDING = dataclasses.replace(AGREEMENT, published_at=JAN)  # 15%, since January
CHEAP = Agreement(
    "a-cheap", "chat", 1, "USD", datetime(2026, 11, 30, tzinfo=UTC), None, 0, 1,
    consumer_id="acme", published_at=datetime(2026, 11, 20, tzinfo=UTC),
)  # fmt: skip
BACKDATED = Agreement(
    "a-back", "chat", 1, "USD", OCT, None, 0, 1,
    consumer_id="acme", published_at=datetime(2026, 11, 15, tzinfo=UTC),
)  # fmt: skip
LATE = Agreement(
    "a-late", "chat", 1, "USD", OCT, None, 0, 1,
    consumer_id="acme", published_at=datetime(2026, 11, 25, tzinfo=UTC),
)  # fmt: skip
OLD = Deployment("d0", "chat", ("s1",), JAN, JAN, "acme")
CURRENT = Deployment("d1", "chat", ("s1",), datetime(2026, 2, 1, tzinfo=UTC), JAN, "acme")
MIDWAY = Deployment(
    "d2", "chat", ("s1",), datetime(2026, 11, 10, tzinfo=UTC),
    datetime(2026, 11, 10, tzinfo=UTC), "acme",
)  # fmt: skip
TERMS = Published([STANDING, CHEAP, BACKDATED, LATE], [OLD, CURRENT, MIDWAY])
ALL_DEPLOYMENTS = {d.deployment_id: d for d in TERMS.deployments}


def judged(agreement: Agreement, deployment_ids=("d1", "d2"), published=TERMS, recorded=REVENUE_AT):
    revenue = dataclasses.replace(
        REVENUE,
        agreement_id=agreement.agreement_id,
        deployment_ids=tuple(deployment_ids),
        published_at=recorded,
    )
    return admit(
        **world(
            revenue=revenue,
            agreement=agreement,
            deployments=ALL_DEPLOYMENTS,
            published=published,
        )
    )


def test_the_agreement_in_force_at_the_start_and_the_live_deployments_are_allocated():
    outcome = judged(STANDING)
    assert isinstance(outcome, Allocate) and outcome.share_bps == 1_500


CHOICES = {
    "an agreement that starts on the period's last day": (
        lambda: judged(CHEAP),
        "agreement a-cheap is not the one in force for service 'chat' in 2026-11: the rules "
        "select a1 (1500 bps",
    ),
    "an agreement backdated to before the period": (
        lambda: judged(BACKDATED),
        "agreement a-back is not the one in force for service 'chat' in 2026-11: the rules "
        "select a1",
    ),
    "an agreement published after the revenue": (
        lambda: judged(LATE, recorded=datetime(2026, 11, 20, tzinfo=UTC)),
        "agreement a-late was published after this revenue was recorded",
    ),
    "a superseded deployment": (
        lambda: judged(STANDING, ("d0", "d2")),
        "the deployments named (d0, d2) are not the ones live for service 'chat' in 2026-11 "
        "(d1, d2)",
    ),
    "a deployment left out": (
        lambda: judged(STANDING, ("d1",)),
        "the deployments named (d1) are not the ones live",
    ),
}


@pytest.mark.parametrize("outcome, reason", CHOICES.values(), ids=CHOICES)
def test_a_consumer_cannot_choose_its_own_terms(outcome, reason):
    result = outcome()
    assert isinstance(result, Reject), result
    assert result.reason.startswith(reason), result.reason


def test_a_backdated_agreement_takes_effect_when_published():
    """Published on November 15 with effective_from October 1: it governs December, not
    November."""
    assert BACKDATED.takes_effect == BACKDATED.published_at
    december = dataclasses.replace(
        REVENUE,
        period="2026-12",
        agreement_id="a-back",
        deployment_ids=("d2",),
        published_at=datetime(2027, 1, 2, tzinfo=UTC),
    )
    outcome = admit(
        **world(
            revenue=december,
            agreement=BACKDATED,
            deployments=ALL_DEPLOYMENTS,
            published=Published([STANDING, BACKDATED], TERMS.deployments),
        )
    )
    assert isinstance(outcome, Allocate) and outcome.share_bps == 1


def test_the_verdict_does_not_depend_on_the_order_terms_are_listed():
    forwards = judged(STANDING)
    backwards = judged(
        STANDING,
        published=Published(TERMS.agreements[::-1], TERMS.deployments[::-1]),
    )
    assert forwards == backwards

"""Which terms the rules select when publication times matter (services/rules/terms.py):
terms take effect no earlier than they are published; a period that ended without terms
is filled once by the earliest published ones; later publications never change a choice
already made. Each attack a consumer could try on its own terms is a case here."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.rules.allocation import period_bounds
from services.rules.terms import AgreementTerms, Deployment, agreement_in_force, deployments_for


def utc(*parts) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def agreement(agreement_id, start, published, until=None, share_bps=1000) -> AgreementTerms:
    return AgreementTerms(
        agreement_id, "chat", share_bps, "USD", start, until, published_at=published
    )


def deployment(deployment_id, start, published) -> Deployment:
    return Deployment(deployment_id, "chat", (f"s-{deployment_id}",), start, published)


# -- a consumer that joins late: past periods are filled once ---------------------------


def test_terms_published_after_a_period_without_terms_fill_it():
    joined = agreement("joined", utc(2026, 1, 1), published=utc(2026, 12, 3))
    assert agreement_in_force([joined], "chat", "2026-09") == joined
    chat = deployment("chat", utc(2026, 1, 1), published=utc(2026, 12, 3))
    assert deployments_for([chat], "chat", "2026-09") == [chat]


def test_the_earliest_published_fills_the_gap_and_a_later_one_never_replaces_it():
    first = agreement("zz-first", utc(2026, 1, 1), utc(2026, 12, 3), share_bps=333)
    cheaper = agreement("aa-cheaper", utc(2026, 9, 1), utc(2026, 12, 4), share_bps=1)
    assert agreement_in_force([cheaper, first], "chat", "2026-09") == first
    live = deployment("zz-live", utc(2026, 1, 1), utc(2026, 12, 3))
    swap = deployment("aa-swap", utc(2026, 9, 1), utc(2026, 12, 4))
    assert deployments_for([swap, live], "chat", "2026-09") == [live]


def test_a_period_with_terms_is_never_filled_again():
    standing = agreement("standing", utc(2026, 1, 1), utc(2026, 1, 1), share_bps=333)
    backdated = agreement("backdated", utc(2026, 9, 1), utc(2026, 12, 3), share_bps=1)
    assert agreement_in_force([standing, backdated], "chat", "2026-09") == standing
    # ... and it governs from when it was published: the next period on.
    assert agreement_in_force([standing, backdated], "chat", "2027-01") == backdated
    old = deployment("old", utc(2026, 1, 1), utc(2026, 1, 1))
    replaced = deployment("replaced", utc(2026, 9, 1), utc(2026, 12, 3))
    assert deployments_for([old, replaced], "chat", "2026-09") == [old]
    assert deployments_for([old, replaced], "chat", "2026-12") == [old, replaced]
    assert deployments_for([old, replaced], "chat", "2027-01") == [replaced]


# -- within a period: announced in time, or from when published -------------------------


def test_terms_announced_before_a_period_govern_it():
    standing = agreement("standing", utc(2026, 1, 1), utc(2026, 1, 1), share_bps=333)
    announced = agreement("announced", utc(2026, 12, 1), utc(2026, 11, 20), share_bps=200)
    assert agreement_in_force([standing, announced], "chat", "2026-12") == announced
    assert agreement_in_force([standing, announced], "chat", "2026-11") == standing


def test_an_agreement_starting_on_the_last_day_does_not_govern_the_month():
    standing = agreement("standing", utc(2026, 1, 1), utc(2026, 1, 1), share_bps=333)
    last_day = agreement("last-day", utc(2026, 12, 31), utc(2026, 11, 20), share_bps=1)
    assert agreement_in_force([standing, last_day], "chat", "2026-12") == standing


def test_with_no_terms_at_the_start_the_first_to_take_effect_counts_from_publication():
    """Published December 5 for December 15, then December 20 backdated to December 10:
    the first took effect first (December 15 against December 20)."""
    planned = agreement("planned", utc(2026, 12, 15), utc(2026, 12, 5), share_bps=333)
    backdated = agreement("backdated", utc(2026, 12, 10), utc(2026, 12, 20), share_bps=1)
    assert agreement_in_force([backdated, planned], "chat", "2026-12") == planned


def test_an_agreement_published_after_its_own_end_only_fills_a_gap():
    standing = agreement("standing", utc(2026, 1, 1), utc(2026, 1, 1))
    expired = agreement("expired", utc(2026, 12, 1), utc(2026, 12, 20), until=utc(2026, 12, 10))
    assert agreement_in_force([standing, expired], "chat", "2026-12") == standing
    assert agreement_in_force([expired], "chat", "2026-12") == expired


def test_a_deployment_published_during_the_period_joins_it_from_then():
    live = deployment("live", utc(2026, 1, 1), utc(2026, 1, 1))
    late = deployment("late", utc(2026, 12, 1), utc(2026, 12, 12))
    assert deployments_for([late, live], "chat", "2026-12") == [live, late]


# -- properties: any order, any later publication -----------------------------------------

BASE = utc(2026, 1, 1)
HOURS = st.integers(0, 24 * 365)  # instants in 2026, to the hour


@st.composite
def published_terms(draw):
    agreements = []
    for n in range(draw(st.integers(0, 5))):
        start = BASE + timedelta(hours=draw(HOURS))
        length = draw(st.none() | st.integers(1, 24 * 200))
        until = None if length is None else start + timedelta(hours=length)
        published = BASE + timedelta(hours=draw(HOURS))
        agreements.append(
            agreement(f"a{n}", start, published, until, share_bps=draw(st.integers(0, 10_000)))
        )
    deployments = [
        deployment(
            f"d{n}", BASE + timedelta(hours=draw(HOURS)), BASE + timedelta(hours=draw(HOURS))
        )
        for n in range(draw(st.integers(0, 5)))
    ]
    return agreements, deployments


def select(agreements, deployments, period, by=None):
    """The selection among the terms published no later than `by` (all if None)."""

    def known(item):
        return by is None or item.published_at <= by

    chosen = agreement_in_force([a for a in agreements if known(a)], "chat", period)
    live = deployments_for([d for d in deployments if known(d)], "chat", period)
    return (chosen and chosen.agreement_id), [d.deployment_id for d in live]


PERIODS = st.sampled_from([f"2026-{m:02d}" for m in range(1, 13)])


@settings(max_examples=400, deadline=None)
@given(terms=published_terms(), period=PERIODS, data=st.data())
def test_the_selection_does_not_depend_on_the_order_terms_are_listed(terms, period, data):
    agreements, deployments = terms
    shuffled = (data.draw(st.permutations(agreements)), data.draw(st.permutations(deployments)))
    assert select(*shuffled, period) == select(agreements, deployments, period)


@settings(max_examples=400, deadline=None)
@given(terms=published_terms(), period=PERIODS, after=st.integers(0, 24 * 400))
def test_once_a_period_has_ended_a_later_publication_never_changes_its_terms(terms, period, after):
    """Revenue recorded at any moment after the period: if terms were selected by then,
    the same terms are selected at every later moment (whatever was published since)."""
    agreements, deployments = terms
    _, end = period_bounds(period)
    recorded = end + timedelta(hours=after)
    then_agreement, then_live = select(agreements, deployments, period, by=recorded)
    later_agreement, later_live = select(agreements, deployments, period)
    if then_agreement is not None:
        assert later_agreement == then_agreement
    if then_live:
        assert later_live == then_live


@settings(max_examples=300, deadline=None)
@given(terms=published_terms(), period=PERIODS)
def test_terms_published_during_a_period_never_lower_what_was_in_force_at_its_start(terms, period):
    """If an agreement was in force (published and effective) when the period began, no
    publication during or after the period displaces it for that period."""
    agreements, _ = terms
    start, _ = period_bounds(period)
    in_force = agreement_in_force(
        [a for a in agreements if a.published_at <= start], "chat", period
    )
    if in_force is not None and in_force.takes_effect <= start:
        assert agreement_in_force(agreements, "chat", period) == in_force
        # and a backdated copy with a lower share published now changes nothing
        cheaper = dataclasses.replace(
            in_force, agreement_id="zz-cheaper", share_bps=0, effective_from=start,
            published_at=start + timedelta(seconds=1),
        )  # fmt: skip
        assert agreement_in_force([*agreements, cheaper], "chat", period) == in_force

"""The ledger and the audit reach the same outcome, reason and allocations for random sets
of facts arriving in random orders, including consumers that name terms other than the
rules' (another agreement, a superseded or missing deployment, another consumer's terms,
terms published after the revenue).

Each seed builds a world of facts with broker append times, then runs the ledger's
projection against PostgreSQL as the service would receive it: the facts are published
in append order, each topic is read in its own order but the topics interleave at random,
and parked revenue is released whenever the inputs a revenue fact does not name
(withdrawals, agreements, deployments) have been read up to what is published (the
releaser's condition). The audit recomputes from the same facts in one pass. Both must
agree exactly.
"""

from __future__ import annotations

import random
from collections import deque
from datetime import UTC, datetime, timedelta

import pytest

from services.audit.recompute import recompute
from services.common.bus import Delivery, PermanentFactError
from services.common.db import connect
from services.common.facts import BY_EVENT_TYPE, Envelope, payload_of, timestamp
from services.common.migrations import load_migrations, migrate
from services.ledger.main import Releaser
from services.ledger.projection import (
    PROJECTION_TABLES,
    SQL_DIR,
    Projector,
    parked_revenue,
    release,
)
from services.rules import ids, terms
from services.rules.ids import derived_id
from services.rules.merkle import snapshot_root
from tests import ledger_facts as f

pytestmark = pytest.mark.integration

YEAR = datetime(2026, 1, 1, tzinfo=UTC)
SEEDS = range(16)


def moment(rng: random.Random, first_day: int = 0, last_day: int = 240) -> datetime:
    return YEAR + timedelta(days=rng.randint(first_day, last_day), hours=rng.randint(0, 23))


def stamp(envelope: Envelope, at: datetime) -> tuple[datetime, Envelope]:
    envelope.occurred_at.CopyFrom(timestamp(at))
    envelope.recorded_at.CopyFrom(timestamp(at))
    return at, envelope


def world(seed: int) -> list[tuple[datetime, Envelope]]:
    """(append time, fact) for one random world, in append order."""
    rng = random.Random(seed)
    facts: list[tuple[datetime, Envelope]] = []
    unique = f"w{seed}-{rng.random()}"

    def name(kind: str, n) -> str:
        return derived_id(f"test.world.{kind}", unique, str(n))

    processed = []
    for n in range(rng.randint(3, 7)):
        tokens = rng.choice([0, 1, 7, 1000, 1000, rng.randint(1, 5000)])
        envelope = f.processed(name("contribution", n), name("contributor", n % 3), tokens)
        processed.append(envelope)
        facts.append(stamp(envelope, YEAR))
    for envelope in rng.sample(processed, rng.randint(0, 2)):
        fact = envelope.contribution_processed
        at = moment(rng)
        facts.append(stamp(f.withdrawn(fact.contribution_id, fact.contributor_id, at), at))

    consumers = [name("consumer", "acme"), name("consumer", "globex")]
    agreements, deployments = [], []
    services = []
    for consumer in consumers:
        snapshots = []
        for n in range(rng.randint(1, 3)):
            members = rng.sample(processed, rng.randint(1, len(processed)))
            envelope = f.snapshot(name("snapshot", f"{consumer}{n}"), consumer, members)
            if rng.random() < 0.1:  # a snapshot that misstates a member's tokens
                envelope.snapshot_created.members[0].tokens_accepted += 1
                envelope.snapshot_created.merkle_root = snapshot_root(
                    envelope.snapshot_created.members
                )
            snapshots.append(envelope.snapshot_created.snapshot_id)
            facts.append(stamp(envelope, moment(rng, 0, 60)))
        for service in ("chat", "code"):
            currency = rng.choice(["USD", "JPY", "BHD"])
            services.append((consumer, service, currency))
            for n in range(rng.randint(1, 3)):
                start = moment(rng, 0, 150).replace(hour=0)
                until = start + timedelta(days=rng.randint(20, 200)) if rng.random() < 0.3 else None
                agreement_id = name("agreement", f"{consumer}{service}{n}")
                envelope = f.agreement(
                    agreement_id, consumer, service, rng.choice([0, 1, 333, 1500, 10_000]),
                    start, until, currency if rng.random() < 0.95 else "EUR",
                    min_payout_minor=rng.choice([0, 500]),
                )  # fmt: skip
                published = start + timedelta(days=rng.randint(-30, 60))
                facts.append(stamp(envelope, max(published, YEAR)))
                agreements.append(envelope)
            for n in range(rng.randint(1, 3)):
                start = moment(rng, 0, 90).replace(hour=0)
                envelope = f.deployment(
                    name("deployment", f"{consumer}{service}{n}"), consumer, service,
                    rng.sample(snapshots, rng.randint(1, len(snapshots))), start,
                )  # fmt: skip
                published = start + timedelta(days=rng.randint(-30, 60))
                facts.append(stamp(envelope, max(published, YEAR)))
                deployments.append(envelope)
    facts.sort(key=lambda item: item[0])

    def published_by(items, at):
        return [e for t, e in facts if e in items and t <= at]

    revenue_ids = []
    for n in range(rng.randint(4, 8)):
        consumer, service, currency = rng.choice(services)
        month = rng.randint(1, 7)
        period = f"2026-{month:02d}"
        at = datetime(2026, month + 1, rng.randint(1, 20), tzinfo=UTC) + timedelta(
            days=rng.choice([0, 0, 0, 60])
        )
        own = [
            terms.AgreementTerms(
                p.agreement_id, p.service_id, p.share_bps, p.currency,
                p.effective_from.ToDatetime(tzinfo=UTC),
                p.effective_until.ToDatetime(tzinfo=UTC) if p.HasField("effective_until") else None,
                published_at=t,
            )
            for t, e in facts if e in agreements
            for p in [payload_of(e)] if p.consumer_id == consumer and t <= at
        ]  # fmt: skip
        chosen = terms.agreement_in_force(own, service, period)
        live = terms.deployments_for(
            [
                terms.Deployment(
                    p.deployment_id, p.service_id, tuple(p.snapshot_ids),
                    p.deployed_from.ToDatetime(tzinfo=UTC), t,
                )
                for t, e in facts if e in deployments
                for p in [payload_of(e)] if p.consumer_id == consumer and t <= at
            ],
            service,
            period,
        )  # fmt: skip
        agreement_id = chosen.agreement_id if chosen and rng.random() < 0.8 else None
        if agreement_id is None:
            agreement_id = payload_of(rng.choice(agreements)).agreement_id
        named = [d.deployment_id for d in live]
        if not named or rng.random() < 0.2:
            pool = [payload_of(d).deployment_id for d in deployments] + [name("ghost", n)]
            named = rng.sample(pool, rng.randint(1, 2))
        amount = rng.choice([1, 999, 1_000_000, 9_999_999_999])
        envelope = f.revenue(
            consumer, f"R{n}", service, period, amount, agreement_id, named,
            currency if rng.random() < 0.97 else "XXX",
        )  # fmt: skip
        revenue_ids.append((consumer, service, currency, envelope.revenue_recorded.revenue_id))
        facts.append(stamp(envelope, at))
    for n in range(rng.randint(0, 3)):
        consumer, service, currency, revenue_id = rng.choice(revenue_ids)
        adjustment_id = ids.adjustment_id(consumer, f"A{n}")
        envelope = f.adjustment(
            consumer, adjustment_id, revenue_id, service, rng.choice([-500, 1, 250]), currency
        )
        facts.append(stamp(envelope, datetime(2026, 10, 1 + n, tzinfo=UTC)))
    facts.sort(key=lambda item: item[0])
    return facts


async def ledger_outcomes(conn, facts, rng: random.Random) -> tuple[dict, dict]:
    """The ledger's statuses and allocations after receiving `facts` as the service does."""
    projector = Projector()
    topics = {t: deque() for t in BY_EVENT_TYPE}
    published = {t: 0 for t in BY_EVENT_TYPE}
    consumed = {t: 0 for t in BY_EVENT_TYPE}
    seen = set()

    async def consume(event_type: str) -> None:
        at, envelope = topics[event_type].popleft()
        consumed[event_type] += 1
        if envelope.event_id in seen:
            return
        seen.add(envelope.event_id)
        try:
            async with conn.transaction():
                await projector(conn, Delivery(envelope, event_type, 0, 0, None, at))
        except PermanentFactError:
            pass  # dead-lettered
        if all(consumed[t] == published[t] for t in Releaser.UNNAMED_INPUTS):
            await release(conn, await parked_revenue(conn))

    pending = deque(facts)
    while pending or any(topics.values()):
        if pending and (rng.random() < 0.5 or not any(topics.values())):
            at, envelope = pending.popleft()
            topics[envelope.event_type].append((at, envelope))
            published[envelope.event_type] += 1
        else:
            await consume(rng.choice([t for t, queue in topics.items() if queue]))
    await release(conn, await parked_revenue(conn))
    rows = await conn.fetch("SELECT revenue_id, status, status_reason FROM revenue")
    statuses = {r["revenue_id"]: (r["status"], r["status_reason"]) for r in rows}
    rows = await conn.fetch(
        "SELECT allocation_id, contribution_id, allocated_micros FROM allocations"
    )
    return statuses, {
        r["allocation_id"]: (r["contribution_id"], r["allocated_micros"]) for r in rows
    }


def audit_outcomes(facts) -> tuple[dict, dict]:
    by_type = {t: [] for t in BY_EVENT_TYPE}
    appended_at = {}
    for at, envelope in facts:
        if envelope.event_id not in appended_at:
            by_type[envelope.event_type].append(envelope)
            appended_at[envelope.event_id] = at
    expected = recompute(by_type, appended_at)
    statuses = {}
    for revenue_id, outcome in expected.outcomes.items():
        status, _, reason = outcome.partition(": ")
        statuses[revenue_id] = (status, reason)
    allocations = {
        a.allocation_id: (a.contribution_id, a.allocated_micros)
        for a in expected.allocations.values()
    }
    return statuses, allocations


@pytest.mark.parametrize("seed", SEEDS)
async def test_the_ledger_and_the_audit_agree_on_random_facts_in_random_orders(
    settings, unique, seed
):
    facts = world(seed)
    schema = f"ledger_prop_{unique}"
    conn = await connect(settings.database_url, schema, application_name="tests")
    try:
        await migrate(conn, schema, load_migrations("ledger", SQL_DIR))
        want = audit_outcomes(facts)
        for arrival in range(3):
            got = await ledger_outcomes(conn, facts, random.Random(f"{seed}/{arrival}"))
            assert got[0] == want[0], f"seed {seed}, arrival order {arrival}: outcomes differ"
            assert got[1] == want[1], f"seed {seed}, arrival order {arrival}: allocations differ"
            await conn.execute(f"TRUNCATE {', '.join([*PROJECTION_TABLES, 'outbox', 'inbox'])}")
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()


def test_the_worlds_try_every_outcome_and_every_choice_of_terms():
    """The seeds between them reach every outcome, and consumers name terms that are not
    the rules' in each way (else the agreement above would prove little)."""
    statuses, reasons = set(), []
    for seed in SEEDS:
        outcomes, _ = audit_outcomes(world(seed))
        statuses |= {status for status, _ in outcomes.values()}
        reasons += [reason for _, reason in outcomes.values()]
    assert statuses == {"allocated", "rejected", "parked", "unallocated"}
    for choice in ("is not the one in force", "are not the ones live", "another consumer's"):
        assert any(choice in reason for reason in reasons), choice

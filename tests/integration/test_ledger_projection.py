"""The ledger's projection against a real Postgres schema, without Kafka: facts go straight
into `Projector` (each in its own transaction, as the inbox would apply them) and parked
revenue is released after every fact. Each scenario checks the allocations, the revenue's
status and reason, the journal's balance, that the parts sum to the pool, and the outbox."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from services.common.bus import Delivery, PermanentFactError
from services.common.db import connect
from services.common.facts import decode, make_envelope, payload_of, timestamp
from services.common.migrations import load_migrations, migrate
from services.common.validation import validate_envelope
from services.ledger.main import Releaser
from services.ledger.projection import (
    PROJECTION_TABLES,
    SQL_DIR,
    Projector,
    parked_revenue,
    projection_digest,
    release,
)
from services.rules import terms as rules
from services.rules.ids import derived_id
from services.rules.merkle import snapshot_root
from tt.facts.v1 import consumer_pb2, contribution_pb2

pytestmark = pytest.mark.integration

RECORDED_AT = datetime(2026, 12, 2, tzinfo=UTC)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
async def ledger(settings, schema):
    """A connection to this test's schema, with the ledger's tables migrated."""
    conn = await connect(settings.database_url, schema, application_name="tests")
    await migrate(conn, schema, load_migrations("ledger", SQL_DIR))
    yield conn
    await conn.close()


class Story:
    """Builds facts for one test: every id is derived from the test's unique token, and
    contributions, snapshots, agreements... are referred to by short names."""

    def __init__(self, unique: str):
        self.unique = unique
        self.consumer_id = f"consumer-{unique}"
        self.service_id = f"chat-{unique}"

    def id(self, kind: str, name: str) -> str:
        return derived_id(f"test.ledger.{kind}", self.unique, name)

    def contribution(self, name: str) -> str:
        return self.id("contribution", name)

    def contributor(self, name: str) -> str:
        return self.id("contributor", name)

    def envelope(self, payload, kind: str, name: str, at: datetime = RECORDED_AT):
        """Wrapped and validated as the ledger's consumer validates every fact it reads.
        `at`: when it is published (`apply` hands the ledger this as the broker's append
        time). Terms are published on time by default: on the day they take effect, or
        with the revenue if that is earlier."""
        envelope = make_envelope(
            payload,
            event_id=self.id(f"event.{kind}", name),
            producer="tests",
            occurred_at=at,
            recorded_at=at,
        )
        validate_envelope(envelope)
        return envelope

    def processed(self, name: str, tokens: int, contributor: str = "acme"):
        fact = contribution_pb2.ContributionProcessed(
            contribution_id=self.contribution(name),
            contributor_id=self.contributor(contributor),
            outcome=contribution_pb2.PROCESSING_OUTCOME_PROCESSED,
            pipeline_version="test",
            config_sha256="0" * 64,
            tokenizer="tiktoken/cl100k_base",
            tokens_raw=tokens,
            tokens_accepted=tokens,
        )
        return self.envelope(fact, "processed", name)

    def snapshot(self, name: str, members: dict[str, int], contributor: str = "acme"):
        """members: contribution name -> the accepted tokens the snapshot claims."""
        fact = consumer_pb2.SnapshotCreated(
            snapshot_id=self.id("snapshot", name),
            consumer_id=self.consumer_id,
            name=name,
            selection=consumer_pb2.SNAPSHOT_SELECTION_LISTED,
        )
        fact.members.extend(
            consumer_pb2.SnapshotMember(
                contribution_id=self.contribution(member),
                contributor_id=self.contributor(contributor),
                tokens_accepted=tokens,
                processed_event_id=self.id("event.processed", member),
            )
            for member, tokens in sorted(members.items(), key=lambda m: self.contribution(m[0]))
        )
        fact.merkle_root = snapshot_root(fact.members)
        return self.envelope(fact, "snapshot", name)

    def agreement(self, name, share_bps, start, until=None, service=None, currency="USD", **extra):
        fact = consumer_pb2.AgreementPublished(
            agreement_id=self.id("agreement", name),
            consumer_id=self.consumer_id,
            service_id=service or self.service_id,
            share_bps=share_bps,
            weighting_rule=consumer_pb2.WEIGHTING_RULE_ACCEPTED_TOKENS,
            effective_from=timestamp(start),
            currency=currency,
        )
        if until is not None:
            fact.effective_until.CopyFrom(timestamp(until))
        for field, value in extra.items():
            setattr(fact, field, value)
        return self.envelope(fact, "agreement", name, min(start, RECORDED_AT))

    def deployment(self, name: str, snapshots: list[str], deployed_from: datetime, service=None):
        fact = consumer_pb2.ServiceDeployed(
            deployment_id=self.id("deployment", name),
            consumer_id=self.consumer_id,
            service_id=service or self.service_id,
            snapshot_ids=[self.id("snapshot", s) for s in snapshots],
            deployed_from=timestamp(deployed_from),
        )
        return self.envelope(fact, "deployment", name, min(deployed_from, RECORDED_AT))

    def revenue(self, name, amount_minor, agreement, deployments, period="2026-11", **extra):
        fact = consumer_pb2.RevenueRecorded(
            revenue_id=self.id("revenue", name),
            consumer_id=self.consumer_id,
            external_id=f"EXT-{name}",
            service_id=self.service_id,
            period=period,
            amount_minor=amount_minor,
            currency="USD",
            agreement_id=self.id("agreement", agreement),
            deployment_ids=[self.id("deployment", d) for d in deployments],
        )
        for field, value in extra.items():
            setattr(fact, field, value)
        return self.envelope(fact, "revenue", name)

    def adjustment(self, name: str, revenue: str, delta_minor: int):
        fact = consumer_pb2.RevenueAdjusted(
            adjustment_id=self.id("adjustment", name),
            consumer_id=self.consumer_id,
            revenue_id=self.id("revenue", revenue),
            service_id=self.service_id,
            delta_minor=delta_minor,
            currency="USD",
            reason="refund" if delta_minor < 0 else "late usage",
        )
        return self.envelope(fact, "adjustment", name)

    def withdrawal(self, name: str, effective_at: datetime, contributor: str = "acme"):
        fact = contribution_pb2.ContributionWithdrawn(
            contribution_id=self.contribution(name),
            contributor_id=self.contributor(contributor),
            effective_at=timestamp(effective_at),
            reason="licence ended",
        )
        return self.envelope(fact, "withdrawal", name)

    def basics(self, tokens: dict[str, int], share_bps=1500):
        """An agreement from January, one snapshot of `tokens`, deployed before the period."""
        return [
            self.agreement("a", share_bps, utc(2026, 1, 1)),
            *(self.processed(name, count) for name, count in tokens.items()),
            self.snapshot("s1", tokens),
            self.deployment("d1", ["s1"], utc(2026, 10, 1)),
        ]


async def apply(conn, *envelopes) -> None:
    """Each fact in its own transaction, as the inbox applies it (appended to the log when
    it was recorded); then release."""
    projector = Projector()
    for envelope in envelopes:
        appended_at = envelope.recorded_at.ToDatetime(tzinfo=UTC)
        async with conn.transaction():
            await projector(conn, Delivery(envelope, "", 0, 0, None, appended_at))
        await release(conn, await parked_revenue(conn))


async def status(conn, story: Story, kind: str, name: str) -> tuple[str, str]:
    row = await conn.fetchrow(
        "SELECT status, status_reason FROM revenue WHERE revenue_id = $1", story.id(kind, name)
    )
    return row["status"], row["status_reason"]


async def allocations(conn, story: Story, kind: str, name: str, names) -> dict[str, int]:
    """The revenue's parts by contribution name, after checking the invariants: the parts
    sum to the pool, every movement balances, one allocation.made per allocation."""
    revenue_id = story.id(kind, name)
    revenue = await conn.fetchrow("SELECT * FROM revenue WHERE revenue_id = $1", revenue_id)
    rows = await conn.fetch(
        "SELECT allocation_id, contribution_id, allocated_micros FROM allocations "
        "WHERE revenue_id = $1",
        revenue_id,
    )
    assert await conn.fetchval("SELECT count(*) FROM unbalanced_movements") == 0
    if rows:
        assert revenue["status"] == "allocated"
        assert sum(row["allocated_micros"] for row in rows) == revenue["pool_micros"]
    published = {}
    for envelope in [
        decode(r["envelope"]) for r in await conn.fetch("SELECT envelope FROM outbox")
    ]:
        fact = payload_of(envelope)
        assert envelope.event_type == "allocation.made" and envelope.event_id == fact.allocation_id
        if fact.revenue_id == revenue_id:
            published[fact.allocation_id] = fact.allocated_micros
    assert published == {row["allocation_id"]: row["allocated_micros"] for row in rows}
    by_id = {story.contribution(n): n for n in names}
    return {by_id[row["contribution_id"]]: row["allocated_micros"] for row in rows}


async def balance(conn, account: str) -> int:
    return await conn.fetchval(
        "SELECT coalesce(sum(balance_micros), 0) FROM balances WHERE account = $1", account
    )


# -- (a) the basic case ----------------------------------------------------------------------


async def test_a_pool_is_split_over_three_contributions_by_tokens(ledger, unique):
    story = Story(unique)
    await apply(ledger, *story.basics({"c1": 100, "c2": 200, "c3": 300}))
    await apply(ledger, story.revenue("r", 1_000_000, "a", ["d1"]))  # 10,000.00 USD x 15%
    assert await status(ledger, story, "revenue", "r") == ("allocated", "")
    parts = await allocations(ledger, story, "revenue", "r", ["c1", "c2", "c3"])
    assert parts == {"c1": 250_000_000, "c2": 500_000_000, "c3": 750_000_000}
    consumer = f"consumer:{story.consumer_id}:USD"
    assert await balance(ledger, consumer) == -1_500_000_000
    assert await balance(ledger, f"contributor:{story.contributor('acme')}:USD") == 1_500_000_000


# -- (b) agreements --------------------------------------------------------------------------


def terms_of(envelope) -> rules.AgreementTerms:
    """An agreement fact as the publisher's rules see it."""
    fact = payload_of(envelope)
    until = fact.effective_until.ToDatetime(UTC) if fact.HasField("effective_until") else None
    start = fact.effective_from.ToDatetime(UTC)
    return rules.AgreementTerms(
        fact.agreement_id, fact.service_id, fact.share_bps, fact.currency, start, until
    )


async def test_the_agreement_in_force_at_the_period_start_governs_a_mid_period_change(
    ledger, unique
):
    story = Story(unique)
    old = story.agreement("old", 1000, utc(2026, 1, 1), until=utc(2026, 11, 15))
    new = story.agreement("new", 2000, utc(2026, 11, 15))
    terms = [terms_of(old), terms_of(new)]
    names = {story.id("agreement", n): n for n in ("old", "new")}
    november = names[rules.agreement_in_force(terms, story.service_id, "2026-11").agreement_id]
    december = names[rules.agreement_in_force(terms, story.service_id, "2026-12").agreement_id]
    assert (november, december) == ("old", "new")
    tokens = {"c1": 1, "c2": 3}
    await apply(ledger, new, old, *story.basics(tokens)[1:])
    await apply(
        ledger,
        story.revenue("nov", 10_000, november, ["d1"]),
        story.revenue("dec", 10_000, december, ["d1"], period="2026-12"),
    )
    # 100.00 USD: 10% is 10,000,000 micros in November, 20% in December.
    assert await allocations(ledger, story, "revenue", "nov", tokens) == {
        "c1": 2_500_000,
        "c2": 7_500_000,
    }
    assert await allocations(ledger, story, "revenue", "dec", tokens) == {
        "c1": 5_000_000,
        "c2": 15_000_000,
    }


@pytest.mark.parametrize(
    ("agreement", "reason"),
    [
        ({"service": "search"}, "is for service 'search', not 'chat-"),
        ({"currency": "EUR"}, "settles in EUR; currencies never mix"),
        ({"start": utc(2026, 12, 1)}, "is not in force during 2026-11"),
        ({"until": utc(2026, 11, 1)}, "is not in force during 2026-11"),
    ],
)
async def test_a_revenue_naming_an_agreement_that_does_not_fit_is_rejected(
    ledger, unique, agreement, reason
):
    story = Story(unique)
    await apply(ledger, *story.basics({"c1": 10})[1:])
    await apply(
        ledger,
        story.agreement("a", 1500, **{"start": utc(2026, 1, 1), **agreement}),
        story.revenue("r", 10_000, "a", ["d1"]),
    )
    state, why = await status(ledger, story, "revenue", "r")
    assert state == "rejected"
    assert f"agreement {story.id('agreement', 'a')}" in why and reason in why, why
    assert await allocations(ledger, story, "revenue", "r", []) == {}


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("deployment of another service", "is of service 'search', not 'chat-"),
        ("deployment after the period", "began after 2026-11 ended"),
        ("agreement of another consumer", "is another consumer's"),
        ("unknown currency", "currency 'XYZ' is not one the platform settles in"),
        ("pool over 64 bits", "does not fit a 64-bit amount"),
    ],
)
async def test_other_revenue_that_can_never_be_allocated_is_rejected_with_the_reason(
    ledger, unique, case, reason
):
    story = Story(unique)
    agreement, processed, snapshot, deployment = story.basics({"c1": 10})
    revenue = story.revenue("r", 10_000, "a", ["d1"])
    if case == "deployment of another service":
        deployment = story.deployment("d1", ["s1"], utc(2026, 10, 1), service="search")
    elif case == "deployment after the period":
        deployment = story.deployment("d1", ["s1"], utc(2026, 12, 1))
    elif case == "agreement of another consumer":
        agreement = story.agreement("a", 1500, utc(2026, 1, 1), consumer_id="someone-else")
    elif case == "unknown currency":
        agreement = story.agreement("a", 1500, utc(2026, 1, 1), currency="XYZ")
        revenue = story.revenue("r", 10_000, "a", ["d1"], currency="XYZ")
    else:
        revenue = story.revenue("r", 2**62, "a", ["d1"])
    await apply(ledger, agreement, processed, snapshot, deployment, revenue)
    state, why = await status(ledger, story, "revenue", "r")
    assert state == "rejected" and reason in why, why
    assert await allocations(ledger, story, "revenue", "r", []) == {}


# -- (c) two snapshots -----------------------------------------------------------------------


async def test_a_contribution_in_both_snapshots_of_a_service_counts_once(ledger, unique):
    story = Story(unique)
    await apply(
        ledger,
        story.agreement("a", 10_000, utc(2026, 1, 1)),
        *(story.processed(n, t) for n, t in {"c1": 1, "c2": 2, "c3": 3}.items()),
        story.snapshot("s1", {"c1": 1, "c2": 2}),
        story.snapshot("s2", {"c2": 2, "c3": 3}),
        story.deployment("d1", ["s1"], utc(2026, 10, 1)),
        story.deployment("d2", ["s2"], utc(2026, 11, 10)),
        story.revenue("r", 600, "a", ["d1", "d2"]),  # 6.00 USD x 100% = 6,000,000 micros
    )
    parts = await allocations(ledger, story, "revenue", "r", ["c1", "c2", "c3"])
    assert parts == {"c1": 1_000_000, "c2": 2_000_000, "c3": 3_000_000}
    weights = await ledger.fetch("SELECT DISTINCT total_weight FROM allocations")
    assert [row["total_weight"] for row in weights] == [6]


# -- (d) withdrawals -------------------------------------------------------------------------


async def test_a_withdrawal_before_the_period_excludes_one_during_it_does_not(ledger, unique):
    story = Story(unique)
    tokens = {"gone": 100, "during": 100, "at-start": 100, "kept": 200}
    await apply(
        ledger,
        *story.basics(tokens, share_bps=10_000),
        story.withdrawal("gone", utc(2026, 10, 31, 23, 59)),
        story.withdrawal("during", utc(2026, 11, 15)),
        story.withdrawal("at-start", utc(2026, 11, 1)),
        story.revenue("r", 400, "a", ["d1"]),
    )
    parts = await allocations(ledger, story, "revenue", "r", tokens)
    assert parts == {"during": 1_000_000, "at-start": 1_000_000, "kept": 2_000_000}


# -- (e) adjustments -------------------------------------------------------------------------


async def test_adjustments_split_like_their_original_and_a_clawback_reverses_the_entries(
    ledger, unique
):
    story = Story(unique)
    tokens = {"c1": 1, "c2": 2, "c3": 3}
    await apply(ledger, *story.basics(tokens, share_bps=10_000))
    await apply(ledger, story.revenue("r", 600, "a", ["d1"]))
    await apply(ledger, story.adjustment("more", "r", 300), story.adjustment("back", "r", -120))
    assert await allocations(ledger, story, "adjustment", "more", tokens) == {
        "c1": 500_000,
        "c2": 1_000_000,
        "c3": 1_500_000,
    }
    assert await allocations(ledger, story, "adjustment", "back", tokens) == {
        "c1": -200_000,
        "c2": -400_000,
        "c3": -600_000,
    }
    assert await status(ledger, story, "adjustment", "back") == ("allocated", "")
    lines = await ledger.fetch(
        "SELECT account, debit_micros, credit_micros FROM entries WHERE movement_id = $1 "
        "ORDER BY line",
        story.id("adjustment", "back"),
    )
    consumer = f"consumer:{story.consumer_id}:USD"
    assert (lines[0]["account"], lines[0]["debit_micros"], lines[0]["credit_micros"]) == (
        consumer,
        0,
        1_200_000,
    )
    contributor_lines = sorted((r["debit_micros"], r["credit_micros"]) for r in lines[1:])
    assert contributor_lines == [(200_000, 0), (400_000, 0), (600_000, 0)]
    assert await balance(ledger, consumer) == -(6_000_000 + 3_000_000 - 1_200_000)
    contributor = f"contributor:{story.contributor('acme')}:USD"
    assert await balance(ledger, contributor) == 7_800_000
    row = await ledger.fetchrow(
        "SELECT period, agreement_id FROM revenue WHERE revenue_id = $1",
        story.id("adjustment", "back"),
    )
    assert tuple(row) == ("2026-11", story.id("agreement", "a"))


async def test_an_adjustment_arriving_before_its_original_waits_for_it(ledger, unique):
    story = Story(unique)
    tokens = {"c1": 1, "c2": 1}
    facts = story.basics(tokens, share_bps=10_000)
    await apply(ledger, story.adjustment("back", "r", -100))
    state, why = await status(ledger, story, "adjustment", "back")
    assert state == "parked" and f"waiting for revenue {story.id('revenue', 'r')}" in why
    await apply(ledger, story.revenue("r", 1000, "a", ["d1"]))
    state, why = await status(ledger, story, "adjustment", "back")
    assert state == "parked" and "to be allocated first" in why, why
    await apply(ledger, *facts)
    assert await allocations(ledger, story, "revenue", "r", tokens) == {
        "c1": 5_000_000,
        "c2": 5_000_000,
    }
    assert await allocations(ledger, story, "adjustment", "back", tokens) == {
        "c1": -500_000,
        "c2": -500_000,
    }


# -- (f) parked until everything named has arrived -------------------------------------------


async def test_revenue_is_parked_naming_what_is_missing_and_released_when_it_arrives(
    ledger, unique
):
    story = Story(unique)
    tokens = {"c1": 1, "c2": 3}
    agreement, p1, p2, snapshot, deployment = story.basics(tokens, share_bps=10_000)
    steps = [
        (story.revenue("r", 400, "a", ["d1"]), ["agreement", "deployment"]),
        (agreement, [f"deployment {story.id('deployment', 'd1')}"]),
        (deployment, [f"snapshot {story.id('snapshot', 's1')}"]),
        (snapshot, ["2 contribution.processed fact(s)"]),
        (p2, ["1 contribution.processed fact(s)", story.id("event.processed", "c1")]),
    ]
    for fact, expected in steps:
        await apply(ledger, fact)
        state, why = await status(ledger, story, "revenue", "r")
        assert state == "parked" and why.startswith("waiting for "), why
        assert all(text in why for text in expected), (expected, why)
        assert await allocations(ledger, story, "revenue", "r", tokens) == {}
    await apply(ledger, p1)
    assert await status(ledger, story, "revenue", "r") == ("allocated", "")
    assert await allocations(ledger, story, "revenue", "r", tokens) == {
        "c1": 1_000_000,
        "c2": 3_000_000,
    }


# -- (g) idempotency -------------------------------------------------------------------------


async def test_the_same_revenue_twice_is_allocated_once_and_a_different_one_is_refused(
    ledger, unique
):
    story = Story(unique)
    tokens = {"c1": 1, "c2": 1}
    revenue = story.revenue("r", 1000, "a", ["d1"])
    refund = story.adjustment("refund", "r", -100)
    await apply(ledger, revenue, *story.basics(tokens, share_bps=10_000), revenue)
    await apply(ledger, revenue, refund, refund)
    before = await projection_digest(ledger)
    assert before[1]["allocations"] == 4
    assert await allocations(ledger, story, "revenue", "r", tokens) == {
        "c1": 5_000_000,
        "c2": 5_000_000,
    }
    assert await allocations(ledger, story, "adjustment", "refund", tokens) == {
        "c1": -500_000,
        "c2": -500_000,
    }
    refused_facts = [
        (story.revenue("r", 2000, "a", ["d1"]), "EXT-r", "1000 minor units USD"),
        (
            story.revenue("r", 1000, "a", ["d1"], revenue_id=story.id("x", "other")),
            "EXT-r",
            "1000 minor units USD",
        ),
        (story.adjustment("refund", "r", -200), story.id("adjustment", "refund"), "-100 minor"),
    ]
    for fact, named, recorded in refused_facts:
        with pytest.raises(PermanentFactError) as refused:
            await apply(ledger, fact)
        message = str(refused.value)
        assert named in message and "already recorded" in message, message
        assert "it is not paid twice" in message and recorded in message, message
    assert await projection_digest(ledger) == before


# -- (h) a snapshot that misstates a processed fact ------------------------------------------


async def test_a_snapshot_claiming_other_tokens_than_the_processed_fact_is_rejected(ledger, unique):
    story = Story(unique)
    facts = story.basics({"c1": 400, "c2": 100})
    facts[3] = story.snapshot("s1", {"c1": 500, "c2": 100})
    await apply(ledger, *facts, story.revenue("r", 1000, "a", ["d1"]))
    state, why = await status(ledger, story, "revenue", "r")
    assert state == "rejected"
    assert f"claims 500 accepted tokens for contribution {story.contribution('c1')}" in why
    assert "processed fact says 400" in why
    assert await allocations(ledger, story, "revenue", "r", []) == {}


# -- (i) nothing eligible --------------------------------------------------------------------


@pytest.mark.parametrize("why", ["no tokens", "all withdrawn"])
async def test_with_nothing_eligible_the_revenue_is_unallocated(ledger, unique, why):
    story = Story(unique)
    tokens = {"c1": 0, "c2": 0} if why == "no tokens" else {"c1": 5, "c2": 7}
    facts = story.basics(tokens)
    if why == "all withdrawn":
        facts += [story.withdrawal(n, utc(2026, 6, 1)) for n in tokens]
    await apply(ledger, *facts, story.revenue("r", 1000, "a", ["d1"]))
    state, reason = await status(ledger, story, "revenue", "r")
    assert state == "unallocated" and "the pool stays with the consumer" in reason, reason
    assert await allocations(ledger, story, "revenue", "r", tokens) == {}
    assert await ledger.fetchval("SELECT count(*) FROM entries") == 0
    assert await ledger.fetchval("SELECT count(*) FROM outbox") == 0


# -- (j) order independence ------------------------------------------------------------------


def workload(story: Story, withdrawn_at: datetime) -> list:
    """~20 facts: an agreement, 2 snapshots (sharing a member), 2 deployments, 8 processed
    facts, a withdrawal, 2 revenues (November's on both deployments, October's on the one
    live then) and an adjustment."""
    tokens = {f"c{i}": 1000 + 37 * i * i for i in range(8)}
    return [
        story.agreement("a", 1234, utc(2026, 1, 1)),
        *(story.processed(name, count) for name, count in tokens.items()),
        story.snapshot("s1", {n: tokens[n] for n in ("c0", "c1", "c2", "c3", "c4")}),
        story.snapshot("s2", {n: tokens[n] for n in ("c4", "c5", "c6", "c7")}),
        story.deployment("d1", ["s1"], utc(2026, 9, 1)),
        story.deployment("d2", ["s2"], utc(2026, 11, 20)),
        story.withdrawal("c2", withdrawn_at),
        story.revenue("r1", 987_653, "a", ["d1", "d2"]),
        story.revenue("r2", 12_345, "a", ["d1"], period="2026-10"),
        story.adjustment("adj", "r1", -55_555),
    ]


async def clear(conn) -> None:
    tables = ", ".join([*PROJECTION_TABLES, "outbox", "inbox"])
    await conn.execute(f"TRUNCATE {tables}")


@pytest.mark.parametrize("withdrawal", ["during the period", "before the period"])
async def test_the_projection_does_not_depend_on_the_order_facts_arrive_in(
    ledger, unique, withdrawal
):
    """Release is called after every fact, once the inputs a revenue fact does not name
    are applied, as the service does (main.Releaser: it releases only when the ledger has
    consumed the withdrawals, agreements and deployments on the log)."""
    story = Story(unique)
    before_period = withdrawal == "before the period"
    facts = workload(story, utc(2026, 10, 5) if before_period else utc(2026, 11, 5))
    projector = Projector()
    seeds = range(12)
    digests = {}
    for seed in seeds:
        order = list(facts)
        random.Random(seed).shuffle(order)
        await clear(ledger)
        unnamed = {f.event_id for f in facts if f.event_type in Releaser.UNNAMED_INPUTS}
        for envelope in order:
            appended_at = envelope.recorded_at.ToDatetime(tzinfo=UTC)
            async with ledger.transaction():
                await projector(ledger, Delivery(envelope, "", 0, 0, None, appended_at))
            unnamed.discard(envelope.event_id)
            if not unnamed:
                await release(ledger, await parked_revenue(ledger))
        digest, counts = await projection_digest(ledger)
        digests[seed] = digest
        assert digest == digests[seeds[0]], f"seed {seed} gave a different projection"
        statuses = await ledger.fetch("SELECT status FROM revenue")
        assert {row["status"] for row in statuses} == {"allocated"}, f"seed {seed}"
        assert await ledger.fetchval("SELECT count(*) FROM unbalanced_movements") == 0
    # r1 and its adjustment: all 8 contributions, less c2 if withdrawn before November;
    # r2 (October) is on d1 alone, whose snapshot s1 holds 5 of them (c2 withdrawn on
    # October 5 still takes part in October).
    eligible = 7 if before_period else 8
    assert counts["allocations"] == 2 * eligible + 5, counts
    assert counts["revenue"] == 3 and counts["processed"] == 8


# -- (k) the terms are the rules' choice, not the consumer's ----------------------------------


async def test_a_consumer_cannot_name_cheaper_terms_than_those_in_force(ledger, unique):
    """Tried as a consumer would: an agreement of 1 bps starting on the period's last day,
    one backdated into the period, and a deployment that was already superseded. Each is
    rejected with the selection named; the revenue naming the rules' choice is allocated."""
    story = Story(unique)
    tokens = {"c1": 100, "c2": 300}
    cheap = story.agreement("cheap", 1, utc(2026, 11, 30))  # published November 30
    backdated = story.envelope(
        payload_of(story.agreement("back", 1, utc(2026, 10, 1))), "agreement", "back",
        at=utc(2026, 11, 15),
    )  # fmt: skip
    superseded = story.deployment("d0", ["s1"], utc(2026, 3, 1))
    await apply(ledger, *story.basics(tokens, share_bps=333), cheap, backdated, superseded)
    attempts = {
        "cheap": story.revenue("r-cheap", 10_000, "cheap", ["d1"]),
        "back": story.revenue("r-back", 10_000, "back", ["d1"]),
        "old": story.revenue("r-old", 10_000, "a", ["d0"]),
        "both": story.revenue("r-both", 10_000, "a", ["d0", "d1"]),
    }
    await apply(ledger, *attempts.values())
    for name in ("r-cheap", "r-back"):
        state, why = await status(ledger, story, "revenue", name)
        assert state == "rejected", (name, state, why)
        assert f"the rules select {story.id('agreement', 'a')} (333 bps)" in why, why
    for name in ("r-old", "r-both"):
        state, why = await status(ledger, story, "revenue", name)
        assert state == "rejected", (name, state, why)
        assert f"not the ones live for service {story.service_id!r} in 2026-11" in why, why
        assert f"({story.id('deployment', 'd1')})" in why, why
    await apply(ledger, story.revenue("r", 10_000, "a", ["d1"]))
    assert await status(ledger, story, "revenue", "r") == ("allocated", "")
    # 100.00 USD x 3.33% = 3,330,000 micros over 100 and 300 tokens.
    assert await allocations(ledger, story, "revenue", "r", tokens) == {
        "c1": 832_500,
        "c2": 2_497_500,
    }


async def test_terms_published_after_the_revenue_do_not_count(ledger, unique):
    """A revenue event is judged by the terms published before it: an agreement (or a
    deployment) published later is not the selection, whatever order the ledger reads
    them in."""
    story = Story(unique)
    tokens = {"c1": 10}
    late = story.envelope(
        payload_of(story.agreement("a", 1500, utc(2026, 1, 1))), "agreement", "a",
        at=utc(2026, 12, 3),
    )  # fmt: skip
    revenue = story.revenue("r", 10_000, "a", ["d1"])  # recorded December 2
    await apply(ledger, revenue, late, *story.basics(tokens)[1:])
    state, why = await status(ledger, story, "revenue", "r")
    assert state == "rejected", (state, why)
    assert "was published after this revenue was recorded" in why, why

"""The inbox against real PostgreSQL (and, at the end, the bus against real Kafka): a
projection failure that is the fact's fault becomes PermanentFactError with nothing
written, not even the inbox row; a failure that is the database's passes through, to be
waited out or retried. The projectors' own typed refusals, with validation bypassed (as
a fact written by older, laxer code would reach them on replay)."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from services.common.bus import Delivery, PermanentFactError
from services.common.db import connect
from services.common.examples import example_envelopes
from services.common.inbox import Inbox
from services.common.migrations import load_migrations, migrate
from services.ingest import projection as ingest_projection
from services.ingest.main import SQL_DIR as INGEST_SQL_DIR
from services.ingest.receipts import generate_signing_key, load_signer
from services.payout import projection as payout_projection
from tests.security.support import envelope
from tt.facts.v1 import identity_pb2, ledger_pb2

pytestmark = pytest.mark.integration


def delivery(fact_envelope) -> Delivery:
    return Delivery(fact_envelope, "topic", 0, 0)


def example(event_type: str):
    return next(e for e in example_envelopes(uuid.uuid4().hex) if e.event_type == event_type)


@pytest.fixture
async def effects(pool):
    await pool.execute("CREATE TABLE effects (event_id text PRIMARY KEY, note text NOT NULL)")
    return pool


async def count(pool, sql: str, *args) -> int:
    return await pool.fetchval(f"SELECT count(*) FROM {sql}", *args)


async def test_a_value_postgresql_refuses_rolls_back_everything_and_is_permanent(effects):
    async def handler(conn, delivery):
        fact = delivery.envelope
        await conn.execute("INSERT INTO effects VALUES ($1, 'first write')", fact.event_id)
        await conn.execute("INSERT INTO effects VALUES ($1, $2)", fact.event_id + "-2", "a\x00b")
        return []

    poison = example("revenue.recorded")
    with pytest.raises(PermanentFactError) as refused:
        await Inbox(effects, "group", handler).apply(delivery(poison))
    assert "CharacterNotInRepertoire (SQLSTATE 22021)" in str(refused.value)
    assert "the group projection cannot store this revenue.recorded fact" in str(refused.value)
    assert await count(effects, "effects") == 0
    assert await count(effects, "inbox") == 0  # redelivered, it is refused again

    async def good(conn, delivery):
        fact = delivery.envelope
        await conn.execute("INSERT INTO effects VALUES ($1, 'ok')", fact.event_id)
        return []

    assert await Inbox(effects, "group", good).apply(delivery(example("revenue.recorded")))
    assert await count(effects, "effects") == 1


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO effects VALUES ('same', 'x'), ('same', 'y')",  # unique
        "INSERT INTO effects VALUES ('n', NULL)",  # not null
        "SELECT 9223372036854775807::bigint + 1",  # out of range
        "SELECT '2026-13-45'::date",  # not a value of its type
    ],
    ids=["unique", "not-null", "bigint-overflow", "bad-date"],
)
async def test_each_kind_of_data_refusal_is_permanent(effects, statement):
    async def handler(conn, delivery):
        fact = delivery.envelope
        await conn.execute("INSERT INTO effects VALUES ($1, 'before')", fact.event_id)
        await conn.execute(statement)
        return []

    with pytest.raises(PermanentFactError, match=r"SQLSTATE 2[23]"):
        await Inbox(effects, "group", handler).apply(delivery(example("agreement.published")))
    assert await count(effects, "effects") == 0


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.SerializationError("could not serialize access"),
        asyncpg.DeadlockDetectedError("deadlock detected"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        ConnectionResetError("the database went away"),
    ],
    ids=lambda error: type(error).__name__,
)
async def test_the_databases_own_trouble_passes_through_to_be_retried(effects, error):
    async def handler(conn, delivery):
        fact = delivery.envelope
        await conn.execute("INSERT INTO effects VALUES ($1, 'before')", fact.event_id)
        raise error

    with pytest.raises(type(error)) as raised:
        await Inbox(effects, "group", handler).apply(delivery(example("agreement.published")))
    assert not isinstance(raised.value, PermanentFactError)
    assert await count(effects, "effects") == 0 and await count(effects, "inbox") == 0


async def test_a_handlers_typed_refusal_after_a_write_leaves_nothing(effects):
    async def handler(conn, delivery):
        fact = delivery.envelope
        await conn.execute("INSERT INTO effects VALUES ($1, 'before')", fact.event_id)
        raise PermanentFactError("the agreement names a service that does not exist")

    with pytest.raises(PermanentFactError, match="names a service that does not exist"):
        await Inbox(effects, "group", handler).apply(delivery(example("agreement.published")))
    assert await count(effects, "effects") == 0 and await count(effects, "inbox") == 0


# -- the projectors' own refusals, validation bypassed -------------------------------------


@pytest.fixture
async def payout_pool(settings, pool, schema):
    conn = await connect(settings.database_url, "public", application_name="tests")
    try:
        await migrate(conn, schema, load_migrations("payout", payout_projection.SQL_DIR))
    finally:
        await conn.close()
    return pool


@pytest.fixture
async def ingest_pool(settings, pool, schema):
    conn = await connect(settings.database_url, "public", application_name="tests")
    try:
        await migrate(conn, schema, load_migrations("ingest", INGEST_SQL_DIR))
    finally:
        await conn.close()
    return pool


def principal_of_role(role: int):
    fact = example("principal.registered")
    fact.principal_registered.role = role
    return fact


async def test_payout_refuses_a_role_it_does_not_know_in_words(payout_pool):
    inbox = Inbox(payout_pool, "payout", payout_projection.Projector())
    with pytest.raises(PermanentFactError, match="role 99 is not a role of the platform"):
        await inbox.apply(delivery(principal_of_role(99)))
    assert await count(payout_pool, "principals") == 0


async def test_ingest_refuses_a_role_it_does_not_know_in_words(ingest_pool, tmp_path):
    generate_signing_key(tmp_path / "receipt.key")
    signer = load_signer(tmp_path / "receipt.key")
    inbox = Inbox(ingest_pool, "ingest", ingest_projection.Projector(signer))
    with pytest.raises(PermanentFactError, match="role 99 is not a role of the platform"):
        await inbox.apply(delivery(principal_of_role(99)))
    assert await count(ingest_pool, "principals") == 0


async def test_payout_refuses_what_postgresql_cannot_store(payout_pool):
    inbox = Inbox(payout_pool, "payout", payout_projection.Projector())
    nul_file_name = example("contribution.received")
    nul_file_name.contribution_received.file_name = "report\x00.txt"
    with pytest.raises(PermanentFactError, match=r"CharacterNotInRepertoire \(SQLSTATE 22021\)"):
        await inbox.apply(delivery(nul_file_name))
    # A NUL inside the processed report goes into jsonb: refused there as \u0000.
    nul_detail = example("contribution.processed")
    nul_detail.contribution_processed.removals[0].detail = "min\x00words"
    with pytest.raises(PermanentFactError, match=r"UntranslatableCharacter \(SQLSTATE 22P05\)"):
        await inbox.apply(delivery(nul_detail))
    assert await count(payout_pool, "contributions") == 0
    assert await count(payout_pool, "inbox") == 0


async def test_payout_refuses_a_currency_it_cannot_settle(payout_pool):
    inbox = Inbox(payout_pool, "payout", payout_projection.Projector())
    allocation = example("allocation.made")
    allocation.allocation_made.currency = "XXX"
    with pytest.raises(PermanentFactError, match="currency 'XXX' is not one the platform"):
        await inbox.apply(delivery(allocation))
    assert await count(payout_pool, "allocations") == 0


# -- through the bus: dead-lettered with the reason, and the next fact applied -------------


async def test_the_bus_dead_letters_a_projection_refusal_and_goes_on(
    payout_pool, consumer_for, producer, registry
):
    """A second payout for one contributor, period and currency: valid on its own, refused
    by payout's projection; the consumer dead-letters it and applies what follows."""
    group = f"{registry.prefix}payout"
    consumer = consumer_for(group, Inbox(payout_pool, group, payout_projection.Projector()))
    first = envelope(
        ledger_pb2.PayoutIssued(
            payout_id="payout-1",
            payout_run_id="run",
            contributor_id="carol",
            period="2026-10",
            currency="USD",
            amount_minor=100,
            carried_forward_micros=5,
            allocation_ids=["allocation-1"],
        )
    )
    second = envelope(
        ledger_pb2.PayoutIssued(
            payout_id="payout-2",
            payout_run_id="forged",
            contributor_id="carol",
            period="2026-10",
            currency="USD",
            amount_minor=925_000,
            allocation_ids=["allocation-1", "allocation-2"],
        )
    )
    good = envelope(
        identity_pb2.PrincipalRegistered(
            principal_id="carol",
            role=identity_pb2.ROLE_CONTRIBUTOR,
            name="Carol",
            api_key_sha256="c" * 64,
            api_key_prefix="tt_0000000c",
        )
    )
    # payout.issued is keyed by contributor: the two payouts keep their order.
    await producer.publish(first)
    await producer.publish(second)
    await producer.publish(good)
    async with consumer:
        deadline = asyncio.get_running_loop().time() + 60
        while consumer.processed_count + consumer.dead_letter_count < 3:
            assert asyncio.get_running_loop().time() < deadline, "the consumer stalled"
            await consumer.poll_once()
    assert consumer.dead_letter_count == 1
    assert "handler rejected the fact" in consumer.last_dead_letter_reason
    assert "already paid for 2026-10 in USD by payout payout-1" in (
        consumer.last_dead_letter_reason
    )
    assert await payout_pool.fetchval("SELECT array_agg(payout_id) FROM payouts") == ["payout-1"]
    assert await payout_pool.fetchval(
        "SELECT array_agg(allocation_id ORDER BY allocation_id) FROM payout_allocations"
    ) == ["allocation-1"]
    assert await count(payout_pool, "principals") == 1

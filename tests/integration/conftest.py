"""Integration fixtures. All tests share the one broker and database that `make up`
started; each test gets its own topic prefix and its own Postgres schema, and removes
them afterwards, so tests can run in any order.

The test process acts as the operator (the admin party: a Kafka super user). A prefix is
prepared as `1tt stack prepare` prepares the real one: its topics, every party's ACLs on
them, and the services' signing keys registered in its key.registered topic. Facts the
tests publish are signed by the party that owns their type (OwnerSigners)."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from services.cli.provision import owner_signers, prepare, remove
from services.common.bus import FactConsumer, FactProducer
from services.common.config import KafkaAccess, Settings
from services.common.db import connect, create_pool
from services.common.facts import BY_EVENT_TYPE
from services.common.keys import KeyFeed
from services.common.migrations import migrate
from services.common.topics import TopicRegistry

pytestmark = pytest.mark.integration
# Every fact type but the key registrations, which `registry` publishes for the services.
FACT_TYPES = tuple(t for t in BY_EVENT_TYPE if t != "key.registered")


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session", autouse=True)
def stack_is_up(settings: Settings) -> None:
    """Fail fast, in words, when the stack is not running (rather than timing out per test)."""

    async def probe() -> None:
        admin = AIOKafkaAdminClient(**settings.kafka.client_options(), request_timeout_ms=5000)
        await asyncio.wait_for(admin.start(), 10)
        await admin.close()
        conn = await asyncio.wait_for(asyncpg.connect(settings.database_url), 10)
        await conn.close()

    try:
        asyncio.run(probe())
    except Exception as error:
        pytest.exit(
            f"the local stack is not reachable ({error!r}); run 'make up' first, which also "
            "makes the tests' PostgreSQL role and its passfile "
            f"(Kafka {settings.kafka_bootstrap}, Postgres {settings.database_url})",
            returncode=3,
        )


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
async def admin(settings):
    client = AIOKafkaAdminClient(**settings.kafka.client_options(), request_timeout_ms=30_000)
    await client.start()
    yield client
    await client.close()


@pytest.fixture
async def registry(settings, unique) -> TopicRegistry:
    """A full set of fact topics under a prefix of this test's own, prepared like the
    stack's (ACLs for every party, the services' keys registered)."""
    topics = TopicRegistry(prefix=f"it-{unique}.", partitions=3)
    await prepare(settings, topics)
    yield topics
    await remove(settings, topics)


@pytest.fixture
async def signers(settings, registry):
    """Signs each fact as the party that owns its type."""
    return await owner_signers(settings, registry)


@pytest.fixture
async def keys(settings, registry):
    async with KeyFeed.for_settings(settings, registry) as feed:
        yield feed


@pytest.fixture
async def schema(settings, unique) -> str:
    """A Postgres schema of this test's own, with the bus tables migrated."""
    name = f"it_{unique}"
    conn = await connect(settings.database_url, "public", application_name="tests")
    try:
        await migrate(conn, name)
        yield name
        await conn.execute(f"DROP SCHEMA {name} CASCADE")
    finally:
        await conn.close()


@pytest.fixture
async def pool(settings, schema):
    connections = await create_pool(settings.database_url, schema, application_name="tests")
    yield connections
    await connections.close()


@pytest.fixture
async def producer(settings, registry, signers):
    async with FactProducer(
        settings.kafka, registry, client_id="tests", signer=signers
    ) as fact_producer:
        yield fact_producer


@pytest.fixture
def consumer_for(settings, registry, producer, keys):
    """A FactConsumer over every fact topic of this test's registry, for `group`."""

    def make(group_id: str, handler, event_types=FACT_TYPES, **options) -> FactConsumer:
        return FactConsumer(
            kafka=settings.kafka,
            registry=registry,
            group_id=group_id,
            event_types=event_types,
            handler=handler,
            dead_letters=producer,
            keys=keys,
            **options,
        )

    return make


async def read_topic(kafka: KafkaAccess, topic: str, expected: int, timeout_s: float = 20.0):
    """Every message on `topic` (read_committed, from the start), waiting for `expected`."""
    consumer = AIOKafkaConsumer(
        topic,
        **kafka.client_options(),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    records = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(records) < expected and asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            for batch in batches.values():
                records.extend(batch)
        # Give any unexpected extra message a moment to show up.
        for batch in (await consumer.getmany(timeout_ms=500)).values():
            records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def publish_signed(settings: Settings, registry: TopicRegistry, *envelopes) -> None:
    """Publish facts under `registry`, each signed by the party that owns its type."""
    signers = await owner_signers(settings, registry)
    async with FactProducer(settings.kafka, registry, client_id="tests", signer=signers) as out:
        for envelope in envelopes:
            await out.publish(envelope)

"""Integration fixtures. All tests share the one broker and database that `make up`
started; each test gets its own topic prefix and its own Postgres schema, and removes
them afterwards, so tests can run in any order."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from services.common.bus import FactConsumer, FactProducer
from services.common.config import Settings
from services.common.db import connect, create_pool
from services.common.facts import BY_EVENT_TYPE
from services.common.migrations import migrate
from services.common.topics import TopicRegistry, ensure_topics

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session", autouse=True)
def stack_is_up(settings: Settings) -> None:
    """Fail fast, in words, when the stack is not running (rather than timing out per test)."""

    async def probe() -> None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000
        )
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
    client = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=30_000
    )
    await client.start()
    yield client
    await client.close()


@pytest.fixture
async def registry(admin, unique) -> TopicRegistry:
    """A full set of fact topics under a prefix of this test's own."""
    topics = TopicRegistry(prefix=f"it-{unique}.", partitions=3)
    await ensure_topics(admin, topics.specs())
    yield topics
    await admin.delete_topics([spec.name for spec in topics.specs()])


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
async def producer(settings, registry):
    async with FactProducer(settings.kafka_bootstrap, registry, client_id="tests") as fact_producer:
        yield fact_producer


@pytest.fixture
def consumer_for(settings, registry, producer):
    """A FactConsumer over every fact topic of this test's registry, for `group`."""

    def make(group_id: str, handler, **options) -> FactConsumer:
        return FactConsumer(
            bootstrap=settings.kafka_bootstrap,
            registry=registry,
            group_id=group_id,
            event_types=BY_EVENT_TYPE,
            handler=handler,
            dead_letters=producer,
            **options,
        )

    return make


async def read_topic(bootstrap: str, topic: str, expected: int, timeout_s: float = 20.0):
    """Every message on `topic` (read_committed, from the start), waiting for `expected`."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
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

"""The ledger service: `python -m services.ledger.main`.

Four tasks share one process:
- the projection consumer (group `<prefix>ledger`): each fact through the inbox into the
  ledger's tables, exactly once;
- the releaser: allocates parked revenue events whose named facts have all arrived;
- the outbox relay: publishes the derived allocation.made facts;
- the lag monitor: the group's consumer lag, for the metrics on TT_METRICS_ADDRESS.

The ledger is a single writer per deployment: it may run as several processes for
availability (the consumer group gives the partitions to one of them at a time, and the
relay's advisory lock lets one publish), but allocation throughput grows with revenue
events, not with the platform's size, so one active instance is enough.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable

import asyncpg

from services.common.bus import FactConsumer, PartyBus
from services.common.config import ConfigError, Settings
from services.common.db import DATABASE_UNAVAILABLE, create_pool
from services.common.inbox import Inbox
from services.common.metrics import ConsumerLagMonitor, serve_metrics
from services.common.migrations import migrate_schema
from services.common.outbox import OutboxRelay
from services.common.service import run_until_stopped, run_with_signals
from services.common.telemetry import configure_tracing
from services.ledger import projection
from services.ledger.projection import SQL_DIR

log = logging.getLogger("ledger")


def consumer_group(settings: Settings) -> str:
    return settings.topic_registry().consumer_group("ledger")


async def prepare_schema(database_url: str, schema: str) -> None:
    await migrate_schema(database_url, schema, "ledger", SQL_DIR)


class Releaser:
    """Allocates parked revenue once everything it depends on has been applied.

    Three inputs are not named by a revenue fact: withdrawals (a contribution withdrawn
    before the period began takes no part), and the consumer's other agreements and
    deployments (the rules choose among those published before the revenue, and the
    named ones must be the chosen ones). So a parked event is released only after the
    ledger has applied every such fact that was on the log when the event was already
    stored: the ids are read first, then the three topics' ends are checked."""

    UNNAMED_INPUTS = ("contribution.withdrawn", "agreement.published", "service.deployed")

    def __init__(
        self,
        pool: asyncpg.Pool,
        inputs_settled: Callable[[], Awaitable[bool]],
        interval_s: float = 0.3,
    ):
        self.pool = pool
        self.inputs_settled = inputs_settled
        self.interval_s = interval_s
        self.released_count = 0

    async def run_once(self) -> int:
        async with self.pool.acquire() as conn:
            parked = await projection.parked_revenue(conn)
            if not parked or not await self.inputs_settled():
                return 0
            released = await projection.release(conn, parked)
        self.released_count += released
        return released

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                released = await self.run_once()
            except DATABASE_UNAVAILABLE as error:
                log.warning("releaser: %r; retrying", error)
                released = 0
            if not released:
                try:
                    await asyncio.wait_for(stop.wait(), self.interval_s)
                except TimeoutError:
                    pass


async def serve(settings: Settings, schema: str, stop: asyncio.Event) -> int:
    registry = settings.topic_registry()
    await prepare_schema(settings.database_url, schema)
    pool = await create_pool(settings.database_url, schema, application_name="ledger")
    group = consumer_group(settings)
    bus = await PartyBus.open(settings, registry, client_id="ledger")
    producer = bus.producer
    consumer = FactConsumer(
        kafka=settings.kafka,
        registry=registry,
        group_id=group,
        event_types=projection.EVENT_TYPES,
        handler=Inbox(pool, group, projection.Projector()),
        dead_letters=producer,
        keys=bus.keys,
        session_timeout_ms=int(os.environ.get("TT_LEDGER_SESSION_TIMEOUT_MS", "10000")),
        service="ledger",
    )
    relay = OutboxRelay(settings.database_url, schema, producer)

    async def inputs_settled() -> bool:
        return all([await consumer.caught_up(event_type) for event_type in Releaser.UNNAMED_INPUTS])

    releaser = Releaser(pool, inputs_settled)
    lag = ConsumerLagMonitor(settings.kafka, "ledger", group, consumer.topics)
    try:
        await consumer.start()
        log.info("ledger consuming as %s into schema %s", group, schema)
        tasks = {
            asyncio.create_task(consumer.run(stop), name="projection"),
            asyncio.create_task(relay.run(stop), name="relay"),
            asyncio.create_task(releaser.run(stop), name="releaser"),
            asyncio.create_task(lag.run(stop), name="consumer-lag"),
        }
        return await run_until_stopped(tasks, stop, log)
    finally:
        await consumer.stop()
        await bus.close()
        await pool.close()


def main() -> int:
    logging.basicConfig(
        level=os.environ.get("TT_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = Settings.from_env()
        serve_metrics(os.environ.get("TT_METRICS_ADDRESS", "127.0.0.1:9103"))
    except ConfigError as error:
        print(f"ledger: {error}", file=sys.stderr)
        return 2
    schema = os.environ.get("TT_LEDGER_SCHEMA", projection.SCHEMA)
    tracing = configure_tracing("ledger", settings.otel_exporter)

    try:
        return run_with_signals(lambda stop: serve(settings, schema, stop))
    finally:
        tracing.shutdown()


if __name__ == "__main__":
    sys.exit(main())

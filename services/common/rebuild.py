"""`1tt rebuild ledger|payout`: drop a service's projection and replay the log from 0.

The service must be stopped (its consumer group empty): the rebuild takes the group's
place, and acts as the service (`1tt rebuild ledger` connects as the ledger's role, which
owns its schema). It computes the digest of the projection as it stands, empties the
schema (drops everything in it; the schema itself stays, owned by the service), migrates
it afresh, replays every fact the service reads through the same inbox and projector,
runs the service's after-replay step (the ledger releases parked revenue), marks the
derived facts already on the log as published (so the relay does not publish them
twice), moves the group's offsets to where the replay ended, and computes the digest
again. The two must be equal.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from services.common.bus import Delivery, PermanentFactError
from services.common.config import KafkaAccess, Settings
from services.common.db import check_schema_name, connect, create_pool
from services.common.inbox import Inbox
from services.common.keys import KeyFeed
from services.common.logreader import ReadStats, read_log
from services.common.migrations import empty_schema, load_migrations, migrate


@dataclass(frozen=True)
class ProjectionSpec:
    """What a rebuild needs to know about one service's projection."""

    name: str  # the service, e.g. "ledger"
    group: str  # its consumer group
    event_types: tuple[str, ...]
    projector: Callable[[], Callable]
    sql_dir: Path
    marker_table: str  # a table that exists once the projection was migrated
    digest: Callable[[asyncpg.Connection], Awaitable[tuple[str, dict[str, int]]]]
    derived_event_types: tuple[str, ...] = ()
    after_replay: Callable[[asyncpg.Connection], Awaitable[object]] | None = None


class RebuildError(RuntimeError):
    pass


@dataclass
class RebuildResult:
    digest_before: str | None
    digest_after: str
    counts_before: dict[str, int] | None
    counts_after: dict[str, int]
    facts_replayed: int = 0
    facts_rejected: int = 0
    invalid_records: int = 0
    rejections: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return self.digest_before == self.digest_after

    def as_json(self) -> dict:
        return {
            "digest_before": self.digest_before,
            "digest_after": self.digest_after,
            "identical": self.identical,
            "counts_before": self.counts_before,
            "counts_after": self.counts_after,
            "facts_replayed": self.facts_replayed,
            "facts_rejected": self.facts_rejected,
            "invalid_records": self.invalid_records,
        }


async def _group_members(kafka: KafkaAccess, group: str) -> int:
    admin = AIOKafkaAdminClient(**kafka.client_options(), request_timeout_ms=10_000)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
        [described] = response.to_object()["groups"]
        return len(described["members"])
    finally:
        await admin.close()


async def rebuild(settings: Settings, spec: ProjectionSpec, schema: str) -> RebuildResult:
    schema = check_schema_name(schema)
    if await _group_members(settings.kafka, spec.group):
        raise RebuildError(
            f"the {spec.name} service is running (consumer group {spec.group} has members); "
            f"stop it first (`deploy/local/services.sh stop {spec.name}`, or `make "
            f"rebuild-{spec.name}`, which stops and restarts it)"
        )
    conn = await connect(settings.database_url, "public", application_name="rebuild")
    try:
        exists = await conn.fetchval(
            "SELECT true FROM information_schema.tables WHERE table_schema = $1 "
            "AND table_name = $2",
            schema,
            spec.marker_table,
        )
        before, counts_before = (None, None)
        if exists:
            await conn.execute(f"SET search_path = {schema}")
            before, counts_before = await spec.digest(conn)
            await conn.execute("SET search_path = public")
        if await conn.fetchval("SELECT true FROM pg_namespace WHERE nspname = $1", schema):
            await empty_schema(conn, schema)
        await migrate(conn, schema, load_migrations(spec.name, spec.sql_dir))
    finally:
        await conn.close()

    pool = await create_pool(settings.database_url, schema, application_name="rebuild")
    keys = KeyFeed.for_settings(settings)
    try:
        await keys.start()
        result = await _replay(settings, pool, spec, keys)
        async with pool.acquire() as db:
            if spec.after_replay is not None:
                await spec.after_replay(db)
            await _mark_published(settings, db, spec.derived_event_types, keys)
            after, counts_after = await spec.digest(db)
    finally:
        await keys.stop()
        await pool.close()
    result.digest_before, result.counts_before = before, counts_before
    result.digest_after, result.counts_after = after, counts_after
    return result


async def _replay(
    settings: Settings, pool: asyncpg.Pool, spec: ProjectionSpec, keys: KeyFeed
) -> RebuildResult:
    registry = settings.topic_registry()
    inbox = Inbox(pool, spec.group, spec.projector())
    stats = ReadStats()
    result = RebuildResult(None, "", None, {})
    async for record in read_log(settings.kafka, registry, spec.event_types, keys, stats):
        try:
            await inbox.apply(
                Delivery(
                    record.envelope,
                    record.topic,
                    record.partition,
                    record.offset,
                    record.signer,
                    record.appended_at,
                )
            )
            result.facts_replayed += 1
        except PermanentFactError as error:
            # The service dead-lettered the same fact for the same reason.
            result.facts_rejected += 1
            result.rejections.append(str(error))
    # Records the service dead-lettered before projecting: malformed or untrusted.
    result.invalid_records = stats.invalid + len(stats.untrusted)
    await _commit_group_offsets(settings, spec.group, stats)
    return result


async def _commit_group_offsets(settings: Settings, group: str, stats: ReadStats) -> None:
    """The service resumes where the replay ended, not from the beginning again."""
    if not stats.end_offsets:
        return
    consumer = AIOKafkaConsumer(
        **settings.kafka.client_options(), group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(list(stats.end_offsets))
        await consumer.commit(
            {tp: OffsetAndMetadata(end, "") for tp, end in stats.end_offsets.items()}
        )
    finally:
        await consumer.stop()


async def _mark_published(
    settings: Settings, conn: asyncpg.Connection, event_types: tuple[str, ...], keys: KeyFeed
) -> None:
    """Derived facts already on the log are not published again."""
    if not event_types:
        return
    on_log = [
        record.envelope.event_id
        async for record in read_log(settings.kafka, settings.topic_registry(), event_types, keys)
    ]
    if on_log:
        await conn.execute(
            "UPDATE outbox SET published_at = now() WHERE published_at IS NULL "
            "AND event_id = ANY($1::text[])",
            on_log,
        )

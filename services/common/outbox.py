"""The transactional outbox: derived facts are written to the `outbox` table in the same
transaction as the projection change that caused them, and a relay publishes them.

A crash between publishing and marking a row published makes the relay publish it again
after restart; the fact keeps its deterministic event_id, so every consumer's inbox
discards the second copy. Only one relay per schema publishes at a time (an advisory
lock), so facts leave in the order they were written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import asyncpg

from services.common.bus import FactProducer
from services.common.db import DATABASE_UNAVAILABLE, check_schema_name, connect
from services.common.facts import Envelope, decode, encode, payload_of
from services.common.failpoints import failpoint
from services.common.telemetry import current_traceparent
from services.common.validation import validate_envelope

log = logging.getLogger(__name__)


class OutboxConflictError(RuntimeError):
    """Two different facts were derived with the same event id: a bug in id derivation."""


async def write_outbox(conn: asyncpg.Connection, envelopes: Sequence[Envelope]) -> int:
    """Add derived facts to the outbox inside the caller's transaction. Returns how many
    were new. Re-adding an identical fact is a no-op; a different fact under an existing
    event_id raises OutboxConflictError, which rolls the transaction back."""
    added = 0
    for envelope in envelopes:
        if not envelope.traceparent:
            envelope.traceparent = current_traceparent()
        validate_envelope(envelope)
        seq = await conn.fetchval(
            "INSERT INTO outbox (event_id, event_type, envelope) VALUES ($1, $2, $3) "
            "ON CONFLICT (event_id) DO NOTHING RETURNING seq",
            envelope.event_id,
            envelope.event_type,
            encode(envelope),
        )
        if seq is not None:
            added += 1
            continue
        stored = decode(
            await conn.fetchval(
                "SELECT envelope FROM outbox WHERE event_id = $1", envelope.event_id
            )
        )
        if stored.event_type != envelope.event_type or payload_of(stored) != payload_of(envelope):
            raise OutboxConflictError(
                f"event id {envelope.event_id} already names a different "
                f"{stored.event_type} fact; derived ids must be unique per fact"
            )
    if added:
        # Delivered at commit, so the relay wakes only for rows it can see.
        await conn.execute("SELECT pg_notify(current_schema() || '_outbox', '')")
    return added


async def write_outbox_new(conn: asyncpg.Connection, envelopes: Sequence[Envelope]) -> int:
    """Add derived facts that cannot be in the outbox yet (the caller holds the lock that
    makes them new, e.g. the row of the event they derive from), by COPY: a million rows
    in seconds rather than minutes. An id already present fails the whole transaction
    (a unique violation) instead of being compared; use write_outbox when a fact may
    legitimately be written twice."""
    if not envelopes:
        return 0
    traceparent = current_traceparent()
    rows = []
    for envelope in envelopes:
        if not envelope.traceparent:
            envelope.traceparent = traceparent
        validate_envelope(envelope)
        rows.append((envelope.event_id, envelope.event_type, encode(envelope)))
    await conn.copy_records_to_table(
        "outbox", records=rows, columns=["event_id", "event_type", "envelope"]
    )
    await conn.execute("SELECT pg_notify(current_schema() || '_outbox', '')")
    return len(rows)


class OutboxRelay:
    """Publishes unpublished outbox rows of one schema, oldest first."""

    def __init__(
        self,
        database_url: str,
        schema: str,
        producer: FactProducer,
        *,
        batch_size: int = 200,
        poll_interval_s: float = 1.0,
    ):
        self.database_url = database_url
        self.schema = check_schema_name(schema)
        self.producer = producer
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.published_count = 0
        self._wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until `stop` is set, waking on NOTIFY or every poll interval. A lost
        database connection (a restart) is re-established with backoff; rows published
        but not yet marked are published again, which readers discard by event id."""
        backoff_s = 0.5
        while not stop.is_set():
            try:
                await self._run_connected(stop)
            except DATABASE_UNAVAILABLE as error:
                log.warning(
                    "outbox relay for %s lost the database (%r); reconnecting in %.1fs",
                    self.schema,
                    error,
                    backoff_s,
                )
                await self._sleep(stop, backoff_s)
                backoff_s = min(backoff_s * 2, 5.0)

    async def _run_connected(self, stop: asyncio.Event) -> None:
        conn = await connect(self.database_url, self.schema, application_name="outbox-relay")
        try:
            await self._acquire_leadership(conn, stop)
            await conn.add_listener(f"{self.schema}_outbox", lambda *_: self._wake.set())
            while not stop.is_set():
                published = await self.publish_batch(conn)
                if published < self.batch_size:
                    await self._sleep(stop)
        finally:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _acquire_leadership(self, conn: asyncpg.Connection, stop: asyncio.Event) -> None:
        # Session-level lock: released when this connection closes, including on a crash.
        while not stop.is_set():
            if await conn.fetchval(
                "SELECT pg_try_advisory_lock(hashtext($1))", f"relay:{self.schema}"
            ):
                return
            log.info("another relay publishes %s's outbox; waiting", self.schema)
            await self._sleep(stop)

    async def _sleep(self, stop: asyncio.Event, timeout_s: float | None = None) -> None:
        self._wake.clear()
        waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(
                waiters,
                timeout=self.poll_interval_s if timeout_s is None else timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def publish_batch(self, conn: asyncpg.Connection) -> int:
        """Publish one batch of pending rows in outbox order and mark them published."""
        rows = await conn.fetch(
            "SELECT seq, envelope FROM outbox WHERE published_at IS NULL ORDER BY seq LIMIT $1",
            self.batch_size,
        )
        if not rows:
            return 0
        failpoint("relay.before_publish")
        # One signature covers the whole batch (services.common.signing).
        acknowledgements = await self.producer.send_batch([decode(row["envelope"]) for row in rows])
        await asyncio.gather(*acknowledgements)
        failpoint("relay.after_publish")
        await conn.execute(
            "UPDATE outbox SET published_at = now() WHERE seq = ANY($1::bigint[])",
            [row["seq"] for row in rows],
        )
        self.published_count += len(rows)
        return len(rows)

"""The inbox: apply each fact's effect exactly once.

`Inbox` is a FactConsumer handler. For each delivery it opens one transaction that
records the event id for the consumer group, runs the projection handler, and writes the
facts the handler derived to the outbox. Either all of that commits or none of it does;
a redelivered fact finds its inbox row and changes nothing.

A fact the projection can never store is the fact's fault, not the service's: the
transaction rolls back whole, and the fact is refused with PermanentFactError, which the
bus dead-letters with the reason before it goes on with the next fact. That covers the
handler's own typed refusals (PermanentFactError) and PostgreSQL's refusals of the data
(services.common.db.refused_by_database: a character it cannot store, a value out of its
column's range, a violated constraint). A database that is unreachable is not the fact's
fault: those errors pass through untouched and the bus waits the outage out, as it
retries serialization failures and deadlocks.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from services.common.bus import Delivery, PermanentFactError
from services.common.db import describe_refusal, refused_by_database
from services.common.facts import Envelope, payload_of
from services.common.failpoints import failpoint
from services.common.outbox import write_outbox

log = logging.getLogger(__name__)

# (connection inside the transaction, the fact as delivered: its envelope, where it was
# read, who signed it, when it was appended) -> the facts it derives (often none).
ProjectionHandler = Callable[[asyncpg.Connection, Delivery], Awaitable[Sequence[Envelope]]]


class Inbox:
    def __init__(self, pool: asyncpg.Pool, consumer_group: str, handler: ProjectionHandler):
        self.pool = pool
        self.consumer_group = consumer_group
        self.handler = handler
        self.applied_count = 0
        self.duplicate_count = 0

    async def __call__(self, delivery: Delivery) -> None:
        await self.apply(delivery)

    async def apply(self, delivery: Delivery) -> bool:
        """Apply the fact's effect if this group has not already. True if it was applied.
        PermanentFactError if the projection can never store it (nothing was written)."""
        try:
            applied = await self._apply(delivery)
        except PermanentFactError:
            raise
        except Exception as error:
            if not refused_by_database(error):
                raise
            raise PermanentFactError(
                f"the {self.consumer_group} projection cannot store this "
                f"{delivery.envelope.event_type} fact: {describe_refusal(error)}"
            ) from error
        if applied:
            self.applied_count += 1
            failpoint("inbox.after_commit")
        return applied

    async def _apply(self, delivery: Delivery) -> bool:
        envelope = delivery.envelope
        digest = hashlib.sha256(payload_of(envelope).SerializeToString(deterministic=True))
        async with self.pool.acquire() as conn, conn.transaction():
            first_time = await conn.fetchval(
                "INSERT INTO inbox (consumer_group, event_id, event_type, topic, partition, "
                '"offset", payload_sha256) VALUES ($1, $2, $3, $4, $5, $6, $7) '
                "ON CONFLICT DO NOTHING RETURNING true",
                self.consumer_group,
                envelope.event_id,
                envelope.event_type,
                delivery.topic,
                delivery.partition,
                delivery.offset,
                digest.hexdigest(),
            )
            if not first_time:
                stored = await conn.fetchrow(
                    "SELECT event_type, payload_sha256 FROM inbox "
                    "WHERE consumer_group = $1 AND event_id = $2",
                    self.consumer_group,
                    envelope.event_id,
                )
                if (stored["event_type"], stored["payload_sha256"]) != (
                    envelope.event_type,
                    digest.hexdigest(),
                ):
                    raise PermanentFactError(
                        f"event id {envelope.event_id} was already applied as a "
                        f"{stored['event_type']} fact with different content; an event id "
                        "may name only one fact"
                    )
                self.duplicate_count += 1
                log.info(
                    "%s already applied %s %s; skipping the redelivery",
                    self.consumer_group,
                    envelope.event_type,
                    envelope.event_id,
                )
                return False
            derived = await self.handler(conn, delivery)
            await write_outbox(conn, derived)
        return True

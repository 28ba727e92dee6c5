"""A real consumer or relay process for the crash tests. The tests arm failpoints through
TT_FAILPOINTS, so the process dies by SIGKILL at an exact point, like `kill -9`.

  python -m tests.integration.worker consume --prefix P --schema S --group G --expect N
  python -m tests.integration.worker relay --prefix P --schema S

On a clean exit it prints one JSON line of counters.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import asyncpg

from services.cli.provision import owner_signers
from services.common.bus import Delivery, FactConsumer, FactProducer
from services.common.config import Settings
from services.common.db import connect, create_pool
from services.common.facts import BY_EVENT_TYPE, Envelope
from services.common.inbox import Inbox
from services.common.keys import KeyFeed
from services.common.outbox import OutboxRelay
from services.common.topics import TopicRegistry

EFFECTS_TABLE = """CREATE TABLE IF NOT EXISTS effects (
    event_id text PRIMARY KEY, applications integer NOT NULL)"""


async def count_effect(conn: asyncpg.Connection, delivery: Delivery) -> list[Envelope]:
    """A deliberately non-idempotent effect: applying a fact twice would show 2."""
    envelope = delivery.envelope
    await conn.execute(
        "INSERT INTO effects (event_id, applications) VALUES ($1, 1) ON CONFLICT (event_id) "
        "DO UPDATE SET applications = effects.applications + 1",
        envelope.event_id,
    )
    return []


async def consume(settings: Settings, args: argparse.Namespace) -> dict:
    registry = TopicRegistry(prefix=args.prefix)
    pool = await create_pool(settings.database_url, args.schema, application_name="worker")
    await pool.execute(EFFECTS_TABLE)
    inbox = Inbox(pool, args.group, count_effect)
    keys = KeyFeed.for_settings(settings, registry)
    async with FactProducer(settings.kafka, registry, client_id="worker") as producer:
        consumer = FactConsumer(
            kafka=settings.kafka,
            registry=registry,
            group_id=args.group,
            event_types=[t for t in BY_EVENT_TYPE if t != "key.registered"],
            handler=inbox,
            dead_letters=producer,
            keys=keys,
            session_timeout_ms=6000,
        )
        async with keys, consumer:
            deadline = time.monotonic() + args.timeout_s
            idle_since = None
            while time.monotonic() < deadline:
                handled = await consumer.poll_once(timeout_ms=300)
                done = await pool.fetchval("SELECT count(*) FROM effects") >= args.expect
                idle_since = (idle_since or time.monotonic()) if not handled else None
                if done and idle_since and time.monotonic() - idle_since > args.idle_s:
                    break
    await pool.close()
    return {
        "applied": inbox.applied_count,
        "duplicates": inbox.duplicate_count,
        "dead_lettered": consumer.dead_letter_count,
    }


async def relay(settings: Settings, args: argparse.Namespace) -> dict:
    registry = TopicRegistry(prefix=args.prefix)
    signers = await owner_signers(settings, registry)
    async with FactProducer(
        settings.kafka, registry, client_id="relay", signer=signers
    ) as producer:
        outbox_relay = OutboxRelay(
            settings.database_url,
            args.schema,
            producer,
            batch_size=args.batch_size,
            poll_interval_s=0.2,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(outbox_relay.run(stop))
        conn = await connect(settings.database_url, args.schema, application_name="worker")
        deadline = time.monotonic() + args.timeout_s
        while time.monotonic() < deadline and not task.done():
            if not await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"):
                break
            await asyncio.sleep(0.1)
        stop.set()
        await task
        await conn.close()
    return {"published": outbox_relay.published_count}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["consume", "relay"])
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--group", default="worker")
    parser.add_argument("--expect", type=int, default=0)
    parser.add_argument("--idle-s", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--timeout-s", type=float, default=60.0)
    args = parser.parse_args()
    work = consume if args.role == "consume" else relay
    print(json.dumps(asyncio.run(work(Settings.from_env(), args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

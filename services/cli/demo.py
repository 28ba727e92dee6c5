"""`1tt demo`: the platform end to end, as far as it is built.

1. The event log: one fact of every type goes through the real Kafka broker into a
   Postgres projection, through the same bus, inbox and validation every service uses; a
   resent fact, a malformed message and a forged fact (a payout signed with the consumer's
   key) show the exactly-once and dead-letter paths. This
   runs under its own topic prefix, so its example facts never reach the services.
2. Contributors: three organisations get API keys and upload text found on this machine
   through `1tt contribute`; their signed receipts are verified; each sees its report.
3. The consumer publishes an agreement, a snapshot, a deployment and revenue; the ledger
   allocates the pool and each contributor sees its share.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from datetime import UTC
from pathlib import Path

import asyncpg
from google.protobuf import json_format

from services.cli import demo_consumer as consumer
from services.cli import demo_contributors as contributors
from services.cli.provision import owner_signers, prepare
from services.common.bus import Delivery, FactConsumer, FactProducer
from services.common.config import Settings
from services.common.db import create_pool
from services.common.examples import example_envelopes
from services.common.facts import BY_EVENT_TYPE, Envelope, payload_of
from services.common.inbox import Inbox
from services.common.keys import KeyFeed
from services.common.migrations import migrate_schema
from services.rules.ids import new_id

SCHEMA = "demo"
BACKBONE_PREFIX = "demo-backbone."
GROUP = "demo-journal"
SQL_DIR = Path(__file__).parent / "sql"
WAIT_S = 60.0


async def journal_fact(conn: asyncpg.Connection, delivery: Delivery) -> list[Envelope]:
    """The demo projection: store the fact as JSON. Derives no further facts."""
    envelope = delivery.envelope
    payload = json_format.MessageToDict(payload_of(envelope), preserving_proto_field_name=True)
    await conn.execute(
        "INSERT INTO fact_journal (event_id, event_type, kafka_key, correlation_id, producer, "
        "occurred_at, payload) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)",
        envelope.event_id,
        envelope.event_type,
        envelope.key,
        envelope.correlation_id,
        envelope.producer,
        envelope.occurred_at.ToDatetime(tzinfo=UTC),
        json.dumps(payload),
    )
    return []


async def run_demo(settings: Settings) -> int:
    registry = settings.topic_registry()
    run_id = new_id()[:8]
    print(f"Kafka {settings.kafka_bootstrap}  PostgreSQL {settings.database_url}  run {run_id}")
    prepared = await prepare(settings, registry)
    print(
        f"Topics ready ({len(registry.specs())} registered, {len(prepared.topics_created)} "
        "created now); each party's Kafka user, ACLs and signing key in place"
    )
    await migrate_schema(settings.database_url, SCHEMA, "demo", SQL_DIR)

    envelopes = example_envelopes(run_id, producer="1tt-demo")
    signers = await owner_signers(settings, registry, consumer_ids=["consumer"])
    pool = await create_pool(settings.database_url, SCHEMA, application_name="1tt-demo")
    try:
        async with FactProducer(
            settings.kafka, registry, client_id="1tt-demo", signer=signers
        ) as producer:
            await _send(producer, envelopes, signers)
            return await _receive(settings, registry, producer, pool, envelopes)
    finally:
        await pool.close()


async def _send(producer: FactProducer, envelopes: list[Envelope], signers) -> None:
    print("\nSent to Kafka (idempotent producer, acks=all, each signed by its owner):")
    for envelope in envelopes:
        sent = await producer.publish(envelope)
        print(
            f"  {envelope.event_type:<24} key={envelope.key[:18]:<18} -> "
            f"{sent.topic}[{sent.partition}]@{sent.offset}"
        )
    resent = next(e for e in envelopes if e.event_type == "revenue.recorded")
    sent = await producer.publish(resent)
    print(
        f"  {'revenue.recorded':<24} the same fact again, same event id -> "
        f"{sent.topic}[{sent.partition}]@{sent.offset}"
    )
    garbage_topic = producer.registry.fact_topic("revenue.recorded")
    sent = await producer.publish_raw(
        garbage_topic, resent.key.encode(), b"\x0a\xff\xff not a protobuf envelope", []
    )
    print(f"  {'(malformed bytes)':<24} {'':<22} -> {sent.topic}[{sent.partition}]@{sent.offset}")
    # A payout forged by the consumer: its own key, valid, but not the payout service's.
    payout = next(e for e in envelopes if e.event_type == "payout.issued")
    forged = Envelope()
    forged.CopyFrom(payout)
    forged.event_id = f"{payout.event_id}-forged"
    forged.payout_issued.amount_minor *= 100
    value = signers.consumers["consumer"].seal(forged)
    topic = producer.registry.fact_topic("payout.issued")
    sent = await producer.publish_raw(topic, forged.key.encode(), value, [])
    print(
        f"  {'(payout signed by the consumer)':<24} {'':<7} -> "
        f"{sent.topic}[{sent.partition}]@{sent.offset}"
    )


async def _receive(settings, registry, producer, pool, envelopes) -> int:
    correlation_id = envelopes[0].correlation_id
    journal = Inbox(pool, GROUP, journal_fact)
    keys = KeyFeed.for_settings(settings, registry)
    consumer = FactConsumer(
        kafka=settings.kafka,
        registry=registry,
        group_id=GROUP,
        event_types=BY_EVENT_TYPE,
        handler=journal,
        dead_letters=producer,
        keys=keys,
    )
    ours = {e.event_id for e in envelopes}
    deadline = time.monotonic() + WAIT_S
    async with keys, consumer:
        while time.monotonic() < deadline:
            await consumer.poll_once()
            stored = await pool.fetchval(
                "SELECT count(*) FROM fact_journal WHERE correlation_id = $1", correlation_id
            )
            if stored == len(ours) and journal.duplicate_count and consumer.dead_letter_count >= 2:
                break
    rows = await pool.fetch(
        "SELECT event_type, event_id, payload FROM fact_journal WHERE correlation_id = $1 "
        "ORDER BY event_type",
        correlation_id,
    )
    print(
        f"\nRead back by consumer group {GROUP!r} (read_committed, manual commits) "
        f"and stored in PostgreSQL table {SCHEMA}.fact_journal:"
    )
    for row in rows:
        summary = ", ".join(f"{k}={v}" for k, v in list(json.loads(row["payload"]).items())[:3])
        print(f"  {row['event_type']:<24} {row['event_id'][:8]}  {summary[:80]}")
    print(f"  redeliveries ignored by the inbox: {journal.duplicate_count}")
    print(f"  dead-lettered to {registry.dead_letter_topic}: {consumer.dead_letter_count}")
    for reason in consumer.dead_letter_reasons:
        print(f"    - {reason}")
    ok = len(rows) == len(ours) and journal.duplicate_count >= 1 and consumer.dead_letter_count >= 2
    verdict = "backbone ok" if ok else "backbone FAILED"
    print(
        f"  {verdict}: facts_sent={len(ours)} facts_stored={len(rows)} "
        f"duplicates_ignored={journal.duplicate_count} "
        f"dead_lettered={consumer.dead_letter_count}"
    )
    return 0 if ok else 1


def main(settings: Settings) -> int:
    print("== 1. The event log")
    backbone = asyncio.run(run_demo(dataclasses.replace(settings, topic_prefix=BACKBONE_PREFIX)))
    print("\n== 2. Contributors upload their datasets; the platform preprocesses them")
    uploads = contributors.run()
    print("\n== 3. The consumer shares revenue; the ledger allocates it")
    money = consumer.run(uploads) if uploads.ok else consumer.ConsumerTotals(ok=False)
    ok = backbone == 0 and uploads.ok and money.ok
    verdict = "DEMO OK" if ok else "DEMO FAILED"
    print(
        f"\nuploads={uploads.uploads} bytes={uploads.bytes} "
        f"receipts_verified={uploads.verified} pool_micros={money.pool_micros} "
        f"allocated_micros={money.allocated_micros} backbone={'ok' if backbone == 0 else 'failed'}"
    )
    print(
        f"{verdict} contributors={uploads.contributors} documents={uploads.documents} "
        f"tokens_accepted={uploads.tokens_accepted} revenue_minor={money.revenue_minor} "
        f"paid_minor={money.paid_minor} carried_micros={money.carried_micros} "
        f"audit={money.audit}"
    )
    return 0 if ok else 1

"""What the security tests share: real service processes on one topic prefix, publishing
hand-made facts straight onto their topics (as an attacker on the network, or a buggy
producer, would), and reading the dead-letter topic for the reasons services gave.

Nothing here sleeps to prove that something did not happen: a test waits for a positive
event (a dead letter naming the fact, a later fact applied) and then checks the state.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from services.cli.admin import wait_group_stable, wait_http_ready, wait_serving
from services.cli.provision import owner_signers
from services.common.bus import FactProducer, fact_headers
from services.common.config import Settings
from services.common.db import connect
from services.common.facts import Envelope, make_envelope
from services.common.identity import generate_api_key, role_number
from services.rules.ids import derived_id
from tests.integration.ingest_server import ROOT, IngestServer, start_ingest, stop_ingest
from tests.integration.payout_server import PayoutServer
from tt.facts.v1 import identity_pb2

INGEST_GROUP = "ingest-projection"
PAYOUT_GROUP = "payout"
LEDGER_GROUP = "ledger"


def envelope(payload, event_id: str | None = None, at: datetime | None = None) -> Envelope:
    """A fact as a producer would wrap it, dated now unless `at` says otherwise."""
    moment = at or datetime.now(UTC)
    return make_envelope(
        payload,
        event_id=event_id or uuid.uuid4().hex,
        producer="security-tests",
        occurred_at=moment,
        recorded_at=moment,
    )


def publish(settings: Settings, *envelopes: Envelope) -> None:
    """Put facts on their topics as they are: not validated (bad ones are the point), but
    signed by the party that owns their type, as a buggy producer or a stolen credential
    of that party would sign them: what is tested is what readers do with the content."""

    async def send() -> None:
        registry = settings.topic_registry()
        signers = await owner_signers(settings, registry)
        async with FactProducer(settings.kafka, registry, client_id="attacker") as p:
            for fact in envelopes:
                await p.publish_raw(
                    registry.fact_topic(fact.event_type),
                    fact.key.encode(),
                    signers.seal_batch([fact])[0],
                    fact_headers(fact),
                )

    asyncio.run(send())


@dataclass(frozen=True)
class DeadLetter:
    group: str
    event_id: str
    reason: str
    source_topic: str


def dead_letters(settings: Settings, timeout_s: float = 0.0) -> list[DeadLetter]:
    """Every record on the dead-letter topic of `settings`' prefix (read from the start)."""

    async def read() -> list[DeadLetter]:
        consumer = AIOKafkaConsumer(
            settings.topic_registry().dead_letter_topic,
            **settings.kafka.client_options(),
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await consumer.start()
        found = []
        try:
            ends = None
            deadline = time.monotonic() + max(timeout_s, 2.0)
            while time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for record in records:
                        headers = {k: v.decode(errors="replace") for k, v in record.headers}
                        found.append(
                            DeadLetter(
                                headers.get("dead_letter.consumer_group", ""),
                                headers.get("event_id", ""),
                                headers.get("dead_letter.reason", ""),
                                headers.get("dead_letter.source_topic", ""),
                            )
                        )
                partitions = consumer.assignment()
                if partitions:
                    ends = ends or await consumer.end_offsets(list(partitions))
                    positions = {p: await consumer.position(p) for p in partitions}
                    if all(positions[p] >= ends[p] for p in partitions):
                        break
        finally:
            await consumer.stop()
        return found

    return asyncio.run(read())


def wait_for_dead_letter(
    settings: Settings, group: str, event_id: str, timeout_s: float = 60.0
) -> DeadLetter:
    """The dead letter `group` (without the prefix) wrote for the fact `event_id`."""
    wanted = f"{settings.topic_prefix}{group}"
    deadline = time.monotonic() + timeout_s
    while True:
        for letter in dead_letters(settings):
            if letter.group == wanted and letter.event_id == event_id:
                return letter
        if time.monotonic() > deadline:
            seen = [(d.group, d.event_id, d.reason[:80]) for d in dead_letters(settings)]
            raise AssertionError(f"{wanted} dead-lettered no fact {event_id}; dead letters: {seen}")
        time.sleep(0.2)


def facts_published(settings: Settings, event_type: str) -> int:
    """How many facts of `event_type` are on the log: its partitions' end offsets. Exact
    right after a call that publishes before it answers (acks=all)."""

    async def count() -> int:
        topic = settings.topic_registry().fact_topic(event_type)
        consumer = AIOKafkaConsumer(**settings.kafka.client_options())
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(topic) or set()
            ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
            return sum(ends.values())
        finally:
            await consumer.stop()

    return asyncio.run(count())


def wait_until(condition: Callable[[], object], timeout_s: float = 60.0, what: str = "") -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.2)


def query(settings: Settings, schema: str, sql: str, *args) -> list[dict]:
    async def run() -> list[dict]:
        conn = await connect(settings.database_url, schema, application_name="security-tests")
        try:
            return [dict(row) for row in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    return asyncio.run(run())


def principal_fact(
    role: str = "contributor", name: str | None = None
) -> tuple[Envelope, str, identity_pb2.PrincipalRegistered]:
    """A principal.registered fact with a fresh key: (envelope, key, payload)."""
    key = generate_api_key()
    principal_id = derived_id("security.principal", uuid.uuid4().hex)
    fact = identity_pb2.PrincipalRegistered(
        principal_id=principal_id,
        role=role_number(role),
        name=name or f"{role} {principal_id[:6]}",
        api_key_sha256=key.sha256,
        api_key_prefix=key.prefix,
    )
    return envelope(fact), key.key, fact


@dataclass
class LedgerProcess:
    settings: Settings
    schema: str
    process: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""


def start_ledger(base: Settings, prefix: str, run_dir: Path) -> LedgerProcess:
    schema = f"led_{uuid.uuid4().hex[:10]}"
    settings = dataclasses.replace(base, topic_prefix=prefix)
    log_path = run_dir / "ledger.log"
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "TT_TOPIC_PREFIX": prefix,
        "TT_LEDGER_SCHEMA": schema,
        **base.party_env("ledger"),
        "TT_DATABASE_URL": base.database_url,
        "TT_TOPIC_PARTITIONS": str(base.topic_partitions),
        "TT_LEDGER_SESSION_TIMEOUT_MS": "6000",
        "TT_METRICS_ADDRESS": "off",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "services.ledger.main"],
        cwd=ROOT,
        env=env,
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
    )
    ledger = LedgerProcess(settings, schema, process, log_path)
    stable, detail = asyncio.run(wait_group_stable(base.kafka, f"{prefix}ledger", 60))
    if not stable:
        stop_ledger(ledger)
        raise RuntimeError(f"the ledger did not start ({detail}): {ledger.log_tail()}")
    return ledger


def stop_ledger(ledger: LedgerProcess) -> None:
    if ledger.alive():
        ledger.process.terminate()
        try:
            ledger.process.wait(20)
        except subprocess.TimeoutExpired:
            ledger.process.kill()
            ledger.process.wait()
    asyncio.run(_drop_schema(ledger.settings, ledger.schema))


async def _drop_schema(settings: Settings, schema: str) -> None:
    conn = await connect(settings.database_url, "public", application_name="security-tests")
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


@dataclass
class Platform:
    """ingest, payout and (optionally) the ledger as real processes on one topic prefix."""

    settings: Settings
    ingest: IngestServer
    payout: PayoutServer
    ledger: LedgerProcess | None

    @property
    def prefix(self) -> str:
        return self.settings.topic_prefix

    def still_serving(self) -> None:
        """Every service is up and answering: the poison did not stop any of them."""
        serving, detail = asyncio.run(wait_serving(self.ingest.address, 10))
        assert serving, f"ingest: {detail}\n{self.ingest.log_tail()}"
        assert self.ingest.process.poll() is None, self.ingest.log_tail()
        ready, detail = asyncio.run(wait_http_ready(f"{self.payout.url}/readyz", 10))
        assert ready, f"payout: {detail}\n{self.payout.log_tail()}"
        assert self.payout.process.poll() is None, self.payout.log_tail()
        if self.ledger is not None:
            assert self.ledger.alive(), self.ledger.log_tail()

    def stop(self) -> None:
        for stop in (
            lambda: self.payout.stop(),
            lambda: stop_ledger(self.ledger) if self.ledger else None,
            lambda: stop_ingest(self.ingest),
        ):
            try:
                stop()
            except Exception as error:  # keep stopping the others
                print(f"stopping a test service failed: {error!r}", file=sys.stderr)


def start_platform(base: Settings, run_dir: Path, with_ledger: bool = False) -> Platform:
    prefix = f"sec-{uuid.uuid4().hex[:10]}."
    ingest = start_ingest(base, run_dir / "ingest", topic_prefix=prefix)
    try:
        payout = PayoutServer.start(base, run_dir / "payout", topic_prefix=prefix)
    except Exception:
        stop_ingest(ingest)
        raise
    ledger = None
    if with_ledger:
        try:
            ledger = start_ledger(base, prefix, run_dir / "ledger")
        except Exception:
            payout.stop()
            stop_ingest(ingest)
            raise
    return Platform(ingest.settings, ingest, payout, ledger)


def ids_in(rows: Iterable[dict], column: str) -> set:
    return {row[column] for row in rows}

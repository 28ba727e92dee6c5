"""The Kafka bus every service uses: a fact producer and a fact consumer.

Producer: idempotent, acks=all, key = the fact's key, trace context in headers, every fact
signed with the party's key (services.common.signing), a batch under one signature.
Consumer: manual offset commits after the handler succeeds, read_committed isolation,
decoding, validation and signature verification of every message; a message that cannot be
decoded, fails validation, or is not signed by a party allowed to publish it goes to the
dead-letter topic with the reason and its original bytes, and is counted. It is never
silently dropped. Effects are made exactly-once by the handler
(see services.common.inbox), since Kafka can deliver a message more than once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaError
from aiokafka.structs import RecordMetadata, TopicPartition

from services.common import metrics
from services.common.config import ConfigError, KafkaAccess, Settings
from services.common.db import DATABASE_UNAVAILABLE
from services.common.facts import Envelope, FactDecodeError, decode
from services.common.failpoints import failpoint
from services.common.keys import KeyFeed
from services.common.signing import KeyEntry, SignatureError, Signer, UnknownKeyError
from services.common.telemetry import consuming, publishing
from services.common.topics import MAX_FACT_BYTES, TopicRegistry, party_kind, require_topics
from services.common.validation import FactValidationError, validate_envelope

log = logging.getLogger(__name__)


class PermanentFactError(Exception):
    """Raised by a handler for a fact it can never process (a retry would fail the same
    way). The fact goes to the dead-letter topic with this message as the reason."""


@dataclass(frozen=True)
class Delivery:
    """A decoded, validated, verified fact, where it was read from, and who signed it."""

    envelope: Envelope
    topic: str
    partition: int
    offset: int
    signer: KeyEntry | None = None
    # When the broker appended the record (the fact topics use LogAppendTime, so this is
    # the broker's clock, which no producer chooses): when the fact was published.
    appended_at: datetime | None = None


def appended_at(timestamp_ms: int) -> datetime:
    """A record's append time (Kafka's milliseconds since the epoch) as an aware datetime."""
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC)


Handler = Callable[[Delivery], Awaitable[None]]

# How often a group member refreshes the broker's metadata (see FactConsumer).
GROUP_METADATA_MAX_AGE_MS = 10_000


class Checked(NamedTuple):
    """A record decoded, validated and verified: its fact and signer, or why it is not one."""

    envelope: Envelope | None
    signer: KeyEntry | None
    error: Exception | None


def untrusted_reason(envelope: Envelope, error: SignatureError) -> str:
    """The dead-letter reason for a fact whose signature proves nothing."""
    return f"{envelope.event_type} {envelope.event_id} is not trusted: {error}"


def fact_headers(envelope: Envelope) -> list[tuple[str, bytes]]:
    headers = [
        ("event_type", envelope.event_type.encode()),
        ("event_id", envelope.event_id.encode()),
        ("schema_version", str(envelope.schema_version).encode()),
    ]
    if envelope.traceparent:
        headers.append(("traceparent", envelope.traceparent.encode()))
    return headers


class FactProducer:
    """Publishes facts to their registered topics. Use as an async context manager."""

    def __init__(
        self,
        kafka: KafkaAccess,
        registry: TopicRegistry,
        *,
        client_id: str,
        signer: Signer | None = None,
        request_timeout_ms: int = 30_000,
    ):
        self.registry = registry
        # None for a producer that only forwards bytes (dead letters): it cannot publish facts.
        self.signer = signer
        self._producer = AIOKafkaProducer(
            **kafka.client_options(),
            client_id=client_id,
            # Correctness settings, stated rather than left to defaults: no duplicates
            # from producer retries, and a send is acknowledged only once every in-sync
            # replica has it.
            enable_idempotence=True,
            acks="all",
            # Also the delivery deadline: a fact not acknowledged by then fails its send
            # and is not delivered later, so the caller's answer (accepted or not) holds.
            request_timeout_ms=request_timeout_ms,
            linger_ms=2,
            max_request_size=MAX_FACT_BYTES,
        )

    async def __aenter__(self) -> FactProducer:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._producer.stop()

    async def publish(self, envelope: Envelope) -> RecordMetadata:
        """Send one fact and wait until the broker has it (acks=all)."""
        return await (await self.send(envelope))

    async def send(self, envelope: Envelope) -> asyncio.Future[RecordMetadata]:
        """Sign and queue one fact; the returned future resolves when the broker has it.
        Facts sent in order to the same key keep that order (idempotent producer)."""
        [future] = await self.send_batch([envelope])
        return future

    async def send_batch(self, envelopes: list[Envelope]) -> list[asyncio.Future[RecordMetadata]]:
        """Sign facts together (one signature for the batch) and queue them in order."""
        if self.signer is None:
            raise RuntimeError("this producer has no signing key, so it cannot publish facts")
        topics = [self.registry.fact_topic(envelope.event_type) for envelope in envelopes]
        with contextlib.ExitStack() as spans:
            # Each fact's span gives it its trace context before the batch is signed.
            for envelope, topic in zip(envelopes, topics, strict=True):
                spans.enter_context(publishing(envelope, topic))
            values = self.signer.seal_batch(envelopes)
            return [
                await self._producer.send(
                    topic, key=envelope.key.encode(), value=value, headers=fact_headers(envelope)
                )
                for envelope, topic, value in zip(envelopes, topics, values, strict=True)
            ]

    async def publish_raw(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> RecordMetadata:
        """Send bytes as they are: for dead letters and for tests of bad input."""
        return await self._producer.send_and_wait(topic, key=key, value=value, headers=headers)


class FactConsumer:
    """Reads fact topics in a consumer group and hands each valid fact to `handler`.

    Offsets are committed only after the handler returned for every message before them,
    so a crash means redelivery, never loss. A handler error other than
    PermanentFactError is retried with backoff; after `max_attempts` the consumer stops
    with the error (the process should exit and be restarted), leaving the offset
    uncommitted.
    """

    def __init__(
        self,
        *,
        kafka: KafkaAccess,
        registry: TopicRegistry,
        group_id: str,
        event_types: Iterable[str],
        handler: Handler,
        dead_letters: FactProducer,
        keys: KeyFeed,
        max_attempts: int = 5,
        retry_backoff_s: float = 0.2,
        session_timeout_ms: int = 10_000,
        service: str = "",
    ):
        self.registry = registry
        self.group_id = group_id
        # The `service` label of this consumer's metrics (the group id if not given).
        self.service = service or group_id
        self.topics = sorted(registry.fact_topic(t) for t in event_types)
        self.handler = handler
        self.dead_letters = dead_letters
        self.keys = keys
        self.max_attempts = max_attempts
        self.retry_backoff_s = retry_backoff_s
        self.processed_count = 0
        self.dead_letter_count = 0
        self.last_dead_letter_reason = ""
        # The most recent reasons, for tools that show what happened.
        self.dead_letter_reasons: list[str] = []
        self._consumer = AIOKafkaConsumer(
            *self.topics,
            **kafka.client_options(),
            group_id=group_id,
            client_id=group_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            max_poll_records=200,
            # How soon a crashed member's partitions move to another member.
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(session_timeout_ms // 3, 1000),
            # A member that joins while the broker's metadata lacks its topics (just after a
            # broker restart) is assigned nothing, and only a metadata refresh showing the
            # partitions makes the group rebalance: refresh every 10 s, not every 5 min.
            metadata_max_age_ms=GROUP_METADATA_MAX_AGE_MS,
        )
        self._started = False
        # One thread per consumer checks records ahead of the handler (_start_checks).
        self._checker: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        self._checker = ThreadPoolExecutor(1, thread_name_prefix=f"{self.group_id}-checks")
        await self._consumer.start()
        self._started = True

    async def stop(self) -> None:
        if self._started:
            await self._consumer.stop()
            self._started = False
        if self._checker is not None:
            self._checker.shutdown(wait=False, cancel_futures=True)
            self._checker = None

    async def __aenter__(self) -> FactConsumer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Consume until `stop` is set. A broker outage is waited out: a fetch or an offset
        commit that fails is retried, and an uncommitted offset only means redelivery,
        which the handler's inbox makes harmless. Handler errors are not swallowed."""
        stop = stop or asyncio.Event()
        backoff_s = 0.5
        while not stop.is_set():
            try:
                await self.poll_once()
                backoff_s = 0.5
            except KafkaError as error:
                log.warning(
                    "%s: Kafka unavailable (%r); retrying in %.1fs", self.group_id, error, backoff_s
                )
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 10.0)

    async def poll_once(self, timeout_ms: int = 500) -> int:
        """Fetch one batch, process it, and commit. Returns how many messages it handled."""
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=200)
        handled = 0
        next_offsets = {partition: records[0].offset for partition, records in batches.items()}
        checks = iter(self._start_checks([r for records in batches.values() for r in records]))
        try:
            for partition, records in batches.items():
                for record in records:
                    await self._process(record, await next(checks))
                    next_offsets[partition] = record.offset + 1
                    handled += 1
                failpoint("consumer.before_offset_commit")
                await self._consumer.commit({partition: next_offsets[partition]})
        except BaseException:
            for check in checks:  # nobody waits for the rest of this batch's checks
                check.cancel()
            # The fetch already moved our position past these records: move it back to the
            # first one not handled, so a retry in this process cannot skip any of them.
            for partition, offset in next_offsets.items():
                self._consumer.seek(partition, offset)
            raise
        return handled

    async def committed_offset(self, topic: str, partition: int) -> int | None:
        return await self._consumer.committed(TopicPartition(topic, partition))

    async def caught_up(self, event_type: str) -> bool:
        """True if this group has handled (and committed) every fact of `event_type` that
        was on the log when this was called: whatever was appended before now has been
        applied or dead-lettered."""
        topic = self.registry.fact_topic(event_type)
        partitions = self._consumer.partitions_for_topic(topic)
        if partitions is None:
            await self._consumer._client.force_metadata_update()
            partitions = self._consumer.partitions_for_topic(topic) or set()
        ends = await self._consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        for partition, end in ends.items():
            if end and (await self._consumer.committed(partition) or 0) < end:
                return False
        return True

    def _start_checks(self, records: list[ConsumerRecord]) -> tuple[asyncio.Future[Checked], ...]:
        """Decode, validate and verify the batch's records in a worker thread, one future
        each, in order: the signature checks (libsodium, outside the GIL) run while the
        handler waits for the database over the records before them."""
        loop = asyncio.get_running_loop()
        futures = tuple(loop.create_future() for _ in records)

        def settle(future: asyncio.Future, checked: Checked | None, error: BaseException | None):
            if future.done():
                return
            if error is None:
                future.set_result(checked)
            else:
                future.set_exception(error)

        def work() -> None:
            for record, future in zip(records, futures, strict=True):
                if future.cancelled():
                    continue  # the handler failed on an earlier record of the batch
                checked, error = None, None
                try:
                    checked = self._check(record)
                except BaseException as unexpected:  # the handler's await raises it
                    error = unexpected
                try:
                    loop.call_soon_threadsafe(settle, future, checked, error)
                except RuntimeError:
                    return  # the loop is closed: the process is stopping, nobody waits

        if records:
            loop.run_in_executor(self._checker, work)
        return futures

    def _check(self, record: ConsumerRecord) -> Checked:
        envelope = None
        try:
            envelope = decode(record.value)
            validate_envelope(envelope)
            expected = self.registry.fact_topic(envelope.event_type)
            if record.topic != expected:
                raise FactValidationError(
                    f"{envelope.event_type} {envelope.event_id}",
                    [f"arrived on topic {record.topic!r} but belongs on {expected!r}"],
                )
            signer = self.keys.check(
                record.value, envelope, record.topic, record.timestamp, record.timestamp_type
            )
        except (FactDecodeError, FactValidationError, SignatureError) as error:
            return Checked(envelope, None, error)
        return Checked(envelope, signer, None)

    async def _process(self, record: ConsumerRecord, checked: Checked) -> None:
        envelope, signer, error = checked
        if isinstance(error, UnknownKeyError):  # perhaps registered since: look it up
            try:
                signer, error = await self.keys.verify_record(record, envelope), None
            except SignatureError as refused:
                error = refused
        if isinstance(error, (FactDecodeError, FactValidationError)):
            await self.dead_letter(record, str(error))
            return
        if isinstance(error, SignatureError):
            metrics.FORGED_FACTS.labels(self.service, envelope.event_type).inc()
            await self.dead_letter(record, untrusted_reason(envelope, error))
            return
        delivery = Delivery(
            envelope,
            record.topic,
            record.partition,
            record.offset,
            signer,
            appended_at(record.timestamp),
        )
        with consuming(envelope, record.topic, self.group_id):
            await self._handle_with_retries(delivery, record)

    async def _handle_with_retries(self, delivery: Delivery, record: ConsumerRecord) -> None:
        attempt = 0
        outage_s = 0.0
        while True:
            attempt += 1
            try:
                await self.handler(delivery)
                self.processed_count += 1
                metrics.FACTS_PROCESSED.labels(self.service, delivery.envelope.event_type).inc()
                return
            except PermanentFactError as error:
                await self.dead_letter(record, f"handler rejected the fact: {error}")
                return
            except DATABASE_UNAVAILABLE as error:
                # The database is restarting or unreachable: not the fact's fault. Wait it
                # out (the offset stays uncommitted) instead of failing the process.
                delay = min(0.5 * 2 ** min(attempt, 4), 5.0)
                outage_s += delay
                log.warning(
                    "%s: database unavailable (%r) handling %s %s; retrying in %.1fs "
                    "(%.0fs so far)",
                    self.group_id,
                    error,
                    delivery.envelope.event_type,
                    delivery.envelope.event_id,
                    delay,
                    outage_s,
                )
                await asyncio.sleep(delay)
            except Exception:
                if attempt >= self.max_attempts:
                    raise
                log.warning(
                    "handler failed for %s %s (attempt %d/%d); retrying",
                    delivery.envelope.event_type,
                    delivery.envelope.event_id,
                    attempt,
                    self.max_attempts,
                    exc_info=True,
                )
                await asyncio.sleep(self.retry_backoff_s * 2 ** (attempt - 1))

    async def dead_letter(self, record: ConsumerRecord, reason: str) -> None:
        """Park the original message, untouched, on the dead-letter topic with the reason."""
        headers = [
            ("dead_letter.reason", reason.encode()),
            ("dead_letter.source_topic", record.topic.encode()),
            ("dead_letter.source_partition", str(record.partition).encode()),
            ("dead_letter.source_offset", str(record.offset).encode()),
            ("dead_letter.consumer_group", self.group_id.encode()),
            ("dead_letter.failed_at_ms", str(int(time.time() * 1000)).encode()),
            *(record.headers or ()),
        ]
        await self.dead_letters.publish_raw(
            self.registry.dead_letter_topic, record.key, record.value, headers
        )
        self.dead_letter_count += 1
        metrics.DEAD_LETTERS.labels(self.service, record.topic).inc()
        self.last_dead_letter_reason = reason
        self.dead_letter_reasons = [*self.dead_letter_reasons[-9:], reason]
        log.warning(
            "dead-lettered %s[%d]@%d for group %s: %s",
            record.topic,
            record.partition,
            record.offset,
            self.group_id,
            reason,
        )


class PartyBus:
    """What a service needs to take part in the log as its party: the topics checked, a
    producer that signs with the party's key, and the keys it trusts when reading."""

    def __init__(self, producer: FactProducer, keys: KeyFeed):
        self.producer = producer
        self.keys = keys

    @classmethod
    async def open(
        cls,
        settings: Settings,
        registry: TopicRegistry,
        client_id: str,
        *,
        request_timeout_ms: int = 30_000,
    ) -> PartyBus:
        await require_topics(settings.kafka, registry.topics_of(party_kind(settings.party)))
        producer = FactProducer(
            settings.kafka,
            registry,
            client_id=client_id,
            signer=signer_for(settings),
            request_timeout_ms=request_timeout_ms,
        )
        keys = KeyFeed.for_settings(settings, registry)
        await producer.__aenter__()
        try:
            await keys.start()
        except BaseException:
            await producer.__aexit__(None, None, None)
            raise
        return cls(producer, keys)

    async def close(self) -> None:
        await self.keys.stop()
        await self.producer.__aexit__(None, None, None)


def signer_for(settings: Settings) -> Signer:
    """The party's signing key; ConfigError naming the file if it is missing."""
    try:
        return Signer.from_file(settings.signing_key_file)
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError(str(error)) from None

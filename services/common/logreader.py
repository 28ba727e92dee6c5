"""Reading fact topics from the beginning, outside any consumer group.

For tools that need the log as it stands (the consumer client resolving what it already
published, `1tt rebuild`, the auditor): every partition of the topics is read from offset
0 up to its end offset at the moment of the call, `read_committed`. Records that are not
valid facts, or whose signature does not prove that a party allowed to publish them did,
are counted (with the reason), not returned; so are facts found on another type's topic.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from services.common.bus import appended_at
from services.common.config import KafkaAccess
from services.common.facts import Envelope, FactDecodeError, decode
from services.common.keys import KeyFeed
from services.common.signing import KeyEntry, SignatureError
from services.common.topics import TopicRegistry
from services.common.validation import FactValidationError, validate_envelope


@dataclass
class LogRecord:
    envelope: Envelope
    topic: str
    partition: int
    offset: int
    signer: KeyEntry | None = None
    # The record's value as the broker holds it (the signed bytes and the signature).
    value: bytes = b""
    # When the broker appended it (LogAppendTime).
    appended_at: datetime | None = None


@dataclass
class ReadStats:
    records: int = 0
    invalid: int = 0
    # Valid facts refused because of their signature: (topic, partition, offset, reason).
    untrusted: list[tuple[str, int, int, str]] = field(default_factory=list)
    # Facts on a topic that is not their type's: (topic, partition, offset, reason). Every
    # service dead-letters them; a reader of the log skips them alike.
    misplaced: list[tuple[str, int, int, str]] = field(default_factory=list)
    # Trusted facts by who signed them ("ledger", "consumer <id>", ...) and fact type.
    by_signer: Counter[tuple[str, str]] = field(default_factory=Counter)
    end_offsets: dict[TopicPartition, int] = field(default_factory=dict)


async def read_log(
    kafka: KafkaAccess,
    registry: TopicRegistry,
    event_types: Iterable[str],
    keys: KeyFeed,
    stats: ReadStats | None = None,
) -> AsyncIterator[LogRecord]:
    """Every valid, trusted fact of `event_types` on the log now, partition by partition."""
    stats = stats if stats is not None else ReadStats()
    topics = sorted(registry.fact_topic(event_type) for event_type in event_types)
    consumer = AIOKafkaConsumer(
        **kafka.client_options(),
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        client_id="log-reader",
    )
    await consumer.start()
    try:
        partitions = []
        for topic in topics:
            ids = consumer.partitions_for_topic(topic)
            if ids is None:
                await consumer._client.force_metadata_update()
                ids = consumer.partitions_for_topic(topic) or set()
            partitions += [TopicPartition(topic, p) for p in sorted(ids)]
        if not partitions:
            return
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        stats.end_offsets = dict(ends)
        await consumer.seek_to_beginning(*partitions)
        pending = {tp for tp, end in ends.items() if end > 0}
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000, max_records=1000)
            for tp, records in batches.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        break
                    stats.records += 1
                    try:
                        envelope = decode(record.value)
                        validate_envelope(envelope)
                    except (FactDecodeError, FactValidationError):
                        stats.invalid += 1
                        continue
                    expected_topic = registry.fact_topic(envelope.event_type)
                    if record.topic != expected_topic:
                        stats.misplaced.append(
                            (
                                record.topic,
                                record.partition,
                                record.offset,
                                f"{envelope.event_type} {envelope.event_id} belongs on "
                                f"{expected_topic}",
                            )
                        )
                        continue
                    try:
                        signer = await keys.verify_record(record, envelope)
                    except SignatureError as error:
                        stats.untrusted.append(
                            (record.topic, record.partition, record.offset, str(error))
                        )
                        continue
                    stats.by_signer[(signer.speaker, envelope.event_type)] += 1
                    yield LogRecord(
                        envelope,
                        record.topic,
                        record.partition,
                        record.offset,
                        signer,
                        record.value,
                        appended_at(record.timestamp),
                    )
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()


async def read_facts(
    kafka: KafkaAccess, registry: TopicRegistry, event_types: Iterable[str], keys: KeyFeed
) -> list[Envelope]:
    return [record.envelope async for record in read_log(kafka, registry, event_types, keys)]

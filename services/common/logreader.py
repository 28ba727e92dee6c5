"""Reading fact topics from the beginning, outside any consumer group.

For tools that need the log as it stands (the consumer client resolving what it already
published, `1tt rebuild`, the auditor): every partition of the topics is read from offset
0 up to its end offset at the moment of the call, `read_committed`. Records that are not
valid facts, or whose signature does not prove that a party allowed to publish them did,
are counted (with the reason), not returned; so are facts found on another type's topic.

The same log can be kept in a file (`write_log_file`, `read_log_file`): one JSON object
per line for each record, `{"topic", "partition", "offset", "appended_at_ms", "value"}`,
`value` being the record's bytes as the broker holds them (the signed fact), in base64,
and topic names without the deployment's prefix. A file is read with the same checks,
its signatures against trust anchors given with it (docs/conformance.md).
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from services.common.bus import appended_at
from services.common.config import KafkaAccess
from services.common.facts import Envelope, FactDecodeError, decode
from services.common.keys import KeyFeed
from services.common.signing import KeyEntry, Keyring, SignatureError
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
                    envelope = _placed_fact(
                        registry, record.topic, record.partition, record.offset, record.value, stats
                    )
                    if envelope is None:
                        continue
                    try:
                        signer = await keys.verify_record(record, envelope)
                    except SignatureError as error:
                        signer = error
                    trusted = _trusted(
                        stats, envelope, signer, RawRecord(
                            record.topic, record.partition, record.offset, record.timestamp,
                            record.value,
                        ),
                    )  # fmt: skip
                    if trusted is not None:
                        yield trusted
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()


def _placed_fact(
    registry: TopicRegistry, topic: str, partition: int, offset: int, value: bytes, stats
) -> Envelope | None:
    """The record's fact if it is valid and on its type's topic; else counted in `stats`."""
    stats.records += 1
    try:
        envelope = decode(value)
        validate_envelope(envelope)
    except (FactDecodeError, FactValidationError):
        stats.invalid += 1
        return None
    expected_topic = registry.fact_topic(envelope.event_type)
    if topic != expected_topic:
        stats.misplaced.append(
            (
                topic,
                partition,
                offset,
                f"{envelope.event_type} {envelope.event_id} belongs on {expected_topic}",
            )
        )
        return None
    return envelope


def _trusted(
    stats, envelope: Envelope, signer: KeyEntry | SignatureError, raw: RawRecord
) -> LogRecord | None:
    """The record as a reader keeps it, or None (counted) when its signature was refused."""
    if isinstance(signer, SignatureError):
        stats.untrusted.append((raw.topic, raw.partition, raw.offset, str(signer)))
        return None
    stats.by_signer[(signer.speaker, envelope.event_type)] += 1
    return LogRecord(
        envelope,
        raw.topic,
        raw.partition,
        raw.offset,
        signer,
        raw.value,
        appended_at(raw.appended_at_ms),
    )


class LogFileError(ValueError):
    """A log file that is not in the format; the message says where and why."""


@dataclass(frozen=True)
class RawRecord:
    topic: str
    partition: int
    offset: int
    appended_at_ms: int
    value: bytes


def write_log_file(path: Path, records: Iterable[RawRecord]) -> None:
    """The records in the log file format, in the order given."""
    lines = [
        json.dumps(
            {
                "topic": r.topic,
                "partition": r.partition,
                "offset": r.offset,
                "appended_at_ms": r.appended_at_ms,
                "value": base64.b64encode(r.value).decode(),
            },
            sort_keys=True,
        )
        for r in records
    ]
    path.write_text("".join(line + "\n" for line in lines))


def raw_records(path: Path) -> list[RawRecord]:
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            item = json.loads(line)
            records.append(
                RawRecord(
                    str(item["topic"]),
                    int(item["partition"]),
                    int(item["offset"]),
                    int(item["appended_at_ms"]),
                    base64.b64decode(item["value"], validate=True),
                )
            )
        except (ValueError, KeyError, TypeError) as error:
            raise LogFileError(
                f"{path}, line {number}: not a log record ({error}); each line is a JSON "
                'object with "topic", "partition", "offset", "appended_at_ms" and "value" '
                "(base64)"
            ) from None
    return records


def read_log_file(
    path: Path, anchors: Iterable[KeyEntry], stats: ReadStats | None = None
) -> tuple[list[LogRecord], Keyring]:
    """Every valid, trusted fact in a log file, in file order, with the keyring its
    key.registered facts built on `anchors`: the checks of `read_log`, offline."""
    stats = stats if stats is not None else ReadStats()
    registry = TopicRegistry()
    records = raw_records(path)
    keyring = Keyring(anchors)
    keys_topic = registry.fact_topic("key.registered")
    for record in records:  # every key first, as the key feed knows them before it checks
        if record.topic != keys_topic:
            continue
        try:
            envelope = decode(record.value)
            validate_envelope(envelope)
        except (FactDecodeError, FactValidationError) as error:
            keyring.refused.append((f"offset {record.offset}", str(error)))
            continue
        if envelope.event_type == "key.registered":
            keyring.register(record.value, envelope, record.appended_at_ms)
    trusted = []
    for record in records:
        envelope = _placed_fact(
            registry, record.topic, record.partition, record.offset, record.value, stats
        )
        if envelope is None:
            continue
        try:
            signer = keyring.verify(record.value, envelope, record.appended_at_ms)
        except SignatureError as error:
            signer = error
        admitted = _trusted(stats, envelope, signer, record)
        if admitted is not None:
            trusted.append(admitted)
    return trusted, keyring


async def read_facts(
    kafka: KafkaAccess, registry: TopicRegistry, event_types: Iterable[str], keys: KeyFeed
) -> list[Envelope]:
    return [record.envelope async for record in read_log(kafka, registry, event_types, keys)]

"""The keys a reader trusts, kept up to date from the log (docs/security.md, "Keys").

A KeyFeed holds a Keyring seeded with the trust anchors (configuration) and follows the
key.registered topic from its start. A fact signed by a key the feed has not seen makes it
read that topic up to its end before the fact is judged: a legitimate key is registered
before anything is signed with it, so "unknown after catching up" is final, and the
answer does not depend on the order in which topics are read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from services.common.config import ConfigError, KafkaAccess, Settings
from services.common.facts import Envelope, FactDecodeError, decode
from services.common.signing import KeyEntry, Keyring, SignatureError, UnknownKeyError, load_anchors
from services.common.topics import TopicRegistry
from services.common.validation import FactValidationError, validate_envelope

log = logging.getLogger(__name__)

LOG_APPEND_TIME = 1
# A registration appended up to this long after our last catch-up began might not have
# been seen by it (clocks of broker and reader differ a little).
_CLOCK_MARGIN_MS = 5_000


class KeyFeed:
    """Trusted keys for one deployment (registry prefix), following key.registered."""

    def __init__(self, kafka: KafkaAccess, registry: TopicRegistry, anchors: list[KeyEntry]):
        self.kafka = kafka
        self.topic = registry.fact_topic("key.registered")
        self.keyring = Keyring(anchors)
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        self._caught_up_from_ms = 0

    @classmethod
    def for_settings(cls, settings: Settings, registry: TopicRegistry | None = None) -> KeyFeed:
        if settings.trust_anchors_file is None:
            raise ConfigError("TT_TRUST_ANCHORS_FILE is not set")
        try:
            anchors = load_anchors(settings.trust_anchors_file)
        except (FileNotFoundError, ValueError) as error:
            raise ConfigError(str(error)) from None
        return cls(settings.kafka, registry or settings.topic_registry(), anchors)

    async def start(self) -> KeyFeed:
        """Connect and read every key registered so far."""
        await self.catch_up()
        return self

    async def stop(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            with contextlib.suppress(KafkaError, OSError):  # a broker away: nothing to close
                await consumer.stop()

    async def __aenter__(self) -> KeyFeed:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def catch_up(self) -> int:
        """Read key.registered up to its current end. Returns how many records it read."""
        async with self._lock:
            started_ms = int(time.time() * 1000)
            consumer = await self._connected()
            partitions = list(consumer.assignment())
            ends = await consumer.end_offsets(partitions)
            read = 0
            # Fetch only while catching up: between catch-ups the consumer stays paused,
            # so it does no work (and has nothing in flight) until a key is missing.
            consumer.resume(*partitions)
            try:
                pending = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
                while pending:
                    batches = await consumer.getmany(*pending, timeout_ms=1000, max_records=500)
                    for records in batches.values():
                        for record in records:
                            self._admit(record)
                            read += 1
                    pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
            finally:
                consumer.pause(*partitions)
            self._caught_up_from_ms = started_ms
            return read

    async def _connected(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                **self.kafka.client_options(),
                client_id="key-feed",
                group_id=None,
                enable_auto_commit=False,
                isolation_level="read_committed",
                auto_offset_reset="earliest",
            )
            await consumer.start()
            ids = consumer.partitions_for_topic(self.topic)
            if ids is None:
                await consumer._client.force_metadata_update()
                ids = consumer.partitions_for_topic(self.topic)
            if not ids:
                await consumer.stop()
                raise ConfigError(
                    f"topic {self.topic} does not exist or this party may not read it: "
                    "run '1tt stack prepare' (make up)"
                )
            partitions = [TopicPartition(self.topic, p) for p in sorted(ids)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            self._consumer = consumer
        return self._consumer

    def _admit(self, record: ConsumerRecord) -> None:
        try:
            envelope = decode(record.value)
            validate_envelope(envelope)
            if envelope.event_type != "key.registered":
                raise FactValidationError(envelope.event_id, ["is not a key.registered fact"])
        except (FactDecodeError, FactValidationError) as error:
            self.keyring.refused.append((f"offset {record.offset}", str(error)))
            log.warning(
                "ignoring a malformed key registration at offset %d: %s", record.offset, error
            )
            return
        if record.timestamp_type != LOG_APPEND_TIME:
            self.keyring.refused.append((envelope.key, "the topic does not use LogAppendTime"))
            return
        if self.keyring.register(record.value, envelope, record.timestamp) is None:
            log.warning(
                "refused key registration %s: %s", envelope.key, self.keyring.refused[-1][1]
            )

    async def verify_record(self, record: ConsumerRecord, envelope: Envelope) -> KeyEntry:
        """The key that signed this record's fact; SignatureError saying why it is not
        trusted."""
        return await self.verify_appended(
            record.value, envelope, record.topic, record.timestamp, record.timestamp_type
        )

    async def verify_appended(
        self, value: bytes, envelope: Envelope, topic: str, timestamp_ms: int, timestamp_type: int
    ) -> KeyEntry:
        """As verify_record, from a record's parts."""
        try:
            return self.check(value, envelope, topic, timestamp_ms, timestamp_type)
        except UnknownKeyError:
            if timestamp_ms + _CLOCK_MARGIN_MS < self._caught_up_from_ms:
                raise  # every key registered before this fact was appended is known
            await self.catch_up()
            return self.check(value, envelope, topic, timestamp_ms, timestamp_type)

    def check(
        self, value: bytes, envelope: Envelope, topic: str, timestamp_ms: int, timestamp_type: int
    ) -> KeyEntry:
        """The verdict on the keys seen so far, without I/O (any thread may call it):
        UnknownKeyError for a key not seen yet, which verify_appended looks up. The append
        time must be the broker's (the fact topics use LogAppendTime): a producer's clock
        proves nothing."""
        if timestamp_type != LOG_APPEND_TIME:
            raise SignatureError(
                f"topic {topic} stamps records with the producer's clock, not the broker's "
                "(message.timestamp.type must be LogAppendTime): run '1tt stack prepare'"
            )
        return self.keyring.verify(value, envelope, timestamp_ms)

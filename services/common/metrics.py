"""The platform's Prometheus metrics, and how a service exposes them.

    tt_facts_processed_total{service,event_type}  facts a service's consumer handled
    tt_dead_letters_total{service,topic}          messages it moved to the dead-letter
                                                  topic, by the topic they were read from
    tt_consumer_lag{service,topic,partition}      log end offset - the group's committed
                                                  offset, measured every LAG_INTERVAL_S
    tt_upload_bytes_total                         ingest: upload bytes received
    tt_uploads_total{outcome}                     ingest: uploads by outcome: accepted,
                                                  replayed, the gRPC status of a refusal
                                                  (e.g. invalid_argument), or error

Every service serves them at http://TT_METRICS_ADDRESS/metrics (a thread of its own),
never on a port that faces users: ingest on 9101, preprocess 9102, the ledger 9103 and
payout 9104 by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition
from prometheus_client import Counter, Gauge, start_http_server

from services.common.config import ConfigError, KafkaAccess

log = logging.getLogger(__name__)
LAG_INTERVAL_S = 10.0

FACTS_PROCESSED = Counter(
    "tt_facts_processed_total",
    "Facts a service's consumer handled (applied; not those dead-lettered).",
    ["service", "event_type"],
)
DEAD_LETTERS = Counter(
    "tt_dead_letters_total",
    "Messages moved to the dead-letter topic, by the topic they were read from.",
    ["service", "topic"],
)
FORGED_FACTS = Counter(
    "tt_untrusted_facts_total",
    "Facts dead-lettered because their signature does not prove that a party allowed to "
    "publish them did (unsigned, unknown key, bad signature, wrong party).",
    ["service", "event_type"],
)
CONSUMER_LAG = Gauge(
    "tt_consumer_lag",
    "Messages on the log that the service's consumer group has not committed yet.",
    ["service", "topic", "partition"],
)
UPLOAD_BYTES = Counter("tt_upload_bytes_total", "Upload bytes received by ingest.")
UPLOADS = Counter(
    "tt_uploads_total",
    "Uploads by outcome: accepted, replayed, the gRPC status of a refusal, or error.",
    ["outcome"],
)


def serve_metrics(address: str) -> None:
    """Serve /metrics on `address` ("host:port") from a daemon thread; "off" serves none.

    A port already taken is logged, not fatal: metrics never stop a service, and two
    copies of a service on one machine (a test's beside the local stack's) share the
    default. Raises ConfigError for an address that is not host:port."""
    if address == "off":
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"TT_METRICS_ADDRESS must be host:port or off, got {address!r}")
    try:
        start_http_server(int(port), addr=host)
    except OSError as error:
        log.warning("metrics not served: cannot listen on %s (%s)", address, error)
        return
    log.info("metrics on http://%s/metrics", address)


class ConsumerLagMonitor:
    """Keeps tt_consumer_lag up to date for one consumer group's partitions of `topics`.
    Reads offsets only (an admin client and a consumer outside any group), so it never
    disturbs the group; a partition with nothing committed lags from the log's start."""

    def __init__(
        self,
        kafka: KafkaAccess,
        service: str,
        group_id: str,
        topics: Sequence[str],
        interval_s: float = LAG_INTERVAL_S,
    ):
        self.kafka = kafka
        self.service = service
        self.group_id = group_id
        self.topics = list(topics)
        self.interval_s = interval_s
        self._admin: AIOKafkaAdminClient | None = None
        self._offsets: AIOKafkaConsumer | None = None

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Measure now and every interval until `stop` is set (or the task is cancelled).
        A failure (a broker outage, say) is logged and only delays the next measurement:
        a metric must never stop the service it describes."""
        stop = stop or asyncio.Event()
        try:
            while not stop.is_set():
                try:
                    await self.measure()
                except Exception as error:
                    log.warning(
                        "%s: consumer lag not measured (%r)",
                        self.group_id,
                        error,
                        exc_info=not isinstance(error, KafkaError | OSError),
                    )
                    await self.close()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval_s)
        finally:
            await self.close()

    async def measure(self) -> dict[TopicPartition, int]:
        """Set the gauge for every partition of the topics; returns the lags."""
        admin, offsets = await self._clients()
        partitions = [
            TopicPartition(topic["topic"], partition["partition"])
            for topic in await admin.describe_topics(self.topics)
            if topic["error_code"] == 0
            for partition in topic["partitions"]
        ]
        if not partitions:
            return {}
        committed = await admin.list_consumer_group_offsets(self.group_id, partitions=partitions)
        ends = await offsets.end_offsets(partitions)
        starts = await offsets.beginning_offsets(partitions)
        lags = {}
        for partition in partitions:
            position = committed[partition].offset if partition in committed else -1
            if position < 0:
                position = starts[partition]
            lags[partition] = max(ends[partition] - position, 0)
            CONSUMER_LAG.labels(self.service, partition.topic, str(partition.partition)).set(
                lags[partition]
            )
        return lags

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._offsets is None:
            client_id = f"{self.group_id}-lag"
            admin = AIOKafkaAdminClient(**self.kafka.client_options(), client_id=client_id)
            offsets = AIOKafkaConsumer(
                **self.kafka.client_options(),
                client_id=client_id,
                group_id=None,
                enable_auto_commit=False,
            )
            self._admin, self._offsets = admin, offsets
            await admin.start()
            await offsets.start()
        return self._admin, self._offsets

    async def close(self) -> None:
        admin, offsets, self._admin, self._offsets = self._admin, self._offsets, None, None
        with contextlib.suppress(Exception):
            if offsets is not None:
                await offsets.stop()
        with contextlib.suppress(Exception):
            if admin is not None:
                await admin.close()

"""The payout service: `python -m services.payout.main`.

One process: the projection consumer (group `<prefix>payout`), the outbox relay for
payout.issued facts, and the HTTP API and dashboard (uvicorn) on TT_PAYOUT_ADDRESS
(default 127.0.0.1:8000). The service's Prometheus metrics are served on an address of
their own, TT_METRICS_ADDRESS (default 127.0.0.1:9104), like every other service's: the
API port faces contributors and consumers, and metrics (fact counts, lag, dead letters)
are for operators and their scraper, so they are not served there at all. Payout
runs execute here, in one transaction each, when an operator asks (POST /v1/payout-runs,
which `1tt payout run` calls).

Scaling: the API is stateless and could run in several replicas, but the consumer
group gives the partitions to one member and the relay's advisory lock lets one
publish; payout runs serialise on an advisory lock. One replica is the deployment.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path

import uvicorn

from services.common.blobstore import BlobError, BlobStore, load_private_key
from services.common.bus import FactConsumer, PartyBus
from services.common.config import ConfigError, Settings
from services.common.db import create_pool
from services.common.inbox import Inbox
from services.common.metrics import ConsumerLagMonitor, serve_metrics
from services.common.migrations import migrate_schema
from services.common.outbox import OutboxRelay
from services.common.service import run_until_stopped, run_with_signals
from services.common.telemetry import Tracing, configure_tracing
from services.payout import projection
from services.payout.api import create_app

log = logging.getLogger("payout")


def consumer_group(settings: Settings) -> str:
    return settings.topic_registry().consumer_group("payout")


def report_reader(run_dir: Path):
    """Reports are encrypted to the report-reader key, which ingest and payout hold."""
    root = Path(os.environ.get("TT_BLOB_ROOT", run_dir / "blobs"))
    key_file = Path(
        os.environ.get("TT_REPORT_PRIVATE_KEY_FILE", run_dir / "secrets" / "report-reader.key")
    )
    if not key_file.exists():
        log.warning("no report key at %s: contributions are shown without reports", key_file)
        return None
    blobs, key = BlobStore(root), load_private_key(key_file)

    def read(uri: str) -> dict | None:
        try:
            with blobs.open_reader(uri, key) as reader:
                return json.loads(reader.read())
        except (BlobError, OSError, ValueError) as error:
            log.warning("report %s unreadable: %s", uri, error)
            return None

    return read


async def serve(
    settings: Settings, schema: str, address: str, stop: asyncio.Event, tracing: Tracing
) -> int:
    registry = settings.topic_registry()
    await migrate_schema(settings.database_url, schema, "payout", projection.SQL_DIR)
    pool = await create_pool(settings.database_url, schema, application_name="payout")
    group = consumer_group(settings)
    bus = await PartyBus.open(settings, registry, client_id="payout")
    producer = bus.producer
    consumer = FactConsumer(
        kafka=settings.kafka,
        registry=registry,
        group_id=group,
        event_types=projection.EVENT_TYPES,
        handler=Inbox(pool, group, projection.Projector()),
        dead_letters=producer,
        keys=bus.keys,
        session_timeout_ms=int(os.environ.get("TT_PAYOUT_SESSION_TIMEOUT_MS", "10000")),
        service="payout",
    )
    relay = OutboxRelay(settings.database_url, schema, producer)
    lag = ConsumerLagMonitor(settings.kafka, "payout", group, consumer.topics)
    app = create_app(pool, report_reader(Path(os.environ.get("TT_RUN_DIR", ".run"))))
    tracing.instrument_fastapi(app)
    host, _, port = address.rpartition(":")
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=int(port), log_level="warning", lifespan="off")
    )
    server.install_signal_handlers = lambda: None  # the process's stop event governs
    try:
        await consumer.start()
        app.state.ready = True
        log.info("payout serving http://%s, consuming as %s into %s", address, group, schema)
        tasks = {
            asyncio.create_task(consumer.run(stop), name="projection"),
            asyncio.create_task(relay.run(stop), name="relay"),
            asyncio.create_task(server.serve(), name="http"),
            asyncio.create_task(lag.run(stop), name="consumer-lag"),
        }
        return await run_until_stopped(
            tasks, stop, log, on_stop=lambda: setattr(server, "should_exit", True)
        )
    finally:
        await consumer.stop()
        await bus.close()
        await pool.close()


def main() -> int:
    logging.basicConfig(
        level=os.environ.get("TT_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = Settings.from_env()
        serve_metrics(os.environ.get("TT_METRICS_ADDRESS", "127.0.0.1:9104"))
    except ConfigError as error:
        print(f"payout: {error}", file=sys.stderr)
        return 2
    schema = os.environ.get("TT_PAYOUT_SCHEMA", projection.SCHEMA)
    address = os.environ.get("TT_PAYOUT_ADDRESS", "127.0.0.1:8000")
    tracing = configure_tracing("payout", settings.otel_exporter)

    try:
        return run_with_signals(lambda stop: serve(settings, schema, address, stop, tracing))
    finally:
        tracing.shutdown()


if __name__ == "__main__":
    sys.exit(main())

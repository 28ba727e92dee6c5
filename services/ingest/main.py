"""The ingest service: `python -m services.ingest.main`.

Serves IngestService (with gRPC health checking and server reflection) and keeps its
projection of principals and contributions up to date from the log.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from services.common import formats
from services.common.blobstore import BlobStore, load_private_key, load_public_key
from services.common.bus import FactConsumer, PartyBus
from services.common.config import ConfigError, Settings
from services.common.db import create_pool
from services.common.inbox import Inbox
from services.common.metrics import ConsumerLagMonitor, serve_metrics
from services.common.migrations import migrate_schema
from services.common.telemetry import configure_tracing
from services.ingest import projection
from services.ingest.receipts import key_id_of, load_signer
from services.ingest.servicer import IngestServicer, InternalErrorInterceptor
from services.ingest.terms import accepted_terms
from services.ingest.upload import UploadContext
from tt.ingest.v1 import ingest_pb2, ingest_pb2_grpc

log = logging.getLogger("ingest")
SQL_DIR = Path(__file__).parent / "sql"
# Under the topic prefix, like every service's group: ingests of different environments
# on one broker must not share a group (a dead member would stall the others).
SERVICE_NAME = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name


def _int_env(env, name: str, default: int) -> int:
    raw = env.get(name, "")
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


@dataclass(frozen=True)
class IngestSettings:
    address: str
    schema: str
    blob_root: Path
    blob_public_key_file: Path
    receipt_key_file: Path
    report_private_key_file: Path
    max_upload_bytes: int
    produce_timeout_ms: int
    validator_workers: int
    format_limits: formats.Limits

    @classmethod
    def from_env(cls, env=None) -> IngestSettings:
        env = os.environ if env is None else env
        run_dir = Path(env.get("TT_RUN_DIR", ".run"))
        return cls(
            address=env.get("TT_INGEST_ADDRESS", "127.0.0.1:50051"),
            schema=env.get("TT_INGEST_SCHEMA", projection.SCHEMA),
            blob_root=Path(env.get("TT_BLOB_ROOT", run_dir / "blobs")),
            blob_public_key_file=Path(
                env.get("TT_BLOB_PUBLIC_KEY_FILE", run_dir / "secrets" / "blob-preprocess.pub")
            ),
            report_private_key_file=Path(
                env.get("TT_REPORT_PRIVATE_KEY_FILE", run_dir / "secrets" / "report-reader.key")
            ),
            receipt_key_file=Path(
                env.get("TT_RECEIPT_KEY_FILE", run_dir / "secrets" / "receipt-signing.key")
            ),
            max_upload_bytes=_int_env(env, "TT_MAX_UPLOAD_BYTES", 4 << 30),
            produce_timeout_ms=_int_env(env, "TT_PRODUCE_TIMEOUT_MS", 15_000),
            validator_workers=_int_env(env, "TT_VALIDATOR_WORKERS", os.cpu_count() or 2),
            format_limits=formats.Limits(
                max_decompressed_bytes=_int_env(env, "TT_MAX_DECOMPRESSED_BYTES", 16 << 30),
                max_compression_ratio=_int_env(env, "TT_MAX_COMPRESSION_RATIO", 200),
            ),
        )


REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def enable_reflection(service_names: tuple[str, ...], server: grpc.aio.Server) -> None:
    """Server reflection in both versions: v1, which current tools (grpcurl, grpc_cli,
    grpc-java) ask for, and v1alpha, which older ones do. grpcio-reflection implements only
    v1alpha (grpc/grpc#38576); the two protocols' messages are identical field for field,
    so v1's method is served by the same servicer with v1alpha's (de)serialisers."""
    names = (*service_names, reflection.SERVICE_NAME, REFLECTION_V1)
    servicer = reflection.aio.ReflectionServicer(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                REFLECTION_V1,
                {
                    "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                        servicer.ServerReflectionInfo,
                        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
                    )
                },
            ),
        )
    )


async def serve(settings: Settings, ingest: IngestSettings, stop: asyncio.Event) -> int:
    registry = settings.topic_registry()
    await migrate_schema(settings.database_url, ingest.schema, "ingest", SQL_DIR)
    signer = load_signer(ingest.receipt_key_file)
    blob_public_key = load_public_key(ingest.blob_public_key_file)
    pool = await create_pool(
        settings.database_url, ingest.schema, application_name="ingest", max_size=20
    )
    validator = ProcessPoolExecutor(
        ingest.validator_workers, mp_context=multiprocessing.get_context("forkserver")
    )
    bus = await PartyBus.open(
        settings, registry, client_id="ingest", request_timeout_ms=ingest.produce_timeout_ms
    )
    producer = bus.producer
    group = registry.consumer_group("ingest")
    try:
        consumer = FactConsumer(
            kafka=settings.kafka,
            registry=registry,
            group_id=group,
            event_types=projection.EVENT_TYPES,
            handler=Inbox(pool, group, projection.Projector(signer)),
            dead_letters=producer,
            keys=bus.keys,
            service="ingest",
        )
        servicer = IngestServicer(
            pool=pool,
            producer=producer,
            signer=signer,
            upload_context=UploadContext(
                pool=pool,
                producer=producer,
                blobs=BlobStore(ingest.blob_root),
                blob_public_key=blob_public_key,
                blob_key_id=key_id_of(blob_public_key),
                signer=signer,
                validator=validator,
                max_upload_bytes=ingest.max_upload_bytes,
                format_limits=ingest.format_limits,
                accepted_terms=accepted_terms(),
            ),
            read_report=_report_reader(ingest),
        )
        lag = ConsumerLagMonitor(settings.kafka, "ingest", group, consumer.topics)
        return await _run(ingest, servicer, consumer, lag, stop)
    finally:
        await bus.close()
        await pool.close()
        validator.shutdown(cancel_futures=True)


def _report_reader(ingest: IngestSettings):
    """Reads a report blob; reports are encrypted to the key only ingest holds."""
    blobs = BlobStore(ingest.blob_root)
    key = load_private_key(ingest.report_private_key_file)

    def read(uri: str) -> str:
        with blobs.open_reader(uri, key) as reader:
            return reader.read().decode("utf-8")

    return read


async def _run(
    ingest: IngestSettings, servicer, consumer: FactConsumer, lag: ConsumerLagMonitor, stop
) -> int:
    server = grpc.aio.server(
        interceptors=[InternalErrorInterceptor()],
        options=[
            ("grpc.max_receive_message_length", 8 << 20),
            ("grpc.max_send_message_length", 8 << 20),
        ],
    )
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection((SERVICE_NAME, health.SERVICE_NAME), server)
    if not server.add_insecure_port(ingest.address):
        raise ConfigError(f"cannot listen on {ingest.address}")
    await server.start()
    await consumer.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("ingest serving on %s", ingest.address)
    consuming = asyncio.create_task(consumer.run(stop), name="projection")
    measuring = asyncio.create_task(lag.run(stop), name="consumer-lag")
    stopping = asyncio.create_task(stop.wait(), name="stop")
    done, _ = await asyncio.wait({consuming, stopping}, return_when=asyncio.FIRST_COMPLETED)
    failed = consuming in done and consuming.exception() is not None
    if failed:
        log.error("the projection consumer failed; stopping", exc_info=consuming.exception())
    stop.set()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.stop(grace=5)
    await asyncio.gather(consuming, measuring, return_exceptions=True)
    stopping.cancel()
    await consumer.stop()
    return 1 if failed else 0


def main() -> int:
    logging.basicConfig(
        level=os.environ.get("TT_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    try:
        settings, ingest = Settings.from_env(), IngestSettings.from_env()
        serve_metrics(os.environ.get("TT_METRICS_ADDRESS", "127.0.0.1:9101"))
    except ConfigError as error:
        print(f"ingest: {error}", file=sys.stderr)
        return 2
    tracing = configure_tracing("ingest", settings.otel_exporter)
    tracing.instrument_grpc_aio_server()

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        return await serve(settings, ingest, stop)

    try:
        return asyncio.run(run())
    finally:
        tracing.shutdown()


if __name__ == "__main__":
    sys.exit(main())

"""The preprocess service as a faust-streaming app: `python -m services.preprocess.main`.

Topics and tables (names under the app id, itself under the deployment's topic prefix):

    contribution.received.v1 --prepare--> <app>-sequence (1 partition: the order of "earlier")
    <app>-sequence --sequence--> <app>-claims (one partition per index shard)
    <app>-claims --claim, table dedup-index (RocksDB + changelog)--> <app>-answers
    <app>-answers --assemble, table assembly--> contribution.processed.v1

Processing guarantee: at_least_once, with every stage idempotent. exactly_once works with
the pinned broker (Kafka transactions, checked), but a transaction must finish within its
timeout, and preparing a multi-GB contribution takes longer than any sane one (a 256 MiB
text took 93 s here and the producer was fenced). Instead: blobs are content-addressed; a
contribution sequenced twice claims the same keys and finds its own registrations, which
never count as duplicates; answers are counted once per (shard, batch); and the fact's
event id is derived from the contribution id, so a repeated fact is recognised downstream.

Tracing: `prepare` handles a received fact in a span whose parent is the fact's trace
context; its message carries that span's context through the internal topics, and
`assemble` publishes contribution.processed in a span continuing it: one trace from the
upload to the ledger.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import faust
from opentelemetry import trace

from services.common import formats, metrics
from services.common.blobstore import BlobError, BlobStore, load_private_key, load_public_key
from services.common.bus import (
    GROUP_METADATA_MAX_AGE_MS,
    fact_headers,
    signer_for,
    untrusted_reason,
)
from services.common.config import ConfigError, Settings
from services.common.facts import Envelope, FactDecodeError, decode
from services.common.failpoints import failpoint
from services.common.keys import KeyFeed
from services.common.signing import SignatureError
from services.common.telemetry import (
    configure_tracing,
    consuming,
    context_from_traceparent,
    publishing,
)
from services.common.validation import FactValidationError, validate_envelope
from services.preprocess import stages
from services.preprocess.pipeline import PipelineConfig

log = logging.getLogger("preprocess")
tracer = trace.get_tracer("services.preprocess")
SERVICE = "preprocess"


@dataclass(frozen=True)
class PreprocessSettings:
    app_id: str
    datadir: Path
    blob_root: Path
    private_key_file: Path
    public_key_file: Path
    report_public_key_file: Path
    shards: int
    workers: int
    # How soon a crashed worker's partitions move to another: shorter in tests.
    session_timeout_s: float = 30.0

    @classmethod
    def from_env(cls, settings: Settings, env=None) -> PreprocessSettings:
        env = os.environ if env is None else env
        run_dir = Path(env.get("TT_RUN_DIR", ".run"))
        secrets = run_dir / "secrets"
        app_id = settings.topic_registry().preprocess_app_id
        try:
            shards = int(env.get("TT_PREPROCESS_SHARDS", "3"))
            workers = int(env.get("TT_PREPROCESS_WORKERS", str(os.cpu_count() or 2)))
            session_timeout_s = float(env.get("TT_PREPROCESS_SESSION_TIMEOUT_S", "30"))
        except ValueError as error:
            raise ConfigError(
                f"TT_PREPROCESS_SHARDS, _WORKERS and _SESSION_TIMEOUT_S must be numbers: {error}"
            ) from None
        return cls(
            app_id=app_id,
            datadir=Path(env.get("TT_PREPROCESS_DATADIR", run_dir / "preprocess")) / app_id,
            blob_root=Path(env.get("TT_BLOB_ROOT", run_dir / "blobs")),
            private_key_file=Path(
                env.get("TT_BLOB_PRIVATE_KEY_FILE", secrets / "blob-preprocess.key")
            ),
            public_key_file=Path(
                env.get("TT_BLOB_PUBLIC_KEY_FILE", secrets / "blob-preprocess.pub")
            ),
            report_public_key_file=Path(
                env.get("TT_REPORT_PUBLIC_KEY_FILE", secrets / "report-reader.pub")
            ),
            shards=shards,
            workers=workers,
            session_timeout_s=session_timeout_s,
        )


def build_app(settings: Settings, pre: PreprocessSettings) -> faust.App:
    registry = settings.topic_registry()
    app = faust.App(
        pre.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=settings.kafka.faust_credentials(),
        store="rocksdb://",
        datadir=str(pre.datadir),
        processing_guarantee="at_least_once",
        topic_replication_factor=settings.topic_replication_factor,
        topic_partitions=settings.topic_partitions,
        producer_acks=-1,
        web_enabled=False,
        broker_session_timeout=pre.session_timeout_s,
        broker_heartbeat_interval=max(pre.session_timeout_s / 10, 0.5),
        # A worker that joined while the broker's metadata lacked its topics (just after a
        # broker restart) was assigned nothing and said "ready"; a metadata refresh that
        # shows the partitions makes the group rebalance, so refresh every 10 s, not 5 min.
        consumer_metadata_max_age_ms=GROUP_METADATA_MAX_AGE_MS,
    )
    ctx = stages.StageContext(
        blobs=BlobStore(pre.blob_root),
        private_key=load_private_key(pre.private_key_file),
        public_key=load_public_key(pre.public_key_file),
        config=PipelineConfig(),
        pool=ProcessPoolExecutor(pre.workers, mp_context=multiprocessing.get_context("forkserver")),
        shards=pre.shards,
        workers=pre.workers,
        report_public_key=load_public_key(pre.report_public_key_file),
    )

    signer = signer_for(settings)
    keys = KeyFeed.for_settings(settings, registry)

    def raw_topic(name: str):
        return app.topic(name, key_serializer="raw", value_serializer="raw")

    received = raw_topic(registry.fact_topic("contribution.received"))
    references = raw_topic(registry.fact_topic("reference.registered"))
    processed = raw_topic(registry.fact_topic("contribution.processed"))
    dead_letters = raw_topic(registry.dead_letter_topic)
    sequence_topic = app.topic(
        f"{pre.app_id}-sequence",
        partitions=1,
        internal=True,
        key_serializer="raw",
        value_serializer="json",
    )
    claims_topic = app.topic(
        f"{pre.app_id}-claims",
        partitions=pre.shards,
        internal=True,
        key_serializer="raw",
        value_serializer="json",
    )
    answers_topic = app.topic(
        f"{pre.app_id}-answers",
        partitions=settings.topic_partitions,
        internal=True,
        key_serializer="raw",
        value_serializer="json",
    )
    json_schema = faust.Schema(key_serializer="json", value_serializer="json")
    index = app.Table("dedup-index", default=None, partitions=pre.shards, schema=json_schema)
    assembly = app.Table(
        "assembly", default=None, partitions=settings.topic_partitions, schema=json_schema
    )

    async def publish_fact(envelope) -> None:
        with publishing(envelope, processed.get_topic_name()):
            await processed.send(
                key=envelope.key.encode(),
                value=signer.seal(envelope),
                headers=fact_headers(envelope),
            )

    async def trusted(event, topic) -> Envelope | None:
        """The event's fact if it is valid and signed by its owner; else dead-letter it."""
        try:
            envelope = decode(event.value)
            validate_envelope(envelope)
            await keys.verify_appended(
                event.value,
                envelope,
                topic.get_topic_name(),
                round(event.message.timestamp * 1000),
                event.message.timestamp_type,
            )
        except (FactDecodeError, FactValidationError) as error:
            await dead_letter(event, str(error))
            return None
        except SignatureError as error:
            metrics.FORGED_FACTS.labels(SERVICE, envelope.event_type).inc()
            await dead_letter(event, untrusted_reason(envelope, error))
            return None
        return envelope

    async def dead_letter(event, reason: str) -> None:
        await dead_letters.send(
            key=event.key,
            value=event.value,
            headers=[
                ("dead_letter.reason", reason.encode()),
                ("dead_letter.consumer_group", pre.app_id.encode()),
            ],
        )
        metrics.DEAD_LETTERS.labels(SERVICE, received.get_topic_name()).inc()

    @app.agent(received, concurrency=1)
    async def prepare(stream):
        async for event in stream.events():
            envelope = await trusted(event, received)
            if envelope is None:
                continue
            try:
                with consuming(envelope, received.get_topic_name(), pre.app_id):
                    await prepare_one(envelope)
            except stages.PipelineError as error:
                log.exception("dead-lettering %s", envelope.key)
                await dead_letter(event, str(error))
                continue
            metrics.FACTS_PROCESSED.labels(SERVICE, envelope.event_type).inc()

    async def prepare_one(envelope) -> None:
        try:
            message = await stages.prepare(envelope, ctx)
        except (formats.UploadRejected, BlobError) as error:
            log.warning("contribution %s cannot be processed: %s", envelope.key, error)
            await publish_fact(stages.rejected_fact(envelope, str(error), ctx.config))
            return
        log.info(
            "prepared %s: %d documents, %d to check for duplicates",
            message["contribution_id"],
            message["documents"],
            message["fingerprinted"],
        )
        await sequence_topic.send(key=envelope.key.encode(), value=message)
        failpoint("preprocess.after_sequence_send")

    @app.agent(references, concurrency=1)
    async def reference(stream):
        # The consumer's own corpus enters the order of "earlier" like a contribution.
        async for event in stream.events():
            envelope = await trusted(event, references)
            if envelope is None:
                continue
            await sequence_topic.send(
                key=envelope.key.encode(), value=stages.reference_message(envelope)
            )
            metrics.FACTS_PROCESSED.labels(SERVICE, envelope.event_type).inc()

    @app.agent(sequence_topic, concurrency=1)
    async def sequence(stream):
        async for event in stream.events():
            # The offset on this one-partition topic is the platform's order of "earlier".
            seq = event.message.offset + 1

            async def send_claim(shard: int, claim: dict) -> None:
                await claims_topic.send(key=str(shard).encode(), value=claim, partition=shard)

            await stages.sequence(event.value, seq, ctx, send_claim)

    @app.agent(claims_topic, concurrency=1)
    async def claim(stream):
        async for event in stream.events():
            answer = stages.claim(event.value, index, ctx)
            if answer is not None:
                await answers_topic.send(key=answer["contribution_id"].encode(), value=answer)

    @app.agent(answers_topic, concurrency=1)
    async def assemble(stream):
        async for event in stream.events():
            answer = event.value
            key = answer["contribution_id"]
            state, complete = stages.record_answer(assembly.get(key), answer)
            if not complete:
                assembly[key] = state
                continue
            with tracer.start_as_current_span(
                "assemble contribution.processed",
                context=context_from_traceparent(answer.get("traceparent", "")),
                attributes={"tt.contribution_id": key},
            ):
                envelope = await stages.assemble(answer, state, ctx)
                await publish_fact(envelope)
            failpoint("preprocess.after_publish")
            assembly.pop(key, None)
            log.info(
                "processed %s: %d of %d tokens accepted",
                answer["contribution_id"],
                envelope.contribution_processed.tokens_accepted,
                envelope.contribution_processed.tokens_raw,
            )

    lag = metrics.ConsumerLagMonitor(
        settings.kafka,
        SERVICE,
        pre.app_id,
        [t.get_topic_name() for t in (received, sequence_topic, claims_topic, answers_topic)],
    )

    @app.task
    async def measure_lag() -> None:
        await lag.run()

    return app


def main() -> int:
    logging.basicConfig(
        level=os.environ.get("TT_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = Settings.from_env()
        pre = PreprocessSettings.from_env(settings)
        metrics.serve_metrics(os.environ.get("TT_METRICS_ADDRESS", "127.0.0.1:9102"))
    except ConfigError as error:
        print(f"preprocess: {error}", file=sys.stderr)
        return 2
    tracing = configure_tracing(SERVICE, settings.otel_exporter)
    import asyncio

    from services.common.topics import TopicSpec, ensure_topics_on_broker, require_topics

    registry = settings.topic_registry()
    # The app's own topics exist before the worker subscribes: left to Faust, they are
    # created while the group forms, and an assignment made before the metadata shows them
    # can leave a topic out (seen once in ~15 fresh starts: the claims stage never ran).
    # They keep everything, like facts: the sequence is the platform's order of "earlier".
    internal = [
        TopicSpec(f"{pre.app_id}-{name}", partitions, registry.replication_factor,
                  dict(registry.fact_configs))
        for name, partitions in (
            ("sequence", 1),
            ("claims", pre.shards),
            ("answers", settings.topic_partitions),
        )
    ]  # fmt: skip

    # The fact topics are the operator's (1tt stack prepare); the app's own are its to make.
    async def prepare_topics() -> None:
        await require_topics(settings.kafka, registry.topics_of(SERVICE))
        await ensure_topics_on_broker(settings.kafka, internal)

    asyncio.run(prepare_topics())
    pre.datadir.mkdir(parents=True, exist_ok=True)
    app = build_app(settings, pre)
    worker = faust.Worker(
        app,
        loglevel=os.environ.get("TT_LOG_LEVEL", "INFO").lower().replace("warning", "warn"),
        quiet=True,
    )
    try:
        worker.execute_from_commandline()
    finally:
        tracing.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

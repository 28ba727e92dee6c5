"""One trace from a gRPC upload, through Kafka, into preprocess and the ledger; and every
service's /metrics. Real ingest, preprocess and ledger processes export their spans over
OTLP/gRPC to a TraceService receiver that this test runs and that keeps them in memory."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2
from prometheus_client.parser import text_string_to_metric_families

from services.cli.admin import wait_group_stable
from services.cli.client import IngestClient, UploadSpec
from services.common.db import connect
from services.rules.ids import derived_id
from tests.integration.ingest_server import ROOT, free_port, start_ingest, stop_ingest
from tests.integration.payout_server import PayoutServer
from tests.integration.preprocess_server import preprocess_log, start_preprocess
from tt.facts.v1 import contribution_pb2

pytestmark = pytest.mark.integration
UPLOAD = "/tt.ingest.v1.IngestService/Upload"
SERVER, PRODUCER, CONSUMER = (
    trace_pb2.Span.SPAN_KIND_SERVER,
    trace_pb2.Span.SPAN_KIND_PRODUCER,
    trace_pb2.Span.SPAN_KIND_CONSUMER,
)
DOCUMENTS = [
    "The inventory lists every folder by shelf and by year, so the catalogue can be checked "
    "against it quickly. Each box carries a label with the collection's name, the years it "
    "covers and the number of folders inside, written in pencil on the lower left corner.",
    "Field manuals describe how to survey a site before any digging begins: walk the ground "
    "in parallel lines a few metres apart, flag every find, and record its position with the "
    "total station before it is lifted, so that the plan can be redrawn from the notes alone.",
]


@dataclass(frozen=True)
class ExportedSpan:
    service: str
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    attributes: dict


class InMemoryTraceReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver that keeps what it is sent (the in-memory exporter)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ExportedSpan] = []

    def Export(self, request, context):
        received = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ExportedSpan(
                            service=resource.get("service.name", ""),
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=span.kind,
                            attributes=_attributes(span.attributes),
                        )
                    )
        with self._lock:
            self._spans.extend(received)
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[ExportedSpan]:
        with self._lock:
            return list(self._spans)


def _attributes(key_values) -> dict:
    return {
        kv.key: getattr(kv.value, kv.value.WhichOneof("value") or "string_value")
        for kv in key_values
    }


@pytest.fixture(scope="module")
def receiver():
    spans = InMemoryTraceReceiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(spans, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield spans, f"http://127.0.0.1:{port}"
    server.stop(grace=None)


@dataclass
class Platform:
    ingest: object
    preprocess: subprocess.Popen
    ledger: subprocess.Popen
    ledger_schema: str
    ledger_log: Path
    metrics: dict[str, str]  # service -> its /metrics URL


@pytest.fixture(scope="module")
def platform(settings, receiver, tmp_path_factory):
    _, endpoint = receiver
    run_dir = tmp_path_factory.mktemp("tracing")
    tracing = {
        "TT_OTEL_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    ports = {name: free_port() for name in ("ingest", "preprocess", "ledger")}
    address = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
    ingest = start_ingest(settings, run_dir, TT_METRICS_ADDRESS=address["ingest"], **tracing)
    preprocess = ledger = None
    ledger_schema = f"ledger_{uuid.uuid4().hex[:10]}"
    ledger_log = run_dir / "ledger.log"
    try:
        preprocess = start_preprocess(
            ingest, run_dir / "faust", TT_METRICS_ADDRESS=address["preprocess"], **tracing
        )
        ledger = _start_ledger(ingest, ledger_schema, ledger_log, address["ledger"], tracing)
        yield Platform(
            ingest,
            preprocess,
            ledger,
            ledger_schema,
            ledger_log,
            {name: f"http://{where}/metrics" for name, where in address.items()},
        )
    finally:
        for process in (ledger, preprocess):
            if process is not None:
                _stop(process)
        asyncio.run(_drop_schema(settings.database_url, ledger_schema))
        stop_ingest(ingest)


def _start_ledger(ingest, schema: str, log_path: Path, metrics_address: str, tracing: dict):
    settings = ingest.settings
    env = {
        **os.environ,
        "TT_TOPIC_PREFIX": settings.topic_prefix,
        "TT_LEDGER_SCHEMA": schema,
        **settings.party_env("ledger"),
        "TT_DATABASE_URL": settings.database_url,
        "TT_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "TT_LEDGER_SESSION_TIMEOUT_MS": "6000",
        "TT_METRICS_ADDRESS": metrics_address,
        **tracing,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "services.ledger.main"],
        cwd=ROOT,
        env=env,
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
    )
    group = f"{settings.topic_prefix}ledger"
    ready, detail = asyncio.run(wait_group_stable(settings.kafka, group, 90))
    if not ready:
        _stop(process)
        raise RuntimeError(f"the ledger did not start ({detail}): {log_path.read_text()[-3000:]}")
    return process


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _drop_schema(database_url: str, schema: str) -> None:
    conn = await connect(database_url, "public", application_name="tests")
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


async def _ledger_applied(platform: Platform, event_type: str) -> int:
    conn = await connect(
        platform.ingest.settings.database_url, platform.ledger_schema, application_name="tests"
    )
    try:
        return await conn.fetchval("SELECT count(*) FROM inbox WHERE event_type = $1", event_type)
    finally:
        await conn.close()


def _upload(platform: Platform, tmp_path: Path) -> str:
    contributor = platform.ingest.principal()
    path = tmp_path / "documents.jsonl"
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in DOCUMENTS))

    async def send():
        async with IngestClient(platform.ingest.address, contributor["api_key"]) as client:
            spec = UploadSpec(
                path=path,
                dataset_name="field notes",
                upload_id=f"u-{uuid.uuid4().hex[:12]}",
                dataset_format=contribution_pb2.DATASET_FORMAT_JSONL,
                compression=contribution_pb2.COMPRESSION_NONE,
                byte_size=path.stat().st_size,
            )
            return await client.upload(spec)

    return asyncio.run(send()).body.contribution_id


def _wait(condition, timeout_s: float, what: str, detail=lambda: ""):
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{detail()}")
        time.sleep(0.3)


def _children(spans: list[ExportedSpan]) -> dict[str, list[ExportedSpan]]:
    children: dict[str, list[ExportedSpan]] = {}
    for span in spans:
        children.setdefault(span.parent_span_id, []).append(span)
    return children


def _descendants(root: ExportedSpan, children: dict[str, list[ExportedSpan]]):
    stack = list(children.get(root.span_id, []))
    while stack:
        span = stack.pop()
        yield span
        stack.extend(children.get(span.span_id, []))


def _complete_trace(spans: list[ExportedSpan], received_event_id: str):
    """The trace of the upload that published `received_event_id`, once every span the
    test looks for has arrived (else None)."""
    published = [
        s
        for s in spans
        if s.name == "publish contribution.received"
        and s.attributes.get("tt.event_id") == received_event_id
    ]
    if not published:
        return None
    trace = [s for s in spans if s.trace_id == published[0].trace_id]
    ids = {s.span_id for s in trace}
    if any(s.parent_span_id and s.parent_span_id not in ids for s in trace):
        return None  # a parent still in its exporter's queue
    names = {(s.service, s.name) for s in trace}
    if (
        not {
            ("ingest", UPLOAD),
            ("preprocess", "process contribution.received"),
            ("preprocess", "publish contribution.processed"),
            ("ledger", "process contribution.processed"),
        }
        <= names
    ):
        return None
    children = _children(trace)
    ledger = [
        s for s in trace if (s.service, s.name) == ("ledger", "process contribution.processed")
    ]
    if not any("db.system" in s.attributes for s in _descendants(ledger[0], children)):
        return None
    return trace


def test_one_trace_from_the_upload_to_the_ledger(platform, receiver, tmp_path):
    spans, _ = receiver
    contribution_id = _upload(platform, tmp_path)
    received_event_id = derived_id("contribution.received", contribution_id)
    _wait(
        lambda: asyncio.run(_ledger_applied(platform, "contribution.processed")),
        180,
        f"the ledger to apply contribution.processed for {contribution_id}",
        lambda: preprocess_log(platform.ingest) + platform.ledger_log.read_text()[-3000:],
    )
    trace = _wait(
        lambda: _complete_trace(spans.spans(), received_event_id),
        30,
        "the upload's spans",
        lambda: "\n".join(f"{s.service} {s.name} {s.trace_id}" for s in spans.spans()),
    )
    by_id = {s.span_id: s for s in trace}
    [root] = [s for s in trace if not s.parent_span_id]
    assert (root.service, root.name, root.kind) == ("ingest", UPLOAD, SERVER)
    assert all(s.parent_span_id in by_id for s in trace if s is not root)

    def one(service: str, name: str, kind: int) -> ExportedSpan:
        [span] = [s for s in trace if (s.service, s.name, s.kind) == (service, name, kind)]
        return span

    def parent(span: ExportedSpan) -> ExportedSpan:
        return by_id[span.parent_span_id]

    received_publish = one("ingest", "publish contribution.received", PRODUCER)
    received_consume = one("preprocess", "process contribution.received", CONSUMER)
    assemble = one(
        "preprocess", "assemble contribution.processed", trace_pb2.Span.SPAN_KIND_INTERNAL
    )
    processed_publish = one("preprocess", "publish contribution.processed", PRODUCER)
    ledger_consume = one("ledger", "process contribution.processed", CONSUMER)
    # The chain, hop by hop: upload -> publish -> preprocess -> its later stages -> publish
    # -> ledger -> its database work.
    assert parent(received_publish) is root
    assert parent(received_consume) is received_publish
    assert parent(assemble) is received_consume
    assert parent(processed_publish) is assemble
    assert parent(ledger_consume) is processed_publish
    database = [
        s for s in _descendants(ledger_consume, _children(trace)) if "db.system" in s.attributes
    ]
    assert database and all(s.service == "ledger" for s in database)
    assert received_consume.attributes["tt.event_id"] == received_event_id
    # The pollers' queries (outbox relay, releaser) run outside any operation: not exported.
    assert not [s for s in spans.spans() if not s.parent_span_id and "db.system" in s.attributes]


def _samples(url: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_each_service_exposes_its_metrics(platform, tmp_path):
    _upload(platform, tmp_path)  # so there is something to count, whatever ran before
    topics = platform.ingest.settings.topic_registry()

    def counted(service: str, event_type: str):
        samples = _samples(platform.metrics[service])
        labels = (("event_type", event_type), ("service", service))
        return samples.get(("tt_facts_processed_total", labels), 0) >= 1 and samples

    ingest = _wait(lambda: counted("ingest", "contribution.received"), 60, "ingest's metrics")
    assert ingest["tt_upload_bytes_total", ()] > 0
    assert ingest["tt_uploads_total", (("outcome", "accepted"),)] >= 1
    _wait(lambda: counted("preprocess", "contribution.received"), 120, "preprocess's metrics")
    ledger = _wait(lambda: counted("ledger", "contribution.processed"), 120, "ledger's metrics")
    topic = topics.fact_topic("contribution.processed")
    lags = {
        labels: value
        for (name, labels), value in ledger.items()
        if name == "tt_consumer_lag" and ("topic", topic) in labels
    }
    assert len(lags) == topics.partitions, ledger
    assert all(value >= 0 for value in lags.values())


def test_payout_serves_metrics_on_its_own_address_not_on_its_api(settings, tmp_path):
    with PayoutServer.start(settings, tmp_path / "payout") as server:
        server.publish_world()
        assert server.get("/metrics").status_code == 404  # the API port faces users
        response = httpx.get(server.metrics_url, timeout=10)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }
        labels = (("event_type", "allocation.made"), ("service", "payout"))
        assert samples["tt_facts_processed_total", labels] >= 1

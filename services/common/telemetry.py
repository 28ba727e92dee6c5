"""Tracing set-up and W3C trace-context propagation through Kafka headers.

One trace follows a contribution from the gRPC upload through every Kafka hop: a fact's
envelope (and its `traceparent` header) carries the context of the span that published it,
and whoever consumes the fact starts its span as a child of that context.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import (
    DEFAULT_ON,
    Decision,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from services.common.facts import Envelope

_PROPAGATOR = TraceContextTextMapPropagator()
Headers = Sequence[tuple[str, bytes]]
tracer = trace.get_tracer("services.common.telemetry")


class _DatabaseSpansNeedAParent(Sampler):
    """Every span is recorded (children as their parent was), except a database query
    that runs outside any traced operation: the pollers (outbox relay, releaser) query
    every second, and each of those queries would otherwise be a trace of its own."""

    def should_sample(
        self,
        parent_context,
        trace_id,
        name,
        kind=None,
        attributes=None,
        links=None,
        trace_state=None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if not parent.is_valid and attributes and _is_database_span(attributes):
            return SamplingResult(Decision.DROP)
        return DEFAULT_ON.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return "DatabaseSpansNeedAParent"


def _is_database_span(attributes) -> bool:
    return "db.system" in attributes or "db.system.name" in attributes


class Tracing:
    """What configure_tracing installed in this process. Libraries are instrumented only
    when spans go somewhere (exporter "console" or "otlp"), so "none" costs nothing."""

    def __init__(self, provider: TracerProvider, exporting: bool):
        self.provider = provider
        self.exporting = exporting

    def instrument_grpc_aio_server(self) -> None:
        """A SERVER span for every RPC of the grpc.aio servers created after this call
        (health checks aside), continuing the caller's trace context if it sent one."""
        if self.exporting:
            from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorServer, filters

            GrpcAioInstrumentorServer(filter_=filters.negate(filters.health_check())).instrument()

    def instrument_fastapi(self, app: Any) -> None:
        """A SERVER span for every request to `app`, probes and /metrics aside."""
        if self.exporting:
            from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

            FastAPIInstrumentor.instrument_app(
                app, excluded_urls="/healthz$,/readyz$,/metrics$,/static/"
            )

    def shutdown(self) -> None:
        """On stop: export the spans still queued, then close the exporter."""
        self.provider.shutdown()


def configure_tracing(service_name: str, exporter: str) -> Tracing:
    """Install a tracer provider for this process, and spans for its database work.

    `exporter` is "none", "console" (spans printed to stdout) or "otlp" (OTLP over gRPC
    to OTEL_EXPORTER_OTLP_ENDPOINT, default http://localhost:4317; the other standard
    OTEL_EXPORTER_OTLP_* and OTEL_BSP_* variables apply too). Call once, from main()."""
    if exporter not in ("none", "console", "otlp"):
        raise ValueError(f"exporter must be none, console or otlp, got {exporter!r}")
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}),
        sampler=_DatabaseSpansNeedAParent(),
    )
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    tracing = Tracing(provider, exporting=exporter != "none")
    if tracing.exporting:
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

        AsyncPGInstrumentor().instrument()
    return tracing


def current_traceparent() -> str:
    """The W3C traceparent of the active span, or "" outside any span."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent", "")


def context_from_traceparent(traceparent: str) -> otel_context.Context:
    """A context whose parent is the span named by `traceparent` (empty: a fresh trace)."""
    if not traceparent:
        return otel_context.Context()
    return _PROPAGATOR.extract({"traceparent": traceparent})


@contextmanager
def publishing(envelope: Envelope, topic: str) -> Iterator[None]:
    """A PRODUCER span around sending `envelope` to `topic`. An envelope without trace
    context takes this span's, so its consumers' spans become children of it; one that
    has it (a fact relayed from an outbox) keeps it, and this span joins that trace."""
    parent = context_from_traceparent(envelope.traceparent) if envelope.traceparent else None
    with tracer.start_as_current_span(
        f"publish {envelope.event_type}",
        context=parent,
        kind=trace.SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.destination.name": topic,
            "tt.event_id": envelope.event_id,
        },
    ):
        if not envelope.traceparent:
            envelope.traceparent = current_traceparent()
        yield


@contextmanager
def consuming(envelope: Envelope, topic: str, group_id: str) -> Iterator[None]:
    """A CONSUMER span around handling `envelope`, a child of the span that published it."""
    with tracer.start_as_current_span(
        f"process {envelope.event_type}",
        context=context_from_traceparent(envelope.traceparent),
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.destination.name": topic,
            "messaging.kafka.consumer.group": group_id,
            "tt.event_id": envelope.event_id,
        },
    ):
        yield


def header_value(headers: Headers | None, name: str) -> str:
    for key, value in headers or ():
        if key == name:
            return value.decode("utf-8", errors="replace")
    return ""

"""Tracing set-up and W3C trace-context propagation through Kafka headers."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()
Headers = Sequence[tuple[str, bytes]]


def configure_tracing(service_name: str, exporter: str) -> TracerProvider:
    """Install a tracer provider for this process. `exporter` is "none", "console" or "otlp"."""
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":
        raise NotImplementedError(
            "TT_OTEL_EXPORTER=otlp needs the OTLP exporter, which arrives with the "
            "observability work (issue 7); use 'console' or 'none'"
        )
    trace.set_tracer_provider(provider)
    return provider


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


def header_value(headers: Headers | None, name: str) -> str:
    for key, value in headers or ():
        if key == name:
            return value.decode("utf-8", errors="replace")
    return ""

"""The platform's metrics render in the Prometheus text format, with their labels."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.common import metrics
from services.common.config import ConfigError


def samples() -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value, parsed back from the exposition text."""
    text = generate_latest().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_counters_and_gauges_render_with_their_labels():
    service = f"svc-{uuid.uuid4().hex[:6]}"
    topic = "it.contribution.received.v1"
    bytes_before = samples().get(("tt_upload_bytes_total", ()), 0)
    metrics.FACTS_PROCESSED.labels(service, "contribution.processed").inc()
    metrics.FACTS_PROCESSED.labels(service, "contribution.processed").inc()
    metrics.DEAD_LETTERS.labels(service, topic).inc()
    metrics.CONSUMER_LAG.labels(service, topic, "2").set(7)
    metrics.UPLOAD_BYTES.inc(1024)
    metrics.UPLOADS.labels("invalid_argument").inc()

    found = samples()
    processed = (("event_type", "contribution.processed"), ("service", service))
    assert found["tt_facts_processed_total", processed] == 2
    assert found["tt_dead_letters_total", (("service", service), ("topic", topic))] == 1
    lag = (("partition", "2"), ("service", service), ("topic", topic))
    assert found["tt_consumer_lag", lag] == 7
    assert found["tt_upload_bytes_total", ()] == bytes_before + 1024
    assert found["tt_uploads_total", (("outcome", "invalid_argument"),)] >= 1


def test_the_exposition_declares_each_metric_type():
    text = generate_latest().decode()
    for line in (
        "# TYPE tt_facts_processed_total counter",
        "# TYPE tt_dead_letters_total counter",
        "# TYPE tt_consumer_lag gauge",
        "# TYPE tt_upload_bytes_total counter",
        "# TYPE tt_uploads_total counter",
    ):
        assert line in text


@pytest.mark.parametrize("address", ["9101", "localhost", "127.0.0.1:http", ":9101"])
def test_a_metrics_address_must_be_host_and_port(address):
    with pytest.raises(ConfigError, match="TT_METRICS_ADDRESS"):
        metrics.serve_metrics(address)


def test_off_serves_nothing():
    assert metrics.serve_metrics("off") is None

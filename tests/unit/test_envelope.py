from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.examples import example_envelopes, example_payloads
from services.common.facts import (
    BY_EVENT_TYPE,
    FACTS,
    Envelope,
    FactDecodeError,
    decode,
    encode,
    make_envelope,
    payload_of,
    spec_for_payload,
)
from services.common.validation import validate_envelope
from tt.facts.v1 import consumer_pb2

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("envelope", example_envelopes("unit"), ids=lambda e: e.event_type)
def test_every_fact_type_round_trips_through_the_envelope(envelope):
    data = encode(envelope)
    decoded = decode(data)
    assert decoded == envelope
    assert payload_of(decoded) == example_payloads("unit")[envelope.event_type]
    validate_envelope(decoded)


def test_the_registry_covers_every_payload_case_of_the_envelope():
    cases = {field.name for field in Envelope.DESCRIPTOR.oneofs_by_name["payload"].fields}
    assert cases == {spec.payload_field for spec in FACTS}


def test_make_envelope_takes_type_and_key_from_the_payload():
    payload = example_payloads("k")["revenue.recorded"]
    envelope = make_envelope(
        payload, event_id="e1", producer="test", occurred_at=NOW, recorded_at=NOW
    )
    assert envelope.event_type == "revenue.recorded"
    assert envelope.key == payload.service_id
    assert envelope.schema_version == 1
    assert envelope.correlation_id == "e1"  # an origin fact starts its own chain


def test_make_envelope_stores_times_in_utc():
    payload = example_payloads("k")["service.deployed"]
    local = NOW.astimezone(timezone(timedelta(hours=5)))
    envelope = make_envelope(
        payload, event_id="e", producer="t", occurred_at=local, recorded_at=local
    )
    assert envelope.occurred_at.ToDatetime(tzinfo=UTC) == NOW


def test_naive_datetimes_are_refused():
    payload = example_payloads("k")["service.deployed"]
    with pytest.raises(ValueError, match="timezone-aware"):
        make_envelope(
            payload, event_id="e", producer="t", occurred_at=datetime(2026, 1, 1), recorded_at=NOW
        )


def test_encoding_is_deterministic():
    first, second = example_envelopes("d"), example_envelopes("d")
    assert [encode(e) for e in first] == [encode(e) for e in second]


@pytest.mark.parametrize(
    "data, phrase",
    [
        (None, "tombstone"),
        (b"", "empty"),
        (b"\x0a\xff\xff garbage", "not a tt.facts.v1.Envelope"),
    ],
)
def test_undecodable_bytes_raise_a_clear_error(data, phrase):
    with pytest.raises(FactDecodeError, match=phrase):
        decode(data)


def test_a_non_fact_message_is_not_a_fact():
    with pytest.raises(TypeError, match="not a registered fact"):
        spec_for_payload(consumer_pb2.SnapshotMember())


@given(
    external_id=st.text(min_size=1, max_size=40),
    amount_minor=st.integers(min_value=1, max_value=2**63 - 1),
    service_id=st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=60),
)
def test_revenue_facts_round_trip_for_any_content(external_id, amount_minor, service_id):
    payload = consumer_pb2.RevenueRecorded(
        revenue_id="r",
        consumer_id="c",
        external_id=external_id,
        service_id=service_id,
        period="2026-11",
        amount_minor=amount_minor,
        currency="EUR",
    )
    envelope = make_envelope(payload, event_id="e", producer="p", occurred_at=NOW, recorded_at=NOW)
    decoded = decode(encode(envelope))
    assert decoded == envelope
    assert decoded.key == service_id
    assert payload_of(decoded).amount_minor == amount_minor


def test_every_registered_type_has_a_topic_named_after_it():
    assert BY_EVENT_TYPE["payout.issued"].topic_base == "payout.issued.v1"
    assert BY_EVENT_TYPE["contribution.received"].payload_field == "contribution_received"

"""Facts through the real broker: every type round-trips; bad input goes to dead letters."""

from __future__ import annotations

import asyncio

import pytest

from services.common.bus import Delivery, FactConsumer
from services.common.examples import example_envelopes
from services.common.facts import BY_EVENT_TYPE, Envelope, decode, encode, payload_of
from services.common.signing import Signer
from services.common.topics import FACT_ACCESS
from tests.integration.conftest import FACT_TYPES, read_topic

pytestmark = pytest.mark.integration


async def consume_until(consumer: FactConsumer, done, timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not done() and asyncio.get_running_loop().time() < deadline:
        await consumer.poll_once(timeout_ms=300)


async def test_every_fact_type_round_trips_through_kafka(registry, producer, unique, consumer_for):
    sent = example_envelopes(unique)
    for envelope in sent:
        metadata = await producer.publish(envelope)
        assert metadata.topic == registry.fact_topic(envelope.event_type)
    received: dict[str, Delivery] = {}

    async def collect(delivery: Delivery) -> None:
        received[delivery.envelope.event_id] = delivery

    ours = {e.event_id for e in sent}
    consumer = consumer_for(f"roundtrip-{unique}", collect, event_types=BY_EVENT_TYPE)
    async with consumer:
        await consume_until(consumer, lambda: ours <= set(received))
        for topic, partition in {(d.topic, d.partition) for d in received.values()}:
            assert await consumer.committed_offset(topic, partition) is not None

    # Besides ours, only the services' key registrations that `registry` published.
    assert {received[i].envelope.event_type for i in set(received) - ours} == {"key.registered"}
    for envelope in sent:
        delivery = received[envelope.event_id]
        assert delivery.envelope.HasField("signature")
        unsigned = Envelope()
        unsigned.CopyFrom(delivery.envelope)
        unsigned.ClearField("signature")
        assert unsigned == envelope
        assert payload_of(delivery.envelope) == payload_of(envelope)
        assert delivery.topic == registry.fact_topic(envelope.event_type)
        assert delivery.signer.party == FACT_ACCESS[envelope.event_type].owner
    assert consumer.dead_letter_count == 0


async def test_facts_are_keyed_and_carry_their_type_in_headers(
    settings, registry, producer, unique
):
    envelope = next(e for e in example_envelopes(unique) if e.event_type == "revenue.recorded")
    await producer.publish(envelope)
    [record] = await read_topic(settings.kafka, registry.fact_topic("revenue.recorded"), 1)
    assert record.key == envelope.key.encode()
    # The record is the fact's bytes with its signature appended.
    assert record.value.startswith(encode(envelope))
    assert decode(record.value).signature.key_id
    assert record.timestamp_type == 1  # LogAppendTime: the broker's clock, not ours
    headers = dict(record.headers)
    assert headers["event_type"] == b"revenue.recorded"
    assert headers["event_id"] == envelope.event_id.encode()


async def test_bad_messages_go_to_the_dead_letter_topic_with_reason_and_original_bytes(
    settings, registry, producer, unique, consumer_for
):
    examples = {e.event_type: e for e in example_envelopes(unique)}
    revenue_topic = registry.fact_topic("revenue.recorded")
    garbage = b"\x0a\xff\xff this is not protobuf"
    invalid = examples["revenue.recorded"]
    payload_of(invalid).amount_minor = 0
    misplaced = examples["payout.issued"]
    await producer.publish_raw(revenue_topic, b"k1", garbage, [])
    await producer.publish_raw(revenue_topic, invalid.key.encode(), encode(invalid), [])
    await producer.publish_raw(revenue_topic, misplaced.key.encode(), encode(misplaced), [])
    good = examples["agreement.published"]
    await producer.publish(good)  # a valid fact behind the bad ones is still processed

    handled = []

    async def collect(delivery: Delivery) -> None:
        handled.append(delivery.envelope.event_id)

    consumer = consumer_for(f"dlq-{unique}", collect)
    async with consumer:
        await consume_until(consumer, lambda: consumer.dead_letter_count == 3 and handled)
    assert handled == [good.event_id]
    assert consumer.dead_letter_count == 3

    dead = await read_topic(settings.kafka, registry.dead_letter_topic, 3)
    assert len(dead) == 3
    by_value = {record.value: dict(record.headers) for record in dead}
    assert set(by_value) == {garbage, encode(invalid), encode(misplaced)}
    assert b"is not a tt.facts.v1.Envelope" in by_value[garbage]["dead_letter.reason"]
    assert b"amount_minor must be positive" in by_value[encode(invalid)]["dead_letter.reason"]
    assert b"belongs on" in by_value[encode(misplaced)]["dead_letter.reason"]
    for headers in by_value.values():
        assert headers["dead_letter.source_topic"] == revenue_topic.encode()
        assert headers["dead_letter.consumer_group"] == f"dlq-{unique}".encode()
        assert int(headers["dead_letter.source_offset"]) >= 0


async def test_a_handler_can_reject_a_fact_permanently(
    settings, registry, producer, unique, consumer_for
):
    from services.common.bus import PermanentFactError

    envelope = example_envelopes(unique)[0]
    await producer.publish(envelope)

    async def refuse(delivery: Delivery) -> None:
        raise PermanentFactError("contribution references an unknown contributor")

    consumer = consumer_for(f"reject-{unique}", refuse)
    async with consumer:
        await consume_until(consumer, lambda: consumer.dead_letter_count == 1)
    [record] = await read_topic(settings.kafka, registry.dead_letter_topic, 1)
    assert dict(record.headers)["dead_letter.reason"] == (
        b"handler rejected the fact: contribution references an unknown contributor"
    )
    assert record.value.startswith(encode(envelope))


async def test_a_failed_batch_is_fetched_again_not_skipped(
    registry, producer, unique, consumer_for
):
    sent = [e for e in example_envelopes(unique) if e.event_type in FACT_TYPES]
    for envelope in sent:
        await producer.publish(envelope)
    seen: list[str] = []
    failing = {sent[3].event_id}

    async def flaky(delivery: Delivery) -> None:
        if delivery.envelope.event_id in failing:
            failing.clear()  # fail once, then succeed
            raise RuntimeError("a handler bug")  # not an outage: outages are waited out
        seen.append(delivery.envelope.event_id)

    consumer = consumer_for(f"refetch-{unique}", flaky, max_attempts=1)
    async with consumer:
        with pytest.raises(RuntimeError, match="a handler bug"):
            await consume_until(consumer, lambda: False, timeout_s=15)
        await consume_until(consumer, lambda: len(set(seen)) == len(sent))
    assert set(seen) == {envelope.event_id for envelope in sent}


async def test_a_database_outage_is_waited_out_not_counted_as_a_failure(
    registry, producer, unique, consumer_for
):
    sent = [e for e in example_envelopes(unique) if e.event_type in FACT_TYPES]
    for envelope in sent:
        await producer.publish(envelope)
    seen: list[str] = []
    outage = {"left": 3}

    async def during_a_restart(delivery: Delivery) -> None:
        if outage["left"]:
            outage["left"] -= 1
            raise ConnectionError("database restarting")
        seen.append(delivery.envelope.event_id)

    # One attempt allowed for real errors: the outage's three failures must not use it up.
    consumer = consumer_for(f"outage-{unique}", during_a_restart, max_attempts=1)
    async with consumer:
        await consume_until(consumer, lambda: len(set(seen)) == len(sent), timeout_s=60)
    assert set(seen) == {envelope.event_id for envelope in sent}
    assert consumer.dead_letter_count == 0


async def test_a_fact_not_signed_by_its_owner_is_dead_lettered_with_the_reason(
    settings, registry, producer, signers, unique, consumer_for
):
    """Unsigned, signed by an unknown key, by the wrong party, or altered after signing:
    each is dead-lettered before any handler sees it; a genuine fact behind them is not."""
    examples = {e.event_type: e for e in example_envelopes(unique)}
    payout = examples["payout.issued"]
    topic = registry.fact_topic("payout.issued")
    genuine = signers.parties["payout"].seal(payout)
    altered = bytearray(genuine)
    at = genuine.index(payout.payout_issued.payout_run_id.encode())
    altered[at] ^= 0x01  # the payout run, inside the signed body (still a valid id)
    forged = {
        "unsigned": encode(payout),
        "unknown key": Signer.generate().seal(payout),
        "wrong party": signers.parties["ledger"].seal(payout),
        "altered": bytes(altered),
    }
    for value in forged.values():
        await producer.publish_raw(topic, payout.key.encode(), value, [])
    good = examples["allocation.made"]
    await producer.publish(good)

    handled = []

    async def collect(delivery: Delivery) -> None:
        handled.append(delivery.envelope.event_id)

    consumer = consumer_for(f"forged-{unique}", collect)
    async with consumer:
        await consume_until(consumer, lambda: consumer.dead_letter_count == 4 and handled)
    assert handled == [good.event_id]
    dead = await read_topic(settings.kafka, registry.dead_letter_topic, 4)
    reasons = {record.value: dict(record.headers)["dead_letter.reason"] for record in dead}
    assert b"carries no signature" in reasons[forged["unsigned"]]
    assert b"unknown key" in reasons[forged["unknown key"]]
    assert b"may be published only by payout" in reasons[forged["wrong party"]]
    assert b"does not verify" in reasons[forged["altered"]]

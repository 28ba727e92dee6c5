"""Signing keys on the real broker: registration of the services' keys, and rotation. A
rotated key keeps verifying what the broker appended while it was valid, and verifies
nothing appended after its end; the new key takes over."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from aiokafka import AIOKafkaProducer

from services.cli.provision import (
    SERVICES,
    provision_consumer,
    register_service_keys,
    rotate_key,
)
from services.common.examples import example_envelopes
from services.common.keys import KeyFeed
from services.common.logreader import ReadStats, read_log
from services.common.signing import Signer
from services.common.topics import TopicRegistry, ensure_topics_on_broker

pytestmark = pytest.mark.integration


async def test_register_keys_publishes_each_services_existing_key_once(settings, unique):
    registry = TopicRegistry(prefix=f"keys-{unique}.")
    await ensure_topics_on_broker(settings.kafka, registry.specs())
    try:
        first = await register_service_keys(settings, registry)
        assert sorted(entry.split(":")[0] for entry in first) == sorted(SERVICES)
        assert await register_service_keys(settings, registry) == []
        async with KeyFeed.for_settings(settings, registry) as keys:
            for party in SERVICES:
                signer = Signer.from_file(settings.for_party(party).signing_key_file)
                assert keys.keyring.get(signer.key_id).party == party
    finally:
        from services.cli.provision import remove

        await remove(settings, registry)


async def test_a_rotated_key_verifies_its_past_and_nothing_after_its_end(
    settings, registry, unique, tmp_path
):
    root = tmp_path / "credentials"
    principal_id = f"rotating-{unique}"
    consumer = await provision_consumer(settings, registry, principal_id, "Rotating", root)
    party_settings = dataclasses.replace(settings.for_party(consumer.party), credentials_dir=root)
    old = Signer.from_file(party_settings.signing_key_file)
    template = next(e for e in example_envelopes(unique) if e.event_type == "agreement.published")

    def fact(tag: str):
        envelope = type(template)()
        envelope.CopyFrom(template)
        envelope.event_id = f"{tag}-{unique}"
        envelope.agreement_published.agreement_id = f"{tag}-{unique}"
        envelope.agreement_published.consumer_id = principal_id
        envelope.key = envelope.agreement_published.agreement_id
        return envelope

    topic = registry.fact_topic("agreement.published")

    async def send(signer: Signer, envelope) -> None:
        async with AIOKafkaProducer(**settings.kafka.client_options()) as producer:
            await producer.send_and_wait(topic, signer.seal(envelope), key=envelope.key.encode())

    await send(old, fact("before"))
    rotation = await rotate_key(settings, registry, consumer.party, timedelta(0), root)
    assert rotation.old_key_id == old.key_id != rotation.new_key_id
    new = Signer.from_file(party_settings.signing_key_file)
    assert new.key_id == rotation.new_key_id
    await send(old, fact("after-with-old"))
    await send(new, fact("after-with-new"))

    stats = ReadStats()
    async with KeyFeed.for_settings(settings, registry) as keys:
        trusted = [
            record.envelope.event_id
            async for record in read_log(
                settings.kafka, registry, ["agreement.published"], keys, stats
            )
        ]
    assert sorted(trusted) == sorted([f"before-{unique}", f"after-with-new-{unique}"])
    [(_, _, _, reason)] = stats.untrusted
    assert "was not valid when the fact was appended" in reason

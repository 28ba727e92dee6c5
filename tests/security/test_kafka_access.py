"""Kafka as an attacker on the network meets it: no listener accepts a client without
credentials, and each party's credentials reach exactly what the ACL table grants it.

The matrix runs on a topic prefix of its own, prepared like the stack's (`1tt stack
prepare`): every party, every fact topic, read and write, against the real broker."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    TopicAuthorizationFailedError,
)
from aiokafka.structs import TopicPartition

from services.cli.provision import STACK_PARTIES, provision_consumer
from services.common import kafka_users
from services.common.config import KafkaAccess
from services.common.topics import AclEntry

pytestmark = pytest.mark.integration


async def can_write(access: KafkaAccess, topic: str) -> bool:
    # Not idempotent: an idempotent producer of a party that may write nothing at all (the
    # auditor) is refused before any topic is named.
    producer = AIOKafkaProducer(**access.client_options(), request_timeout_ms=10_000)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"probe", key=b"probe")
        return True
    except TopicAuthorizationFailedError:
        return False
    finally:
        await producer.stop()


async def can_read(access: KafkaAccess, topic: str) -> bool:
    """Whether a fetch from the topic's partition 0 returns records (every topic of the
    matrix holds one, written by the operator first)."""
    consumer = AIOKafkaConsumer(**access.client_options(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            return False  # not even described to this user
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek(partition, 0)
        deadline = asyncio.get_running_loop().time() + 15
        while asyncio.get_running_loop().time() < deadline:
            try:
                if (await consumer.getmany(partition, timeout_ms=500)).get(partition):
                    return True
            except TopicAuthorizationFailedError:
                return False
        raise AssertionError(f"{access.username}: {topic} neither readable nor refused")
    finally:
        await consumer.stop()


@pytest.fixture
async def consumer_party(settings, registry, unique, tmp_path):
    credentials = await provision_consumer(
        settings, registry, f"acl-consumer-{unique}", "ACL probe", tmp_path / "credentials"
    )
    return dataclasses.replace(
        settings.for_party(credentials.party), credentials_dir=tmp_path / "credentials"
    )


async def test_each_party_reaches_exactly_what_the_acl_table_grants(
    settings, registry, consumer_party
):
    topics = [spec.name for spec in registry.specs()]
    async with AIOKafkaProducer(**settings.kafka.client_options()) as operator:
        for topic in topics:  # one record in each partition 0, to have something to read
            await operator.send_and_wait(topic, b"seed", key=b"seed", partition=0)
    parties = {party: settings.for_party(party).kafka for party in STACK_PARTIES}
    parties["consumer"] = consumer_party.kafka

    async def row(party: str, access: KafkaAccess):
        granted = {(e.name, e.operation) for e in registry.acl_entries(party)}
        for topic in topics:
            want_write = (topic, "write") in granted
            want_read = (topic, "read") in granted
            got = (await can_write(access, topic), await can_read(access, topic))
            assert got == (want_write, want_read), (
                f"{party} on {topic}: write, read = {got}, the table says {(want_write, want_read)}"
            )
        return len(topics)

    checked = await asyncio.gather(*(row(p, a) for p, a in parties.items()))
    assert sum(checked) == len(parties) * len(topics)


async def test_no_listener_accepts_a_client_without_valid_credentials(settings, registry):
    topic = registry.fact_topic("allocation.made")
    attempts = {
        "anonymous, plaintext": KafkaAccess(settings.kafka_bootstrap),
        "anonymous over TLS": KafkaAccess(settings.kafka_bootstrap, ca_file=settings.kafka_ca_file),
        "a wrong password": dataclasses.replace(settings.kafka, password="guessed-password"),
        "an unknown user": dataclasses.replace(settings.kafka, username="mallory"),
        "SASL without TLS": dataclasses.replace(settings.kafka, ca_file=None),
    }
    for what, access in attempts.items():
        producer = AIOKafkaProducer(
            **access.client_options(), request_timeout_ms=5_000, metadata_max_age_ms=5_000
        )
        with pytest.raises((KafkaConnectionError, KafkaError, OSError)):
            await asyncio.wait_for(producer.start(), 20)
            try:
                await asyncio.wait_for(producer.send_and_wait(topic, b"forged"), 20)
            finally:
                await producer.stop()
        await producer.stop()
        assert what  # each attempt refused


async def test_only_the_operator_may_create_topics_or_change_users_and_acls(
    settings, registry, unique
):
    for party in STACK_PARTIES:
        access = settings.for_party(party).kafka
        admin = AIOKafkaAdminClient(**access.client_options(), request_timeout_ms=10_000)
        await admin.start()
        try:
            response = await admin.create_topics(
                [NewTopic(f"{registry.prefix}rogue-{party}", 1, 1)]
            )
            [error] = [t["error_code"] for t in response.to_object()["topic_errors"]]
            assert error == TopicAuthorizationFailedError.errno, (party, error)
        finally:
            await admin.close()
        # Grant itself the ledger's right to write allocations, or make a user of its own.
        rule = AclEntry("topic", registry.fact_topic("allocation.made"), "literal", "write")
        with pytest.raises(kafka_users.KafkaAdminError, match="cannot create ACL"):
            await kafka_users.run(access, lambda users, p=party, r=rule: users.sync_acls(p, [r]))
        with pytest.raises(kafka_users.KafkaAdminError, match="cannot create user"):
            await kafka_users.run(access, lambda users: users.upsert_user("mallory", "x" * 24))
        granted = await kafka_users.run(settings.kafka, lambda users, p=party: users.acls(p))
        assert (rule in granted) == (party == "ledger")
    users = await kafka_users.run(settings.kafka, lambda users: users.users())
    assert "mallory" not in users

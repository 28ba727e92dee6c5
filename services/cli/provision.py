"""Setting a deployment up on the broker, as the operator (docs/security.md): topics, one
Kafka user per party with exactly the rights the ACL table gives it, one signing key per
party registered on the log, and the trust anchors every reader starts from.

Everything here is idempotent: `1tt stack prepare` runs it on every `make up`. Secrets are
created once, in files only their owner can read, and never printed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.common import kafka_users
from services.common.bus import FactProducer
from services.common.config import IDENTITY_FILE, Settings
from services.common.facts import make_envelope, payload_of, timestamp
from services.common.keys import KeyFeed
from services.common.signing import (
    KeyEntry,
    Signer,
    anchor_record,
    load_anchors,
    raw_public_key,
)
from services.common.topics import (
    CONSUMER_USER_PREFIX,
    FACT_ACCESS,
    SERVICES,
    TopicRegistry,
    ensure_topics_on_broker,
)
from services.rules.ids import derived_id
from tt.facts.v1 import identity_pb2

# Parties whose Kafka users and keys the stack creates (consumers come one by one, with
# `1tt admin add-principal --role consumer`).
STACK_PARTIES = (*SERVICES, "auditor")
# A key's validity starts a little before it is registered, so that a broker whose clock
# runs behind ours still finds the key valid for the first facts it signs.
_VALID_FROM_MARGIN = timedelta(minutes=5)


def write_secret(path: Path, text: str) -> None:
    """Write `text` to `path` (mode 0600), in a folder only its owner can enter."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    temporary.replace(path)


def ensure_password(path: Path) -> tuple[str, bool]:
    """The password in `path`, made now if missing; and whether it was."""
    created = not path.exists()
    if created:
        write_secret(path, secrets.token_urlsafe(32))
    return path.read_text().strip(), created


def ensure_signer(path: Path) -> Signer:
    if not path.exists():
        Signer.generate().write(path)
    return Signer.from_file(path)


def ensure_anchor(settings: Settings) -> Signer:
    """The admin's signing key, listed in the trust anchors file (created if missing)."""
    admin = settings.for_party("admin")
    signer = ensure_signer(admin.signing_key_file)
    path = settings.trust_anchors_file
    anchors = load_anchors(path) if path.exists() else []
    if signer.key_id not in {anchor.key_id for anchor in anchors}:
        anchors.append(signer.entry("admin", datetime.now(UTC) - _VALID_FROM_MARGIN))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([anchor_record(a) for a in anchors], indent=2) + "\n")
        path.chmod(0o644)  # public keys: every reader needs them
    return signer


def registry_resources(registry: TopicRegistry) -> set[str]:
    """The names of every broker resource this registry's ACLs can mention."""
    names = {spec.name for spec in registry.specs()}
    names |= {registry.consumer_group(party) for party in ("ingest", "ledger", "payout")}
    names |= {registry.preprocess_app_id, f"{registry.preprocess_app_id}-"}
    return names


def key_registration(
    admin: Signer, party: str, key: Signer, principal_id: str = "", *, valid_from: datetime
):
    fact = identity_pb2.KeyRegistered(
        key_id=key.key_id,
        party=party,
        principal_id=principal_id,
        public_key=raw_public_key(key.public_key),
    )
    fact.valid_from.CopyFrom(timestamp(valid_from))
    now = datetime.now(UTC)
    return make_envelope(
        fact,
        event_id=derived_id("key.registered", key.key_id),
        producer="1tt-admin",
        occurred_at=now,
        recorded_at=now,
    )


@dataclass
class Prepared:
    topics_created: list[str] = field(default_factory=list)
    acls_added: int = 0
    acls_removed: int = 0
    keys_registered: list[str] = field(default_factory=list)


async def register_keys(
    settings: Settings, registry: TopicRegistry, admin: Signer, keys: list[tuple]
) -> list[str]:
    """Publish key.registered for each (party, signer, principal_id) not on the log yet."""
    async with KeyFeed(settings.kafka, registry, load_anchors(settings.trust_anchors_file)) as feed:
        missing = [item for item in keys if item[1].key_id not in feed.keyring]
    if not missing:
        return []
    valid_from = datetime.now(UTC) - _VALID_FROM_MARGIN
    envelopes = [
        key_registration(admin, party, signer, principal_id, valid_from=valid_from)
        for party, signer, principal_id in missing
    ]
    async with FactProducer(settings.kafka, registry, client_id="1tt-admin", signer=admin) as out:
        for future in await out.send_batch(envelopes):
            await future
    return [f"{party}:{signer.key_id}" for party, signer, _ in missing]


async def registered_consumers(settings: Settings, registry: TopicRegistry) -> set[str]:
    """The consumer principals registered (by trusted facts) on this registry's log."""
    from services.common.logreader import read_log

    consumers = set()
    async with KeyFeed.for_settings(settings, registry) as keys:
        async for record in read_log(settings.kafka, registry, ["principal.registered"], keys):
            fact = record.envelope.principal_registered
            if fact.role == identity_pb2.ROLE_CONSUMER:
                consumers.add(fact.principal_id)
    return consumers


async def prepare(
    settings: Settings, registry: TopicRegistry | None = None, *, every_consumer: bool = True
) -> Prepared:
    """Topics, users, ACLs and keys for every party of the stack, under `registry`. With
    `every_consumer`, the Kafka user of every consumer registered on this registry's log
    gets the consumer's rules again (the table may have changed), and any other consumer
    user loses whatever it holds here (the stack's own prefix; a test's prefix only has
    its own consumers, provisioned with it)."""
    registry = registry or settings.topic_registry()
    result = Prepared()
    admin = ensure_anchor(settings)
    result.topics_created = await ensure_topics_on_broker(settings.kafka, registry.specs())
    passwords = {
        party: ensure_password(settings.for_party(party).kafka_password_file)
        for party in STACK_PARTIES
    }
    scope = registry_resources(registry)
    consumers = await registered_consumers(settings, registry) if every_consumer else set()

    def apply(users: kafka_users.KafkaUsers) -> None:
        existing = users.users()
        rules = users.all_acls()
        for party, (password, created) in passwords.items():
            if created or party not in existing:
                users.upsert_user(party, password)
            have = rules.get(kafka_users.principal(party), set())
            added, removed = users.sync_acls(party, registry.acl_entries(party), scope, have)
            result.acls_added += added
            result.acls_removed += removed
        for user in existing if every_consumer else ():
            if not user.startswith(CONSUMER_USER_PREFIX):
                continue
            registered = user.removeprefix(CONSUMER_USER_PREFIX) in consumers
            wanted = registry.acl_entries("consumer") if registered else []
            have = rules.get(kafka_users.principal(user), set())
            added, removed = users.sync_acls(user, wanted, scope, have)
            result.acls_added += added
            result.acls_removed += removed

    await kafka_users.run(settings.kafka, apply)
    service_keys = [
        (party, ensure_signer(settings.for_party(party).signing_key_file), "") for party in SERVICES
    ]
    result.keys_registered = await register_keys(settings, registry, admin, service_keys)
    return result


@dataclass(frozen=True)
class ConsumerCredentials:
    """What a data consumer is given: its folder (Kafka password, signing key, identity)."""

    principal_id: str
    party: str
    folder: Path


async def provision_consumer(
    settings: Settings,
    registry: TopicRegistry,
    principal_id: str,
    name: str,
    credentials_root: Path | None = None,
) -> ConsumerCredentials:
    """A Kafka user with the consumer's rights, a signing key registered on the log for
    this principal, and the folder holding both (under `credentials_root`, by default the
    platform's credentials folder), for a consumer principal."""
    party = f"{CONSUMER_USER_PREFIX}{principal_id}"
    consumer = settings.for_party(party)
    if credentials_root is not None:
        consumer = dataclasses.replace(consumer, credentials_dir=credentials_root)
    folder = consumer.party_credentials()
    password, _ = ensure_password(consumer.kafka_password_file)
    signer = ensure_signer(consumer.signing_key_file)
    write_secret(
        folder / IDENTITY_FILE,
        json.dumps({"principal_id": principal_id, "name": name, "party": "consumer"}) + "\n",
    )

    def apply(users: kafka_users.KafkaUsers) -> None:
        users.upsert_user(party, password)
        users.sync_acls(party, registry.acl_entries("consumer"), registry_resources(registry))

    await kafka_users.run(settings.kafka, apply)
    admin = ensure_anchor(settings)
    await register_keys(settings, registry, admin, [("consumer", signer, principal_id)])
    return ConsumerCredentials(principal_id, party, folder)


def anchors_of(settings: Settings) -> list[KeyEntry]:
    return load_anchors(settings.trust_anchors_file)


class OwnerSigners:
    """Signs each fact with the key of the party that owns its type: for the operator's
    demo and the tests, which hold every party's key (a real party holds only its own).
    A consumer id seen for the first time gets a key of its own, registered on the log
    (synchronously, before the fact it signs can be sent) if `register` is given."""

    def __init__(
        self,
        parties: dict[str, Signer],
        consumers: dict[str, Signer],
        register: Callable[[str, Signer], None] | None = None,
    ):
        self.parties = parties
        self.consumers = consumers
        self._register = register

    def signer_for(self, envelope) -> Signer:
        access = FACT_ACCESS[envelope.event_type]
        if access.owner == "consumer":
            consumer_id = getattr(payload_of(envelope), access.principal_field)
            if consumer_id not in self.consumers:
                if self._register is None:
                    raise ValueError(f"no key for consumer {consumer_id!r}")
                signer = Signer.generate()
                self._register(consumer_id, signer)
                self.consumers[consumer_id] = signer
            return self.consumers[consumer_id]
        return self.parties[access.owner]

    def seal_batch(self, envelopes) -> list[bytes]:
        return [self.signer_for(envelope).seal(envelope) for envelope in envelopes]


async def owner_signers(
    settings: Settings, registry: TopicRegistry, consumer_ids=()
) -> OwnerSigners:
    """Every service's key and the admin's from the credentials folder, and a key for each
    consumer principal in `consumer_ids` (created and registered under `registry`, as a
    consumer of that id would have)."""
    admin = ensure_anchor(settings)
    parties = {"admin": admin}
    for party in SERVICES:
        parties[party] = ensure_signer(settings.for_party(party).signing_key_file)
    consumers = {consumer_id: Signer.generate() for consumer_id in consumer_ids}
    await register_keys(
        settings,
        registry,
        admin,
        [(party, signer, "") for party, signer in parties.items() if party != "admin"]
        + [("consumer", signer, consumer_id) for consumer_id, signer in consumers.items()],
    )
    return OwnerSigners(parties, consumers, _registrar(settings, registry, admin))


def _registrar(settings: Settings, registry: TopicRegistry, admin: Signer):
    """Registers a consumer key and waits for the broker's acknowledgement, without an
    event loop (OwnerSigners signs synchronously)."""
    from confluent_kafka import Producer

    producer = Producer(
        {**settings.kafka.librdkafka_config(), "enable.idempotence": True, "acks": "all"}
    )
    topic = registry.fact_topic("key.registered")

    def register(consumer_id: str, signer: Signer) -> None:
        valid_from = datetime.now(UTC) - _VALID_FROM_MARGIN
        envelope = key_registration(admin, "consumer", signer, consumer_id, valid_from=valid_from)
        failures: list[str] = []
        producer.produce(
            topic,
            key=envelope.key.encode(),
            value=admin.seal(envelope),
            on_delivery=lambda error, _: failures.append(str(error)) if error else None,
        )
        if producer.flush(30) or failures:
            raise RuntimeError(f"could not register a key for consumer {consumer_id}: {failures}")

    return register


async def remove(settings: Settings, registry: TopicRegistry) -> None:
    """Undo `prepare` for a registry (tests): its topics, and every party's rules on them."""
    from aiokafka.admin import AIOKafkaAdminClient

    resources = {
        (entry.resource_type, entry.name, entry.pattern)
        for party in ("admin", *STACK_PARTIES, "consumer")
        for entry in registry.acl_entries(party)
    }
    await kafka_users.run(settings.kafka, lambda users: users.delete_resource_acls(resources))
    admin = AIOKafkaAdminClient(**settings.kafka.client_options(), request_timeout_ms=30_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        names = [spec.name for spec in registry.specs() if spec.name in existing]
        names += [t for t in existing if t.startswith(f"{registry.preprocess_app_id}-")]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


@dataclass(frozen=True)
class Rotation:
    party: str
    old_key_id: str
    new_key_id: str
    old_valid_until: datetime


async def rotate_key(
    settings: Settings,
    registry: TopicRegistry,
    party: str,
    grace: timedelta,
    credentials_root: Path | None = None,
) -> Rotation:
    """Give `party` a new signing key: register it, store it in the party's folder (the
    old one is kept beside it, named after its key id), and retire the old key `grace`
    from now. The party must restart within `grace` to sign with the new key; facts the
    broker appended before the old key's end still verify."""
    if party not in SERVICES and not party.startswith(CONSUMER_USER_PREFIX):
        raise ValueError(f"only a service's or a consumer's key rotates here, not {party!r}")
    admin = ensure_anchor(settings)
    folder = settings.for_party(party)
    if credentials_root is not None:
        folder = dataclasses.replace(folder, credentials_dir=credentials_root)
    old = Signer.from_file(folder.signing_key_file)
    new = Signer.generate()
    principal_id, kind = "", party
    if party.startswith(CONSUMER_USER_PREFIX):
        kind, principal_id = "consumer", party.removeprefix(CONSUMER_USER_PREFIX)
    await register_keys(settings, registry, admin, [(kind, new, principal_id)])
    old.write(folder.signing_key_file.with_name(f"signing.{old.key_id.split(':')[1]}.key"))
    new.write(folder.signing_key_file)
    until = datetime.now(UTC) + grace
    retirement = key_registration(
        admin, kind, old, principal_id, valid_from=datetime.now(UTC) - _VALID_FROM_MARGIN
    )
    retirement.key_registered.valid_until.CopyFrom(timestamp(until))
    retirement.event_id = derived_id("key.registered", old.key_id, "retired", until.isoformat())
    async with FactProducer(settings.kafka, registry, client_id="1tt-admin", signer=admin) as out:
        await out.publish(retirement)
    return Rotation(party, old.key_id, new.key_id, until)


async def register_service_keys(
    settings: Settings, registry: TopicRegistry, parties: tuple[str, ...] = SERVICES
) -> list[str]:
    """Register the public halves of the services' existing signing keys on the log (and
    nothing else: no topics, users or new keys), for a deployment whose topics and users
    are made elsewhere (Strimzi's KafkaTopic and KafkaUser resources). The admin's key
    must be a trust anchor already."""
    admin = Signer.from_file(settings.for_party("admin").signing_key_file)
    if admin.key_id not in {a.key_id for a in load_anchors(settings.trust_anchors_file)}:
        raise ValueError(
            f"the admin's key {admin.key_id} is not in {settings.trust_anchors_file}: readers "
            "would refuse every registration it signs"
        )
    keys = [
        (party, Signer.from_file(settings.for_party(party).signing_key_file), "")
        for party in parties
    ]
    return await register_keys(settings, registry, admin, keys)

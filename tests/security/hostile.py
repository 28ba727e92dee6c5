"""Hostile facts: what an attacker who can write to a fact topic publishes, made from the
genuine facts already on the log. Each one, if any reader trusted it, would change money,
identities or reports; each must be dead-lettered (or, on a topic no service reads, left
untrusted) and change nothing.

The forms, for every fact type:
- unsigned: the forged fact with no signature at all;
- unknown key: signed with the attacker's own key, registered nowhere;
- stolen key: signed with the genuine key of a party that does not own the type (as if
  that party's credentials were stolen);
- altered: a genuine fact changed after signing, its signature kept;
- for a consumer's fact, also the genuine consumer key speaking for another consumer;
- a key registration signed by a non-anchor, and a fact signed with that key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.common.facts import (
    Envelope,
    encode,
    make_envelope,
    payload_of,
    spec_for_event_type,
    timestamp,
)
from services.common.signing import Signer, raw_public_key, signed_body
from services.common.topics import FACT_ACCESS, SERVICES, TopicRegistry
from tt.facts.v1 import identity_pb2

# A well-formed API key of the attacker's making, for a forged operator principal.
ATTACKER_API_KEY = "tt_deadbeef_" + "A" * 43
ATTACKER_KEY_SHA256 = hashlib.sha256(ATTACKER_API_KEY.encode()).hexdigest()


def subscriptions() -> dict[str, tuple[str, ...]]:
    """The fact types each service subscribes to (and so dead-letters when forged)."""
    from services.ingest import projection as ingest
    from services.ledger import projection as ledger
    from services.payout import projection as payout

    return {
        "ingest": ingest.EVENT_TYPES,
        "ledger": ledger.EVENT_TYPES,
        "payout": payout.EVENT_TYPES,
        "preprocess": ("contribution.received", "reference.registered"),
    }


@dataclass(frozen=True)
class Hostile:
    """One forged record, and how it was forged."""

    event_type: str
    form: str
    topic: str
    key: bytes
    value: bytes

    def __str__(self) -> str:
        return f"{self.event_type} ({self.form})"


def _copy(envelope: Envelope) -> Envelope:
    clone = Envelope()
    clone.CopyFrom(envelope)
    clone.ClearField("signature")
    return clone


def forge(genuine: Envelope, tag: str, attacker_id: str) -> Envelope:
    """The genuine fact turned against its owner: a new event id and entity id (so that it
    is a new fact, not a resend), money redirected or inflated, roles raised."""
    fact = _copy(genuine)
    fact.event_id = f"forged-{tag}-{genuine.event_id}"[:200]
    payload = payload_of(fact)
    spec = spec_for_event_type(fact.event_type)
    forged_id = f"forged-{tag}-{getattr(payload, spec.key_field)}"[:200]
    setattr(payload, spec.key_field, forged_id)
    fact.key = forged_id
    if hasattr(payload, "contributor_id") and spec.key_field != "contributor_id":
        payload.contributor_id = attacker_id
    if fact.event_type == "principal.registered":
        payload.role = identity_pb2.ROLE_OPERATOR
        payload.api_key_sha256 = ATTACKER_KEY_SHA256
    elif fact.event_type == "allocation.made":
        payload.allocated_micros = payload.pool_micros
    elif fact.event_type == "payout.issued":
        payload.amount_minor = 925_000
    elif fact.event_type == "revenue.recorded":
        payload.amount_minor *= 100
    elif fact.event_type == "agreement.published":
        payload.share_bps = 1
    return fact


def _altered(value: bytes, genuine: Envelope) -> bytes:
    """The genuine record with one payload byte changed and its signature kept."""
    body = signed_body(value, genuine)
    tail = value[len(body) :]
    changed = _copy(genuine)
    payload = payload_of(changed)
    spec = spec_for_event_type(changed.event_type)
    # The entity id changes (the envelope key with it): a valid fact, but not the signed one.
    new_id = f"{getattr(payload, spec.key_field)}x"[:200]
    setattr(payload, spec.key_field, new_id)
    changed.key = new_id
    return encode(changed) + tail


def hostile_facts(
    genuine: dict[str, tuple[Envelope, bytes]],
    registry: TopicRegistry,
    stolen: dict[str, Signer],
    attacker_id: str,
) -> list[Hostile]:
    """Forged records for every fact type in `genuine` (event type -> a genuine fact and
    its record value). `stolen` holds genuine keys of parties, as an attacker who stole
    their credentials would: each service's, and "consumer" (a registered consumer's)."""
    attacker = Signer.generate()
    out: list[Hostile] = []
    for event_type, (envelope, value) in sorted(genuine.items()):
        topic = registry.fact_topic(event_type)
        owner = FACT_ACCESS[event_type].owner
        thief = next(
            party for party in ("consumer", *SERVICES) if party != owner and party in stolen
        )

        def add(form: str, record: bytes, forged: Envelope, event_type=event_type, topic=topic):
            out.append(Hostile(event_type, form, topic, forged.key.encode(), record))

        unsigned = forge(envelope, "unsigned", attacker_id)
        add("unsigned", encode(unsigned), unsigned)
        unknown = forge(envelope, "unknown-key", attacker_id)
        add("signed by an unknown key", attacker.seal(unknown), unknown)
        wrong = forge(envelope, f"stolen-{thief}", attacker_id)
        add(f"signed with {thief}'s stolen key", stolen[thief].seal(wrong), wrong)
        add("altered after signing", _altered(value, envelope), envelope)
        if owner == "consumer" and "consumer" in stolen:
            other = forge(envelope, "other-consumer", attacker_id)
            field = FACT_ACCESS[event_type].principal_field
            setattr(payload_of(other), field, f"{getattr(payload_of(envelope), field)}-victim")
            add("the consumer speaking for another", stolen["consumer"].seal(other), other)
    return out


def rogue_key(
    registry: TopicRegistry, impostor: Signer, victim: Envelope, attacker_id: str
) -> list[Hostile]:
    """A key registration for the ledger signed by `impostor` (no trust anchor), and an
    allocation (forged from `victim`, a genuine one) signed with the key it registers."""
    rogue = Signer.generate()
    registration = identity_pb2.KeyRegistered(
        key_id=rogue.key_id, party="ledger", public_key=raw_public_key(rogue.public_key)
    )
    now = datetime.now(UTC)
    registration.valid_from.CopyFrom(timestamp(now - timedelta(hours=1)))
    envelope = make_envelope(
        registration,
        event_id=f"forged-rogue-{rogue.key_id}",
        producer="attacker",
        occurred_at=now,
        recorded_at=now,
    )
    allocation = forge(victim, "rogue-key", attacker_id)
    return [
        Hostile(
            "key.registered",
            "a key registered by a non-anchor",
            registry.fact_topic("key.registered"),
            envelope.key.encode(),
            impostor.seal(envelope),
        ),
        Hostile(
            "allocation.made",
            "signed with a key a non-anchor registered",
            registry.fact_topic("allocation.made"),
            allocation.key.encode(),
            rogue.seal(allocation),
        ),
    ]

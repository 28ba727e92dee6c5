"""Signed facts (services.common.signing) and the Merkle batch under them: every way a
fact can claim an author it does not have is refused, each with a reason."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common import signing
from services.common.examples import example_envelopes
from services.common.facts import Envelope, decode
from services.common.signing import (
    KeyEntry,
    Keyring,
    SignatureError,
    Signer,
    UnknownKeyError,
    entry_from_fact,
    key_id_of,
    raw_public_key,
    signed_body,
)
from services.common.topics import FACT_ACCESS
from services.rules import merkle
from tt.facts.v1 import identity_pb2

T0 = datetime(2026, 12, 1, tzinfo=UTC)
NOW_MS = int((T0 + timedelta(days=1)).timestamp() * 1000)
EXAMPLES = {e.event_type: e for e in example_envelopes("signing")}


class Parties:
    """A keyring with an admin anchor, a key per service and one for consumer "consumer"."""

    def __init__(self):
        self.admin = Signer.generate()
        self.signers = {p: Signer.generate() for p in ("ingest", "preprocess", "ledger", "payout")}
        self.consumer = Signer.generate()
        self.keyring = Keyring([self.admin.entry("admin", T0)])
        for party, signer in self.signers.items():
            self.keyring._keys[signer.key_id] = signer.entry(party, T0)
        self.keyring._keys[self.consumer.key_id] = self.consumer.entry("consumer", T0, "consumer")

    def owner_of(self, envelope: Envelope) -> Signer:
        owner = FACT_ACCESS[envelope.event_type].owner
        return {"admin": self.admin, "consumer": self.consumer, **self.signers}[owner]


@pytest.fixture
def parties() -> Parties:
    return Parties()


def copy(envelope: Envelope) -> Envelope:
    clone = Envelope()
    clone.CopyFrom(envelope)
    return clone


# -- the Merkle batch ----------------------------------------------------------------


@pytest.mark.parametrize("count", [*range(1, 18), 31, 32, 33, 100])
def test_every_leaf_path_leads_to_the_root(count):
    leaves = [merkle.leaf_digest(f"fact {i}".encode()) for i in range(count)]
    root, paths = merkle.root_and_paths(leaves)
    assert root == merkle.root(leaves)
    for index, path in enumerate(paths):
        assert merkle.root_from_path(leaves[index], index, count, path) == root


@given(st.integers(2, 64), st.data())
@settings(max_examples=200)
def test_a_changed_sibling_index_or_size_changes_the_root(count, data):
    leaves = [merkle.leaf_digest(bytes([i])) for i in range(count)]
    root, paths = merkle.root_and_paths(leaves)
    index = data.draw(st.integers(0, count - 1))
    path = paths[index]
    if path:
        bad = list(path)
        bad[data.draw(st.integers(0, len(bad) - 1))] = merkle.leaf_digest(b"forged")
        assert merkle.root_from_path(leaves[index], index, count, bad) != root
    other = data.draw(st.integers(0, count - 1).filter(lambda i: leaves[i] != leaves[index]))
    try:
        assert merkle.root_from_path(leaves[other], index, count, path) != root
    except merkle.MerkleProofError:
        pass


def test_a_path_of_the_wrong_length_is_refused():
    leaves = [merkle.leaf_digest(bytes([i])) for i in range(5)]
    _, paths = merkle.root_and_paths(leaves)
    with pytest.raises(merkle.MerkleProofError, match="shorter"):
        merkle.root_from_path(leaves[0], 0, 5, paths[0][:-1])
    with pytest.raises(merkle.MerkleProofError, match="longer"):
        merkle.root_from_path(leaves[0], 0, 5, [*paths[0], leaves[1]])
    with pytest.raises(merkle.MerkleProofError, match="cannot be in"):
        merkle.root_from_path(leaves[0], 5, 5, paths[0])


# -- one fact, one signature -----------------------------------------------------------


@pytest.mark.parametrize("event_type", sorted(FACT_ACCESS))
def test_a_fact_signed_by_its_owner_verifies(parties, event_type):
    envelope = EXAMPLES[event_type]
    value = parties.owner_of(envelope).seal(envelope)
    signer = parties.keyring.verify(value, decode(value), NOW_MS)
    assert signer.party == FACT_ACCESS[event_type].owner
    assert decode(value).event_id == envelope.event_id


@pytest.mark.parametrize("event_type", sorted(FACT_ACCESS))
def test_a_fact_signed_by_any_other_party_is_refused(parties, event_type):
    """A stolen credential of one party cannot publish another party's facts."""
    envelope = EXAMPLES[event_type]
    owner = parties.owner_of(envelope)
    for thief in [parties.admin, parties.consumer, *parties.signers.values()]:
        if thief is owner:
            continue
        value = thief.seal(envelope)
        with pytest.raises(SignatureError, match="may be published only by"):
            parties.keyring.verify(value, decode(value), NOW_MS)


def test_a_consumer_cannot_speak_for_another_consumer(parties):
    envelope = copy(EXAMPLES["revenue.recorded"])
    envelope.revenue_recorded.consumer_id = "someone-else"
    value = parties.consumer.seal(envelope)
    with pytest.raises(SignatureError, match="a consumer speaks only for itself"):
        parties.keyring.verify(value, decode(value), NOW_MS)


def test_an_unsigned_fact_is_refused(parties):
    envelope = EXAMPLES["allocation.made"]
    value = envelope.SerializeToString(deterministic=True)
    with pytest.raises(SignatureError, match="carries no signature"):
        parties.keyring.verify(value, decode(value), NOW_MS)


def test_every_altered_byte_is_detected(parties):
    envelope = EXAMPLES["payout.issued"]
    value = parties.signers["payout"].seal(envelope)
    body_length = len(signed_body(value, decode(value)))
    rng = random.Random(14)
    for position in rng.sample(range(body_length), min(body_length, 60)):
        altered = bytearray(value)
        altered[position] ^= 0x01
        altered = bytes(altered)
        try:
            parsed = decode(altered)
        except ValueError:
            continue  # no longer an envelope at all: the bus dead-letters it for that
        with pytest.raises(SignatureError):
            parties.keyring.verify(altered, parsed, NOW_MS)


def test_a_signature_copied_onto_another_fact_is_refused(parties):
    genuine = parties.signers["payout"].seal(EXAMPLES["payout.issued"])
    forged_fact = copy(EXAMPLES["payout.issued"])
    forged_fact.payout_issued.amount_minor *= 100
    forged = (
        forged_fact.SerializeToString(deterministic=True)
        + genuine[len(signed_body(genuine, decode(genuine))) :]
    )
    with pytest.raises(SignatureError, match="does not verify"):
        parties.keyring.verify(forged, decode(forged), NOW_MS)


def test_the_signature_must_be_the_last_field(parties):
    value = parties.signers["payout"].seal(EXAMPLES["payout.issued"])
    body = signed_body(value, decode(value))
    moved = value[len(body) :] + body  # protobuf parses it the same; the signed bytes differ
    with pytest.raises(SignatureError, match="last field"):
        parties.keyring.verify(moved, decode(moved), NOW_MS)


def test_an_unknown_key_is_refused_as_unknown(parties):
    value = Signer.generate().seal(EXAMPLES["allocation.made"])
    with pytest.raises(UnknownKeyError, match="unknown key"):
        parties.keyring.verify(value, decode(value), NOW_MS)


def test_a_key_verifies_only_facts_appended_while_it_was_valid(parties):
    signer = parties.signers["ledger"]
    entry = parties.keyring.get(signer.key_id)
    until = NOW_MS + 1000
    parties.keyring._keys[signer.key_id] = KeyEntry(
        entry.key_id, entry.party, entry.public_key, entry.valid_from_ms, until
    )
    value = signer.seal(EXAMPLES["allocation.made"])
    assert parties.keyring.verify(value, decode(value), until - 1)
    with pytest.raises(SignatureError, match="was not valid when the fact was appended"):
        parties.keyring.verify(value, decode(value), until)
    with pytest.raises(SignatureError, match="was not valid"):
        parties.keyring.verify(value, decode(value), entry.valid_from_ms - 1)


# -- batches -----------------------------------------------------------------------------


def test_each_fact_of_a_batch_verifies_alone_in_any_order_with_one_signature_check(
    parties, monkeypatch
):
    signer = parties.signers["ledger"]
    envelopes = []
    for i in range(37):
        envelope = copy(EXAMPLES["allocation.made"])
        envelope.event_id = f"allocation-{i}"
        envelopes.append(envelope)
    values = signer.seal_batch(envelopes)
    checks = []
    original = signing.ed25519_verify

    def counting(key, signature, message):
        checks.append(message)
        return original(key, signature, message)

    monkeypatch.setattr(signing, "ed25519_verify", counting)
    order = list(range(len(values)))
    random.Random(3).shuffle(order)
    for index in order:
        assert parties.keyring.verify(values[index], decode(values[index]), NOW_MS)
        assert decode(values[index]).event_id == f"allocation-{index}"
    assert len(checks) == 1


def test_a_fact_moved_to_another_position_of_its_batch_is_refused(parties):
    envelopes = [copy(EXAMPLES["allocation.made"]) for _ in range(4)]
    for i, envelope in enumerate(envelopes):
        envelope.event_id = f"a{i}"
    values = parties.signers["ledger"].seal_batch(envelopes)
    moved = decode(values[2])
    moved.signature.leaf_index = 1
    value = moved.SerializeToString(deterministic=True)
    with pytest.raises(SignatureError):
        parties.keyring.verify(value, decode(value), NOW_MS)


def test_a_fact_cannot_be_signed_twice():
    signer = Signer.generate()
    value = signer.seal(EXAMPLES["allocation.made"])
    with pytest.raises(ValueError, match="already signed"):
        signer.seal(decode(value))


# -- keys registered on the log ------------------------------------------------------------


def registration(admin: Signer, party: str, key: Signer, principal_id: str = "", until=None):
    fact = identity_pb2.KeyRegistered(
        key_id=key.key_id,
        party=party,
        principal_id=principal_id,
        public_key=raw_public_key(key.public_key),
    )
    fact.valid_from.FromMilliseconds(int(T0.timestamp() * 1000))
    if until is not None:
        fact.valid_until.FromMilliseconds(until)
    envelope = copy(EXAMPLES["key.registered"])
    envelope.key_registered.CopyFrom(fact)
    envelope.key = fact.key_id
    envelope.event_id = f"key-{fact.key_id}-{until}"
    return admin.seal(envelope)


def test_a_key_registered_by_the_anchor_is_trusted_for_its_party_only():
    admin = Signer.generate()
    keyring = Keyring([admin.entry("admin", T0)])
    ledger = Signer.generate()
    value = registration(admin, "ledger", ledger)
    assert keyring.register(value, decode(value), NOW_MS).party == "ledger"
    allocation = ledger.seal(EXAMPLES["allocation.made"])
    assert keyring.verify(allocation, decode(allocation), NOW_MS).party == "ledger"
    payout = ledger.seal(EXAMPLES["payout.issued"])
    with pytest.raises(SignatureError, match="only by payout"):
        keyring.verify(payout, decode(payout), NOW_MS)


def test_a_key_registration_not_signed_by_an_anchor_is_refused():
    admin = Signer.generate()
    keyring = Keyring([admin.entry("admin", T0)])
    impostor = Signer.generate()
    value = registration(impostor, "ledger", Signer.generate())
    assert keyring.register(value, decode(value), NOW_MS) is None
    assert "must be signed by a trust anchor" in keyring.refused[-1][1]


def test_a_key_registration_is_refused_alike_whether_its_signer_is_known_or_not():
    """The verdict on a registration signed by a registered (non-anchor) key does not
    depend on whether that key's own registration was read first."""
    admin = Signer.generate()
    party = Signer.generate()
    forged = registration(party, "ledger", Signer.generate())
    reasons = []
    for party_known_first in (True, False):
        keyring = Keyring([admin.entry("admin", T0)])
        if party_known_first:
            own = registration(admin, "payout", party)
            assert keyring.register(own, decode(own), NOW_MS) is not None
        assert keyring.register(forged, decode(forged), NOW_MS) is None
        reasons.append(keyring.refused[-1][1])
    assert reasons[0] == reasons[1]
    assert party.key_id in reasons[0]


def test_a_key_id_that_does_not_match_its_key_is_refused():
    admin = Signer.generate()
    keyring = Keyring([admin.entry("admin", T0)])
    victim, attacker = Signer.generate(), Signer.generate()
    envelope = decode(registration(admin, "ledger", victim))
    envelope.ClearField("signature")
    envelope.key_registered.public_key = raw_public_key(attacker.public_key)
    value = admin.seal(envelope)
    assert keyring.register(value, decode(value), NOW_MS) is None
    assert "not derived from the public key" in keyring.refused[-1][1]


def test_a_registration_can_retire_a_key_but_never_revive_it():
    admin = Signer.generate()
    keyring = Keyring([admin.entry("admin", T0)])
    ledger = Signer.generate()
    for value in (
        registration(admin, "ledger", ledger),
        registration(admin, "ledger", ledger, until=NOW_MS),
        registration(admin, "ledger", ledger),  # an attempt to lift the retirement
        registration(admin, "payout", ledger),  # or to change the key's party
    ):
        keyring.register(value, decode(value), NOW_MS - 10)
    entry = keyring.get(ledger.key_id)
    assert (entry.party, entry.valid_until_ms) == ("ledger", NOW_MS)
    assert any("another key or party" in reason for _, reason in keyring.refused)


def test_the_log_cannot_retire_a_trust_anchor():
    admin = Signer.generate()
    keyring = Keyring([admin.entry("admin", T0)])
    value = registration(admin, "admin", admin, until=NOW_MS)
    keyring.register(value, decode(value), NOW_MS - 10)
    assert keyring.get(admin.key_id).valid_until_ms is None


def test_entry_from_fact_checks_the_key_id():
    key = Signer.generate()
    fact = identity_pb2.KeyRegistered(
        key_id=key_id_of(key.public_key), party="ingest", public_key=raw_public_key(key.public_key)
    )
    assert entry_from_fact(fact).key_id == key.key_id
    fact.public_key = b"\x00" * 32
    with pytest.raises(ValueError, match="not derived"):
        entry_from_fact(fact)

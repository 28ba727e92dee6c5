"""Signed facts: every fact says, verifiably, which party produced it (docs/security.md).

Wire form. A fact's record value is the envelope serialised without a signature (the
body), followed by one more protobuf field, Envelope.signature, appended by the signer.
Parsing the value gives the envelope with its signature, and the signed bytes are the body
exactly as transmitted: a verifier never re-serialises anything.

What is signed. Facts are signed in batches (one fact is a batch of one): each body is a
leaf, SHA-256(0x00 || body); the batch root is their Merkle tree's root
(services.common.merkle); Ed25519 signs b"1tt.facts.v1.batch" 0x00 || root. Each fact
carries the signature, its position, the batch size and its inclusion path, so it verifies
on its own, in any order, with one Ed25519 check per batch (results are cached by root).

Who may sign what. A key is a trust anchor from configuration (the admin's keys) or a
key.registered fact signed by an anchor. A fact verifies if its key is known, the broker
appended it within the key's validity, the signature holds, the key's party owns the fact
type (services.common.topics.FACT_ACCESS), and, for a data consumer's fact, the payload
names the consumer the key speaks for.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from services.common.facts import Envelope, encode, payload_of
from services.common.topics import FACT_ACCESS, PARTIES
from services.rules import merkle

SIGNED_PREFIX = b"1tt.facts.v1.batch\x00"
KEY_ID_PREFIX = "ed25519:"
_VERIFIED_CACHE_SIZE = 4096


class SignatureError(ValueError):
    """A fact's signature does not prove that a party allowed to publish it did."""


class UnknownKeyError(SignatureError):
    """The fact is signed with a key this reader has not (yet) seen registered."""


def key_id_of(public_key: Ed25519PublicKey | bytes) -> str:
    raw = public_key if isinstance(public_key, bytes) else raw_public_key(public_key)
    return KEY_ID_PREFIX + hashlib.sha256(raw).hexdigest()[:32]


def raw_public_key(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class KeyEntry:
    """A public key and what it may sign for."""

    key_id: str
    party: str
    public_key: Ed25519PublicKey
    valid_from_ms: int
    valid_until_ms: int | None = None
    # The consumer principal a consumer's key speaks for; "" for other parties.
    principal_id: str = ""

    @property
    def speaker(self) -> str:
        """Who the key speaks for, for reports: "ledger", "consumer 6f1c...", ..."""
        return f"{self.party} {self.principal_id}" if self.principal_id else self.party

    def valid_at(self, appended_ms: int) -> bool:
        return self.valid_from_ms <= appended_ms and (
            self.valid_until_ms is None or appended_ms < self.valid_until_ms
        )


class Signer:
    """Signs facts with one party's private key."""

    def __init__(self, private_key: Ed25519PrivateKey):
        self._private_key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id_of(self.public_key)

    @classmethod
    def generate(cls) -> Signer:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_file(cls, path: Path) -> Signer:
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"no signing key at {path}: run 'make up' (1tt stack prepare creates the "
                "services' keys) or give this party its key"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return cls(key)

    def write(self, path: Path) -> None:
        """Store the private key (PEM, PKCS#8), readable by its owner only."""
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = self._private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        temporary = path.with_name(path.name + ".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
        temporary.replace(path)

    def seal(self, envelope: Envelope) -> bytes:
        """The record value of one signed fact."""
        return self.seal_batch([envelope])[0]

    def seal_batch(self, envelopes: Sequence[Envelope]) -> list[bytes]:
        """Record values for facts signed together: one Ed25519 signature for the batch."""
        bodies = []
        for envelope in envelopes:
            if envelope.HasField("signature"):
                raise ValueError(f"fact {envelope.event_id} is already signed")
            bodies.append(encode(envelope))
        root, paths = merkle.root_and_paths([merkle.leaf_digest(body) for body in bodies])
        signature = self._private_key.sign(SIGNED_PREFIX + root)
        return [
            body + _signature_field(self.key_id, signature, index, len(bodies), paths[index])
            for index, body in enumerate(bodies)
        ]

    def entry(self, party: str, valid_from: datetime, principal_id: str = "") -> KeyEntry:
        return KeyEntry(self.key_id, party, self.public_key, _ms(valid_from), None, principal_id)


def _signature_field(
    key_id: str, signature: bytes, index: int, count: int, path: Sequence[bytes]
) -> bytes:
    carrier = Envelope()
    carrier.signature.key_id = key_id
    carrier.signature.signature = signature
    carrier.signature.leaf_index = index
    carrier.signature.leaf_count = count
    carrier.signature.path.extend(path)
    return carrier.SerializeToString(deterministic=True)


def signed_body(value: bytes, envelope: Envelope) -> bytes:
    """The bytes the signature covers: the record value without its trailing signature
    field. SignatureError if the fact is unsigned or the signature is not the last field."""
    if not envelope.HasField("signature"):
        raise SignatureError("the fact carries no signature")
    sig = envelope.signature
    tail = _signature_field(sig.key_id, sig.signature, sig.leaf_index, sig.leaf_count, sig.path)
    if len(value) <= len(tail) or not value.endswith(tail):
        raise SignatureError(
            "the signature is not the record's last field: it must be appended to the "
            "signed body as the signer does (services.common.signing)"
        )
    return value[: -len(tail)]


class Keyring:
    """The public keys a reader trusts: anchors from configuration, and keys registered
    by key.registered facts that an anchor signed."""

    def __init__(self, anchors: Iterable[KeyEntry] = ()):
        self._keys: dict[str, KeyEntry] = {}
        self.anchor_ids: set[str] = set()
        for anchor in anchors:
            if anchor.party != "admin":
                raise ValueError(f"trust anchor {anchor.key_id} must be an admin key")
            self._keys[anchor.key_id] = anchor
            self.anchor_ids.add(anchor.key_id)
        self._verified: OrderedDict[tuple[str, bytes, bytes], None] = OrderedDict()
        # Facts may be verified in a worker thread while the event loop registers keys.
        self._lock = threading.Lock()
        # Key registrations that were refused, with the reason (the audit lists them).
        self.refused: list[tuple[str, str]] = []

    def __contains__(self, key_id: str) -> bool:
        return key_id in self._keys

    def get(self, key_id: str) -> KeyEntry | None:
        return self._keys.get(key_id)

    def entries(self) -> list[KeyEntry]:
        return list(self._keys.values())

    def verify(self, value: bytes, envelope: Envelope, appended_ms: int) -> KeyEntry:
        """The key that signed this fact, if the signature proves the fact's owner
        produced it; SignatureError (UnknownKeyError for an unseen key) saying why not.
        `appended_ms` is the broker's append time (LogAppendTime) of the record."""
        body = signed_body(value, envelope)
        sig = envelope.signature
        key = self._keys.get(sig.key_id)
        if key is None:
            raise UnknownKeyError(f"signed with unknown key {sig.key_id!r}")
        if not key.valid_at(appended_ms):
            raise SignatureError(
                f"key {key.key_id} ({key.speaker}) was not valid when the fact was "
                f"appended ({_iso(appended_ms)}): it is valid from {_iso(key.valid_from_ms)}"
                + (f" until {_iso(key.valid_until_ms)}" if key.valid_until_ms else "")
            )
        try:
            root = merkle.root_from_path(
                merkle.leaf_digest(body), sig.leaf_index, sig.leaf_count, sig.path
            )
        except merkle.MerkleProofError as error:
            raise SignatureError(f"the batch inclusion path is malformed: {error}") from None
        self._check_signature(key, root, sig.signature)
        _check_owner(envelope, key)
        return key

    def _check_signature(self, key: KeyEntry, root: bytes, signature: bytes) -> None:
        cache_key = (key.key_id, root, signature)
        with self._lock:
            if cache_key in self._verified:
                self._verified.move_to_end(cache_key)
                return
        if not ed25519_verify(key, signature, SIGNED_PREFIX + root):
            raise SignatureError(
                f"the signature does not verify with key {key.key_id} ({key.speaker}): "
                "the fact was altered or signed with another key"
            )
        with self._lock:
            self._verified[cache_key] = None
            if len(self._verified) > _VERIFIED_CACHE_SIZE:
                self._verified.popitem(last=False)

    def register(self, value: bytes, envelope: Envelope, appended_ms: int) -> KeyEntry | None:
        """Admit the key a key.registered fact announces, if an anchor signed it. Returns
        the entry, or None (with the reason in `refused`) if it cannot be trusted."""
        fact = envelope.key_registered
        try:
            # Checked before the signature: the anchors are configuration, so the verdict
            # cannot depend on which other registrations were read first.
            signed_with = envelope.signature.key_id
            if signed_with not in self.anchor_ids:
                raise SignatureError(
                    "key registrations must be signed by a trust anchor, not "
                    f"{signed_with or 'nobody (unsigned)'}"
                )
            self.verify(value, envelope, appended_ms)
            entry = entry_from_fact(fact)
        except (SignatureError, ValueError) as error:
            self.refused.append((fact.key_id or "(no key id)", str(error)))
            return None
        known = self._keys.get(entry.key_id)
        if known is not None and (
            raw_public_key(known.public_key) != raw_public_key(entry.public_key)
            or (known.party, known.principal_id) != (entry.party, entry.principal_id)
        ):
            self.refused.append(
                (entry.key_id, "a key id cannot be registered again for another key or party")
            )
            return None
        if known is not None and entry.key_id in self.anchor_ids:
            return known  # anchors are configuration: the log cannot retire them
        if known is not None:
            # A later registration can only retire a key (earliest end wins), never
            # extend or revive it: a stolen admin session cannot un-retire a stolen key.
            ends = [t for t in (known.valid_until_ms, entry.valid_until_ms) if t is not None]
            entry = KeyEntry(
                known.key_id,
                known.party,
                known.public_key,
                known.valid_from_ms,
                min(ends) if ends else None,
                known.principal_id,
            )
        self._keys[entry.key_id] = entry
        return entry


_VERIFY_KEYS: dict[str, VerifyKey] = {}


def ed25519_verify(key: KeyEntry, signature: bytes, message: bytes) -> bool:
    """Whether `signature` is `key`'s over `message`. libsodium (PyNaCl) does the work: about
    twice OpenSSL's speed here, and it releases the GIL, so a worker thread verifies in
    parallel with the event loop (services.common.bus)."""
    verify_key = _VERIFY_KEYS.get(key.key_id)
    if verify_key is None:
        verify_key = _VERIFY_KEYS[key.key_id] = VerifyKey(raw_public_key(key.public_key))
    try:
        verify_key.verify(message, signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


def _check_owner(envelope: Envelope, key: KeyEntry) -> None:
    access = FACT_ACCESS.get(envelope.event_type)
    if access is None:
        raise SignatureError(f"no party may publish {envelope.event_type!r} facts")
    if key.party != access.owner:
        raise SignatureError(
            f"{envelope.event_type} facts may be published only by {access.owner}; "
            f"this one is signed by {key.speaker} (key {key.key_id})"
        )
    if access.principal_field:
        named = getattr(payload_of(envelope), access.principal_field)
        if named != key.principal_id:
            raise SignatureError(
                f"the fact's {access.principal_field} is {named!r} but it is signed by the "
                f"key of consumer {key.principal_id!r}: a consumer speaks only for itself"
            )


def entry_from_fact(fact) -> KeyEntry:
    """The KeyEntry a key.registered payload describes (ValueError if inconsistent)."""
    if len(fact.public_key) != 32:
        raise ValueError("public_key must be a raw 32-byte Ed25519 key")
    if key_id_of(fact.public_key) != fact.key_id:
        raise ValueError(f"key_id {fact.key_id!r} is not derived from the public key")
    return KeyEntry(
        key_id=fact.key_id,
        party=fact.party,
        public_key=Ed25519PublicKey.from_public_bytes(fact.public_key),
        valid_from_ms=fact.valid_from.ToMilliseconds(),
        valid_until_ms=fact.valid_until.ToMilliseconds() if fact.HasField("valid_until") else None,
        principal_id=fact.principal_id,
    )


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


# ------------------------------------------------------------------ trust anchors on disk


def anchor_record(entry: KeyEntry) -> dict:
    record = {
        "key_id": entry.key_id,
        "party": entry.party,
        "public_key": base64.b64encode(raw_public_key(entry.public_key)).decode(),
        "valid_from": _iso(entry.valid_from_ms),
    }
    if entry.valid_until_ms is not None:
        record["valid_until"] = _iso(entry.valid_until_ms)
    return record


def load_anchors(path: Path) -> list[KeyEntry]:
    """The trust anchors in `path`: a JSON list of {key_id, party: "admin", public_key
    (base64 of the raw key), valid_from, valid_until (optional)}."""
    try:
        records = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no trust anchors at {path}: 'make up' creates them (1tt stack prepare)"
        ) from None
    anchors = []
    for record in records:
        public = base64.b64decode(record["public_key"])
        if key_id_of(public) != record["key_id"]:
            raise ValueError(f"{path}: key_id {record['key_id']} does not match its public key")
        until = record.get("valid_until")
        anchors.append(
            KeyEntry(
                key_id=record["key_id"],
                party=record["party"],
                public_key=Ed25519PublicKey.from_public_bytes(public),
                valid_from_ms=_ms(datetime.fromisoformat(record["valid_from"])),
                valid_until_ms=_ms(datetime.fromisoformat(until)) if until else None,
            )
        )
    return anchors


def check_party(party: str) -> str:
    if party not in PARTIES:
        raise ValueError(f"unknown party {party!r}; the parties are {', '.join(PARTIES)}")
    return party

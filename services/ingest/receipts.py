"""Signed upload receipts.

The platform signs, with Ed25519, the canonical form of a receipt body:

    b"1tt-receipt-v1\\n" + JSON of the body's fields with sorted keys, no spaces, ASCII only

where `received_at` is RFC 3339 UTC with microseconds (2026-11-27T10:00:00.123456Z) and
the integers are JSON numbers. Any language can rebuild these bytes and check the
signature with the platform's public key (docs/receipts.md). Ed25519 signatures are
deterministic, so the same body always gets the same signature.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tt.ingest.v1 import ingest_pb2

DOMAIN = b"1tt-receipt-v1\n"


class ReceiptError(ValueError):
    """A receipt or key is malformed, or a signature does not verify."""


def key_id_of(public_key_raw: bytes) -> str:
    return hashlib.sha256(public_key_raw).hexdigest()[:16]


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def body_fields(body: ingest_pb2.ReceiptBody) -> dict[str, object]:
    """The signed fields, as they appear in the canonical form and in JSON receipts."""
    return {
        "contribution_id": body.contribution_id,
        "contributor_id": body.contributor_id,
        "upload_id": body.upload_id,
        "dataset_name": body.dataset_name,
        "sha256": body.sha256,
        "byte_size": body.byte_size,
        "document_count": body.document_count,
        "received_at": format_time(body.received_at.ToDatetime(tzinfo=UTC)),
        "key_id": body.key_id,
    }


def canonical_bytes(body: ingest_pb2.ReceiptBody) -> bytes:
    """The exact bytes that are signed."""
    canonical = json.dumps(
        body_fields(body), sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )
    return DOMAIN + canonical.encode()


@dataclass(frozen=True)
class ReceiptSigner:
    private_key: Ed25519PrivateKey

    @property
    def public_key_raw(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def key_id(self) -> str:
        return key_id_of(self.public_key_raw)

    def sign(self, body: ingest_pb2.ReceiptBody) -> ingest_pb2.UploadReceipt:
        if body.key_id != self.key_id:
            raise ReceiptError(f"receipt names key {body.key_id!r}, signer is {self.key_id!r}")
        return ingest_pb2.UploadReceipt(
            body=body, signature=self.private_key.sign(canonical_bytes(body))
        )


def verify(receipt: ingest_pb2.UploadReceipt, public_key_raw: bytes) -> None:
    """Raise ReceiptError unless `receipt` was signed by the key `public_key_raw`."""
    if receipt.body.key_id != key_id_of(public_key_raw):
        raise ReceiptError(
            f"the receipt was signed with key {receipt.body.key_id}, not with the given key "
            f"{key_id_of(public_key_raw)}"
        )
    try:
        Ed25519PublicKey.from_public_bytes(public_key_raw).verify(
            receipt.signature, canonical_bytes(receipt.body)
        )
    except InvalidSignature:
        raise ReceiptError(
            "the signature does not match the receipt's fields: the receipt was altered or "
            "was not issued by this platform"
        ) from None


def receipt_to_json(receipt: ingest_pb2.UploadReceipt) -> dict:
    """The receipt as `1tt contribute --json` prints and `1tt verify-receipt` reads it."""
    return {
        **body_fields(receipt.body),
        "signature": base64.b64encode(receipt.signature).decode(),
        "replayed": receipt.replayed,
    }


def receipt_from_json(data: dict) -> ingest_pb2.UploadReceipt:
    try:
        body = ingest_pb2.ReceiptBody(
            contribution_id=data["contribution_id"],
            contributor_id=data["contributor_id"],
            upload_id=data["upload_id"],
            dataset_name=data["dataset_name"],
            sha256=data["sha256"],
            byte_size=int(data["byte_size"]),
            document_count=int(data["document_count"]),
            key_id=data["key_id"],
        )
        received = data["received_at"]
        body.received_at.FromDatetime(
            datetime.strptime(received, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        )
        signature = base64.b64decode(data["signature"], validate=True)
    except (KeyError, TypeError, ValueError) as error:
        raise ReceiptError(f"not a 1tt receipt: {error!r}") from None
    return ingest_pb2.UploadReceipt(body=body, signature=signature)


def generate_signing_key(path: Path) -> None:
    """Write a new Ed25519 private key (base64 of the raw 32 bytes), mode 0600. Refuses to
    overwrite: replacing the key would make every issued receipt unverifiable."""
    raw = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(base64.b64encode(raw).decode() + "\n")


def load_signer(path: Path) -> ReceiptSigner:
    try:
        raw = base64.b64decode(path.read_text().strip(), validate=True)
        return ReceiptSigner(Ed25519PrivateKey.from_private_bytes(raw))
    except FileNotFoundError:
        raise ReceiptError(
            f"receipt signing key {path} does not exist; run 'make up' "
            "(or '1tt admin init-secrets') to create it"
        ) from None
    except ValueError as error:
        raise ReceiptError(
            f"receipt signing key {path} is not a base64 Ed25519 key: {error}"
        ) from None

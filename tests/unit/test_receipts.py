from datetime import UTC, datetime

import pytest

from services.ingest.receipts import (
    ReceiptError,
    canonical_bytes,
    generate_signing_key,
    load_signer,
    receipt_from_json,
    receipt_to_json,
    verify,
)
from tt.ingest.v1 import ingest_pb2


@pytest.fixture
def signer(tmp_path):
    path = tmp_path / "signing.key"
    generate_signing_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    return load_signer(path)


def body(signer, **changes) -> ingest_pb2.ReceiptBody:
    result = ingest_pb2.ReceiptBody(
        contribution_id="c1",
        contributor_id="p1",
        upload_id="u1",
        dataset_name="manuals",
        sha256="ab" * 32,
        byte_size=1234,
        document_count=7,
        key_id=signer.key_id,
    )
    result.received_at.FromDatetime(datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=UTC))
    for name, value in changes.items():
        setattr(result, name, value)
    return result


def test_a_signed_receipt_verifies_and_survives_json(signer):
    receipt = signer.sign(body(signer))
    verify(receipt, signer.public_key_raw)
    again = receipt_from_json(receipt_to_json(receipt))
    verify(again, signer.public_key_raw)
    assert again.body == receipt.body


@pytest.mark.parametrize(
    "field, value",
    [
        ("byte_size", 1235),
        ("document_count", 8),
        ("sha256", "cd" * 32),
        ("upload_id", "u2"),
        ("contributor_id", "p2"),
        ("dataset_name", "manuals2"),
    ],
)
def test_changing_any_field_breaks_the_signature(signer, field, value):
    receipt = signer.sign(body(signer))
    setattr(receipt.body, field, value)
    with pytest.raises(ReceiptError, match="altered or was not issued"):
        verify(receipt, signer.public_key_raw)


def test_another_platform_key_does_not_verify(signer, tmp_path):
    generate_signing_key(tmp_path / "other.key")
    other = load_signer(tmp_path / "other.key")
    with pytest.raises(ReceiptError, match="signed with key"):
        verify(signer.sign(body(signer)), other.public_key_raw)


def test_the_canonical_form_is_stable(signer):
    assert canonical_bytes(body(signer)).startswith(b'1tt-receipt-v1\n{"byte_size":1234,')
    assert b'"received_at":"2026-11-27T10:00:00.123456Z"' in canonical_bytes(body(signer))


def test_a_signing_key_is_never_overwritten(tmp_path):
    generate_signing_key(tmp_path / "k")
    with pytest.raises(FileExistsError):
        generate_signing_key(tmp_path / "k")


def test_missing_key_file_says_how_to_create_it(tmp_path):
    with pytest.raises(ReceiptError, match="make up"):
        load_signer(tmp_path / "absent.key")

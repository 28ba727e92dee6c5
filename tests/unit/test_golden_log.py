"""Facts written by the first schema version must always read back the same."""

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf import json_format

from services.common.facts import BY_EVENT_TYPE, decode, encode
from services.common.signing import KeyEntry, Keyring, key_id_of
from services.common.validation import validate_envelope

GOLDEN = Path(__file__).parent.parent / "golden" / "facts-v1.jsonl"
LINES = [json.loads(line) for line in GOLDEN.read_text().splitlines() if line.strip()]


def test_the_golden_log_covers_every_fact_type():
    assert {line["envelope"]["event_type"] for line in LINES} == set(BY_EVENT_TYPE)


@pytest.mark.parametrize("line", LINES, ids=lambda line: line["envelope"]["event_type"])
def test_old_facts_still_decode_to_the_same_content_and_validate(line):
    envelope = decode(bytes.fromhex(line["bytes_hex"]))
    assert json_format.MessageToDict(envelope, preserving_proto_field_name=True) == line["envelope"]
    validate_envelope(envelope)
    assert encode(envelope).hex() == line["bytes_hex"]


SIGNED = [line for line in LINES if "signed_by" in line]


def test_the_golden_log_holds_a_signed_batch():
    assert len(SIGNED) >= 2
    assert {line["envelope"]["signature"]["leaf_count"] for line in SIGNED} == {len(SIGNED)}


@pytest.mark.parametrize("line", SIGNED, ids=lambda line: line["envelope"]["event_type"])
def test_signed_golden_facts_still_verify(line):
    """The signature's wire form and signed bytes are a contract with every reader and
    auditor: facts signed by the first version must verify forever."""
    public = bytes.fromhex(line["signed_by"]["public_key_hex"])
    keyring = Keyring(())
    keyring._keys[key_id_of(public)] = KeyEntry(
        key_id_of(public),
        line["signed_by"]["party"],
        Ed25519PublicKey.from_public_bytes(public),
        0,
        None,
        line["signed_by"]["principal_id"],
    )
    value = bytes.fromhex(line["bytes_hex"])
    signer = keyring.verify(value, decode(value), appended_ms=1)
    assert signer.key_id == line["envelope"]["signature"]["key_id"]

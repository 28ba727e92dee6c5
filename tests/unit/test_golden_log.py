"""Facts written by the first schema version must always read back the same."""

import json
from pathlib import Path

import pytest
from google.protobuf import json_format

from services.common.facts import BY_EVENT_TYPE, decode, encode
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

import pytest

from services.common.identity import (
    ROLES,
    api_key_from_authorization,
    api_key_sha256,
    generate_api_key,
    role_number,
)


def test_generated_keys_are_unique_and_recognisable():
    first, second = generate_api_key(), generate_api_key()
    assert first.key != second.key
    assert first.key.startswith(first.prefix + "_")
    assert first.sha256 == api_key_sha256(first.key) and len(first.sha256) == 64
    assert first.key not in first.sha256


def test_bearer_values_are_parsed_strictly():
    key = generate_api_key().key
    assert api_key_from_authorization(f"Bearer {key}") == key
    assert api_key_from_authorization(f"bearer   {key} ") == key
    assert api_key_from_authorization(key) is None
    assert api_key_from_authorization(f"Basic {key}") is None
    assert api_key_from_authorization("Bearer tt_nothex00_short") is None
    assert api_key_from_authorization(None) is None


def test_roles_are_named():
    assert set(ROLES) == {"contributor", "consumer", "auditor", "operator"}
    with pytest.raises(ValueError, match="choose one of contributor, consumer"):
        role_number("admin")

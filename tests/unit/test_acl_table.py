"""The ACL table (services.common.topics.FACT_ACCESS) and the broker rules made from it."""

from __future__ import annotations

import pytest

from services.common.facts import BY_EVENT_TYPE
from services.common.topics import (
    FACT_ACCESS,
    PARTIES,
    SERVICES,
    TopicRegistry,
)
from tests.security.hostile import subscriptions

REGISTRY = TopicRegistry(prefix="acl-test.")
SUBSCRIPTIONS = subscriptions()


def test_every_fact_type_has_one_owner_among_the_parties():
    assert set(FACT_ACCESS) == set(BY_EVENT_TYPE)
    for access in FACT_ACCESS.values():
        assert access.owner in PARTIES
        assert set(access.readers) <= set(PARTIES)
        assert access.owner != "auditor"


@pytest.mark.parametrize("service", sorted(SUBSCRIPTIONS))
def test_each_service_may_read_exactly_what_it_subscribes_to(service):
    readable = {t for t, access in FACT_ACCESS.items() if service in access.readers}
    owned = {t for t, access in FACT_ACCESS.items() if access.owner == service}
    # And the keys, to verify signatures; and its own facts, which `1tt rebuild` reads back.
    assert set(SUBSCRIPTIONS[service]) | {"key.registered"} <= readable
    assert readable <= set(SUBSCRIPTIONS[service]) | {"key.registered"} | owned


@pytest.mark.parametrize("party", PARTIES)
def test_a_party_may_write_exactly_the_fact_topics_it_owns(party):
    writes = {
        e.name
        for e in REGISTRY.acl_entries(party)
        if (e.resource_type, e.pattern, e.operation) == ("topic", "literal", "write")
    }
    owned = {REGISTRY.fact_topic(t) for t, a in FACT_ACCESS.items() if a.owner == party}
    dead_letters = {REGISTRY.dead_letter_topic} if party in SERVICES else set()
    assert writes == owned | dead_letters


def test_the_auditor_only_reads_and_reads_every_fact_topic():
    entries = REGISTRY.acl_entries("auditor")
    assert {e.operation for e in entries} == {"read"}
    assert {e.name for e in entries} == {s.name for s in REGISTRY.specs()}


def test_only_preprocess_has_rules_on_its_own_topics_and_they_are_prefixed_to_its_app():
    for party in PARTIES:
        prefixed = [e for e in REGISTRY.acl_entries(party) if e.pattern == "prefixed"]
        if party == "preprocess":
            assert {e.name for e in prefixed} == {"acl-test.tt-preprocess-"}
        else:
            assert prefixed == []


def test_rules_are_scoped_to_the_registry_prefix():
    for party in PARTIES:
        for entry in REGISTRY.acl_entries(party):
            assert entry.name.startswith("acl-test.")


def test_an_unknown_party_has_no_rules():
    with pytest.raises(ValueError, match="unknown party"):
        REGISTRY.acl_entries("mallory")

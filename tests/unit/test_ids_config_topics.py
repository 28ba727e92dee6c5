import pytest

from services.common.config import ConfigError, Settings
from services.common.facts import FACTS
from services.common.topics import TopicRegistry
from services.rules.ids import derived_id, new_id


def test_derived_ids_are_deterministic_and_distinguish_their_parts():
    assert derived_id("revenue.recorded", "consumer", "EXT-1") == derived_id(
        "revenue.recorded", "consumer", "EXT-1"
    )
    assert derived_id("k", "a", "bc") != derived_id("k", "ab", "c")
    assert derived_id("k", "a") != derived_id("other", "a")
    assert new_id() != new_id()


def test_derived_ids_refuse_the_separator():
    with pytest.raises(ValueError, match="reserved separator"):
        derived_id("k", "a\x1fb")


def test_registry_names_every_fact_topic_and_the_dead_letter_topic_under_the_prefix():
    registry = TopicRegistry(
        prefix="t-1.", partitions=6, replication_factor=3, min_insync_replicas=2
    )
    specs = {spec.name: spec for spec in registry.specs()}
    assert len(specs) == len(FACTS) + 1
    assert "t-1.revenue.recorded.v1" in specs
    assert (
        registry.dead_letter_topic == "t-1.dead-letter.v1" and registry.dead_letter_topic in specs
    )
    fact_topic = specs["t-1.allocation.made.v1"]
    assert (fact_topic.partitions, fact_topic.replication_factor) == (6, 3)
    assert fact_topic.configs["retention.ms"] == "-1"
    assert fact_topic.configs["cleanup.policy"] == "delete"
    assert fact_topic.configs["min.insync.replicas"] == "2"
    assert registry.event_type_of_topic("t-1.payout.issued.v1") == "payout.issued"
    assert registry.event_type_of_topic("payout.issued.v1") is None


def test_settings_default_to_the_local_stack():
    settings = Settings.from_env({})
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.database_url.startswith("postgresql://tt_admin@127.0.0.1:55432/tt?passfile=")


@pytest.mark.parametrize(
    "env, phrase",
    [
        ({"TT_TOPIC_PARTITIONS": "many"}, "TT_TOPIC_PARTITIONS must be an integer"),
        ({"TT_TOPIC_PARTITIONS": "0"}, "at least 1"),
        ({"TT_TOPIC_PREFIX": "a b"}, "TT_TOPIC_PREFIX may contain only"),
        ({"TT_OTEL_EXPORTER": "jaeger"}, "none, console or otlp"),
        ({"TT_TOPIC_MIN_INSYNC_REPLICAS": "2"}, "cannot exceed TT_TOPIC_REPLICATION_FACTOR"),
    ],
)
def test_bad_settings_name_the_variable(env, phrase):
    with pytest.raises(ConfigError, match=phrase):
        Settings.from_env(env)

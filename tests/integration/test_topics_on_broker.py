"""The broker's topic settings match the registry, and drift is repaired."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from services.common.topics import describe_topic_configs, ensure_topics


async def retention_becomes(admin, topic: str, value: str) -> bool:
    """Config changes apply asynchronously in KRaft; wait up to 10 s for `value`."""
    for _ in range(100):
        if (await describe_topic_configs(admin, [topic]))[topic]["retention.ms"] == value:
            return True
        await asyncio.sleep(0.1)
    return False


pytestmark = pytest.mark.integration


async def test_topic_settings_on_the_broker_match_the_registry(admin, registry):
    specs = registry.specs()
    described = await admin.describe_topics([spec.name for spec in specs])
    partitions = {topic["topic"]: len(topic["partitions"]) for topic in described}
    configs = await describe_topic_configs(admin, [spec.name for spec in specs])
    for spec in specs:
        assert partitions[spec.name] == spec.partitions
        for name, value in spec.configs.items():
            assert configs[spec.name][name] == value, f"{spec.name} {name}"
        assert configs[spec.name]["retention.ms"] == "-1"
        assert configs[spec.name]["cleanup.policy"] == "delete"


async def test_ensure_topics_is_idempotent_and_repairs_drift(admin, registry):
    specs = registry.specs()
    assert await ensure_topics(admin, specs) == []  # all exist: nothing created
    victim = registry.fact_topic("revenue.recorded")
    await admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, victim, {"retention.ms": "60000"})]
    )
    assert await retention_becomes(admin, victim, "60000")
    await ensure_topics(admin, specs)
    repaired = (await describe_topic_configs(admin, [victim]))[victim]
    assert repaired["retention.ms"] == "-1"
    assert repaired["cleanup.policy"] == "delete"

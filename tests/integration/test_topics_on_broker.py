"""The broker's topic settings match the registry, and drift is repaired."""

from __future__ import annotations

import asyncio
import dataclasses

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


async def test_ensure_topics_adds_partitions_but_never_removes_them(admin, registry):
    victim = registry.fact_topic("payout.issued")
    [spec] = [spec for spec in registry.specs() if spec.name == victim]
    grown = dataclasses.replace(spec, partitions=spec.partitions + 2)
    await ensure_topics(admin, [grown])
    assert await partitions_become(admin, victim, spec.partitions + 2)
    await ensure_topics(admin, [spec])  # asking for fewer leaves them as they are
    await asyncio.sleep(0.5)
    assert await partitions_become(admin, victim, spec.partitions + 2)


async def partitions_become(admin, topic: str, expected: int) -> bool:
    """Metadata of new partitions propagates asynchronously; wait up to 5 s."""
    for _ in range(50):
        [described] = await admin.describe_topics([topic])
        if len(described["partitions"]) == expected:
            return True
        await asyncio.sleep(0.1)
    return False

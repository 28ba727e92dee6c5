"""The topic registry: every topic the platform uses, with the settings it must have on the
broker, and `ensure_topics`, which creates missing topics and repairs drifted settings."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from services.common.facts import BY_EVENT_TYPE, FACTS

log = logging.getLogger(__name__)

DEAD_LETTER_TOPIC_BASE = "dead-letter.v1"
# The largest fact a topic accepts and a producer sends.
MAX_FACT_BYTES = 64 << 20
_UNKNOWN_TOPIC = 3
_TOPIC_ALREADY_EXISTS = 36
# A topic just created may be unknown to the broker that answers for a moment.
_NEW_TOPIC_VISIBLE_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str] = field(default_factory=dict)


class TopicRegistry:
    """Names and settings of every topic, under an optional deployment prefix."""

    def __init__(
        self,
        prefix: str = "",
        partitions: int = 3,
        replication_factor: int = 1,
        min_insync_replicas: int = 1,
    ):
        self.prefix = prefix
        self.partitions = partitions
        self.replication_factor = replication_factor
        # Facts are kept forever and never compacted: the log is the system of record.
        self.fact_configs: dict[str, str] = {
            "retention.ms": "-1",
            "retention.bytes": "-1",
            "cleanup.policy": "delete",
            "min.insync.replicas": str(min_insync_replicas),
            "unclean.leader.election.enable": "false",
            # A snapshot.created fact lists every member (~130 bytes each): 64 MiB holds
            # about 450,000 contributions. FactProducer sends up to the same size.
            "max.message.bytes": str(MAX_FACT_BYTES),
        }
        self._event_type_by_topic = {self.fact_topic(t): t for t in BY_EVENT_TYPE}

    def fact_topic(self, event_type: str) -> str:
        """The topic carrying facts of `event_type`, e.g. "contribution.received.v1"."""
        return f"{self.prefix}{BY_EVENT_TYPE[event_type].topic_base}"

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.prefix}{DEAD_LETTER_TOPIC_BASE}"

    def event_type_of_topic(self, topic: str) -> str | None:
        return self._event_type_by_topic.get(topic)

    def specs(self) -> list[TopicSpec]:
        """Every topic with its settings: one per fact type, plus the dead-letter topic."""
        topics = [
            TopicSpec(
                self.fact_topic(spec.event_type),
                self.partitions,
                self.replication_factor,
                dict(self.fact_configs),
            )
            for spec in FACTS
        ]
        # Dead letters are kept forever too: each one is a fact someone must look at.
        topics.append(
            TopicSpec(self.dead_letter_topic, 1, self.replication_factor, dict(self.fact_configs))
        )
        return topics


class TopicSetupError(RuntimeError):
    """The broker refused to create or configure a topic."""


class UnknownTopicError(TopicSetupError):
    """The broker does not know the topic (yet)."""


async def describe_topic_configs(
    admin: AIOKafkaAdminClient, names: list[str]
) -> dict[str, dict[str, str]]:
    """The broker's current value of every config of each named topic."""
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    )
    configs: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.to_object()["resources"]:
            if resource["error_code"] == _UNKNOWN_TOPIC:
                raise UnknownTopicError(f"topic {resource['resource_name']} does not exist")
            if resource["error_code"]:
                raise TopicSetupError(
                    f"cannot describe topic {resource['resource_name']}: "
                    f"{resource['error_message']} (error {resource['error_code']})"
                )
            configs[resource["resource_name"]] = {
                entry["config_names"]: entry["config_value"] for entry in resource["config_entries"]
            }
    return configs


async def ensure_topics(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> list[str]:
    """Create the topics that are missing and correct settings that drifted.

    Returns the names of topics it created. Partitions are only ever added (Kafka cannot
    remove them); a topic with more partitions than the registry asks for is left alone.
    """
    existing = set(await admin.list_topics())
    missing = [spec for spec in specs if spec.name not in existing]
    if missing:
        response = await admin.create_topics(
            [
                NewTopic(
                    spec.name,
                    spec.partitions,
                    spec.replication_factor,
                    topic_configs=dict(spec.configs),
                )
                for spec in missing
            ]
        )
        for topic_error in response.to_object()["topic_errors"]:
            code = topic_error["error_code"]
            if code and code != _TOPIC_ALREADY_EXISTS:  # a concurrent creator is fine
                raise TopicSetupError(
                    f"broker refused to create topic {topic_error['topic']}: "
                    f"{topic_error.get('error_message') or 'error code ' + str(code)}"
                )
    await _add_missing_partitions(admin, [spec for spec in specs if spec.name in existing])
    drifted = await _drifted(admin, specs)
    for spec in drifted:
        log.warning("topic %s settings drifted, restoring %s", spec.name, dict(spec.configs))
        # alter_configs replaces all dynamic settings of the topic, so send the full set.
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, spec.name, dict(spec.configs))]
        )
    # The controller applies config changes asynchronously: confirm they took effect.
    deadline = asyncio.get_running_loop().time() + _NEW_TOPIC_VISIBLE_TIMEOUT_S
    while drifted:
        drifted = await _drifted(admin, drifted)
        if drifted and asyncio.get_running_loop().time() > deadline:
            raise TopicSetupError(
                "the broker did not apply the registry's settings to "
                + ", ".join(spec.name for spec in drifted)
            )
        await asyncio.sleep(0.1 if drifted else 0)
    return [spec.name for spec in missing]


async def _add_missing_partitions(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> None:
    if not specs:
        return
    described = await admin.describe_topics([spec.name for spec in specs])
    have = {topic["topic"]: len(topic["partitions"]) for topic in described}
    grow = {
        spec.name: NewPartitions(spec.partitions)
        for spec in specs
        if have.get(spec.name, spec.partitions) < spec.partitions
    }
    if grow:
        log.warning("adding partitions: %s", {name: p.total_count for name, p in grow.items()})
        # Adding partitions moves keys to new partitions: per-key order holds only for
        # facts produced after the change. Plan partition counts up front in production.
        await admin.create_partitions(grow)


async def _drifted(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> list[TopicSpec]:
    """The specs whose topic's settings on the broker differ from the registry's."""
    current = await _describe_when_visible(admin, [spec.name for spec in specs])
    return [
        spec
        for spec in specs
        if any(current[spec.name].get(k) != v for k, v in spec.configs.items())
    ]


async def _describe_when_visible(
    admin: AIOKafkaAdminClient, names: list[str]
) -> dict[str, dict[str, str]]:
    deadline = asyncio.get_running_loop().time() + _NEW_TOPIC_VISIBLE_TIMEOUT_S
    while True:
        try:
            return await describe_topic_configs(admin, names)
        except UnknownTopicError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def ensure_topics_on_broker(bootstrap: str, specs: list[TopicSpec]) -> list[str]:
    """`ensure_topics` with an admin client of its own."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="1tt-topics", request_timeout_ms=30_000
    )
    await admin.start()
    try:
        return await ensure_topics(admin, specs)
    finally:
        await admin.close()


async def describe_topic_configs_on_broker(
    bootstrap: str, names: list[str]
) -> dict[str, dict[str, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="1tt-topics")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        return await describe_topic_configs(admin, [n for n in names if n in existing])
    finally:
        await admin.close()

"""The topic registry: every topic the platform uses, with the settings it must have on the
broker, and `ensure_topics`, which creates missing topics and repairs drifted settings."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from services.common.facts import BY_EVENT_TYPE, FACTS

if TYPE_CHECKING:
    from services.common.config import KafkaAccess

log = logging.getLogger(__name__)

DEAD_LETTER_TOPIC_BASE = "dead-letter.v1"

# The parties that act on the log. Each has its own Kafka principal and signing key
# (docs/security.md). "consumer" is a kind: every data consumer is a principal of its own,
# Kafka user "consumer-<principal id>", with the consumer's rights.
SERVICES = ("ingest", "preprocess", "ledger", "payout")
PARTIES = (*SERVICES, "admin", "auditor", "consumer")
CONSUMER_USER_PREFIX = "consumer-"


def party_kind(party: str) -> str:
    """The party a Kafka user or credentials folder acts as: "consumer-<id>" -> "consumer"."""
    return "consumer" if party.startswith(CONSUMER_USER_PREFIX) else party


@dataclass(frozen=True)
class FactAccess:
    """Who may write (and sign) facts of one type, and who may read them."""

    owner: str
    readers: tuple[str, ...]
    # For facts a data consumer publishes: the payload field naming that consumer, which
    # must be the principal the signing key speaks for.
    principal_field: str = ""


_CONSUMER_FACT = ("ledger", "consumer", "auditor")
# THE ACL TABLE. Every fact type is writable only by its owner; a fact signed by another
# party is dead-lettered by every reader (services.common.signing). Readers are the
# parties whose services or tools subscribe to the topic. "admin" is the operator's
# tooling, a Kafka super user (it creates topics, users and ACLs), listed for clarity.
FACT_ACCESS: dict[str, FactAccess] = {
    "contribution.received": FactAccess("ingest", ("ingest", "preprocess", "payout", "auditor")),
    "contribution.processed": FactAccess(
        "preprocess", ("ingest", "ledger", "payout", "consumer", "auditor")
    ),
    "contribution.withdrawn": FactAccess(
        "ingest", ("ingest", "ledger", "payout", "consumer", "auditor")
    ),
    "agreement.published": FactAccess(
        "consumer", ("ledger", "payout", "consumer", "auditor"), "consumer_id"
    ),
    "snapshot.created": FactAccess("consumer", _CONSUMER_FACT, "consumer_id"),
    "service.deployed": FactAccess("consumer", _CONSUMER_FACT, "consumer_id"),
    "revenue.recorded": FactAccess("consumer", _CONSUMER_FACT, "consumer_id"),
    "revenue.adjusted": FactAccess("consumer", _CONSUMER_FACT, "consumer_id"),
    "snapshot.exported": FactAccess("consumer", ("consumer", "auditor"), "consumer_id"),
    "reference.registered": FactAccess("consumer", ("preprocess", "auditor"), "consumer_id"),
    # The ledger reads its own allocations back only in `1tt rebuild ledger`.
    "allocation.made": FactAccess("ledger", ("ledger", "payout", "auditor")),
    "payout.issued": FactAccess("payout", ("ledger", "payout", "auditor")),
    "principal.registered": FactAccess("admin", ("ingest", "payout", "auditor")),
    "principal.revoked": FactAccess("admin", ("ingest", "payout", "auditor")),
    # Every reader verifies signatures, so every party reads the keys.
    "key.registered": FactAccess("admin", tuple(p for p in PARTIES if p != "admin")),
}
if set(FACT_ACCESS) != set(BY_EVENT_TYPE):  # a new fact type must say who owns it
    raise RuntimeError("the ACL table and the fact registry list different fact types")
# Consumer groups, by party (under the deployment prefix).
CONSUMER_GROUPS: dict[str, str] = {
    "ingest": "ingest-projection",
    "ledger": "ledger",
    "payout": "payout",
    "preprocess": "tt-preprocess",
}
# Preprocess keeps its own state in topics named after its Faust app (the group id):
# sequence, claims, answers, table changelogs. It alone reads, writes and creates them.
PREPROCESS_APP_ID = CONSUMER_GROUPS["preprocess"]
# Services that read facts and dead-letter the ones they cannot process.
DEAD_LETTER_WRITERS = SERVICES


@dataclass(frozen=True)
class AclEntry:
    """One allow rule: `operation` on a Kafka resource, for a principal."""

    resource_type: str  # "topic", "group" or "cluster"
    name: str
    pattern: str  # "literal" or "prefixed"
    operation: str  # "read", "write", "describe", "create", "describe_configs", ...


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
            # The broker stamps each fact with the time it appended it. No producer can
            # choose it, so a signing key's validity is checked against it (a key retired
            # at T signs nothing that verifies after T, whatever the fact claims).
            "message.timestamp.type": "LogAppendTime",
        }
        self._event_type_by_topic = {self.fact_topic(t): t for t in BY_EVENT_TYPE}

    def consumer_group(self, party: str) -> str:
        """The consumer group a service reads facts in."""
        return f"{self.prefix}{CONSUMER_GROUPS[party]}"

    @property
    def preprocess_app_id(self) -> str:
        return f"{self.prefix}{PREPROCESS_APP_ID}"

    def topics_of(self, party: str) -> list[str]:
        """The fact topics `party` reads or writes."""
        return sorted(
            {
                e.name
                for e in self.acl_entries(party)
                if (e.resource_type, e.pattern) == ("topic", "literal")
            }
        )

    def acl_entries(self, party: str) -> list[AclEntry]:
        """What `party` may do on the broker under this registry's prefix, from the ACL
        table: write the facts it owns, read those it needs, use its consumer group."""
        if party not in PARTIES:
            raise ValueError(f"unknown party {party!r}; the parties are {', '.join(PARTIES)}")
        entries: list[AclEntry] = []
        for event_type, access in FACT_ACCESS.items():
            topic = self.fact_topic(event_type)
            if access.owner == party:
                entries.append(AclEntry("topic", topic, "literal", "write"))
            if party in access.readers:
                entries.append(AclEntry("topic", topic, "literal", "read"))
        if party in DEAD_LETTER_WRITERS:
            entries.append(AclEntry("topic", self.dead_letter_topic, "literal", "write"))
        if party == "auditor":
            entries.append(AclEntry("topic", self.dead_letter_topic, "literal", "read"))
        if party in CONSUMER_GROUPS:
            entries.append(AclEntry("group", self.consumer_group(party), "literal", "read"))
        if party == "preprocess":
            internal = f"{self.preprocess_app_id}-"
            for operation in (
                "read",
                "write",
                "create",
                "describe",
                "describe_configs",
                "alter_configs",
            ):
                entries.append(AclEntry("topic", internal, "prefixed", operation))
        return entries

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


async def ensure_topics_on_broker(kafka: KafkaAccess, specs: list[TopicSpec]) -> list[str]:
    """`ensure_topics` with an admin client of its own (the operator's: only the admin
    party may create topics)."""
    admin = AIOKafkaAdminClient(
        **kafka.client_options(), client_id="1tt-topics", request_timeout_ms=30_000
    )
    await admin.start()
    try:
        return await ensure_topics(admin, specs)
    finally:
        await admin.close()


async def require_topics(kafka: KafkaAccess, names: list[str]) -> None:
    """TopicSetupError naming the topics that are missing, or that this party may not see
    (a service creates no topics: the operator's `1tt stack prepare` does)."""
    admin = AIOKafkaAdminClient(**kafka.client_options(), client_id="1tt-topics")
    await admin.start()
    try:
        missing = sorted(set(names) - set(await admin.list_topics()))
    finally:
        await admin.close()
    if missing:
        raise TopicSetupError(
            f"{len(missing)} topic(s) are missing or not visible to Kafka user "
            f"{kafka.username!r}: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
            "; run '1tt stack prepare' as the operator ('make up' does)"
        )


async def describe_topic_configs_on_broker(
    kafka: KafkaAccess, names: list[str]
) -> dict[str, dict[str, str]]:
    admin = AIOKafkaAdminClient(**kafka.client_options(), client_id="1tt-topics")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        return await describe_topic_configs(admin, [n for n in names if n in existing])
    finally:
        await admin.close()

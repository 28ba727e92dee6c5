"""Configuration from environment variables, read once by a service's main()."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from services.common.topics import TopicRegistry

_PREFIX_PATTERN = re.compile(r"^[a-zA-Z0-9._-]*$")


class ConfigError(ValueError):
    """A configuration variable is missing or malformed; the message names it."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    """Where the platform's infrastructure is, and how its topics are laid out."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    database_url: str = "postgresql://tt@127.0.0.1:55432/tt"
    # Prepended to every topic name; lets tests and parallel environments share one broker.
    topic_prefix: str = ""
    topic_partitions: int = 3
    topic_replication_factor: int = 1
    topic_min_insync_replicas: int = 1
    # "none", "console" or "otlp".
    otel_exporter: str = "none"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read TT_* variables, falling back to the local-stack defaults."""
        env = os.environ if env is None else env
        prefix = env.get("TT_TOPIC_PREFIX", "")
        if not _PREFIX_PATTERN.match(prefix):
            raise ConfigError(
                "TT_TOPIC_PREFIX may contain only letters, digits, '.', '_' and '-', "
                f"got {prefix!r}"
            )
        exporter = env.get("TT_OTEL_EXPORTER", "none")
        if exporter not in ("none", "console", "otlp"):
            raise ConfigError(f"TT_OTEL_EXPORTER must be none, console or otlp, got {exporter!r}")
        replication = _int(env, "TT_TOPIC_REPLICATION_FACTOR", 1, 1)
        min_isr = _int(env, "TT_TOPIC_MIN_INSYNC_REPLICAS", 1, 1)
        if min_isr > replication:
            raise ConfigError(
                f"TT_TOPIC_MIN_INSYNC_REPLICAS ({min_isr}) cannot exceed "
                f"TT_TOPIC_REPLICATION_FACTOR ({replication})"
            )
        return cls(
            kafka_bootstrap=env.get("TT_KAFKA_BOOTSTRAP") or cls.kafka_bootstrap,
            database_url=env.get("TT_DATABASE_URL") or cls.database_url,
            topic_prefix=prefix,
            topic_partitions=_int(env, "TT_TOPIC_PARTITIONS", 3, 1),
            topic_replication_factor=replication,
            topic_min_insync_replicas=min_isr,
            otel_exporter=exporter,
        )

    def topic_registry(self) -> TopicRegistry:
        return TopicRegistry(
            prefix=self.topic_prefix,
            partitions=self.topic_partitions,
            replication_factor=self.topic_replication_factor,
            min_insync_replicas=self.topic_min_insync_replicas,
        )

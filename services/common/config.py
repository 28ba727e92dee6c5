"""Configuration from environment variables, read once by a service's main()."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from services.common.topics import TopicRegistry

_PREFIX_PATTERN = re.compile(r"^[a-zA-Z0-9._-]*$")
_PARTY_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
# A process that does not say which party it acts for is the operator's tooling.
DEFAULT_PARTY = "admin"
# A party's PostgreSQL password, in libpq's passfile format (host:port:database:role:password),
# in its credentials folder (docs/postgres-roles.md).
POSTGRES_PASSFILE = "postgres.pgpass"


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


def postgres_role(party: str) -> str:
    """The PostgreSQL role a party logs in as: tt_<party>, '-' written as '_'."""
    return "tt_" + party.replace("-", "_")


def database_url_for(url: str, party: str, credentials_dir: Path) -> str:
    """The URL `party` connects with. TT_DATABASE_URL says where the database is; without a
    user in it, the party logs in as its own role with the password from its libpq passfile
    (credentials_dir/<party>/postgres.pgpass, named by libpq's `passfile` parameter, so no
    secret is ever part of the URL). A URL that names a user is used as it is: the
    Kubernetes manifests and the tests choose the role themselves."""
    parts = urlsplit(url)
    if parts.username:
        return url
    passfile = (credentials_dir / party / POSTGRES_PASSFILE).absolute()
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "passfile"]
    query.append(("passfile", str(passfile)))
    return urlunsplit(
        (
            parts.scheme,
            f"{quote(postgres_role(party), safe='')}@{parts.netloc}",
            parts.path,
            urlencode(query, safe="/", quote_via=quote),
            parts.fragment,
        )
    )


@dataclass(frozen=True)
class Settings:
    """Where the platform's infrastructure is, and how its topics are laid out."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    # Where PostgreSQL is; from_env adds the party's role and passfile (database_url_for).
    database_url: str = "postgresql://127.0.0.1:55432/tt"
    # Prepended to every topic name; lets tests and parallel environments share one broker.
    topic_prefix: str = ""
    topic_partitions: int = 3
    topic_replication_factor: int = 1
    topic_min_insync_replicas: int = 1
    # "none", "console" or "otlp".
    otel_exporter: str = "none"
    # Who this process acts for ("ingest", "ledger", "admin", ...): it selects the
    # credentials under credentials_dir/<party>/ (see docs/security.md).
    party: str = DEFAULT_PARTY
    credentials_dir: Path = Path(".run/credentials")

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        party: str | None = None,
        default_party: str = DEFAULT_PARTY,
    ) -> Settings:
        """Read TT_* variables, falling back to the local-stack defaults. `party` (else
        TT_PARTY, else `default_party`) names whose credentials this process uses."""
        env = os.environ if env is None else env
        party = party or env.get("TT_PARTY") or default_party
        if not _PARTY_PATTERN.match(party):
            raise ConfigError(
                "the party (TT_PARTY) must be lower-case letters, digits and '-', "
                f"starting with a letter, got {party!r}"
            )
        run_dir = Path(env.get("TT_RUN_DIR") or ".run")
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
        credentials_dir = Path(env.get("TT_CREDENTIALS_DIR") or run_dir / "credentials")
        return cls(
            kafka_bootstrap=env.get("TT_KAFKA_BOOTSTRAP") or cls.kafka_bootstrap,
            database_url=database_url_for(
                env.get("TT_DATABASE_URL") or cls.database_url, party, credentials_dir
            ),
            topic_prefix=prefix,
            topic_partitions=_int(env, "TT_TOPIC_PARTITIONS", 3, 1),
            topic_replication_factor=replication,
            topic_min_insync_replicas=min_isr,
            otel_exporter=exporter,
            party=party,
            credentials_dir=credentials_dir,
        )

    def party_credentials(self, party: str | None = None) -> Path:
        """The folder holding a party's secrets (this process's party by default)."""
        return self.credentials_dir / (party or self.party)

    def topic_registry(self) -> TopicRegistry:
        return TopicRegistry(
            prefix=self.topic_prefix,
            partitions=self.topic_partitions,
            replication_factor=self.topic_replication_factor,
            min_insync_replicas=self.topic_min_insync_replicas,
        )

"""Configuration from environment variables, read once by a service's main()."""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from services.common.topics import TopicRegistry

_PREFIX_PATTERN = re.compile(r"^[a-zA-Z0-9._-]*$")
_PARTY_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
# A process that does not say which party it acts for is the operator's tooling.
DEFAULT_PARTY = "admin"
# In a data consumer's credentials folder: who the folder speaks for ({"principal_id",
# "name", "party": "consumer"}), written by `1tt admin add-principal --role consumer`.
IDENTITY_FILE = "identity.json"
# A party's PostgreSQL password, in libpq's passfile format (host:port:database:role:password),
# in its credentials folder (docs/postgres-roles.md).
POSTGRES_PASSFILE = "postgres.pgpass"


class ConfigError(ValueError):
    """A configuration variable is missing or malformed; the message names it."""


def _path(env: Mapping[str, str], name: str) -> Path | None:
    return Path(env[name]) if env.get(name) else None


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
class KafkaAccess:
    """How one party reaches the broker: SASL/SCRAM-SHA-512 over TLS (docs/security.md).
    No username means an anonymous PLAINTEXT client, which the platform's broker refuses
    (tests use it to show that)."""

    bootstrap: str
    username: str = ""
    password: str = dataclasses.field(default="", repr=False)
    # The CA that signed the broker's certificate; None: no TLS (SASL_PLAINTEXT).
    ca_file: Path | None = None
    mechanism: str = "SCRAM-SHA-512"

    @property
    def security_protocol(self) -> str:
        if self.username:
            return "SASL_SSL" if self.ca_file else "SASL_PLAINTEXT"
        return "SSL" if self.ca_file else "PLAINTEXT"

    @functools.cached_property
    def ssl_context(self) -> ssl.SSLContext | None:
        if self.ca_file is None:
            return None
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def client_options(self) -> dict:
        """Keyword arguments for every aiokafka client (producer, consumer, admin)."""
        options: dict = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
            "ssl_context": self.ssl_context,
        }
        if self.username:
            options.update(
                sasl_mechanism=self.mechanism,
                sasl_plain_username=self.username,
                sasl_plain_password=self.password,
            )
        return options

    def librdkafka_config(self) -> dict[str, str]:
        """The same access for confluent-kafka (the admin tool's users and ACLs)."""
        config = {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": self.security_protocol.lower(),
        }
        if self.username:
            config.update(
                {
                    "sasl.mechanism": self.mechanism,
                    "sasl.username": self.username,
                    "sasl.password": self.password,
                }
            )
        if self.ca_file is not None:
            config["ssl.ca.location"] = str(self.ca_file)
        return config

    def faust_credentials(self):
        import faust

        if not self.username:
            return None
        return faust.SASLCredentials(
            username=self.username,
            password=self.password,
            ssl_context=self.ssl_context,
            mechanism=self.mechanism,
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
    # Overrides of what the party's folder holds (TT_KAFKA_USERNAME, TT_KAFKA_PASSWORD_FILE,
    # TT_SIGNING_KEY_FILE; in k8s each comes from the party's own Secret).
    kafka_username_override: str = ""
    kafka_password_file_override: Path | None = None
    signing_key_file_override: Path | None = None
    # The broker's CA certificate (TT_KAFKA_CA_FILE); "" (TT_KAFKA_TLS=0) for no TLS.
    kafka_ca_file: Path | None = None
    # The admin keys every reader trusts (TT_TRUST_ANCHORS_FILE).
    trust_anchors_file: Path | None = None
    # TT_DATABASE_URL as given (where the database is), for another party's URL.
    database_location: str = ""

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
        credentials = Path(env.get("TT_CREDENTIALS_DIR") or run_dir / "credentials")
        tls = env.get("TT_KAFKA_TLS", "1")
        if tls not in ("0", "1"):
            raise ConfigError(f"TT_KAFKA_TLS must be 1 (TLS, the default) or 0, got {tls!r}")
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
        location = env.get("TT_DATABASE_URL") or cls.database_url
        return cls(
            kafka_bootstrap=env.get("TT_KAFKA_BOOTSTRAP") or cls.kafka_bootstrap,
            database_url=database_url_for(location, party, credentials),
            topic_prefix=prefix,
            topic_partitions=_int(env, "TT_TOPIC_PARTITIONS", 3, 1),
            topic_replication_factor=replication,
            topic_min_insync_replicas=min_isr,
            otel_exporter=exporter,
            party=party,
            credentials_dir=credentials,
            database_location=location,
            kafka_username_override=env.get("TT_KAFKA_USERNAME", ""),
            kafka_password_file_override=_path(env, "TT_KAFKA_PASSWORD_FILE"),
            signing_key_file_override=_path(env, "TT_SIGNING_KEY_FILE"),
            kafka_ca_file=None
            if tls == "0"
            else _path(env, "TT_KAFKA_CA_FILE") or credentials / "kafka-ca.crt",
            trust_anchors_file=_path(env, "TT_TRUST_ANCHORS_FILE")
            or credentials / "trust-anchors.json",
        )

    def for_party(self, party: str) -> Settings:
        """The same deployment, acting as another party (its own credentials)."""
        return dataclasses.replace(
            self,
            party=party,
            database_url=database_url_for(
                self.database_location or self.database_url, party, self.credentials_dir
            ),
            kafka_username_override="",
            kafka_password_file_override=None,
            signing_key_file_override=None,
        )

    @property
    def kafka_username(self) -> str:
        """The party's Kafka user: its name unless TT_KAFKA_USERNAME says otherwise."""
        return self.kafka_username_override or self.party

    @property
    def kafka_password_file(self) -> Path:
        return self.kafka_password_file_override or self.party_credentials() / "kafka.password"

    @property
    def signing_key_file(self) -> Path:
        return self.signing_key_file_override or self.party_credentials() / "signing.key"

    @functools.cached_property
    def kafka(self) -> KafkaAccess:
        """This party's access to the broker; ConfigError if its credentials are missing."""
        try:
            password = self.kafka_password_file.read_text().strip()
        except FileNotFoundError:
            raise ConfigError(
                f"no Kafka password for party {self.party!r} at {self.kafka_password_file}: "
                "'make up' creates the stack's credentials (1tt stack prepare); a data "
                "consumer gets its folder from '1tt admin add-principal --role consumer'"
            ) from None
        if self.kafka_ca_file is not None and not self.kafka_ca_file.exists():
            raise ConfigError(
                f"no Kafka CA certificate at {self.kafka_ca_file} (TT_KAFKA_CA_FILE): "
                "'make up' creates it with the broker's certificate"
            )
        return KafkaAccess(self.kafka_bootstrap, self.kafka_username, password, self.kafka_ca_file)

    def party_env(self, party: str) -> dict[str, str]:
        """Environment variables that make a child process act as `party` on this
        deployment (same broker, credentials, CA and trust anchors, whatever its run dir)."""
        env = {
            "TT_PARTY": party,
            "TT_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "TT_CREDENTIALS_DIR": str(self.credentials_dir.resolve()),
            "TT_KAFKA_TLS": "1" if self.kafka_ca_file else "0",
        }
        if self.kafka_ca_file:
            env["TT_KAFKA_CA_FILE"] = str(self.kafka_ca_file.resolve())
        if self.trust_anchors_file:
            env["TT_TRUST_ANCHORS_FILE"] = str(self.trust_anchors_file.resolve())
        return env

    def anonymous_kafka(self) -> KafkaAccess:
        """A client with no credentials at all (the broker must refuse it)."""
        return KafkaAccess(self.kafka_bootstrap)

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

"""Kafka users and their ACLs, for the operator's tool (`1tt stack prepare`, `1tt admin
add-principal`) and the tests. The rules come from the topic registry's ACL table
(services.common.topics.FACT_ACCESS); this module only applies them to a broker.

aiokafka has no admin calls for SCRAM users or ACLs, so these use confluent-kafka's
AdminClient (librdkafka). Its calls block, so the async wrappers run them in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from services.common.config import KafkaAccess
from services.common.topics import AclEntry

SCRAM_ITERATIONS = 8192
_TIMEOUT_S = 30.0
_RESOURCE = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP}
_PATTERN = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}


class KafkaAdminError(RuntimeError):
    """The broker refused to create a user or an ACL."""


def principal(username: str) -> str:
    return f"User:{username}"


def _binding(username: str, entry: AclEntry) -> AclBinding:
    return AclBinding(
        _RESOURCE[entry.resource_type],
        entry.name,
        _PATTERN[entry.pattern],
        principal(username),
        "*",
        AclOperation[entry.operation.upper()],
        AclPermissionType.ALLOW,
    )


def _entry(binding: AclBinding) -> AclEntry:
    return AclEntry(
        binding.restype.name.lower(),
        binding.name,
        binding.resource_pattern_type.name.lower(),
        binding.operation.name.lower(),
    )


class KafkaUsers:
    """Creates users and keeps their ACLs equal to the table, over one admin connection."""

    def __init__(self, access: KafkaAccess):
        self._admin = AdminClient(
            {**access.librdkafka_config(), "client.id": "1tt-admin-users", "log_level": 3}
        )

    def _wait(self, futures: dict, what: str) -> None:
        for subject, future in futures.items():
            try:
                future.result(timeout=_TIMEOUT_S)
            except KafkaException as error:
                raise KafkaAdminError(f"{what} {subject}: {error.args[0].str()}") from None

    def upsert_user(self, username: str, password: str) -> None:
        """Create the SCRAM-SHA-512 user, or set its password."""
        upsert = UserScramCredentialUpsertion(
            username,
            ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS),
            password.encode(),
        )
        self._wait(self._admin.alter_user_scram_credentials([upsert]), "cannot create user")

    def users(self) -> list[str]:
        """Every SCRAM user the broker knows."""
        try:
            described = self._admin.describe_user_scram_credentials().result(timeout=_TIMEOUT_S)
        except KafkaException as error:
            raise KafkaAdminError(f"cannot list users: {error.args[0].str()}") from None
        return sorted(described)

    def acls(self, username: str | None = None) -> set[AclEntry]:
        """The allow rules the broker holds for `username`."""
        return self.all_acls(username).get(principal(username), set())

    def all_acls(self, username: str | None = None) -> dict[str, set[AclEntry]]:
        """The allow rules the broker holds, by principal (of `username` only, if given)."""
        found = self._admin.describe_acls(
            AclBindingFilter(
                ResourceType.ANY,
                None,
                ResourcePatternType.ANY,
                principal(username) if username else None,
                None,
                AclOperation.ANY,
                AclPermissionType.ANY,
            ),
            request_timeout=_TIMEOUT_S,
        )
        try:
            bindings = found.result(timeout=_TIMEOUT_S)
        except KafkaException as error:
            raise KafkaAdminError(f"cannot read ACLs: {error.args[0].str()}") from None
        rules: dict[str, set[AclEntry]] = {}
        for binding in bindings:
            if binding.permission_type == AclPermissionType.ALLOW:
                rules.setdefault(binding.principal, set()).add(_entry(binding))
        return rules

    def sync_acls(
        self,
        username: str,
        wanted: Iterable[AclEntry],
        scope: Iterable[str] = (),
        have: set[AclEntry] | None = None,
    ) -> tuple[int, int]:
        """Grant every wanted rule; revoke the user's rules on resources named in `scope`
        (this registry's topics and groups) that the table no longer grants. Rules on
        other resources (another prefix's) are left alone. `have`: the user's rules, if
        already read. Returns (added, removed)."""
        wanted = set(wanted)
        have = self.acls(username) if have is None else have
        scope = set(scope) | {entry.name for entry in wanted}
        stale = [entry for entry in have - wanted if entry.name in scope]
        missing = [entry for entry in wanted - have]
        if missing:
            bindings = [_binding(username, entry) for entry in missing]
            self._wait(
                self._admin.create_acls(bindings, request_timeout=_TIMEOUT_S),
                "cannot create ACL",
            )
        if stale:
            self.delete_acls(username, stale)
        return len(missing), len(stale)

    def delete_acls(self, username: str, entries: Iterable[AclEntry]) -> None:
        filters = [
            AclBindingFilter(
                _RESOURCE[e.resource_type],
                e.name,
                _PATTERN[e.pattern],
                principal(username),
                "*",
                AclOperation[e.operation.upper()],
                AclPermissionType.ALLOW,
            )
            for e in entries
        ]
        if filters:
            self._wait(
                self._admin.delete_acls(filters, request_timeout=_TIMEOUT_S), "cannot delete ACL"
            )

    def delete_resource_acls(self, resources: Iterable[tuple[str, str, str]]) -> None:
        """Remove every principal's rules on these (resource type, name, pattern)."""
        filters = [
            AclBindingFilter(
                _RESOURCE[resource_type],
                name,
                _PATTERN[pattern],
                None,
                None,
                AclOperation.ANY,
                AclPermissionType.ANY,
            )
            for resource_type, name, pattern in resources
        ]
        if filters:
            self._wait(
                self._admin.delete_acls(filters, request_timeout=_TIMEOUT_S), "cannot delete ACL"
            )


async def run(access: KafkaAccess, work):
    """Run `work(users)` with a KafkaUsers client, off the event loop."""

    def call():
        return work(KafkaUsers(access))

    return await asyncio.to_thread(call)

"""The ingest service's projection of the log: principals and contributions.

`project` is the Inbox handler (one fact in, rows out, no facts derived). The query
functions below read the same tables for the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from services.common.bus import Delivery
from services.common.facts import Envelope, payload_of
from services.common.identity import Principal
from services.common.principals import (
    projected_role,
    refuse_a_key_of_another,
    refuse_revoking_a_key_of_another,
)
from services.ingest.receipts import ReceiptSigner
from tt.facts.v1 import contribution_pb2
from tt.ingest.v1 import ingest_pb2

SCHEMA = "ingest"
EVENT_TYPES = (
    "principal.registered",
    "principal.revoked",
    "contribution.received",
    "contribution.processed",
    "contribution.withdrawn",
)


class Projector:
    """Applies facts to the ingest tables. It needs the receipt signer because the
    projection keeps each contribution's signed receipt, which is a pure function of the
    fact (Ed25519 is deterministic)."""

    def __init__(self, signer: ReceiptSigner):
        self.signer = signer

    async def __call__(self, conn: asyncpg.Connection, delivery: Delivery) -> list[Envelope]:
        envelope = delivery.envelope
        fact = payload_of(envelope)
        if envelope.event_type == "principal.registered":
            await record_registered(conn, envelope)
        elif envelope.event_type == "principal.revoked":
            await record_revoked(conn, envelope)
        elif envelope.event_type == "contribution.received":
            await record_received(conn, envelope, self.signer)
        elif envelope.event_type == "contribution.processed":
            await conn.execute(
                "INSERT INTO contribution_reports (contribution_id, outcome, report) "
                "VALUES ($1, $2, $3) ON CONFLICT (contribution_id) DO NOTHING",
                fact.contribution_id,
                fact.outcome,
                fact.SerializeToString(deterministic=True),
            )
        elif envelope.event_type == "contribution.withdrawn":
            await record_withdrawn(conn, envelope)
        return []


async def record_registered(conn: asyncpg.Connection, envelope: Envelope) -> None:
    """A principal and its key, unless the key or the principal was revoked already (a
    revocation may be read before the registration it revokes; revocation is final)."""
    fact = payload_of(envelope)
    role = projected_role(fact.role)
    await refuse_a_key_of_another(conn, fact)
    await conn.execute(
        "INSERT INTO principals (principal_id, role, name, api_key_sha256, "
        "api_key_prefix, registered_at) SELECT $1, $2, $3, $4, $5, $6 "
        "WHERE NOT EXISTS (SELECT 1 FROM revoked_keys WHERE api_key_sha256 = $4 "
        "OR principal_id = $1) "
        "ON CONFLICT (principal_id) DO NOTHING",
        fact.principal_id,
        role,
        fact.name,
        fact.api_key_sha256,
        fact.api_key_prefix,
        envelope.occurred_at.ToDatetime(tzinfo=UTC),
    )


async def record_revoked(conn: asyncpg.Connection, envelope: Envelope) -> None:
    """Forget the key's principal for authentication, and remember the revocation."""
    fact = payload_of(envelope)
    await refuse_revoking_a_key_of_another(conn, fact)
    await conn.execute(
        "INSERT INTO revoked_keys (api_key_sha256, principal_id, api_key_prefix, reason, "
        "revoked_at, event_id) VALUES ($1, $2, $3, $4, $5, $6) "
        "ON CONFLICT (api_key_sha256) DO NOTHING",
        fact.api_key_sha256,
        fact.principal_id,
        fact.api_key_prefix,
        fact.reason,
        envelope.occurred_at.ToDatetime(tzinfo=UTC),
        envelope.event_id,
    )
    await conn.execute(
        "DELETE FROM principals WHERE principal_id = $1 OR api_key_sha256 = $2",
        fact.principal_id,
        fact.api_key_sha256,
    )


def receipt_for(envelope: Envelope, signer: ReceiptSigner) -> ingest_pb2.UploadReceipt:
    """The signed receipt of a contribution.received fact."""
    fact: contribution_pb2.ContributionReceived = payload_of(envelope)
    body = ingest_pb2.ReceiptBody(
        contribution_id=fact.contribution_id,
        contributor_id=fact.contributor_id,
        upload_id=fact.upload_id,
        dataset_name=fact.dataset_name,
        sha256=fact.raw_blob.sha256,
        byte_size=fact.raw_blob.byte_size,
        document_count=fact.document_count,
        key_id=signer.key_id,
    )
    body.received_at.CopyFrom(envelope.occurred_at)
    return signer.sign(body)


async def record_received(
    conn: asyncpg.Connection, envelope: Envelope, signer: ReceiptSigner
) -> None:
    fact: contribution_pb2.ContributionReceived = payload_of(envelope)
    receipt = receipt_for(envelope, signer)
    # The upload path and the projection of the same fact may insert this row at once;
    # the one that waits can then trip the other unique index (the contributor's upload
    # id), not the conflict target. That is the same contribution, already recorded: a
    # no-op. A different contribution under the same upload id is still refused.
    try:
        async with conn.transaction():  # a savepoint inside the caller's transaction
            await conn.execute(
                "INSERT INTO contributions (contribution_id, contributor_id, upload_id, "
                "dataset_name, file_name, format, compression, sha256, byte_size, "
                "document_count, blob_uri, received_at, received_event_id, key_id, signature) "
                "VALUES "
                "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) "
                "ON CONFLICT (contribution_id) DO NOTHING",
                fact.contribution_id,
                fact.contributor_id,
                fact.upload_id,
                fact.dataset_name,
                fact.file_name,
                fact.format,
                fact.compression,
                fact.raw_blob.sha256,
                fact.raw_blob.byte_size,
                fact.document_count,
                fact.raw_blob.uri,
                envelope.occurred_at.ToDatetime(tzinfo=UTC),
                envelope.event_id,
                receipt.body.key_id,
                receipt.signature,
            )
    except asyncpg.UniqueViolationError:
        if not await conn.fetchval(
            "SELECT 1 FROM contributions WHERE contribution_id = $1", fact.contribution_id
        ):
            raise


async def record_withdrawn(conn: asyncpg.Connection, envelope: Envelope) -> None:
    fact: contribution_pb2.ContributionWithdrawn = payload_of(envelope)
    await conn.execute(
        "INSERT INTO contribution_withdrawals (contribution_id, effective_at, event_id) "
        "VALUES ($1, $2, $3) ON CONFLICT (contribution_id) DO NOTHING",
        fact.contribution_id,
        fact.effective_at.ToDatetime(tzinfo=UTC),
        envelope.event_id,
    )


async def principal_by_key_digest(pool: asyncpg.Pool, digest: str) -> Principal | None:
    row = await pool.fetchrow(
        "SELECT principal_id, role, name FROM principals WHERE api_key_sha256 = $1", digest
    )
    return Principal(row["principal_id"], row["role"], row["name"]) if row else None


@dataclass(frozen=True)
class StoredUpload:
    contribution_id: str
    sha256: str
    received_at: datetime


async def find_upload(
    conn: asyncpg.Connection, contributor_id: str, upload_id: str
) -> StoredUpload | None:
    row = await conn.fetchrow(
        "SELECT contribution_id, sha256, received_at FROM contributions "
        "WHERE contributor_id = $1 AND upload_id = $2",
        contributor_id,
        upload_id,
    )
    return StoredUpload(row["contribution_id"], row["sha256"], row["received_at"]) if row else None


_CONTRIBUTION_COLUMNS = """
    c.contribution_id, c.contributor_id, c.upload_id, c.dataset_name, c.file_name, c.format,
    c.compression, c.sha256, c.byte_size, c.document_count, c.received_at, c.key_id,
    c.signature, r.outcome, r.report, w.effective_at AS withdrawn_at
    FROM contributions c
    LEFT JOIN contribution_reports r USING (contribution_id)
    LEFT JOIN contribution_withdrawals w USING (contribution_id)
"""


def _state(row: asyncpg.Record) -> int:
    if row["withdrawn_at"] is not None:
        return ingest_pb2.CONTRIBUTION_STATE_WITHDRAWN
    if row["outcome"] == contribution_pb2.PROCESSING_OUTCOME_PROCESSED:
        return ingest_pb2.CONTRIBUTION_STATE_PROCESSED
    if row["outcome"] == contribution_pb2.PROCESSING_OUTCOME_REJECTED:
        return ingest_pb2.CONTRIBUTION_STATE_REJECTED
    return ingest_pb2.CONTRIBUTION_STATE_RECEIVED


def contribution_message(row: asyncpg.Record) -> ingest_pb2.Contribution:
    receipt = ingest_pb2.UploadReceipt(
        body=ingest_pb2.ReceiptBody(
            contribution_id=row["contribution_id"],
            contributor_id=row["contributor_id"],
            upload_id=row["upload_id"],
            dataset_name=row["dataset_name"],
            sha256=row["sha256"],
            byte_size=row["byte_size"],
            document_count=row["document_count"],
            key_id=row["key_id"],
        ),
        signature=bytes(row["signature"]),
    )
    receipt.body.received_at.FromDatetime(row["received_at"])
    message = ingest_pb2.Contribution(
        contribution_id=row["contribution_id"],
        upload_id=row["upload_id"],
        dataset_name=row["dataset_name"],
        file_name=row["file_name"],
        state=_state(row),
        format=row["format"],
        compression=row["compression"],
        receipt=receipt,
    )
    if row["report"] is not None:
        message.report.ParseFromString(bytes(row["report"]))
    if row["withdrawn_at"] is not None:
        message.withdrawn_effective_at.FromDatetime(row["withdrawn_at"])
    return message


async def get_contribution(
    pool: asyncpg.Pool, contributor_id: str, contribution_id: str
) -> ingest_pb2.Contribution | None:
    """The contribution if it exists AND belongs to `contributor_id`: a caller can never
    tell another contributor's contribution from one that does not exist."""
    row = await pool.fetchrow(
        f"SELECT {_CONTRIBUTION_COLUMNS} WHERE c.contribution_id = $1 AND c.contributor_id = $2",
        contribution_id,
        contributor_id,
    )
    return contribution_message(row) if row else None


async def list_contributions(
    pool: asyncpg.Pool, contributor_id: str, page_size: int, after: tuple[datetime, str] | None
) -> list[ingest_pb2.Contribution]:
    """Newest first, keyset-paginated on (received_at, contribution_id)."""
    if after is None:
        rows = await pool.fetch(
            f"SELECT {_CONTRIBUTION_COLUMNS} WHERE c.contributor_id = $1 "
            "ORDER BY c.received_at DESC, c.contribution_id DESC LIMIT $2",
            contributor_id,
            page_size,
        )
    else:
        rows = await pool.fetch(
            f"SELECT {_CONTRIBUTION_COLUMNS} WHERE c.contributor_id = $1 "
            "AND (c.received_at, c.contribution_id) < ($3, $4) "
            "ORDER BY c.received_at DESC, c.contribution_id DESC LIMIT $2",
            contributor_id,
            page_size,
            after[0],
            after[1],
        )
    return [contribution_message(row) for row in rows]

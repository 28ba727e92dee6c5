"""`1tt consumer export`: a snapshot's processed, redacted documents, as the consumer gets them.

The consumer trains on exactly the documents its snapshot took: for every member of the
snapshot (a contribution, named with the event id of its contribution.processed fact), the
kept and redacted documents preprocess wrote to that fact's processed shards. The export
writes them as output shards (`part-00000.jsonl` or `part-00000.parquet`, at most about
64 MiB or 100,000 documents each), one row per document:

    contribution_id, document_id (the contributor's "id", may be null), index, tokens, text

with a `manifest.json` naming the snapshot, its Merkle root, every contribution with its
contributor, accepted tokens, documents and processed fact, and every shard with its
sha256, size, documents and tokens. Each export is recorded as a `snapshot.exported`
fact, so the lineage from contribution to snapshot to the data a service was trained on
is on the log.

This runs on the platform host, not on the consumer's machine: processed shards are
encrypted in the blob store to the preprocess service's X25519 key, and only the holder
of its private half ($TT_RUN_DIR/secrets/blob-preprocess.key, or
$TT_BLOB_PRIVATE_KEY_FILE) can read them. Only a consumer may export, and only its own
snapshots (ConsumerClient checks the role; this module checks the owner).

Guarantees:

- Nothing half-written: everything is written into a hidden directory beside `out_dir`
  (mode 0700: the text is licensed data) and renamed into place at the very end. A failure
  removes it. An `out_dir` that exists and is not empty is refused and left untouched.
- Nothing unchecked: the snapshot's Merkle root is recomputed from its members; every
  processed shard's plaintext is hashed against its BlobRef; the documents and tokens read
  for a contribution must equal its processed fact's documents_kept and tokens_accepted.
- Nothing exported without a fact: snapshot.exported is published before the directory is
  renamed into place. If publishing fails, nothing is exported.
- Deterministic: the manifest holds no wall-clock time (`created_at` is when the snapshot
  was created, from its fact), rows are in member order (contribution id) and shard order,
  so the same snapshot exported twice in the same format (with the same pyarrow, for
  Parquet) gives byte-identical files, the same manifest sha256 and so the same export id;
  the second export finds its fact already on the log and does not publish it again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

from services.common.blobstore import (
    BlobError,
    BlobIntegrityError,
    BlobNotFoundError,
    BlobRef,
    BlobStore,
    load_private_key,
)
from services.common.facts import Envelope, payload_of
from services.consumer.client import ConsumerClient, ConsumerError
from services.rules.ids import derived_id
from services.rules.merkle import snapshot_root
from tt.facts.v1 import consumer_pb2, contribution_pb2

FORMATS = {
    "jsonl": consumer_pb2.EXPORT_FORMAT_JSONL,
    "parquet": consumer_pb2.EXPORT_FORMAT_PARQUET,
}
MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
# A shard is closed before it would pass either bound (a single larger document still gets
# a shard of its own). For Parquet the bytes counted are the rows' uncompressed size.
SHARD_BYTES_MAX = 64 << 20
SHARD_DOCUMENTS_MAX = 100_000
# Parquet rows are buffered up to one row group; this bounds the exporter's memory.
ROW_GROUP_BYTES_MAX = 8 << 20
ROW_GROUP_ROWS_MAX = 10_000
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    """One snapshot member with the contribution.processed fact it names."""

    member: consumer_pb2.SnapshotMember
    processed: contribution_pb2.ContributionProcessed


@dataclass
class ShardStats:
    file: str
    documents: int = 0
    tokens: int = 0
    payload_bytes: int = 0
    sha256: str = ""
    bytes: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "documents": self.documents,
            "tokens": self.tokens,
        }


@dataclass
class ContributionStats:
    documents: int = 0
    tokens: int = 0
    files: list[str] = field(default_factory=list)


# -- finding and checking what the snapshot names (pure) -------------------------------


def find_snapshot(
    facts: list[Envelope], snapshot_id: str, consumer_id: str
) -> tuple[Envelope, consumer_pb2.SnapshotCreated]:
    """The snapshot.created fact of `snapshot_id`, if it is `consumer_id`'s; ConsumerError
    otherwise. The first fact with the id wins (its event id is derived, so a resend is
    the same fact)."""
    for envelope in facts:
        if envelope.event_type != "snapshot.created":
            continue
        snapshot = payload_of(envelope)
        if snapshot.snapshot_id != snapshot_id:
            continue
        if snapshot.consumer_id != consumer_id:
            raise ConsumerError(
                f"snapshot {snapshot_id} belongs to another consumer; only the consumer "
                "that created a snapshot may export it"
            )
        return envelope, snapshot
    raise ConsumerError(
        f"no snapshot with id {snapshot_id} is on the log; `1tt consumer snapshot` prints "
        "the snapshot_id of the snapshots you create"
    )


def check_merkle_root(snapshot: consumer_pb2.SnapshotCreated) -> None:
    """The recorded Merkle root must be the one its members give (services.rules.merkle)."""
    recomputed = snapshot_root(list(snapshot.members))
    if recomputed != snapshot.merkle_root:
        raise ConsumerError(
            f"snapshot {snapshot.snapshot_id}: its fact records Merkle root "
            f"{snapshot.merkle_root} but its members give {recomputed}; the fact is not "
            "consistent, so nothing is exported"
        )


def sources_for(snapshot: consumer_pb2.SnapshotCreated, facts: list[Envelope]) -> list[Source]:
    """Every member with its contribution.processed fact (by processed_event_id), in
    contribution-id order; ConsumerError naming any member whose fact is missing or says
    something else than the member does."""
    processed: dict[str, contribution_pb2.ContributionProcessed] = {}
    for envelope in facts:
        if envelope.event_type == "contribution.processed":
            processed.setdefault(envelope.event_id, payload_of(envelope))
    members = sorted(snapshot.members, key=lambda m: m.contribution_id)
    missing = [m for m in members if m.processed_event_id not in processed]
    if missing:
        raise ConsumerError(
            f"snapshot {snapshot.snapshot_id}: the contribution.processed facts of "
            + ", ".join(f"{m.contribution_id} (event {m.processed_event_id})" for m in missing)
            + " are not on the log; is TT_TOPIC_PREFIX the snapshot's environment?"
        )
    sources = []
    for member in members:
        fact = processed[member.processed_event_id]
        said = (fact.contribution_id, fact.contributor_id, fact.tokens_accepted)
        named = (member.contribution_id, member.contributor_id, member.tokens_accepted)
        if said != named:
            raise ConsumerError(
                f"snapshot {snapshot.snapshot_id}: member {member.contribution_id} names "
                f"processed fact {member.processed_event_id}, which is about contribution "
                f"{fact.contribution_id} of {fact.contributor_id} with "
                f"{fact.tokens_accepted} accepted tokens, not {member.tokens_accepted}"
            )
        sources.append(Source(member, fact))
    return sources


def export_ids(snapshot_id: str, fmt: str, manifest_sha256: str) -> tuple[str, str]:
    """(export_id, event_id): derived from what was exported, so an identical export
    is the same fact."""
    export_id = derived_id("snapshot.export", snapshot_id, fmt, manifest_sha256)
    return export_id, derived_id("snapshot.exported", export_id)


def build_manifest(
    envelope: Envelope,
    snapshot: consumer_pb2.SnapshotCreated,
    fmt: str,
    sources: list[Source],
    per_contribution: dict[str, ContributionStats],
    shards: list[ShardStats],
) -> bytes:
    """The manifest's bytes: sorted keys, no wall-clock time, so it is deterministic."""
    contributions = [
        {
            "contribution_id": s.member.contribution_id,
            "contributor_id": s.member.contributor_id,
            "tokens_accepted": s.member.tokens_accepted,
            "documents": per_contribution[s.member.contribution_id].documents,
            "processed_event_id": s.member.processed_event_id,
            "files": per_contribution[s.member.contribution_id].files,
        }
        for s in sources
    ]
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "snapshot_id": snapshot.snapshot_id,
        "snapshot_name": snapshot.name,
        "merkle_root": snapshot.merkle_root,
        "consumer_id": snapshot.consumer_id,
        "format": fmt,
        # When the snapshot was created (its fact), not when this export ran.
        "created_at": envelope.occurred_at.ToDatetime(tzinfo=UTC).isoformat(),
        "snapshot_event_id": envelope.event_id,
        "columns": ["contribution_id", "document_id", "index", "tokens", "text"],
        "contributions": contributions,
        "shards": [shard.as_json() for shard in shards],
        "totals": {
            "contributions": len(contributions),
            "documents": sum(shard.documents for shard in shards),
            "tokens": sum(shard.tokens for shard in shards),
            "shards": len(shards),
            "bytes": sum(shard.bytes for shard in shards),
        },
    }
    return (json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


# -- writing (synchronous; run in a thread) ---------------------------------------------


class ShardWriter:
    """Rows in, `part-NNNNN.<fmt>` files out under `directory`, each closed before it
    would pass SHARD_BYTES_MAX or SHARD_DOCUMENTS_MAX."""

    def __init__(self, directory: Path, fmt: str):
        self.directory = directory
        self.fmt = fmt
        self.shards: list[ShardStats] = []
        self._current: ShardStats | None = None
        self._file = None  # the JSONL file, or the ParquetWriter
        self._rows: dict[str, list] = {}
        self._buffered_bytes = 0

    def add(self, row: dict[str, Any]) -> str:
        """Write one row; returns the file it went to."""
        if self.fmt == "jsonl":
            line = (json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
            size = len(line)
        else:
            line = b""
            size = 32 + sum(len(str(v).encode()) for v in row.values() if v is not None)
        shard = self._current
        if shard is None or (
            shard.documents
            and (
                shard.documents >= SHARD_DOCUMENTS_MAX
                or shard.payload_bytes + size > SHARD_BYTES_MAX
            )
        ):
            shard = self._open_next()
        if self.fmt == "jsonl":
            self._file.write(line)
        else:
            self._buffer(row, size)
        shard.documents += 1
        shard.tokens += row["tokens"]
        shard.payload_bytes += size
        return shard.file

    def close(self) -> list[ShardStats]:
        """Close the last shard; every shard's stats, with sha256 and bytes on disk."""
        self._close_current()
        return self.shards

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open_next(self) -> ShardStats:
        self._close_current()
        shard = ShardStats(f"part-{len(self.shards):05d}.{self.fmt}")
        path = self.directory / shard.file
        if self.fmt == "jsonl":
            self._file = open(path, "xb")  # closed in _close_current (or abort)
        else:
            import pyarrow.parquet as pq

            self._file = pq.ParquetWriter(
                path, _parquet_schema(), compression="zstd", write_statistics=True
            )
        self._current = shard
        self.shards.append(shard)
        return shard

    def _buffer(self, row: dict[str, Any], size: int) -> None:
        for name, value in row.items():
            self._rows.setdefault(name, []).append(value)
        self._buffered_bytes += size
        if (
            len(self._rows["text"]) >= ROW_GROUP_ROWS_MAX
            or self._buffered_bytes >= ROW_GROUP_BYTES_MAX
        ):
            self._flush_row_group()

    def _flush_row_group(self) -> None:
        if not self._rows:
            return
        import pyarrow as pa

        table = pa.Table.from_pydict(self._rows, schema=_parquet_schema())
        self._file.write_table(table)
        self._rows = {}
        self._buffered_bytes = 0

    def _close_current(self) -> None:
        shard = self._current
        if shard is None:
            return
        path = self.directory / shard.file
        if self.fmt == "jsonl":
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        else:
            self._flush_row_group()
            self._file.close()
            _fsync_path(path)
        self._file = None
        self._current = None
        shard.sha256, shard.bytes = _file_sha256(path)


def _parquet_schema():
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("contribution_id", pa.string(), nullable=False),
            pa.field("document_id", pa.string()),
            pa.field("index", pa.int64(), nullable=False),
            pa.field("tokens", pa.int64(), nullable=False),
            pa.field("text", pa.string(), nullable=False),
        ]
    )


def _file_sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as file:
        while chunk := file.read(_COPY_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _fsync_path(path: Path) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _document(line: bytes, where: str) -> tuple[str | None, int, int, str]:
    """(id, index, tokens, text) of one processed-shard line (preprocess.stages.assemble)."""
    try:
        row = json.loads(line)
        document_id, index, tokens, text = row["id"], row["index"], row["tokens"], row["text"]
    except (ValueError, TypeError, KeyError) as error:
        raise ConsumerError(f"{where}: not a processed document ({error})") from None
    valid = (
        (document_id is None or isinstance(document_id, str))
        and type(index) is int
        and type(tokens) is int
        and tokens >= 0
        and isinstance(text, str)
    )
    if not valid:
        raise ConsumerError(f"{where}: a processed document needs id, index, tokens and text")
    return document_id, index, tokens, text


def _stream_contribution(
    source: Source, store: BlobStore, private_key: bytes, writer: ShardWriter
) -> ContributionStats:
    """Copy one contribution's processed shards, line by line, into the output shards, and
    check them against its fact."""
    member, fact = source.member, source.processed
    stats = ContributionStats()
    for blob in fact.processed_shards:
        ref = BlobRef(uri=blob.uri, sha256=blob.sha256, byte_size=blob.byte_size)
        digest = hashlib.sha256()
        try:
            with store.open_reader(ref, private_key) as reader:
                for number, line in enumerate(reader, start=1):
                    digest.update(line)
                    where = f"processed shard {blob.uri} line {number}"
                    document_id, index, tokens, text = _document(line, where)
                    row = {
                        "contribution_id": member.contribution_id,
                        "document_id": document_id,
                        "index": index,
                        "tokens": tokens,
                        "text": text,
                    }
                    file = writer.add(row)
                    if not stats.files or stats.files[-1] != file:
                        stats.files.append(file)
                    stats.documents += 1
                    stats.tokens += tokens
        except ConsumerError:
            raise
        except BlobNotFoundError:
            raise ConsumerError(
                f"processed shard {blob.uri} of contribution {member.contribution_id} is not "
                f"in the blob store at {store.root}; the export must run on the platform "
                "host (TT_BLOB_ROOT)"
            ) from None
        except (BlobIntegrityError, ValueError) as error:
            raise ConsumerError(
                f"processed shard {blob.uri} of contribution {member.contribution_id} cannot "
                f"be read: {error} (is the key preprocess's blob key?)"
            ) from None
        if digest.hexdigest() != blob.sha256:
            raise ConsumerError(
                f"processed shard {blob.uri} of contribution {member.contribution_id} does "
                f"not hash to its sha256 (got {digest.hexdigest()}); the blob store is damaged"
            )
    if (stats.documents, stats.tokens) != (fact.documents_kept, fact.tokens_accepted):
        raise ConsumerError(
            f"contribution {member.contribution_id}: its processed shards hold "
            f"{stats.documents} documents and {stats.tokens} tokens, but its "
            f"contribution.processed fact {member.processed_event_id} says "
            f"{fact.documents_kept} documents and {fact.tokens_accepted} tokens; the blob "
            "store and the log disagree, so nothing is exported"
        )
    return stats


def write_shards(
    directory: Path, fmt: str, sources: list[Source], store: BlobStore, private_key: bytes
) -> tuple[dict[str, ContributionStats], list[ShardStats]]:
    """Every source's documents as output shards in `directory`; per contribution and
    per shard statistics."""
    writer = ShardWriter(directory, fmt)
    try:
        per_contribution = {
            s.member.contribution_id: _stream_contribution(s, store, private_key, writer)
            for s in sources
        }
        return per_contribution, writer.close()
    except BaseException:
        writer.abort()
        raise


# -- the directory --------------------------------------------------------------------


def _refuse_existing(out_dir: Path) -> None:
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise ConsumerError(
            f"--out {out_dir} exists and is not a directory; name a new or empty directory"
        )
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise ConsumerError(
            f"--out {out_dir} exists and is not empty; nothing was written to it. Name a "
            "new or empty directory"
        )


def _staging_dir(out_dir: Path) -> Path:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "xb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _move_into_place(staging: Path, out_dir: Path) -> None:
    _fsync_path(staging)
    _refuse_existing(out_dir)
    try:
        # rename(2) replaces an empty directory and fails on a non-empty one: a directory
        # filled since the check above is never overwritten.
        os.rename(staging, out_dir)
    except OSError as error:
        raise ConsumerError(f"cannot move the export into {out_dir}: {error}") from None
    _fsync_path(out_dir.parent)


def _load_key(private_key_file: Path) -> bytes:
    try:
        return load_private_key(private_key_file)
    except (OSError, BlobError) as error:
        raise ConsumerError(
            f"cannot read the blob store's private key ({error}); the export runs on the "
            "platform host, which holds preprocess's key (TT_BLOB_PRIVATE_KEY_FILE, default "
            "$TT_RUN_DIR/secrets/blob-preprocess.key)"
        ) from None


# -- the export -------------------------------------------------------------------------


async def export_snapshot(
    client: ConsumerClient,
    snapshot_id: str,
    out_dir: Path,
    fmt: str = "jsonl",
    *,
    blob_root: Path,
    private_key_file: Path,
) -> dict[str, Any]:
    """Export the documents of `client`'s snapshot `snapshot_id` into `out_dir` as `fmt`
    shards with a manifest, record the export as a snapshot.exported fact, and return a
    summary. ConsumerError, with nothing written, if anything does not check out."""
    if fmt not in FORMATS:
        raise ConsumerError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out_dir = Path(out_dir)
    _refuse_existing(out_dir)
    private_key = _load_key(private_key_file)
    facts = await client.read(["snapshot.created", "contribution.processed", "snapshot.exported"])
    envelope, snapshot = find_snapshot(facts, snapshot_id, client.consumer_id)
    check_merkle_root(snapshot)
    sources = sources_for(snapshot, facts)
    staging = await asyncio.to_thread(_staging_dir, out_dir)
    try:
        per_contribution, shards = await asyncio.to_thread(
            write_shards, staging, fmt, sources, BlobStore(blob_root), private_key
        )
        manifest = build_manifest(envelope, snapshot, fmt, sources, per_contribution, shards)
        await asyncio.to_thread(_write_file, staging / MANIFEST_NAME, manifest)
        manifest_sha256 = hashlib.sha256(manifest).hexdigest()
        export_id, event_id = export_ids(snapshot_id, fmt, manifest_sha256)
        fact = consumer_pb2.SnapshotExported(
            export_id=export_id,
            consumer_id=client.consumer_id,
            snapshot_id=snapshot_id,
            merkle_root=snapshot.merkle_root,
            format=FORMATS[fmt],
            manifest_sha256=manifest_sha256,
            shard_count=len(shards),
            documents=sum(s.documents for s in shards),
            tokens=sum(s.tokens for s in shards),
        )
        # Published before the export is handed over: no export exists without its fact.
        replayed = any(
            e.event_type == "snapshot.exported" and e.event_id == event_id for e in facts
        )
        if not replayed:
            await client._publish(fact, event_id)
        await asyncio.to_thread(_move_into_place, staging, out_dir)
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, staging, True)
        raise
    return {
        "export_id": export_id,
        "event_id": event_id,
        "replayed": replayed,
        "snapshot_id": snapshot_id,
        "snapshot_name": snapshot.name,
        "consumer_id": client.consumer_id,
        "merkle_root": snapshot.merkle_root,
        "format": fmt,
        "out_dir": str(out_dir),
        "manifest": str(out_dir / MANIFEST_NAME),
        "manifest_sha256": manifest_sha256,
        "contributions": len(sources),
        "documents": fact.documents,
        "tokens": fact.tokens,
        "shards": [shard.as_json() for shard in shards],
    }

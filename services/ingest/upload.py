"""The upload pipeline: from a client stream to a signed receipt.

    metadata first -> chunks to an encrypted temp blob (hashing, size cap) -> declared size
    and digest checked -> same upload id? (replay or conflict) -> content validated in a
    worker process -> blob committed (fsync, atomic rename) -> contribution.received on the
    log (acks=all) -> projection row -> receipt.

Every failure raises UploadFailure with a gRPC status and a message a person can act on,
and leaves no fact and no temp file. Until the fact is acknowledged nothing has been
accepted, so a retry with the same upload id is always safe.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import unicodedata
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import grpc
from aiokafka.errors import KafkaError

from services.common import formats, metrics
from services.common.blobstore import BlobStore, BlobWriter
from services.common.bus import FactProducer
from services.common.facts import make_envelope
from services.common.identity import Principal
from services.common.validation import (
    MAX_FILE_NAME_LENGTH,
    FactValidationError,
    validate_envelope,
)
from services.ingest.projection import (
    StoredUpload,
    find_upload,
    get_contribution,
    receipt_for,
    record_received,
)
from services.ingest.receipts import ReceiptSigner
from services.ingest.streaming import StreamingValidator, streams
from services.rules.ids import derived_id
from tt.facts.v1 import common_pb2, contribution_pb2
from tt.ingest.v1 import ingest_pb2

log = logging.getLogger(__name__)
_UPLOAD_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_DATASET_NAME = 200
MAX_FILE_NAME = MAX_FILE_NAME_LENGTH
MAX_CHUNKS_IN_FLIGHT = 8
_FORMATS = {
    contribution_pb2.DATASET_FORMAT_TEXT: "TEXT (plain UTF-8, one document)",
    contribution_pb2.DATASET_FORMAT_JSONL: 'JSONL (one object with a "text" field per line)',
    contribution_pb2.DATASET_FORMAT_PARQUET: 'PARQUET (a "text" string column)',
}
_COMPRESSIONS = {
    contribution_pb2.COMPRESSION_NONE: "NONE",
    contribution_pb2.COMPRESSION_GZIP: "GZIP",
    contribution_pb2.COMPRESSION_ZSTD: "ZSTD",
}


class _Stages:
    """Wall time per pipeline stage, for the log line of each accepted upload."""

    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = now - self.last
        self.last = now

    def __str__(self) -> str:
        return ", ".join(f"{stage} {seconds:.3f}s" for stage, seconds in self.seconds.items())


class UploadFailure(Exception):
    """An upload was refused. `code` is the gRPC status; str() is the person-facing reason."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


def _invalid(message: str) -> UploadFailure:
    return UploadFailure(grpc.StatusCode.INVALID_ARGUMENT, message)


@dataclass
class UploadContext:
    """What the pipeline needs from the service, passed in (nothing global)."""

    pool: asyncpg.Pool
    producer: FactProducer
    blobs: BlobStore
    blob_public_key: bytes
    blob_key_id: str
    signer: ReceiptSigner
    validator: Executor
    max_upload_bytes: int
    format_limits: formats.Limits
    accepted_terms: Mapping[str, str]
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


async def accept_upload(
    requests: AsyncIterator[ingest_pb2.UploadRequest], principal: Principal, ctx: UploadContext
) -> ingest_pb2.UploadReceipt:
    outcome = "error"  # unless set below: an unexpected failure, or the client cancelled
    try:
        receipt = await _accept_upload(requests, principal, ctx)
        outcome = "replayed" if receipt.replayed else "accepted"
        return receipt
    except UploadFailure as failure:
        outcome = failure.code.name.lower()
        raise
    finally:
        metrics.UPLOADS.labels(outcome).inc()


async def _accept_upload(requests, principal: Principal, ctx: UploadContext):
    metadata = await _read_metadata(requests)
    dataset_format, compression = _check_metadata(metadata, ctx)
    writer = ctx.blobs.open_writer(ctx.blob_public_key)
    validator = (
        StreamingValidator(dataset_format, compression, ctx.format_limits)
        if streams(dataset_format)
        else None
    )
    clock = _Stages()
    try:
        await _receive_chunks(requests, writer, validator, ctx.max_upload_bytes)
        clock.lap("receive")
        await asyncio.to_thread(writer.finish)
        clock.lap("finish")
        _check_declared(metadata, writer)
        receipt = await _accept(
            metadata, dataset_format, compression, writer, validator, principal, ctx, clock
        )
        log.info(
            "upload %s by %s: %d bytes accepted (%s)",
            metadata.upload_id,
            principal.principal_id,
            writer.byte_size,
            clock,
        )
        return receipt
    finally:
        if validator is not None:
            validator.abandon()
        # Abort is a no-op after commit; otherwise it removes the temp file, including
        # when the client cancelled and this task was cancelled mid-stream.
        await asyncio.shield(asyncio.to_thread(writer.abort))


async def _read_metadata(requests: AsyncIterator[ingest_pb2.UploadRequest]):
    try:
        first = await anext(requests)
    except StopAsyncIteration:
        raise _invalid(
            "the upload stream was empty: send UploadMetadata first, then chunks"
        ) from None
    if first.WhichOneof("item") != "metadata":
        raise _invalid(
            "the first message of an upload must carry UploadMetadata (upload_id, "
            "dataset_name, format, terms); it carried a chunk"
        )
    return first.metadata


def _check_metadata(meta: ingest_pb2.UploadMetadata, ctx: UploadContext) -> tuple[int, int]:
    problems = []
    if not _UPLOAD_ID.match(meta.upload_id):
        problems.append(
            f"upload_id {meta.upload_id!r} must be 1-128 characters of letters, digits, "
            "'.', '_', ':' or '-'"
        )
    name = meta.dataset_name.strip()
    if not name or len(name) > MAX_DATASET_NAME or not _printable(name):
        problems.append(
            f"dataset_name must be 1-{MAX_DATASET_NAME} printable characters, "
            f"got {meta.dataset_name[:MAX_DATASET_NAME]!r}"
        )
    if len(meta.file_name) > MAX_FILE_NAME or not _printable(meta.file_name):
        problems.append(
            f"file_name must be at most {MAX_FILE_NAME} printable characters (no control "
            f"or format characters such as NUL or a line break), got "
            f"{meta.file_name[:MAX_FILE_NAME]!r}; send the file's own name, or none"
        )
    if meta.declared_sha256 and not _SHA256.match(meta.declared_sha256):
        problems.append("declared_sha256 must be 64 lower-case hex characters")
    expected_terms = ctx.accepted_terms.get(meta.terms_id)
    if expected_terms is None:
        known = ", ".join(sorted(ctx.accepted_terms))
        problems.append(
            f"terms_id {meta.terms_id!r} is not a terms document of this "
            f"platform; accept one of: {known}"
        )
    elif meta.terms_sha256 != expected_terms:
        problems.append(
            f"terms_sha256 does not match terms {meta.terms_id!r} (expected {expected_terms}): "
            "read and accept the current text"
        )
    dataset_format = meta.format
    if dataset_format not in _FORMATS:
        problems.append(f"format must be one of {', '.join(_FORMATS.values())}")
    # Compression is optional: unset means the bytes are sent as they are.
    compression = meta.compression or contribution_pb2.COMPRESSION_NONE
    if compression not in _COMPRESSIONS:
        problems.append(f"compression must be one of {', '.join(_COMPRESSIONS.values())}")
    if problems:
        raise _invalid("; ".join(problems))
    if meta.HasField("declared_size") and meta.declared_size > ctx.max_upload_bytes:
        raise UploadFailure(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"the declared size {meta.declared_size} bytes exceeds the upload limit of "
            f"{ctx.max_upload_bytes} bytes; split the dataset into several uploads",
        )
    return dataset_format, compression


def _printable(text: str) -> bool:
    """No character of Unicode's "Other" categories: control (NUL, line breaks), format
    (bidirectional overrides, which disguise a name), surrogate, private use, unassigned."""
    return not any(unicodedata.category(ch).startswith("C") for ch in text)


async def _receive_chunks(
    requests: AsyncIterator[ingest_pb2.UploadRequest],
    writer: BlobWriter,
    validator: StreamingValidator | None,
    limit: int,
) -> None:
    """Receive chunks while a writer thread hashes, encrypts and writes the earlier ones:
    the event loop keeps reading the socket while the CPU-heavy work runs beside it."""
    loop = asyncio.get_running_loop()
    received = 0
    in_flight: deque[asyncio.Future] = deque()
    # One thread per upload keeps the chunks in order; a few in flight bound the memory.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blob-writer")
    try:
        async for request in requests:
            if request.WhichOneof("item") != "chunk":
                raise _invalid("UploadMetadata may be sent only once, as the first message")
            received += len(request.chunk)
            metrics.UPLOAD_BYTES.inc(len(request.chunk))
            if received > limit:
                # Stop reading here: the client's remaining data is never received.
                raise UploadFailure(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"the upload exceeds the limit of {limit} bytes; split the dataset into "
                    "several uploads",
                )
            if validator is not None and validator.error is not None:
                raise _rejection(validator.error)  # refused before the rest arrives
            in_flight.append(
                loop.run_in_executor(executor, _store_chunk, writer, validator, request.chunk)
            )
            if len(in_flight) >= MAX_CHUNKS_IN_FLIGHT:
                await in_flight.popleft()
        while in_flight:
            await in_flight.popleft()
    finally:
        # On failure, let a write that already started finish before the caller removes
        # the temp file; the ones not started are dropped.
        for pending in in_flight:
            pending.cancel()
        await asyncio.gather(*in_flight, return_exceptions=True)
        executor.shutdown(wait=False)


def _check_declared(meta: ingest_pb2.UploadMetadata, writer: BlobWriter) -> None:
    if writer.byte_size == 0:
        raise _invalid("the upload is empty: it carried no data after the metadata")
    if meta.HasField("declared_size") and meta.declared_size != writer.byte_size:
        raise _invalid(
            f"declared size was {meta.declared_size} bytes but {writer.byte_size} bytes "
            "arrived; the file may have changed while it was being sent"
        )
    if meta.declared_sha256 and meta.declared_sha256 != writer.sha256:
        raise _invalid(
            f"declared sha256 {meta.declared_sha256} does not match the received data "
            f"({writer.sha256}); the file may have changed or been corrupted in transit"
        )


async def _accept(meta, dataset_format, compression, writer, validator, principal, ctx, clock):
    contribution_id = derived_id("contribution", principal.principal_id, meta.upload_id)
    # One upload id at a time per contributor: a concurrent retry waits here, then finds
    # the first attempt's result instead of racing it onto the log.
    async with ctx.pool.acquire() as lock_conn:
        lock = f"upload:{principal.principal_id}:{meta.upload_id}"
        await lock_conn.execute("SELECT pg_advisory_lock(hashtext($1))", lock)
        try:
            existing = await find_upload(lock_conn, principal.principal_id, meta.upload_id)
            if existing is not None:
                return await _replay(existing, writer, meta, principal, ctx)
            summary = await _validate(writer, validator, dataset_format, compression, ctx)
            clock.lap("validate")
            ref = await asyncio.to_thread(writer.commit)
            clock.lap("commit")
            envelope = _received_fact(
                meta, dataset_format, compression, ref, summary, contribution_id, principal, ctx
            )
            await _publish(ctx.producer, envelope)
            clock.lap("publish")
            await record_received(lock_conn, envelope, ctx.signer)
            return receipt_for(envelope, ctx.signer)
        finally:
            await lock_conn.execute("SELECT pg_advisory_unlock(hashtext($1))", lock)


async def _replay(existing: StoredUpload, writer, meta, principal, ctx):
    if existing.sha256 != writer.sha256:
        raise UploadFailure(
            grpc.StatusCode.ALREADY_EXISTS,
            f"upload id {meta.upload_id!r} was already used at "
            f"{existing.received_at.isoformat()} for different content (sha256 "
            f"{existing.sha256}, this upload {writer.sha256}); an upload id names one "
            "upload: choose a new id for new content",
        )
    contribution = await get_contribution(
        ctx.pool, principal.principal_id, existing.contribution_id
    )
    receipt = ingest_pb2.UploadReceipt()
    receipt.CopyFrom(contribution.receipt)
    receipt.replayed = True
    return receipt


async def _validate(writer, validator, dataset_format, compression, ctx):
    try:
        if validator is not None:
            return await asyncio.to_thread(validator.finish)
        # Parquet needs random access to its footer: read the finished blob back in a
        # worker process, which keeps the CPU-heavy work off this event loop's core.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            ctx.validator,
            validate_blob,
            writer.reader_spec(),
            dataset_format,
            compression,
            ctx.format_limits,
        )
    except formats.UploadRejected as error:
        raise _rejection(error) from None


def _rejection(error: formats.UploadRejected) -> UploadFailure:
    if isinstance(error, formats.UploadTooLarge):
        return UploadFailure(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error))
    return _invalid(str(error))


def _store_chunk(writer: BlobWriter, validator: StreamingValidator | None, chunk: bytes) -> None:
    """In the upload's writer thread: hash, encrypt and write; and pass on to validation."""
    writer.write(chunk)
    if validator is not None:
        validator.feed(chunk)


def validate_blob(spec, dataset_format: int, compression: int, limits: formats.Limits):
    """Runs in a worker process: read the temp blob back and validate its content."""
    from services.common.blobstore import BlobReader

    with BlobReader.from_spec(spec) as raw:
        return formats.inspect_upload(
            raw, dataset_format=dataset_format, compression=compression, limits=limits
        )


def _received_fact(
    meta, dataset_format, compression, ref, summary, contribution_id, principal, ctx
):
    # Microseconds: the precision PostgreSQL keeps, so the receipt signed now and the one
    # rebuilt later from the projection are the same.
    now = ctx.clock().astimezone(UTC)
    fact = contribution_pb2.ContributionReceived(
        contribution_id=contribution_id,
        contributor_id=principal.principal_id,
        upload_id=meta.upload_id,
        dataset_name=meta.dataset_name.strip(),
        format=dataset_format,
        compression=compression,
        raw_blob=common_pb2.BlobRef(uri=ref.uri, sha256=ref.sha256, byte_size=ref.byte_size),
        document_count=summary.document_count,
        encryption_key_id=ctx.blob_key_id,
        file_name=meta.file_name,
    )
    fact.accepted_terms.terms_id = meta.terms_id
    fact.accepted_terms.terms_sha256 = meta.terms_sha256
    fact.accepted_terms.accepted_at.FromDatetime(now)
    envelope = make_envelope(
        fact,
        event_id=derived_id("contribution.received", contribution_id),
        producer="ingest",
        occurred_at=now,
        recorded_at=now,
    )
    # The checks above are the ones a person gets told about; this is the backstop that
    # keeps anything every reader would dead-letter from being published at all.
    try:
        validate_envelope(envelope)
    except FactValidationError as error:
        raise _invalid(f"the upload cannot be recorded: {'; '.join(error.problems)}") from None
    return envelope


async def _publish(producer: FactProducer, envelope) -> None:
    try:
        await producer.publish(envelope)
    except KafkaError as error:
        raise UploadFailure(
            grpc.StatusCode.UNAVAILABLE,
            "the event log (Kafka) did not acknowledge the upload, so it was not accepted "
            f"({type(error).__name__}); retry with the same upload id",
        ) from None

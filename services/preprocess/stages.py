"""The preprocess service's four stages, as async functions over plain messages. The Faust
app (services/preprocess/main.py) only wires them to topics and tables.

    prepare   contribution.received -> documents through the pure pipeline (process pool),
              results and fingerprints to blobs -> one message to the sequence topic
    sequence  (one partition: the platform's order of "earlier") -> claims per index shard
    claim     per shard, in sequence order: register keys, answer matches
    assemble  per contribution: all answers in -> verdicts -> report, shards, the fact

Messages are JSON-able dicts. Every stage is idempotent: a message handled twice (after
a crash) yields the same output, and the fact has a deterministic event id. A message
carries the trace context of its contribution ("traceparent", copied from stage to stage),
so the fact it ends in joins the upload's trace.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime

from services.common import formats
from services.common.blobstore import BlobRef, BlobStore
from services.common.facts import Envelope, make_envelope, payload_of
from services.common.telemetry import current_traceparent
from services.common.validation import as_free_text
from services.preprocess.dedup import DocClaim, DocRef, Match, ShardIndex, claims_by_shard, decide
from services.preprocess.fingerprints import Fingerprint
from services.preprocess.pipeline import (
    DocResult,
    PipelineConfig,
    document_batches,
    prepare_batch,
)
from services.preprocess.report import ReportBuilder
from services.rules.ids import derived_id
from tt.facts.v1 import common_pb2, contribution_pb2

log = logging.getLogger(__name__)
CLAIM_BATCH_DOCUMENTS = 500

Send = Callable[..., Awaitable[None]]


@dataclass
class StageContext:
    blobs: BlobStore
    private_key: bytes
    public_key: bytes
    config: PipelineConfig
    pool: Executor
    shards: int
    workers: int = 2
    # Reports go to the API (ingest), which serves them to their contributor only.
    report_public_key: bytes | None = None


# -- prepare --------------------------------------------------------------------------


class PipelineError(Exception):
    """A pure stage raised on some document: a defect of the pipeline, not of the upload.
    The service dead-letters the contribution's fact with this message (for an operator
    to replay once the defect is fixed) instead of stopping every later contribution."""


def _result_line(result: DocResult) -> bytes:
    return (
        json.dumps(
            {
                "i": result.index,
                "id": result.source_id,
                "tokens": result.tokens,
                "lang": result.language,
                "score": result.quality_score,
                "removal": list(result.removal) if result.removal else None,
                "pii": result.redactions,
                "text": result.text,
                "excerpt": result.excerpt,
            }
        )
        + "\n"
    ).encode()


def _fingerprint_line(result: DocResult) -> bytes:
    fp = result.fingerprint
    return (
        json.dumps({"i": result.index, "x": fp.exact, "s": list(fp.signature), "b": list(fp.bands)})
        + "\n"
    ).encode()


async def prepare(envelope: Envelope, ctx: StageContext) -> dict:
    """Run the pure pipeline over a received contribution, batch by batch (memory does not
    grow with its size), and return the message for the sequence topic."""
    received: contribution_pb2.ContributionReceived = payload_of(envelope)
    loop = asyncio.get_running_loop()
    results_writer = ctx.blobs.open_writer(ctx.public_key)
    prints_writer = ctx.blobs.open_writer(ctx.public_key)
    documents = fingerprinted = 0
    with results_writer, prints_writer:
        reader = ctx.blobs.open_reader(received.raw_blob.uri, ctx.private_key)
        with reader:
            batches = document_batches(
                formats.iter_records(
                    reader, dataset_format=received.format, compression=received.compression
                )
            )
            pending: list[asyncio.Future] = []
            while True:
                batch = await asyncio.to_thread(next, batches, None)
                if batch is not None:
                    pending.append(loop.run_in_executor(ctx.pool, prepare_batch, batch, ctx.config))
                if pending and (batch is None or len(pending) >= 2 * ctx.workers):
                    try:
                        results = await pending.pop(0)
                    except Exception as error:  # a bug in a pure stage, not a bad upload
                        raise PipelineError(
                            f"the pipeline failed on contribution {received.contribution_id}: "
                            f"{type(error).__name__}: {error}"
                        ) from error
                    for result in results:
                        documents += 1
                        await asyncio.to_thread(results_writer.write, _result_line(result))
                        if result.fingerprint is not None:
                            fingerprinted += 1
                            await asyncio.to_thread(prints_writer.write, _fingerprint_line(result))
                if batch is None and not pending:
                    break
        results = await asyncio.to_thread(results_writer.commit)
        prints = await asyncio.to_thread(prints_writer.commit)
    return {
        "type": "contribution",
        "contribution_id": received.contribution_id,
        "contributor_id": received.contributor_id,
        "received_event_id": envelope.event_id,
        "results": results.uri,
        "fingerprints": prints.uri,
        "documents": documents,
        "fingerprinted": fingerprinted,
        # The span handling the received fact: the later stages continue its trace.
        "traceparent": current_traceparent(),
    }


def rejected_fact(envelope: Envelope, reason: str, config: PipelineConfig) -> Envelope:
    """The fact for a contribution the pipeline cannot read at all."""
    received = payload_of(envelope)
    fact = contribution_pb2.ContributionProcessed(
        contribution_id=received.contribution_id,
        contributor_id=received.contributor_id,
        outcome=contribution_pb2.PROCESSING_OUTCOME_REJECTED,
        # An error message (a Parquet library's may run long): kept within the schema.
        rejection_reason=as_free_text(reason, "rejection_reason"),
        config_sha256=config.sha256(),
    )
    return _processed_envelope(fact, envelope.event_id)


def reference_message(envelope: Envelope) -> dict:
    """The sequence message for a consumer's reference corpus (reference.registered): it
    enters the order of "earlier" like a contribution, but only registers its documents."""
    fact = envelope.reference_registered
    return {
        "type": "reference",
        "contribution_id": f"reference:{fact.reference_id}",
        "contributor_id": "",
        "received_event_id": envelope.event_id,
        "results": "",
        "fingerprints": fact.fingerprints.uri,
        "documents": fact.documents,
        "fingerprinted": fact.documents,
    }


# -- sequence -------------------------------------------------------------------------


def claim_batches(fingerprinted: int) -> int:
    """How many claim batches a source with this many fingerprinted documents sends."""
    return max(1, -(-fingerprinted // CLAIM_BATCH_DOCUMENTS))


async def sequence(message: dict, seq: int, ctx: StageContext, send_claim: Send) -> None:
    """Fan a sequenced contribution (or reference set) out to every index shard, batch by
    batch. Each shard hears from every batch, possibly with no documents, so the assembler
    can count answers."""
    total = claim_batches(message["fingerprinted"])
    batch_no = 0
    for batch_no, batch in enumerate(_fingerprint_batches(message["fingerprints"], ctx)):
        await _send_claims(message, seq, batch_no, total, batch, ctx, send_claim)
    if batch_no == 0 and message["fingerprinted"] == 0:
        await _send_claims(message, seq, 0, total, [], ctx, send_claim)


def _fingerprint_batches(uri: str, ctx: StageContext) -> Iterator[list[tuple[int, Fingerprint]]]:
    batch: list[tuple[int, Fingerprint]] = []
    with ctx.blobs.open_reader(uri, ctx.private_key) as reader:
        for line in reader:
            row = json.loads(line)
            batch.append((row["i"], Fingerprint(row["x"], tuple(row["s"]), tuple(row["b"]))))
            if len(batch) == CLAIM_BATCH_DOCUMENTS:
                yield batch
                batch = []
    if batch:
        yield batch


async def _send_claims(message, seq, batch_no, total, batch, ctx, send_claim) -> None:
    for shard, claims in claims_by_shard(batch, ctx.shards).items():
        await send_claim(
            shard,
            {
                **{k: message[k] for k in message if k != "fingerprints"},
                "seq": seq,
                "batch": batch_no,
                "batches": total,
                "shard": shard,
                "shards": ctx.shards,
                "claims": [
                    [c.doc_index, c.exact, list(c.bands), list(c.signature)] for c in claims
                ],
            },
        )


# -- claim ----------------------------------------------------------------------------


def claim(message: dict, store, ctx: StageContext) -> dict | None:
    """Register one batch of keys on this shard; the answer for the assembler (None for a
    reference set, which only registers)."""
    is_reference = message["type"] == "reference"
    source = DocRef(message["seq"], message["contribution_id"], 0, is_reference)
    claims = [
        DocClaim(i, exact, tuple(bands), tuple(signature))
        for i, exact, bands, signature in message["claims"]
    ]
    matches = ShardIndex(store, ctx.config.dedup).claim(source, claims)
    if is_reference:
        return None
    return {
        **{k: message[k] for k in message if k != "claims"},
        "matches": [
            [
                m.doc_index,
                m.kind,
                m.owner.seq,
                m.owner.source_id,
                m.owner.doc_index,
                m.owner.is_reference,
            ]
            for m in matches
        ],
    }


# -- assemble -------------------------------------------------------------------------


def record_answer(state: dict | None, answer: dict) -> tuple[dict, bool]:
    """Add one shard's answer to a contribution's assembly state; True when every shard
    has answered for every batch. An answer delivered twice counts once."""
    state = state or {"answers": [], "matches": []}
    tag = f"{answer['shard']}:{answer['batch']}"
    if tag not in state["answers"]:
        state["answers"].append(tag)
        state["matches"].extend(answer["matches"])
    return state, len(state["answers"]) >= answer["batches"] * answer["shards"]


async def assemble(answer: dict, state: dict, ctx: StageContext) -> Envelope:
    """Every answer is in: decide the duplicates, write the report and the processed shard,
    and build the contribution.processed fact."""
    source = DocRef(answer["seq"], answer["contribution_id"], 0)
    verdicts = decide(
        source,
        [
            Match(i, kind, DocRef(seq, owner, doc, ref))
            for i, kind, seq, owner, doc, ref in state["matches"]
        ],
    )
    builder = ReportBuilder(ctx.config)
    kept = ctx.blobs.open_writer(ctx.public_key)
    with kept, ctx.blobs.open_reader(answer["results"], ctx.private_key) as reader:
        for line in reader:
            row = json.loads(line)
            result = DocResult(
                row["i"],
                row["id"],
                row["tokens"],
                row["lang"],
                row["score"],
                tuple(row["removal"]) if row["removal"] else None,
                row["pii"],
                None,
                row["text"],
                row["excerpt"],
            )
            if builder.add(result, verdicts.get(result.index)) is None:
                await asyncio.to_thread(
                    kept.write,
                    (
                        json.dumps(
                            {
                                "id": row["id"],
                                "index": row["i"],
                                "tokens": row["tokens"],
                                "text": row["text"],
                            }
                        )
                        + "\n"
                    ).encode(),
                )
        shard = await asyncio.to_thread(kept.commit)
    report = builder.to_dict(contribution_id=answer["contribution_id"])
    report_ref = await asyncio.to_thread(_write_json, ctx, report)
    fact = builder.to_fact(
        answer["contribution_id"],
        answer["contributor_id"],
        [_blob(shard)] if builder.documents_kept else [],
        _blob(report_ref),
    )
    return _processed_envelope(fact, answer["received_event_id"])


def _write_json(ctx: StageContext, document: dict) -> BlobRef:
    writer = ctx.blobs.open_writer(ctx.report_public_key or ctx.public_key)
    with writer:
        writer.write(json.dumps(document, sort_keys=True).encode())
        return writer.commit()


def _blob(ref: BlobRef) -> common_pb2.BlobRef:
    return common_pb2.BlobRef(uri=ref.uri, sha256=ref.sha256, byte_size=ref.byte_size)


def _processed_envelope(fact: contribution_pb2.ContributionProcessed, cause: str) -> Envelope:
    now = datetime.now(UTC)
    return make_envelope(
        fact,
        event_id=derived_id("contribution.processed", fact.contribution_id),
        producer="preprocess",
        occurred_at=now,
        recorded_at=now,
        causation_id=cause,
    )

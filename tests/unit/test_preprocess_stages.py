"""services.preprocess.stages.prepare: a defect of a pure stage surfaces as PipelineError
(the service dead-letters the contribution's fact with it) instead of an arbitrary error
that would stop the agent on every retry."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from services.common.blobstore import BlobStore, generate_keypair
from services.common.examples import example_envelopes
from services.common.facts import payload_of
from services.preprocess import stages
from services.preprocess.pipeline import PipelineConfig
from tt.facts.v1 import common_pb2, contribution_pb2


def _context(tmp_path, pool) -> tuple[stages.StageContext, object]:
    private, public = generate_keypair()
    blobs = BlobStore(tmp_path / "blobs")
    writer = blobs.open_writer(public)
    with writer:
        for k in range(3):
            line = {"id": f"d{k}", "text": f"Document {k} says something plain and readable."}
            writer.write((json.dumps(line) + "\n").encode())
        raw = writer.commit()
    envelope = next(
        e for e in example_envelopes("stages") if e.event_type == "contribution.received"
    )
    received = payload_of(envelope)
    received.format = contribution_pb2.DATASET_FORMAT_JSONL
    received.compression = contribution_pb2.COMPRESSION_NONE
    received.raw_blob.CopyFrom(
        common_pb2.BlobRef(uri=raw.uri, sha256=raw.sha256, byte_size=raw.byte_size)
    )
    ctx = stages.StageContext(
        blobs=blobs,
        private_key=private,
        public_key=public,
        config=PipelineConfig(),
        pool=pool,
        shards=2,
    )
    return ctx, envelope


async def test_prepare_reads_the_upload(tmp_path) -> None:
    with ThreadPoolExecutor(1) as pool:
        ctx, envelope = _context(tmp_path, pool)
        message = await stages.prepare(envelope, ctx)
    assert message["documents"] == 3
    assert message["fingerprinted"] == 3


async def test_a_failing_stage_is_a_pipeline_error(tmp_path, monkeypatch) -> None:
    def broken(batch, config):
        raise ValueError("a detector could not parse a candidate")

    monkeypatch.setattr(stages, "prepare_batch", broken)
    with ThreadPoolExecutor(1) as pool:
        ctx, envelope = _context(tmp_path, pool)
        with pytest.raises(stages.PipelineError, match="ValueError: a detector could not parse"):
            await stages.prepare(envelope, ctx)

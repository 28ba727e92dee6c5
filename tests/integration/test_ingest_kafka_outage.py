"""Kafka goes away at the worst moment: after the upload arrived, before the fact is
acknowledged. The contributor gets UNAVAILABLE and no receipt; once Kafka is back, the
same upload id succeeds and the log holds exactly one fact for it."""

from __future__ import annotations

import subprocess
import time

import grpc
import pytest

from services.common.facts import decode
from tests.integration.ingest_server import (
    ROOT,
    bearer,
    metadata_for,
    start_ingest,
    stop_ingest,
    upload_requests,
)

pytestmark = pytest.mark.integration


def stack(command: str) -> None:
    subprocess.run(
        [str(ROOT / "deploy/local/stack.sh"), command], check=True, timeout=180, capture_output=True
    )


def test_kafka_unavailable_at_the_end_then_the_same_upload_id_succeeds_once(settings, tmp_path):
    server = start_ingest(settings, tmp_path, TT_PRODUCE_TIMEOUT_MS="3000")
    try:
        me = server.principal()
        stub = server.stub()
        metadata = metadata_for()
        text = b"A report written while the log was down."
        stack("kafka-stop")
        try:
            with pytest.raises(grpc.RpcError) as caught:
                stub.Upload(upload_requests(metadata, text), metadata=bearer(me), timeout=60)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "retry with the same upload id" in caught.value.details()
            assert server.temp_files() == []
        finally:
            stack("kafka-start")

        receipt = None
        deadline = time.monotonic() + 60
        while receipt is None:
            try:
                receipt = stub.Upload(
                    upload_requests(metadata, text), metadata=bearer(me), timeout=60
                ).receipt
            except grpc.RpcError as error:
                # The producer may need a moment to find the restarted broker.
                assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
                assert time.monotonic() < deadline, "ingest never recovered"
                time.sleep(1)
        assert not receipt.replayed  # the first attempt accepted nothing
        facts = [
            r
            for r in server.received_facts(1, timeout_s=10)
            if decode(r.value).key == receipt.body.contribution_id
        ]
        assert len(facts) == 1
        assert server.process.poll() is None, server.log_tail()  # it rode out the outage
    finally:
        stop_ingest(server)

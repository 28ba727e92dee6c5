"""Ingest's gRPC edge, tried against a real process: strings no fact could hold are
refused before anything is published (file_name like dataset_name, ids, reasons), a
Parquet file whose pages decode past 200:1 is refused like a gzip bomb, and an
unexpected error answers INTERNAL without its text."""

from __future__ import annotations

import asyncio
import io
import re

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from services.common.db import connect
from tests.integration.ingest_server import (
    bearer,
    metadata_for,
    start_ingest,
    stop_ingest,
    upload_requests,
    wait_until,
)
from tests.security.support import facts_published
from tt.facts.v1 import contribution_pb2
from tt.ingest.v1 import ingest_pb2

pytestmark = pytest.mark.integration

PARQUET = contribution_pb2.DATASET_FORMAT_PARQUET


@pytest.fixture(scope="module")
def server(settings, tmp_path_factory):
    running = start_ingest(settings, tmp_path_factory.mktemp("grpc"))
    yield running
    stop_ingest(running)


@pytest.fixture(scope="module")
def stub(server):
    return server.stub()


@pytest.fixture(scope="module")
def acme(server):
    return server.principal("contributor", "ACME Publishing")


def facts_on(server, event_type: str) -> int:
    return facts_published(server.settings, event_type)


def refused(stub, who, metadata, *chunks) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Upload(upload_requests(metadata, *chunks), metadata=bearer(who))
    return caught.value


@pytest.mark.parametrize(
    ("file_name", "phrase"),
    [
        ("report\x00.txt", "file_name must be at most 255 printable characters"),
        ("report\n.txt", "(no control or format characters such as NUL or a line break)"),
        ("\u202etxt.exe", "file_name must be"),  # a right-to-left override disguises a name
        ("f" * 256, "file_name must be at most 255 printable characters"),
    ],
    ids=["nul", "newline", "bidi-override", "overlong"],
)
def test_a_file_name_no_fact_could_hold_is_refused_before_anything_is_published(
    server, stub, acme, file_name, phrase
):
    """Before: file_name was not checked; a U+0000 in it was published, then refused by
    PostgreSQL, and ingest and payout exited."""
    before = facts_on(server, "contribution.received")
    objects = set(server.objects())
    error = refused(stub, acme, metadata_for(file_name=file_name), b"A field manual.\n")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert phrase in error.details()
    assert facts_on(server, "contribution.received") == before
    assert set(server.objects()) == objects
    assert wait_until(lambda: server.temp_files() == [], 5)


def test_a_file_name_of_printable_unicode_is_still_accepted(server, stub, acme):
    receipt = stub.Upload(
        upload_requests(metadata_for(file_name="Zoë — manuel 李.txt"), b"Un manuel.\n"),
        metadata=bearer(acme),
    ).receipt
    contribution = stub.GetContribution(
        ingest_pb2.GetContributionRequest(contribution_id=receipt.body.contribution_id),
        metadata=bearer(acme),
    ).contribution
    assert contribution.file_name == "Zoë — manuel 李.txt"


@pytest.mark.parametrize("contribution_id", ["\x00", "a\nb", "c" * 201])
def test_a_contribution_id_no_fact_could_hold_is_invalid_argument(stub, acme, contribution_id):
    """Before: a NUL reached PostgreSQL and came back as UNKNOWN with its error text."""
    for call, request in [
        (stub.GetContribution, ingest_pb2.GetContributionRequest(contribution_id=contribution_id)),
        (stub.Withdraw, ingest_pb2.WithdrawRequest(contribution_id=contribution_id)),
    ]:
        with pytest.raises(grpc.RpcError) as caught:
            call(request, metadata=bearer(acme))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
        assert "contribution_id" in caught.value.details()


def test_a_withdrawal_reason_with_control_characters_is_refused_and_nothing_published(
    server, stub, acme
):
    receipt = stub.Upload(
        upload_requests(metadata_for(), b"To withdraw.\n"), metadata=bearer(acme)
    ).receipt
    before = facts_on(server, "contribution.withdrawn")
    with pytest.raises(grpc.RpcError) as caught:
        stub.Withdraw(
            ingest_pb2.WithdrawRequest(
                contribution_id=receipt.body.contribution_id, reason="licence\x00ended"
            ),
            metadata=bearer(acme),
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "reason contains the control character U+0000" in caught.value.details()
    assert facts_on(server, "contribution.withdrawn") == before
    # A reason over several lines is free text, and fine.
    done = stub.Withdraw(
        ingest_pb2.WithdrawRequest(
            contribution_id=receipt.body.contribution_id, reason="licence ended\nsee mail"
        ),
        metadata=bearer(acme),
    )
    assert done.contribution_id == receipt.body.contribution_id
    assert facts_on(server, "contribution.withdrawn") == before + 1


def test_a_page_token_carrying_a_nul_is_invalid_argument(stub, acme):
    import base64

    token = base64.urlsafe_b64encode(b"2026-01-01T00:00:00+00:00|\x00").decode()
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListContributions(
            ingest_pb2.ListContributionsRequest(page_token=token), metadata=bearer(acme)
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def dictionary_bomb(rows: int = 2000, value_bytes: int = 1 << 20) -> bytes:
    """One value of `value_bytes`, dictionary-encoded in `rows` rows: tens of kilobytes of
    file, rows x value_bytes of text (built as a dictionary: never expanded here)."""
    column = pa.DictionaryArray.from_arrays(
        pa.array([0] * rows, pa.int32()), pa.array(["a" * value_bytes])
    )
    out = io.BytesIO()
    pq.write_table(pa.table({"text": column}), out, compression="zstd")
    return out.getvalue()


def test_a_parquet_file_whose_pages_decode_past_200_to_1_is_refused(server, stub, acme):
    """Before: the ratio was checked only on gzip/zstd around the file; Parquet's own
    page compression and dictionaries were trusted, so 50 KB could decode to 2 GB."""
    bomb = dictionary_bomb()
    assert len(bomb) < 64 << 10
    before = facts_on(server, "contribution.received")
    objects = set(server.objects())
    error = refused(stub, acme, metadata_for(format=PARQUET, file_name="bomb.parquet"), bomb)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    assert "text column decodes to more than" in error.details()
    assert "ratio > 200:1" in error.details()
    assert "refusing a possible decompression bomb" in error.details()
    assert facts_on(server, "contribution.received") == before
    assert set(server.objects()) == objects
    assert server.process.poll() is None


def test_an_ordinary_parquet_file_is_still_accepted(stub, acme):
    out = io.BytesIO()
    pq.write_table(pa.table({"text": [f"document {i} " * 20 for i in range(2000)]}), out)
    receipt = stub.Upload(
        upload_requests(metadata_for(format=PARQUET), out.getvalue()), metadata=bearer(acme)
    ).receipt
    assert receipt.body.document_count == 2000


def test_an_unexpected_error_answers_internal_with_a_correlation_id_only(server, stub, acme):
    """Provoked for real: the contributions table disappears under the running service.
    Before: gRPC answered UNKNOWN with "Unexpected <class ...>: relation ... does not
    exist", the internals of the service."""

    async def rename(old: str, new: str) -> None:
        conn = await connect(server.settings.database_url, server.schema, application_name="t")
        try:
            await conn.execute(f"ALTER TABLE {old} RENAME TO {new}")
        finally:
            await conn.close()

    asyncio.run(rename("contributions", "contributions_hidden"))
    try:
        with pytest.raises(grpc.RpcError) as caught:
            stub.ListContributions(ingest_pb2.ListContributionsRequest(), metadata=bearer(acme))
    finally:
        asyncio.run(rename("contributions_hidden", "contributions"))
    error = caught.value
    assert error.code() == grpc.StatusCode.INTERNAL
    details = error.details()
    correlation_id = re.search(r"correlation id ([0-9a-f]{32})", details).group(1)
    for internal in ("relation", "does not exist", "Undefined", "asyncpg", "Unexpected", "<class"):
        assert internal not in details.replace("correlation", ""), internal
    assert ("tt-correlation-id", correlation_id) in tuple(error.trailing_metadata())
    log = server.log_tail()
    assert correlation_id in log and "UndefinedTableError" in log
    # The service goes on.
    stub.ListContributions(ingest_pb2.ListContributionsRequest(), metadata=bearer(acme))


def test_deliberate_refusals_keep_their_own_status_and_words(stub, acme):
    """The interceptor touches only unexpected errors: aborts pass through unchanged."""
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetContribution(
            ingest_pb2.GetContributionRequest(contribution_id="nobody-has-this"),
            metadata=bearer(acme),
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "you have no contribution 'nobody-has-this'" in caught.value.details()
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListContributions(ingest_pb2.ListContributionsRequest())
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED

"""The ingest API over a real gRPC channel, against a real ingest process, Kafka and
PostgreSQL: happy paths, every bad-input case, idempotency, access control."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import sys
import threading
import uuid

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.common.blobstore import BlobStore, load_private_key
from services.common.facts import decode, payload_of
from services.ingest.receipts import verify
from tests.integration.ingest_server import (
    ROOT,
    bearer,
    metadata_for,
    start_ingest,
    stop_ingest,
    upload_requests,
    wait_until,
)
from tt.facts.v1 import contribution_pb2
from tt.ingest.v1 import ingest_pb2

pytestmark = pytest.mark.integration
TEXT, JSONL, PARQUET = (
    contribution_pb2.DATASET_FORMAT_TEXT,
    contribution_pb2.DATASET_FORMAT_JSONL,
    contribution_pb2.DATASET_FORMAT_PARQUET,
)
NONE, GZIP, ZSTD = (
    contribution_pb2.COMPRESSION_NONE,
    contribution_pb2.COMPRESSION_GZIP,
    contribution_pb2.COMPRESSION_ZSTD,
)
LIMIT = 4 << 20
OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT
TOO_BIG = grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.fixture(scope="module")
def server(settings, tmp_path_factory):
    running = start_ingest(
        settings, tmp_path_factory.mktemp("ingest"), TT_MAX_UPLOAD_BYTES=str(LIMIT)
    )
    yield running
    stop_ingest(running)


@pytest.fixture(scope="module")
def stub(server):
    return server.stub()


@pytest.fixture(scope="module")
def acme(server):
    return server.principal("contributor", "ACME Publishing")


def parquet_bytes(**columns) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


def upload(stub, who, metadata, *chunks):
    return stub.Upload(upload_requests(metadata, *chunks), metadata=bearer(who)).receipt


def failure(stub, who, requests) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        stub.Upload(requests, metadata=bearer(who))
    return caught.value


# --- accepted uploads -------------------------------------------------------------------

JSONL_DOCS = b'{"text": "first manual"}\n{"text": "second", "id": 2}\n\n{"text": "third"}\n'
HAPPY = [
    ("text", TEXT, NONE, b"A field manual.\nSecond line.\n", 1),
    ("jsonl", JSONL, NONE, JSONL_DOCS, 3),
    ("jsonl.gz", JSONL, GZIP, gzip.compress(JSONL_DOCS), 3),
    ("jsonl.zst", JSONL, ZSTD, zstandard.ZstdCompressor().compress(JSONL_DOCS), 3),
    ("parquet", PARQUET, NONE, parquet_bytes(text=["a", None, "b", "c"], id=[1, 2, 3, 4]), 3),
]


@pytest.mark.parametrize(
    "name, fmt, compression, data, documents", HAPPY, ids=[h[0] for h in HAPPY]
)
def test_an_accepted_upload_is_one_fact_a_signed_receipt_and_an_encrypted_blob(
    server, stub, acme, name, fmt, compression, data, documents
):
    metadata = metadata_for(
        format=fmt, compression=compression, declared_size=len(data), file_name=f"manual.{name}"
    )
    receipt = upload(stub, acme, metadata, data[: len(data) // 2], data[len(data) // 2 :])
    body = receipt.body
    assert body.document_count == documents
    assert body.byte_size == len(data)
    assert body.contributor_id == acme["principal_id"]
    assert not receipt.replayed
    key = stub.GetReceiptKey(ingest_pb2.GetReceiptKeyRequest())
    verify(receipt, key.public_key)

    [fact] = [r for r in server.received_facts(1) if decode(r.value).key == body.contribution_id]
    received = payload_of(decode(fact.value))
    assert received.raw_blob.sha256 == body.sha256
    assert received.document_count == documents
    assert received.file_name == f"manual.{name}"
    assert received.format == fmt and received.compression == compression

    stored = server.blob_root / "objects"
    object_path = BlobStore(server.blob_root).path_for(body.sha256)
    assert object_path.is_file() and stored in object_path.parents
    assert data[:64] not in object_path.read_bytes()  # encrypted at rest
    reader = BlobStore(server.blob_root).open_reader(
        received.raw_blob.uri, load_private_key(server.blob_private_key())
    )
    assert reader.read() == data
    assert server.temp_files() == []


# --- bad input --------------------------------------------------------------------------


def bomb() -> bytes:
    return gzip.compress(b"a" * (40 << 20), compresslevel=9)


BAD = [
    # (case, metadata fields or None for "no metadata", chunks, status, phrase)
    ("invalid UTF-8", {}, [b"hello\nwor\xffld"], INVALID, "invalid UTF-8 at line 2, byte offset 9"),
    (
        "JSONL line not an object",
        {"format": JSONL},
        [b'{"text":"a"}\n[1,2]\n'],
        INVALID,
        "line 2 is a JSON array",
    ),
    (
        "JSONL line without text",
        {"format": JSONL},
        [b'{"body":"a"}\n'],
        INVALID,
        'line 1 has no "text" field',
    ),
    (
        "Parquet without a text column",
        {"format": PARQUET},
        [parquet_bytes(body=["x"])],
        INVALID,
        'no "text" column (columns: body)',
    ),
    (
        "corrupt gzip",
        {"compression": GZIP},
        [b"\x1f\x8b\x08\x00garbagegarbage"],
        INVALID,
        "not valid gzip data",
    ),
    (
        "corrupt zstd",
        {"compression": ZSTD},
        [b"\x28\xb5\x2f\xfdgarbagegarbage"],
        INVALID,
        "not valid zstd data",
    ),
    ("decompression bomb", {"compression": GZIP}, [bomb()], TOO_BIG, "decompression bomb"),
    ("empty upload", {}, [], INVALID, "the upload is empty"),
    ("unknown format", {"format": 99}, [b"x"], INVALID, "format must be one of"),
    ("no format", {"format": 0}, [b"x"], INVALID, "format must be one of"),
    ("unknown compression", {"compression": 42}, [b"x"], INVALID, "compression must be one of"),
    (
        "declared sha256 mismatch",
        {"declared_sha256": "0" * 64},
        [b"text"],
        INVALID,
        "does not match the received data",
    ),
    (
        "declared size mismatch",
        {"declared_size": 5},
        [b"text"],
        INVALID,
        "declared size was 5 bytes but 4 bytes arrived",
    ),
    (
        "declared size over the limit",
        {"declared_size": LIMIT + 1},
        [b"x"],
        TOO_BIG,
        f"exceeds the upload limit of {LIMIT} bytes",
    ),
    (
        "upload over the limit",
        {},
        [b"a" * (1 << 20)] * 5,
        TOO_BIG,
        f"exceeds the limit of {LIMIT} bytes",
    ),
    (
        "malformed upload id",
        {"upload_id": "has spaces/and slashes"},
        [b"x"],
        INVALID,
        "upload_id 'has spaces/and slashes' must be",
    ),
    ("unknown terms", {"terms_id": "free-for-all"}, [b"x"], INVALID, "is not a terms document"),
    (
        "outdated terms text",
        {"terms_sha256": "1" * 64},
        [b"x"],
        INVALID,
        "terms_sha256 does not match",
    ),
    (
        "control characters in dataset name",
        {"dataset_name": "a\x07b"},
        [b"x"],
        INVALID,
        "dataset_name must be",
    ),
]


@pytest.mark.parametrize("case, fields, chunks, status, phrase", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_a_clear_error_and_leaves_nothing(
    server, stub, acme, case, fields, chunks, status, phrase
):
    objects_before = set(server.objects())
    facts_before = len(server.received_facts())
    error = failure(stub, acme, upload_requests(metadata_for(**fields), *chunks))
    assert error.code() == status, error.details()
    assert phrase in error.details()
    assert wait_until(lambda: server.temp_files() == [], 5), server.temp_files()
    assert set(server.objects()) == objects_before
    assert len(server.received_facts()) == facts_before


def test_a_stream_without_metadata_is_refused(stub, acme):
    error = failure(stub, acme, iter([]))
    assert error.code() == INVALID and "send UploadMetadata first" in error.details()
    error = failure(stub, acme, upload_requests(None, b"data first"))
    assert error.code() == INVALID and "first message of an upload must carry" in error.details()


def test_metadata_sent_twice_is_refused(stub, acme):
    metadata = metadata_for()
    requests = iter(
        [
            ingest_pb2.UploadRequest(metadata=metadata),
            ingest_pb2.UploadRequest(chunk=b"x"),
            ingest_pb2.UploadRequest(metadata=metadata),
        ]
    )
    error = failure(stub, acme, requests)
    assert error.code() == INVALID and "only once" in error.details()


def test_an_oversized_upload_is_cut_off_early(stub, acme):
    pulled = 0

    def chunks():
        nonlocal pulled
        yield ingest_pb2.UploadRequest(metadata=metadata_for())
        for _ in range(64):  # 64 MiB offered against a 4 MiB limit
            pulled += 1
            yield ingest_pb2.UploadRequest(chunk=b"a" * (1 << 20))

    error = failure(stub, acme, chunks())
    assert error.code() == TOO_BIG
    assert pulled < 64, "the server read the whole oversized upload"


def test_a_client_that_cancels_mid_stream_leaves_no_fact_and_no_file(server, stub, acme):
    facts_before = len(server.received_facts())
    sent_some = threading.Event()
    hold = threading.Event()

    def chunks():
        yield ingest_pb2.UploadRequest(metadata=metadata_for())
        for _ in range(3):
            yield ingest_pb2.UploadRequest(chunk=b"some text " * 1000)
        sent_some.set()
        hold.wait(10)  # never finish the stream

    call = stub.Upload.future(chunks(), metadata=bearer(acme))
    assert sent_some.wait(10)
    assert wait_until(lambda: server.temp_files() != [], 5), "the upload never reached the server"
    call.cancel()
    hold.set()
    assert wait_until(lambda: server.temp_files() == [], 10), server.temp_files()
    assert len(server.received_facts()) == facts_before


# --- idempotency ------------------------------------------------------------------------


def test_the_same_upload_id_and_content_returns_the_original_receipt_and_no_second_fact(
    server, stub, acme
):
    metadata = metadata_for()
    first = upload(stub, acme, metadata, b"The same text, sent twice.")
    second = upload(stub, acme, metadata, b"The same text, ", b"sent twice.")
    assert second.replayed and not first.replayed
    assert second.body == first.body and second.signature == first.signature
    facts = [
        r for r in server.received_facts(1) if decode(r.value).key == first.body.contribution_id
    ]
    assert len(facts) == 1


def test_the_same_upload_id_with_different_content_is_refused(server, stub, acme):
    metadata = metadata_for()
    original = upload(stub, acme, metadata, b"Original content.")
    error = failure(stub, acme, upload_requests(metadata, b"Different content."))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert f"upload id {metadata.upload_id!r} was already used" in error.details()
    assert original.body.sha256 in error.details()
    assert server.temp_files() == []


def test_concurrent_uploads_with_one_id_produce_one_contribution(server, stub, acme):
    metadata = metadata_for()
    receipts, errors = [], []

    def send():
        try:
            receipts.append(upload(stub, acme, metadata, b"raced text " * 5000))
        except grpc.RpcError as error:
            errors.append(error)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == [] and len(receipts) == 4
    assert len({r.body.SerializeToString() for r in receipts}) == 1
    assert sum(not r.replayed for r in receipts) == 1
    facts = [
        r
        for r in server.received_facts(1)
        if decode(r.value).key == receipts[0].body.contribution_id
    ]
    assert len(facts) == 1


def test_contributors_have_separate_upload_id_spaces(server, stub, acme):
    other = server.principal("contributor")
    metadata = metadata_for()
    mine = upload(stub, acme, metadata, b"mine")
    theirs = upload(stub, other, metadata, b"theirs")
    assert mine.body.contribution_id != theirs.body.contribution_id


# --- reading, withdrawing ---------------------------------------------------------------


def test_get_list_and_withdraw_own_contributions(server, stub):
    me = server.principal("contributor")
    receipts = [upload(stub, me, metadata_for(), f"document {i}".encode()) for i in range(3)]
    got = stub.GetContribution(
        ingest_pb2.GetContributionRequest(contribution_id=receipts[0].body.contribution_id),
        metadata=bearer(me),
    ).contribution
    assert got.state == ingest_pb2.CONTRIBUTION_STATE_RECEIVED
    assert got.receipt.body == receipts[0].body

    first = stub.ListContributions(
        ingest_pb2.ListContributionsRequest(page_size=2), metadata=bearer(me)
    )
    assert len(first.contributions) == 2 and first.next_page_token
    rest = stub.ListContributions(
        ingest_pb2.ListContributionsRequest(page_size=2, page_token=first.next_page_token),
        metadata=bearer(me),
    )
    listed = [c.contribution_id for c in [*first.contributions, *rest.contributions]]
    assert sorted(listed) == sorted(r.body.contribution_id for r in receipts)
    assert listed[0] == receipts[-1].body.contribution_id  # newest first

    target = receipts[1].body.contribution_id
    withdrawn = stub.Withdraw(
        ingest_pb2.WithdrawRequest(contribution_id=target, reason="licence"), metadata=bearer(me)
    )
    again = stub.Withdraw(ingest_pb2.WithdrawRequest(contribution_id=target), metadata=bearer(me))
    assert again.event_id == withdrawn.event_id and again.effective_at == withdrawn.effective_at
    state = stub.GetContribution(
        ingest_pb2.GetContributionRequest(contribution_id=target), metadata=bearer(me)
    ).contribution
    assert state.state == ingest_pb2.CONTRIBUTION_STATE_WITHDRAWN


def test_a_withdrawal_cannot_take_effect_in_the_past(server, stub):
    me = server.principal("contributor")
    receipt = upload(stub, me, metadata_for(), b"text")
    request = ingest_pb2.WithdrawRequest(contribution_id=receipt.body.contribution_id)
    request.effective_at.FromJsonString("2020-01-01T00:00:00Z")
    with pytest.raises(grpc.RpcError) as caught:
        stub.Withdraw(request, metadata=bearer(me))
    assert caught.value.code() == INVALID and "is in the past" in caught.value.details()


def test_a_processed_fact_shows_up_as_the_contributions_report(server, stub):
    import asyncio
    from datetime import UTC, datetime

    from services.common.facts import make_envelope
    from tests.integration.conftest import publish_signed

    me = server.principal("contributor")
    receipt = upload(stub, me, metadata_for(), b"text to process")
    report = contribution_pb2.ContributionProcessed(
        contribution_id=receipt.body.contribution_id,
        contributor_id=me["principal_id"],
        outcome=contribution_pb2.PROCESSING_OUTCOME_PROCESSED,
        pipeline_version="test",
        config_sha256="a" * 64,
        tokenizer="tiktoken/cl100k_base",
        documents_in=1,
        documents_kept=1,
        tokens_raw=4,
        tokens_accepted=4,
    )
    now = datetime.now(UTC)
    envelope = make_envelope(
        report, event_id=str(uuid.uuid4()), producer="test", occurred_at=now, recorded_at=now
    )

    asyncio.run(publish_signed(server.settings, server.settings.topic_registry(), envelope))

    def state():
        return stub.GetContribution(
            ingest_pb2.GetContributionRequest(contribution_id=receipt.body.contribution_id),
            metadata=bearer(me),
        ).contribution

    assert wait_until(lambda: state().state == ingest_pb2.CONTRIBUTION_STATE_PROCESSED, 15)
    assert state().report.tokens_accepted == 4


# --- identity and access ----------------------------------------------------------------


def test_access_control(server, stub, acme):
    mine = upload(stub, acme, metadata_for(), b"private text")
    other = server.principal("contributor")
    consumer = server.principal("consumer")
    get = ingest_pb2.GetContributionRequest(contribution_id=mine.body.contribution_id)

    cases = [
        ("no key", (), grpc.StatusCode.UNAUTHENTICATED, "missing or malformed API key"),
        (
            "not a bearer key",
            (("authorization", "Basic abc"),),
            grpc.StatusCode.UNAUTHENTICATED,
            "missing or malformed",
        ),
        (
            "unknown key",
            (("authorization", "Bearer tt_00000000_" + "A" * 43),),
            grpc.StatusCode.UNAUTHENTICATED,
            "not known to the platform",
        ),
        (
            "wrong role",
            bearer(consumer),
            grpc.StatusCode.PERMISSION_DENIED,
            "this call is for the contributor role",
        ),
        (
            "another contributor",
            bearer(other),
            grpc.StatusCode.NOT_FOUND,
            "you have no contribution",
        ),
    ]
    for name, metadata, status, phrase in cases:
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetContribution(get, metadata=metadata)
        assert caught.value.code() == status, name
        assert phrase in caught.value.details(), name
    unknown = ingest_pb2.GetContributionRequest(contribution_id=str(uuid.uuid4()))
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetContribution(unknown, metadata=bearer(other))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # same answer as someone else's
    with pytest.raises(grpc.RpcError) as caught:
        stub.Withdraw(
            ingest_pb2.WithdrawRequest(contribution_id=mine.body.contribution_id),
            metadata=bearer(other),
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as caught:
        stub.Upload(upload_requests(metadata_for(), b"x"), metadata=bearer(consumer))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    listed = stub.ListContributions(ingest_pb2.ListContributionsRequest(), metadata=bearer(other))
    assert all(c.contribution_id != mine.body.contribution_id for c in listed.contributions)


def test_health_and_reflection_answer_generic_tools(server):
    channel = grpc.insecure_channel(server.address)
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", "tt.ingest.v1.IngestService"):
        assert health.Check(health_pb2.HealthCheckRequest(service=name)).status == (
            health_pb2.HealthCheckResponse.SERVING
        )
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    [answer] = list(
        reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
    )
    names = {service.name for service in answer.list_services_response.service}
    assert {"tt.ingest.v1.IngestService", "grpc.health.v1.Health"} <= names

    # The v1 protocol (what current grpcurl and grpc_cli ask for): the same messages under
    # grpc.reflection.v1, called by its method path.
    v1 = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    [listed, described] = list(
        v1(
            iter(
                [
                    reflection_pb2.ServerReflectionRequest(list_services=""),
                    reflection_pb2.ServerReflectionRequest(
                        file_containing_symbol="tt.ingest.v1.IngestService"
                    ),
                ]
            )
        )
    )
    v1_names = {service.name for service in listed.list_services_response.service}
    assert {"tt.ingest.v1.IngestService", "grpc.reflection.v1.ServerReflection"} <= v1_names
    files = described.file_descriptor_response.file_descriptor_proto
    assert any(b"GetTerms" in serialized for serialized in files)


def test_the_terms_are_served_with_the_digest_an_upload_must_name(server, stub, acme):
    """A client written from proto/ alone learns the terms from the platform (no key
    needed), and an upload naming them is accepted."""
    terms = stub.GetTerms(ingest_pb2.GetTermsRequest())
    by_id = {document.terms_id: document for document in terms.terms}
    current = by_id[terms.current_terms_id]
    assert current.text.startswith("# ")
    assert current.terms_sha256 == hashlib.sha256(current.text.encode("utf-8")).hexdigest()
    receipt = stub.Upload(
        upload_requests(
            metadata_for(terms_id=current.terms_id, terms_sha256=current.terms_sha256),
            b"served terms\n",
        ),
        metadata=bearer(acme),
    ).receipt
    assert receipt.body.contribution_id


# --- the command line -------------------------------------------------------------------


def test_the_cli_contributes_a_folder_lists_and_verifies_receipts(server, tmp_path):
    me = server.principal("contributor", "CLI user")
    folder = tmp_path / "books"
    folder.mkdir()
    (folder / "one.txt").write_text("Chapter one.\n")
    (folder / "two.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n')
    (folder / "notes.pdf").write_bytes(b"%PDF-1.4")
    env = {"TT_API_KEY": me["api_key"], "TT_INGEST_ADDRESS": server.address}

    def tt(*args, stdin=None):
        import os

        return subprocess.run(
            [sys.executable, "-m", "services.cli.main", *args],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            input=stdin,
            timeout=60,
        )

    result = tt("contribute", str(folder), "--dataset", "books", "--json")
    assert result.returncode == 0, result.stderr
    receipts = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r["document_count"] for r in receipts) == [1, 2]
    assert "notes.pdf: not a supported file type" in result.stderr
    again = tt("contribute", str(folder / "one.txt"), "--dataset", "books", "--json")
    assert json.loads(again.stdout)["replayed"] is True

    listing = tt("contributions", "--json")
    assert {json.loads(line)["contribution_id"] for line in listing.stdout.splitlines()} == {
        r["contribution_id"] for r in receipts
    }

    verified = tt("verify-receipt", "-", stdin=result.stdout)
    assert verified.returncode == 0 and verified.stdout.count("VALID") == 2
    forged = result.stdout.replace('"document_count": 2', '"document_count": 20')
    rejected = tt("verify-receipt", "-", stdin=forged)
    assert rejected.returncode == 1 and "INVALID" in rejected.stdout

    no_key = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "contributions"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={k: v for k, v in __import__("os").environ.items() if k != "TT_API_KEY"},
    )
    assert no_key.returncode == 1 and "set TT_API_KEY or pass --api-key" in no_key.stderr

"""The Python client of the ingest API. The `1tt` command uses it; so can any program."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from tt.facts.v1 import contribution_pb2
from tt.ingest.v1 import ingest_pb2, ingest_pb2_grpc

CHUNK_BYTES = 1 << 20
# Worth retrying with the same upload id: the platform accepted nothing.
TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
}
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 8 << 20),
    ("grpc.max_receive_message_length", 8 << 20),
]

Progress = Callable[[int, int], None]  # (bytes sent, total bytes)


@dataclass(frozen=True)
class UploadSpec:
    path: Path
    dataset_name: str
    upload_id: str
    dataset_format: int
    compression: int
    byte_size: int
    # Declared up front when set (the server then refuses different bytes before accepting
    # anything); otherwise the bytes are hashed as they are sent and checked against the
    # receipt.
    sha256: str = ""
    # The terms accepted: the platform's current ones (GetTerms) when empty.
    terms_id: str = ""


class ReceiptMismatch(Exception):
    """The platform's receipt names other bytes than the ones this client sent."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK_BYTES * 4):
            digest.update(block)
    return digest.hexdigest()


def default_upload_id(dataset_name: str, path: Path) -> str:
    """Derived from the dataset and the file's name, size and modification time (as rsync
    decides that a file is unchanged), so running `1tt contribute` again on the same files
    returns the first receipts instead of contributing the text twice, without reading
    every file once more before sending it. Should the content differ under the same
    fingerprint, the platform refuses it (ALREADY_EXISTS) rather than replacing anything."""
    stat = path.stat()
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in dataset_name)[:60]
    fingerprint = hashlib.sha256(
        f"{path.name}\x1f{stat.st_size}\x1f{stat.st_mtime_ns}".encode()
    ).hexdigest()
    return f"{safe}:{fingerprint[:40]}"


class IngestClient:
    def __init__(self, address: str, api_key: str | None):
        self.address = address
        self.api_key = api_key
        self._channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        self.stub = ingest_pb2_grpc.IngestServiceStub(self._channel)
        # Uploads use the synchronous stack: it streams from a thread of its own and moves
        # data about twice as fast as the asyncio one (measured: ~975 vs ~560 MiB/s).
        self._sync_channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        self._sync_stub = ingest_pb2_grpc.IngestServiceStub(self._sync_channel)
        self._terms: ingest_pb2.GetTermsResponse | None = None

    async def close(self) -> None:
        await self._channel.close()
        self._sync_channel.close()

    async def __aenter__(self) -> IngestClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.api_key}"),) if self.api_key else ()

    async def upload(
        self, spec: UploadSpec, progress: Progress | None = None, timeout_s: float | None = None
    ) -> ingest_pb2.UploadReceipt:
        """One attempt: stream the file and return the signed receipt, after checking that
        it names exactly the bytes that were sent."""
        metadata = self._metadata_for(spec, *await self.accepting(spec.terms_id))
        receipt, sent_sha256 = await asyncio.to_thread(
            self._upload_blocking, spec, metadata, progress, timeout_s
        )
        if receipt.body.sha256 != sent_sha256:
            raise ReceiptMismatch(
                f"{spec.path}: the platform recorded sha256 {receipt.body.sha256} but the "
                f"bytes sent hash to {sent_sha256}; withdraw contribution "
                f"{receipt.body.contribution_id} and upload again"
            )
        return receipt

    async def accepting(self, terms_id: str = "") -> tuple[str, str]:
        """(terms_id, terms_sha256) of the terms an upload accepts, as the platform serves
        them (GetTerms, asked once per client): `terms_id`'s, or the current terms. A terms
        id the platform does not offer goes out without a digest, and the platform's
        refusal names the terms it offers."""
        if self._terms is None:
            self._terms = await self.stub.GetTerms(ingest_pb2.GetTermsRequest())
        terms_id = terms_id or self._terms.current_terms_id
        digests = {t.terms_id: t.terms_sha256 for t in self._terms.terms}
        return terms_id, digests.get(terms_id, "")

    def _upload_blocking(
        self,
        spec: UploadSpec,
        metadata: ingest_pb2.UploadMetadata,
        progress: Progress | None,
        timeout_s: float | None,
    ) -> tuple[ingest_pb2.UploadReceipt, str]:
        digest = hashlib.sha256()

        def requests():
            yield ingest_pb2.UploadRequest(metadata=metadata)
            sent = 0
            with spec.path.open("rb") as handle:
                while chunk := handle.read(CHUNK_BYTES):
                    digest.update(chunk)  # the exact bytes that go out
                    yield ingest_pb2.UploadRequest(chunk=chunk)
                    sent += len(chunk)
                    if progress:
                        progress(sent, spec.byte_size)

        response = self._sync_stub.Upload(requests(), metadata=self.metadata, timeout=timeout_s)
        return response.receipt, digest.hexdigest()

    def _metadata_for(
        self, spec: UploadSpec, terms_id: str, terms_sha256: str
    ) -> ingest_pb2.UploadMetadata:
        return ingest_pb2.UploadMetadata(
            upload_id=spec.upload_id,
            dataset_name=spec.dataset_name,
            format=spec.dataset_format,
            compression=spec.compression,
            declared_size=spec.byte_size,
            declared_sha256=spec.sha256,
            terms_id=terms_id,
            terms_sha256=terms_sha256,
            file_name=spec.path.name,
        )

    async def upload_with_retries(
        self,
        spec: UploadSpec,
        progress: Progress | None = None,
        attempts: int = 5,
        on_retry: Callable[[int, grpc.RpcError], None] | None = None,
    ) -> ingest_pb2.UploadReceipt:
        """Retry transient failures with the same upload id: safe, since the platform
        accepts an upload only once and returns the original receipt for a repeat."""
        for attempt in range(1, attempts + 1):
            try:
                return await self.upload(spec, progress)
            except grpc.RpcError as error:
                if error.code() not in TRANSIENT or attempt == attempts:
                    raise
                if on_retry:
                    on_retry(attempt, error)
                await asyncio.sleep(min(0.5 * 2 ** (attempt - 1), 8.0))
        raise AssertionError("unreachable")

    async def get(self, contribution_id: str) -> ingest_pb2.Contribution:
        response = await self.stub.GetContribution(
            ingest_pb2.GetContributionRequest(contribution_id=contribution_id),
            metadata=self.metadata,
        )
        return response.contribution

    async def list_all(self) -> list[ingest_pb2.Contribution]:
        contributions, token = [], ""
        while True:
            page = await self.stub.ListContributions(
                ingest_pb2.ListContributionsRequest(page_size=500, page_token=token),
                metadata=self.metadata,
            )
            contributions.extend(page.contributions)
            token = page.next_page_token
            if not token:
                return contributions

    async def withdraw(self, contribution_id: str, reason: str = "") -> ingest_pb2.WithdrawResponse:
        return await self.stub.Withdraw(
            ingest_pb2.WithdrawRequest(contribution_id=contribution_id, reason=reason),
            metadata=self.metadata,
        )

    async def terms(self) -> ingest_pb2.GetTermsResponse:
        return await self.stub.GetTerms(ingest_pb2.GetTermsRequest())

    async def receipt_key(self) -> ingest_pb2.GetReceiptKeyResponse:
        return await self.stub.GetReceiptKey(ingest_pb2.GetReceiptKeyRequest())


FORMAT_NAMES = {
    contribution_pb2.DATASET_FORMAT_TEXT: "text",
    contribution_pb2.DATASET_FORMAT_JSONL: "jsonl",
    contribution_pb2.DATASET_FORMAT_PARQUET: "parquet",
}

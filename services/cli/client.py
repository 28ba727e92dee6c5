"""The Python client of the ingest API. The `1tt` command uses it; so can any program."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from services.ingest.terms import CURRENT_TERMS_ID, accepted_terms
from tt.facts.v1 import contribution_pb2
from tt.ingest.v1 import ingest_pb2, ingest_pb2_grpc

CHUNK_BYTES = 1 << 20
# Worth retrying with the same upload id: the platform accepted nothing.
TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
}

Progress = Callable[[int, int], None]  # (bytes sent, total bytes)


@dataclass(frozen=True)
class UploadSpec:
    path: Path
    dataset_name: str
    upload_id: str
    dataset_format: int
    compression: int
    sha256: str
    byte_size: int
    terms_id: str = CURRENT_TERMS_ID


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK_BYTES * 4):
            digest.update(block)
    return digest.hexdigest()


def default_upload_id(dataset_name: str, sha256: str) -> str:
    """Content-derived, so running `1tt contribute` twice on the same file returns the
    first receipt instead of contributing the text twice."""
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in dataset_name)[:60]
    return f"{safe}:{sha256[:40]}"


class IngestClient:
    def __init__(self, address: str, api_key: str | None):
        self.address = address
        self.api_key = api_key
        self._channel = grpc.aio.insecure_channel(
            address,
            options=[
                ("grpc.max_send_message_length", 8 << 20),
                ("grpc.max_receive_message_length", 8 << 20),
            ],
        )
        self.stub = ingest_pb2_grpc.IngestServiceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close()

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
        """One attempt: stream the file and return the signed receipt."""
        response = await self.stub.Upload(
            self._requests(spec, progress), metadata=self.metadata, timeout=timeout_s
        )
        return response.receipt

    async def upload_with_retries(
        self,
        spec: UploadSpec,
        progress: Progress | None = None,
        attempts: int = 5,
        on_retry: Callable[[int, grpc.aio.AioRpcError], None] | None = None,
    ) -> ingest_pb2.UploadReceipt:
        """Retry transient failures with the same upload id: safe, since the platform
        accepts an upload only once and returns the original receipt for a repeat."""
        for attempt in range(1, attempts + 1):
            try:
                return await self.upload(spec, progress)
            except grpc.aio.AioRpcError as error:
                if error.code() not in TRANSIENT or attempt == attempts:
                    raise
                if on_retry:
                    on_retry(attempt, error)
                await asyncio.sleep(min(0.5 * 2 ** (attempt - 1), 8.0))
        raise AssertionError("unreachable")

    async def _requests(
        self, spec: UploadSpec, progress: Progress | None
    ) -> AsyncIterator[ingest_pb2.UploadRequest]:
        yield ingest_pb2.UploadRequest(
            metadata=ingest_pb2.UploadMetadata(
                upload_id=spec.upload_id,
                dataset_name=spec.dataset_name,
                format=spec.dataset_format,
                compression=spec.compression,
                declared_size=spec.byte_size,
                declared_sha256=spec.sha256,
                terms_id=spec.terms_id,
                terms_sha256=accepted_terms()[spec.terms_id],
                file_name=spec.path.name,
            )
        )
        sent = 0
        with spec.path.open("rb") as handle:
            while chunk := await asyncio.to_thread(handle.read, CHUNK_BYTES):
                yield ingest_pb2.UploadRequest(chunk=chunk)
                sent += len(chunk)
                if progress:
                    progress(sent, spec.byte_size)

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

    async def receipt_key(self) -> ingest_pb2.GetReceiptKeyResponse:
        return await self.stub.GetReceiptKey(ingest_pb2.GetReceiptKeyRequest())


FORMAT_NAMES = {
    contribution_pb2.DATASET_FORMAT_TEXT: "text",
    contribution_pb2.DATASET_FORMAT_JSONL: "jsonl",
    contribution_pb2.DATASET_FORMAT_PARQUET: "parquet",
}

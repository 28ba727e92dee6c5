"""Contributor verbs: contribute, contributions, contribution, withdraw, verify-receipt."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC
from pathlib import Path

import grpc

from services.cli.client import (
    FORMAT_NAMES,
    IngestClient,
    ReceiptMismatch,
    UploadSpec,
    default_upload_id,
    file_sha256,
)
from services.common.formats import UploadRejected, guess_from_filename
from services.ingest.receipts import ReceiptError, receipt_from_json, receipt_to_json, verify
from tt.ingest.v1 import ingest_pb2


class CliError(Exception):
    """Ends the command with this message and exit status 1."""


def collect_files(paths: list[str]) -> tuple[list[Path], list[str]]:
    """Files to upload (folders walked in name order) and notes on what was skipped."""
    files, skipped = [], []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                try:
                    guess_from_filename(child.name)
                    files.append(child)
                except UploadRejected:
                    skipped.append(f"{child}: not a supported file type")
        elif path.is_file():
            files.append(path)
        else:
            raise CliError(f"{name}: no such file or folder")
    return files, skipped


def plan_upload(
    path: Path,
    dataset: str,
    upload_id: str | None,
    fmt: int | None,
    compression: int | None,
    verify_first: bool,
) -> UploadSpec:
    try:
        guessed_format, guessed_compression = guess_from_filename(path.name)
    except UploadRejected as error:
        if fmt is None:
            raise CliError(f"{error} (or pass --format)") from None
        guessed_format, guessed_compression = fmt, 1
    return UploadSpec(
        path=path,
        dataset_name=dataset,
        upload_id=upload_id or default_upload_id(dataset, path),
        dataset_format=fmt or guessed_format,
        compression=compression or guessed_compression,
        byte_size=path.stat().st_size,
        sha256=file_sha256(path) if verify_first else "",
    )


class ProgressBar:
    """Bytes, rate and ETA on one line of stderr, redrawn at most ten times a second."""

    def __init__(self, label: str, enabled: bool):
        self.label, self.enabled = label, enabled
        self.started = time.monotonic()
        self.drawn_at = 0.0

    def __call__(self, sent: int, total: int) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.drawn_at < 0.1 and sent < total):
            return
        self.drawn_at = now
        rate = sent / max(now - self.started, 1e-6)
        eta = (total - sent) / rate if rate else 0.0
        share = 100 * sent / total if total else 100.0
        sys.stderr.write(
            f"\r  {self.label[:40]:<40} {_size(sent):>10} / {_size(total):<10} "
            f"{share:5.1f}%  {_size(rate)}/s  ETA {eta:4.0f}s "
        )
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.1f} GiB"


async def contribute(
    client: IngestClient,
    paths: list[str],
    dataset: str,
    *,
    upload_id: str | None,
    fmt: int | None,
    compression: int | None,
    as_json: bool,
    progress: bool,
    verify_first: bool = False,
) -> int:
    files, skipped = collect_files(paths)
    for note in skipped:
        print(f"skipped {note}", file=sys.stderr)
    if not files:
        raise CliError("nothing to upload")
    if upload_id and len(files) > 1:
        raise CliError("--upload-id names one upload; give a single file with it")
    failures = 0
    for path in files:
        # With --verify-first, hashing a large file takes a while: keep the loop free.
        spec = await asyncio.to_thread(
            plan_upload, path, dataset, upload_id, fmt, compression, verify_first
        )
        bar = ProgressBar(path.name, progress)
        try:
            receipt = await client.upload_with_retries(
                spec,
                bar,
                on_retry=lambda attempt, error, name=path.name: print(
                    f"\n  {name}: {error.details()} (attempt {attempt}); retrying with "
                    f"the same upload id",
                    file=sys.stderr,
                ),
            )
        except grpc.RpcError as error:
            bar.done()
            failures += 1
            print(f"{path}: refused ({error.code().name}): {error.details()}", file=sys.stderr)
            continue
        except ReceiptMismatch as error:
            bar.done()
            failures += 1
            print(str(error), file=sys.stderr)
            continue
        bar.done()
        if as_json:
            print(json.dumps(receipt_to_json(receipt)), flush=True)
        else:
            body = receipt.body
            again = " (already contributed: original receipt)" if receipt.replayed else ""
            documents = "document" if body.document_count == 1 else "documents"
            print(
                f"{path}: contribution {body.contribution_id}{again}\n"
                f"  {body.document_count} {documents}, {body.byte_size} bytes, "
                f"sha256 {body.sha256}, received {receipt_to_json(receipt)['received_at']}"
            )
    return 1 if failures else 0


STATE_NAMES = {
    value.number: value.name.removeprefix("CONTRIBUTION_STATE_").lower()
    for value in ingest_pb2.ContributionState.DESCRIPTOR.values
}


def contribution_to_json(contribution: ingest_pb2.Contribution) -> dict:
    from google.protobuf import json_format

    result = {
        "contribution_id": contribution.contribution_id,
        "upload_id": contribution.upload_id,
        "dataset_name": contribution.dataset_name,
        "file_name": contribution.file_name,
        "state": STATE_NAMES[contribution.state],
        "format": FORMAT_NAMES.get(contribution.format, "unknown"),
        "receipt": receipt_to_json(contribution.receipt),
    }
    if contribution.HasField("report"):
        result["report"] = json_format.MessageToDict(
            contribution.report, preserving_proto_field_name=True
        )
    if contribution.HasField("withdrawn_effective_at"):
        result["withdrawn_effective_at"] = contribution.withdrawn_effective_at.ToDatetime(
            tzinfo=UTC
        ).isoformat()
    return result


async def list_contributions(client: IngestClient, as_json: bool) -> int:
    contributions = await client.list_all()
    if as_json:
        for contribution in contributions:
            print(json.dumps(contribution_to_json(contribution)))
        return 0
    if not contributions:
        print("no contributions yet")
        return 0
    print(f"{'contribution':<36}  {'state':<9}  {'docs':>6}  {'bytes':>11}  dataset / file")
    for c in contributions:
        body = c.receipt.body
        print(
            f"{c.contribution_id:<36}  {STATE_NAMES[c.state]:<9}  {body.document_count:>6}  "
            f"{body.byte_size:>11}  {c.dataset_name} / {c.file_name}"
        )
    return 0


def verify_receipts(text: str, public_key: bytes) -> int:
    """Verify every receipt (JSON object per line) in `text`; 1 if any fails."""
    invalid = 0
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise CliError("no receipt given")
    for line in lines:
        try:
            receipt = receipt_from_json(json.loads(line))
            verify(receipt, public_key)
            print(
                f"VALID   contribution {receipt.body.contribution_id} sha256 "
                f"{receipt.body.sha256} ({receipt.body.byte_size} bytes)"
            )
        except (ReceiptError, json.JSONDecodeError) as error:
            invalid += 1
            print(f"INVALID {error}")
    return 1 if invalid else 0

"""`1tt estimate PATH...`: the platform's preprocessing pipeline, run locally on files
before they are uploaded. No platform is needed. Deduplication is applied within the
files given only: copies of text contributed by others, or in the consumer's reference
corpus, can only be found by the platform, and the output says so."""

from __future__ import annotations

import json
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from services.cli.contribute import CliError, collect_files
from services.cli.report_view import render
from services.common import formats
from services.preprocess.dedup import DocRef, index_all
from services.preprocess.pipeline import (
    DocResult,
    PipelineConfig,
    document_batches,
    prepare_batch,
)
from services.preprocess.report import REASON_NAMES, ReportBuilder

NOTE = (
    "estimated locally: duplicates of text contributed by others or in the consumer's "
    "reference corpus are not detected here, so the platform may accept fewer tokens"
)


def _records(files: list[Path]) -> Iterator[tuple[str, str]]:
    """(text, id) for every document of every file, ids defaulting to FILE:N."""
    for path in files:
        dataset_format, compression = formats.guess_from_filename(path.name)
        with path.open("rb") as raw:
            records = formats.iter_records(
                raw, dataset_format=dataset_format, compression=compression
            )
            for number, (text, record_id) in enumerate(records, start=1):
                yield text, record_id if record_id is not None else f"{path.name}:{number}"


def estimate(
    paths: list[str],
    as_json: bool,
    out_dir: str | None,
    config: PipelineConfig | None = None,
    workers: int | None = None,
) -> int:
    config = config or PipelineConfig()
    files, skipped = collect_files(paths)
    if not files:
        raise CliError("nothing to estimate" + (f" ({'; '.join(skipped)})" if skipped else ""))
    builder = ReportBuilder(config)
    index_stores: list[dict] = [{}]  # this estimate's own, in-memory dedup index
    source = DocRef(seq=1, source_id="estimate", doc_index=0)
    workers = workers or os.cpu_count() or 2
    with ExitStack() as stack:
        kept_out = removed_out = None
        if out_dir:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            kept_out = stack.enter_context(open(Path(out_dir) / "kept.jsonl", "w"))
            removed_out = stack.enter_context(open(Path(out_dir) / "removed.jsonl", "w"))
        pool = stack.enter_context(
            ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))
        )
        in_flight: deque[Future] = deque()

        def settle(results: list[DocResult]) -> None:
            fingerprints = {r.index: r.fingerprint for r in results if r.fingerprint}
            verdicts = index_all(source, fingerprints, index_stores, config.dedup)
            for result in results:
                removal = builder.add(result, verdicts.get(result.index))
                document_id = result.source_id
                if removal is None and kept_out:
                    kept_out.write(
                        json.dumps(
                            {"id": document_id, "tokens": result.tokens, "text": result.text}
                        )
                        + "\n"
                    )
                elif removal is not None and removed_out:
                    reason, detail = removal
                    removed_out.write(
                        json.dumps(
                            {"id": document_id, "reason": REASON_NAMES[reason], "detail": detail}
                        )
                        + "\n"
                    )

        try:
            # Batches are processed in parallel but settled in order: dedup needs the order.
            for batch in document_batches(_records(files)):
                in_flight.append(pool.submit(prepare_batch, batch, config))
                if len(in_flight) >= 2 * workers:
                    settle(in_flight.popleft().result())
            while in_flight:
                settle(in_flight.popleft().result())
        except formats.UploadRejected as error:
            raise CliError(f"the platform would refuse this upload: {error}") from None
    report = builder.to_dict(files=[str(p) for p in files], note=NOTE)
    print(json.dumps(report) if as_json else render(report))
    return 0

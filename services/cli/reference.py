"""`1tt consumer reference PATH...`: register the consumer's own corpus for deduplication.

Only fingerprints are kept: the files are normalised and fingerprinted here, the
fingerprints are stored (encrypted, readable by preprocess only), and the set enters the
preprocess sequence like a contribution. From then on, a contributed document that is an
exact or near copy of a reference document earns nothing, and its report says
"reference_duplicate". Documents contributed before the registration are not affected:
"earlier" is the order of the log.

This is a platform-side tool: it writes to the blob store and the preprocess topic.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from aiokafka import AIOKafkaProducer

from services.cli.contribute import CliError, collect_files
from services.cli.estimate import _records
from services.common.blobstore import BlobStore, load_public_key
from services.common.config import Settings
from services.common.identity import Principal
from services.common.ids import new_id
from services.common.principals import AccessError, principal_for_key
from services.preprocess.fingerprints import fingerprint
from services.preprocess.normalize import normalize
from services.preprocess.pipeline import PipelineConfig


async def require_role(settings: Settings, api_key: str | None, role: str) -> Principal:
    """The principal holding `api_key`, if it has `role`; CliError saying what is wrong."""
    try:
        return await principal_for_key(settings.database_url, api_key, [role], "this command")
    except AccessError as error:
        raise CliError(str(error)) from None


async def register_reference(settings: Settings, paths: list[str], run_dir: Path) -> dict:
    files, _ = collect_files(paths)
    if not files:
        raise CliError("no reference files given")
    config = PipelineConfig()
    blobs = BlobStore(Path(os.environ.get("TT_BLOB_ROOT", run_dir / "blobs")))
    public_key = load_public_key(
        Path(os.environ.get("TT_BLOB_PUBLIC_KEY_FILE", run_dir / "secrets" / "blob-preprocess.pub"))
    )
    count = 0
    with blobs.open_writer(public_key) as writer:
        for text, _record_id in _records(files):
            normalised = normalize(text)
            if not normalised:
                continue
            fp = fingerprint(normalised, config.dedup)
            writer.write(
                (
                    json.dumps(
                        {"i": count, "x": fp.exact, "s": list(fp.signature), "b": list(fp.bands)}
                    )
                    + "\n"
                ).encode()
            )
            count += 1
        stored = writer.commit()
    reference_id = f"reference:{new_id()}"
    message = {
        "type": "reference",
        "contribution_id": reference_id,
        "contributor_id": "",
        "received_event_id": "",
        "results": "",
        "fingerprints": stored.uri,
        "documents": count,
        "fingerprinted": count,
    }
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        await producer.send_and_wait(
            f"{settings.topic_prefix}tt-preprocess-sequence",
            key=reference_id.encode(),
            value=json.dumps(message).encode(),
        )
    finally:
        await producer.stop()
    return {"reference_id": reference_id, "documents": count, "files": [str(f) for f in files]}

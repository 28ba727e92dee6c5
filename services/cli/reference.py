"""`1tt consumer reference PATH...`: register the consumer's own corpus for deduplication.

Only fingerprints are kept: the files are normalised and fingerprinted here, the
fingerprints are stored (encrypted, readable by preprocess only), and the set enters the
preprocess sequence like a contribution. From then on, a contributed document that is an
exact or near copy of a reference document earns nothing, and its report says
"reference_duplicate". Documents contributed before the registration are not affected:
"earlier" is the order of the log.

The consumer publishes a reference.registered fact with its own credentials (Kafka user
and signing key); preprocess reads it like any other fact. The fingerprints go to the
platform's blob store, encrypted to preprocess's key.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from services.cli.contribute import CliError, collect_files
from services.cli.estimate import _records
from services.common.blobstore import BlobStore, load_public_key
from services.common.config import Settings
from services.common.facts import make_envelope
from services.consumer.client import ConsumerClient, ConsumerError
from services.preprocess.fingerprints import fingerprint
from services.preprocess.normalize import normalize
from services.preprocess.pipeline import PipelineConfig
from services.rules.ids import new_id
from tt.facts.v1 import common_pb2, consumer_pb2


async def reference(settings: Settings, paths: list[str], run_dir: Path) -> dict:
    """Fingerprint the files and publish them as the consumer `settings` acts for."""
    try:
        async with await ConsumerClient.connect(settings) as client:
            return await register_reference(client, paths, run_dir)
    except ConsumerError as error:
        raise CliError(str(error)) from None


async def register_reference(client: ConsumerClient, paths: list[str], run_dir: Path) -> dict:
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
    fact = consumer_pb2.ReferenceRegistered(
        reference_id=new_id(),
        consumer_id=client.consumer_id,
        fingerprints=common_pb2.BlobRef(
            uri=stored.uri, sha256=stored.sha256, byte_size=stored.byte_size
        ),
        documents=count,
    )
    now = datetime.now(UTC)
    envelope = make_envelope(
        fact,
        event_id=fact.reference_id,
        producer="consumer-client",
        occurred_at=now,
        recorded_at=now,
    )
    await client.producer.publish(envelope)
    return {
        "reference_id": f"reference:{fact.reference_id}",
        "documents": count,
        "files": [str(f) for f in files],
    }

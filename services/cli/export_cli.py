"""`1tt consumer export --snapshot SNAPSHOT_ID --out DIR [--format jsonl|parquet]`: the
consumer's snapshot as document shards with a manifest (services.consumer.export).

Runs on the platform host: it reads the blob store ($TT_BLOB_ROOT, default
$TT_RUN_DIR/blobs) with preprocess's private key ($TT_BLOB_PRIVATE_KEY_FILE, default
$TT_RUN_DIR/secrets/blob-preprocess.key).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from services.cli.ledger_cli import consumer_settings, credentials_option
from services.common.config import Settings


def add_export_parser(consumer_subparsers) -> None:
    export = consumer_subparsers.add_parser(
        "export", help="write a snapshot's processed documents as shards with a manifest"
    )
    export.add_argument("--snapshot", required=True, metavar="SNAPSHOT_ID")
    export.add_argument(
        "--out", required=True, metavar="DIR", help="a new or empty directory to create"
    )
    export.add_argument("--format", choices=["jsonl", "parquet"], default="jsonl")
    credentials_option(export)


def blob_locations(env=None) -> tuple[Path, Path]:
    """(blob root, private key file) of the platform host, as preprocess names them."""
    from services.cli.admin import secret_paths

    env = os.environ if env is None else env
    run_dir = Path(env.get("TT_RUN_DIR", ".run"))
    blob_root = Path(env.get("TT_BLOB_ROOT") or run_dir / "blobs")
    key_file = Path(
        env.get("TT_BLOB_PRIVATE_KEY_FILE") or secret_paths(run_dir)["blob_private_key"]
    )
    return blob_root, key_file


async def run_export(settings: Settings, args) -> int:
    from services.consumer.client import ConsumerClient
    from services.consumer.export import export_snapshot

    blob_root, key_file = blob_locations()
    consumer = consumer_settings(settings, args.credentials)
    async with await ConsumerClient.connect(consumer) as client:
        summary = await export_snapshot(
            client,
            args.snapshot,
            Path(args.out),
            args.format,
            blob_root=blob_root,
            private_key_file=key_file,
        )
    if args.json:
        print(json.dumps(summary, sort_keys=True))
        return 0
    print(
        f"snapshot {summary['snapshot_id']} ({summary['snapshot_name']}) exported to "
        f"{summary['out_dir']} as {summary['format']}: {summary['contributions']} "
        f"contributions, {summary['documents']:,} documents, {summary['tokens']:,} tokens"
    )
    for shard in summary["shards"]:
        print(
            f"  {shard['file']}  {shard['bytes']:,} bytes  {shard['documents']:,} documents  "
            f"{shard['tokens']:,} tokens  sha256 {shard['sha256']}"
        )
    print(f"  manifest.json  sha256 {summary['manifest_sha256']}")
    verb = "already on the log" if summary["replayed"] else "published"
    print(
        f"snapshot.exported {verb}: export_id {summary['export_id']} "
        f"(event {summary['event_id']}), merkle root {summary['merkle_root']}"
    )
    return 0

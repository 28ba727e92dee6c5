"""`1tt consumer export` against real Kafka and Postgres: processed shards are written,
encrypted, into a blob store of the test's own (with a key pair of its own), their
contribution.processed facts are published under the test's topic prefix, the consumer
takes a snapshot through ConsumerClient, and the export is checked file by file against
the manifest, the facts and the snapshot.exported fact it leaves on the log."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from google.protobuf import json_format

from services.cli.export_cli import add_export_parser, run_export
from services.cli.provision import provision_consumer
from services.common.blobstore import BlobStore, load_public_key, write_keypair
from services.common.bus import FactProducer, PartyBus
from services.common.config import Settings
from services.common.examples import example_payloads
from services.common.facts import make_envelope, payload_of
from services.common.identity import Principal
from services.common.keys import KeyFeed
from services.common.logreader import read_facts
from services.consumer import export
from services.consumer.client import ConsumerClient, ConsumerError
from services.rules.ids import derived_id
from services.rules.merkle import snapshot_root
from tt.facts.v1 import common_pb2, consumer_pb2

pytestmark = pytest.mark.integration


@dataclass
class World:
    """One test's platform: settings under its topic prefix, its blob store and key."""

    settings: Settings
    producer: FactProducer
    keys: KeyFeed
    store: BlobStore
    public_key: bytes
    key_file: Path
    unique: str

    def consumer(self, name: str = "consumer") -> ConsumerClient:
        principal_id = derived_id("test.export.consumer", self.unique, name)
        return ConsumerClient(
            self.settings,
            Principal(principal_id, "consumer", name),
            PartyBus(self.producer, self.keys),
        )

    async def export(self, client, snapshot_id, out_dir, fmt="jsonl") -> dict:
        return await export.export_snapshot(
            client,
            snapshot_id,
            out_dir,
            fmt,
            blob_root=self.store.root,
            private_key_file=self.key_file,
        )

    def documents(self, name: str, count: int) -> list[dict]:
        """`count` kept documents as preprocess writes them; every third has no id."""
        return [
            {
                "id": None if i % 3 == 2 else f"{name}-doc-{i}",
                "index": i * 2,  # kept documents keep their input index: gaps are normal
                "tokens": 7 + i,
                "text": f"Document {i} of {name}: Grüße, [EMAIL] redacted. " * (1 + i % 4),
            }
            for i in range(count)
        ]

    def write_shard(self, documents: list[dict]) -> common_pb2.BlobRef:
        with self.store.open_writer(self.public_key) as writer:
            for document in documents:
                writer.write((json.dumps(document) + "\n").encode())
            ref = writer.commit()
        return common_pb2.BlobRef(uri=ref.uri, sha256=ref.sha256, byte_size=ref.byte_size)

    async def contribute(
        self, name: str, shards: list[list[dict]], tokens_claimed: int | None = None
    ) -> str:
        """A processed contribution of `shards` (lists of documents) on the log; the fact
        claims `tokens_claimed` accepted tokens (default: what the shards hold)."""
        contribution_id = derived_id("test.export.contribution", self.unique, name)
        fact = example_payloads(f"{self.unique}-{name}")["contribution.processed"]
        documents = sum(len(shard) for shard in shards)
        tokens = sum(d["tokens"] for shard in shards for d in shard)
        fact.contribution_id = contribution_id
        fact.contributor_id = derived_id("test.export.contributor", self.unique, name)
        fact.documents_in = documents + sum(r.documents for r in fact.removals)
        fact.documents_kept = documents
        fact.tokens_accepted = tokens if tokens_claimed is None else tokens_claimed
        fact.tokens_raw = fact.tokens_accepted + 1_000
        del fact.processed_shards[:]
        fact.processed_shards.extend(self.write_shard(shard) for shard in shards)
        now = datetime.now(UTC)
        await self.producer.publish(
            make_envelope(
                fact,
                event_id=derived_id("contribution.processed", contribution_id),
                producer="tests",
                occurred_at=now - timedelta(minutes=1),
                recorded_at=now,
            )
        )
        return contribution_id

    async def exported_facts(self) -> list[consumer_pb2.SnapshotExported]:
        registry = self.settings.topic_registry()
        async with KeyFeed.for_settings(self.settings, registry) as keys:
            facts = await read_facts(self.settings.kafka, registry, ["snapshot.exported"], keys)
        return [payload_of(e) for e in facts]


@pytest.fixture
def world(settings, registry, producer, keys, tmp_path, unique) -> World:
    key_file, public_file = tmp_path / "blob.key", tmp_path / "blob.pub"
    write_keypair(key_file, public_file)
    return World(
        dataclasses.replace(settings, topic_prefix=registry.prefix),
        producer,
        keys,
        BlobStore(tmp_path / "blobs"),
        load_public_key(public_file),
        key_file,
        unique,
    )


def rows_of(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def expected_rows(contributions: dict[str, list[dict]]) -> list[dict]:
    """What the export must hold: contributions in id order, documents in shard order."""
    return [
        {
            "contribution_id": cid,
            "document_id": d["id"],
            "index": d["index"],
            "tokens": d["tokens"],
            "text": d["text"],
        }
        for cid in sorted(contributions)
        for d in contributions[cid]
    ]


def check_export(out_dir: Path, summary: dict, snapshot: dict, expected: list[dict]) -> dict:
    """Every shard's hash, size, documents and tokens match the manifest; the rows are the
    documents; the manifest names the snapshot as its fact does. Returns the manifest."""
    manifest_bytes = (out_dir / "manifest.json").read_bytes()
    manifest = json.loads(manifest_bytes)
    assert hashlib.sha256(manifest_bytes).hexdigest() == summary["manifest_sha256"]
    assert manifest["merkle_root"] == snapshot["merkle_root"] == summary["merkle_root"]
    assert manifest["snapshot_id"] == snapshot["snapshot_id"]
    assert manifest["snapshot_name"] == snapshot["name"]
    assert manifest["consumer_id"] == snapshot["consumer_id"]
    assert manifest["format"] == summary["format"]
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        ["manifest.json", *(s["file"] for s in manifest["shards"])]
    )
    rows = []
    for shard in manifest["shards"]:
        path = out_dir / shard["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == shard["sha256"]
        assert path.stat().st_size == shard["bytes"]
        shard_rows = rows_of(path)
        assert len(shard_rows) == shard["documents"]
        assert sum(r["tokens"] for r in shard_rows) == shard["tokens"]
        rows += shard_rows
    assert rows == expected
    members = {m["contribution_id"]: m for m in snapshot["members"]}
    assert [c["contribution_id"] for c in manifest["contributions"]] == sorted(members)
    for entry in manifest["contributions"]:
        member = members[entry["contribution_id"]]
        assert entry["contributor_id"] == member["contributor_id"]
        assert entry["processed_event_id"] == member["processed_event_id"]
        assert entry["tokens_accepted"] == int(member["tokens_accepted"])
        mine = [r for r in rows if r["contribution_id"] == entry["contribution_id"]]
        assert entry["documents"] == len(mine)
        assert sum(r["tokens"] for r in mine) == entry["tokens_accepted"]
    assert manifest["totals"]["documents"] == len(expected) == summary["documents"]
    assert manifest["totals"]["tokens"] == sum(r["tokens"] for r in expected) == summary["tokens"]
    return manifest


async def test_jsonl_and_parquet_exports_match_the_facts_and_are_recorded_once(
    world, tmp_path, monkeypatch
):
    # Small shards, so contributions span output shards and shards hold several of them.
    monkeypatch.setattr(export, "SHARD_DOCUMENTS_MAX", 4)
    north_docs = world.documents("north", 5)
    lexicon_docs = world.documents("lexicon", 6)
    north = await world.contribute("north", [north_docs[:2], north_docs[2:]])
    lexicon = await world.contribute("lexicon", [lexicon_docs])
    client = world.consumer()
    snapshot = (
        await client.create_snapshot(name=f"s-{world.unique}", contribution_ids=[north, lexicon])
    ).fact
    expected = expected_rows({north: north_docs, lexicon: lexicon_docs})

    jsonl = await world.export(client, snapshot["snapshot_id"], tmp_path / "jsonl")
    parquet = await world.export(client, snapshot["snapshot_id"], tmp_path / "parquet", "parquet")

    for summary, suffix in ((jsonl, "jsonl"), (parquet, "parquet")):
        manifest = check_export(Path(summary["out_dir"]), summary, snapshot, expected)
        assert [s["file"] for s in manifest["shards"]] == [
            f"part-0000{i}.{suffix}" for i in range(3)
        ]
        assert [s["documents"] for s in manifest["shards"]] == [4, 4, 3]
        assert not summary["replayed"]
    recorded = json_format.ParseDict(snapshot, consumer_pb2.SnapshotCreated())
    assert snapshot_root(list(recorded.members)) == jsonl["merkle_root"]

    facts = await world.exported_facts()
    assert sorted(f.manifest_sha256 for f in facts) == sorted(
        [jsonl["manifest_sha256"], parquet["manifest_sha256"]]
    )
    for summary in (jsonl, parquet):
        (fact,) = [f for f in facts if f.export_id == summary["export_id"]]
        assert fact.consumer_id == client.consumer_id
        assert fact.snapshot_id == snapshot["snapshot_id"]
        assert fact.merkle_root == snapshot["merkle_root"]
        assert fact.format == export.FORMATS[summary["format"]]
        assert (fact.shard_count, fact.documents, fact.tokens) == (
            3,
            len(expected),
            sum(r["tokens"] for r in expected),
        )

    again = await world.export(client, snapshot["snapshot_id"], tmp_path / "again")
    assert again["export_id"] == jsonl["export_id"]
    assert again["event_id"] == jsonl["event_id"]
    assert again["replayed"]
    assert (tmp_path / "again" / "manifest.json").read_bytes() == (
        tmp_path / "jsonl" / "manifest.json"
    ).read_bytes()
    assert len(await world.exported_facts()) == 2


async def test_refusals_leave_the_disk_and_the_log_untouched(world, tmp_path):
    docs = world.documents("harbor", 3)
    contribution = await world.contribute("harbor", [docs])
    mine = world.consumer("consumer")
    snapshot = (
        await mine.create_snapshot(name=f"s-{world.unique}", contribution_ids=[contribution])
    ).fact
    snapshot_id = snapshot["snapshot_id"]

    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(ConsumerError, match=re.escape(f"{occupied} exists and is not empty")):
        await world.export(mine, snapshot_id, occupied)
    assert [p.name for p in occupied.iterdir()] == ["notes.txt"]
    assert (occupied / "notes.txt").read_text() == "mine"

    other = world.consumer("another consumer")
    with pytest.raises(ConsumerError, match="belongs to another consumer"):
        await world.export(other, snapshot_id, tmp_path / "theirs")
    with pytest.raises(ConsumerError, match="no snapshot with id"):
        await world.export(mine, derived_id("test.export.nothing", world.unique), tmp_path / "x")

    # A snapshot naming a processed fact that is not on the log (published by hand: the
    # client never builds one).
    ghost = consumer_pb2.SnapshotMember(
        contribution_id=derived_id("test.export.ghost", world.unique),
        contributor_id="ghost-contributor",
        tokens_accepted=5,
        processed_event_id=derived_id("test.export.ghost-event", world.unique),
    )
    ghost_snapshot = consumer_pb2.SnapshotCreated(
        snapshot_id=derived_id("snapshot", mine.consumer_id, f"ghost-{world.unique}"),
        consumer_id=mine.consumer_id,
        name=f"ghost-{world.unique}",
        selection=consumer_pb2.SNAPSHOT_SELECTION_LISTED,
        members=[ghost],
        merkle_root=snapshot_root([ghost]),
    )
    await mine._publish(ghost_snapshot, derived_id("snapshot.created", ghost_snapshot.snapshot_id))
    with pytest.raises(ConsumerError, match=ghost.processed_event_id) as refused:
        await world.export(mine, ghost_snapshot.snapshot_id, tmp_path / "ghost")
    assert ghost.contribution_id in str(refused.value)

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "blob.key",
        "blob.pub",
        "blobs",
        "occupied",
    ]
    assert await world.exported_facts() == []


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
async def test_shard_tokens_that_disagree_with_the_fact_export_nothing(world, tmp_path, fmt):
    good = await world.contribute("good", [world.documents("good", 4)])
    docs = world.documents("bad", 3)
    bad = await world.contribute("bad", [docs], tokens_claimed=sum(d["tokens"] for d in docs) + 1)
    client = world.consumer()
    snapshot = (
        await client.create_snapshot(name=f"s-{world.unique}", contribution_ids=[good, bad])
    ).fact

    out = tmp_path / "exports" / "bad"
    with pytest.raises(
        ConsumerError, match=f"contribution {bad}: .* says 3 documents and"
    ) as error:
        await world.export(client, snapshot["snapshot_id"], out, fmt)
    assert "nothing is exported" in str(error.value)
    assert not out.exists()
    assert list((tmp_path / "exports").iterdir()) == []  # no staging directory left behind
    assert await world.exported_facts() == []


async def test_the_cli_exports_for_the_consumer_and_refuses_a_contributor(
    world, settings, registry, tmp_path, monkeypatch, capsys
):
    # The consumer acts with its own credentials folder (Kafka user, signing key,
    # identity), as `1tt admin add-principal --role consumer` makes it: no database.
    principal_id = derived_id("test.export.consumer", world.unique, "consumer")
    credentials = await provision_consumer(
        settings, registry, principal_id, "consumer", credentials_root=tmp_path / "credentials"
    )
    monkeypatch.setenv("TT_BLOB_ROOT", str(world.store.root))
    monkeypatch.setenv("TT_BLOB_PRIVATE_KEY_FILE", str(world.key_file))

    docs = world.documents("cli", 3)
    contribution = await world.contribute("cli", [docs])
    snapshot = (
        await world.consumer("consumer").create_snapshot(
            name=f"s-{world.unique}", contribution_ids=[contribution]
        )
    ).fact
    parser = argparse.ArgumentParser()
    add_export_parser(parser.add_subparsers(dest="consumer_command"))

    def args(out: Path, folder: Path, *more: str) -> argparse.Namespace:
        return parser.parse_args(
            [
                *("export", "--snapshot", snapshot["snapshot_id"], "--out", str(out)),
                *("--credentials", str(folder), *more),
            ]
        )

    # A folder that is not a consumer's (here: the ingest service's) is refused.
    ingest_folder = settings.party_credentials("ingest")
    with pytest.raises(ConsumerError, match=r"no consumer credentials"):
        await run_export(world.settings, args(tmp_path / "refused", ingest_folder))
    assert not (tmp_path / "refused").exists()

    folder = credentials.folder
    assert await run_export(world.settings, args(tmp_path / "out", folder, "--json")) == 0
    summary = json.loads(capsys.readouterr().out)
    check_export(tmp_path / "out", summary, snapshot, expected_rows({contribution: docs}))

    assert await run_export(world.settings, args(tmp_path / "human", folder)) == 0
    printed = capsys.readouterr().out
    assert "3 documents" in printed and summary["manifest_sha256"] in printed
    assert f"snapshot.exported already on the log: export_id {summary['export_id']}" in printed

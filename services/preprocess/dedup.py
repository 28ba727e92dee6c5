"""Platform-wide deduplication decisions, as pure functions over plain data.

Every contribution (and every reference-corpus registration) gets a global sequence
number from the order of a single-partition topic, which is the platform's definition of
"earlier". Its documents' fingerprint keys are sent, as claims, to the index shard that
owns each key (`shard_of`). A shard handles claims strictly in sequence order, so the
first claimant of a key is always the earliest in the log, on every shard, on every
replay. `ShardIndex.claim` answers, for each document, which earlier document it matches;
`decide` combines the answers of all shards into one verdict per document.

A document is never matched against itself: a claim handled twice (after a crash) finds
its own earlier registration and ignores it.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass

from services.preprocess.fingerprints import DedupConfig, Fingerprint, estimated_jaccard, shard_of

WITHIN_UPLOAD = "within_upload"
EARLIER_CONTRIBUTION = "earlier_contribution"
REFERENCE_CORPUS = "reference_corpus"


@dataclass(frozen=True)
class DocRef:
    """A document's place in the log: (sequence, document index) orders all documents."""

    seq: int
    source_id: str  # contribution id, or "reference:<id>"
    doc_index: int
    is_reference: bool = False


@dataclass(frozen=True)
class DocClaim:
    doc_index: int
    exact: str | None  # the exact key, if it belongs to this shard
    bands: tuple[str, ...]  # the band keys that belong to this shard
    signature: tuple[int, ...] = ()  # needed when bands is not empty


@dataclass(frozen=True)
class Match:
    doc_index: int
    kind: str  # "exact" or "near"
    owner: DocRef


def claims_by_shard(
    fingerprints: Iterable[tuple[int, Fingerprint]], shards: int
) -> dict[int, list[DocClaim]]:
    """Split documents' keys over the shards that own them (every shard gets an entry,
    possibly empty, so the assembler knows how many answers to wait for)."""
    exact_of: dict[int, dict[int, str]] = {shard: {} for shard in range(shards)}
    bands_of: dict[int, dict[int, list[str]]] = {shard: {} for shard in range(shards)}
    signatures: dict[int, tuple[int, ...]] = {}
    for doc_index, fp in fingerprints:
        signatures[doc_index] = fp.signature
        exact_of[shard_of(f"x:{fp.exact}", shards)][doc_index] = fp.exact
        for band in fp.bands:
            bands_of[shard_of(band, shards)].setdefault(doc_index, []).append(band)
    claims: dict[int, list[DocClaim]] = {}
    for shard in range(shards):
        docs = sorted(set(exact_of[shard]) | set(bands_of[shard]))
        claims[shard] = [
            DocClaim(
                doc_index=index,
                exact=exact_of[shard].get(index),
                bands=tuple(bands_of[shard].get(index, ())),
                signature=signatures[index] if index in bands_of[shard] else (),
            )
            for index in docs
        ]
    return claims


class ShardIndex:
    """One shard of the index. `store` maps "x:<exact hash>" to the owner DocRef,
    "<band key>" to a list of up to `bucket_size` DocRefs, and "s:<source>:<doc>" to that
    document's packed signature; it can be a dict or a Faust table."""

    def __init__(self, store: MutableMapping, config: DedupConfig):
        self.store = store
        self.config = config

    def claim(self, source: DocRef, claims: list[DocClaim]) -> list[Match]:
        """Register a source's documents, in document order, and return every match with
        an earlier document. `source.doc_index` is ignored; each claim names its own."""
        matches: list[Match] = []
        for claim in claims:
            me = DocRef(source.seq, source.source_id, claim.doc_index, source.is_reference)
            if claim.exact is not None:
                matches.extend(self._claim_exact(me, claim.exact))
            if claim.bands:
                matches.extend(self._claim_bands(me, claim))
        return matches

    def _claim_exact(self, me: DocRef, exact: str) -> list[Match]:
        key = f"x:{exact}"
        owner = _ref(self.store.get(key))
        if owner is None:
            self.store[key] = _plain(me)
            return []
        if _same_doc(owner, me):
            return []  # our own claim, seen again after a restart
        return [Match(me.doc_index, "exact", owner)]

    def _claim_bands(self, me: DocRef, claim: DocClaim) -> list[Match]:
        matches: dict[tuple, Match] = {}
        stored = False
        for band in claim.bands:
            bucket = list(self.store.get(band) or [])
            known = False
            for stored_ref in bucket:
                owner = _ref(stored_ref)
                if _same_doc(owner, me):
                    known = True
                    continue
                packed = self.store.get(_signature_key(owner))
                if packed is None:
                    continue
                similarity = estimated_jaccard(unpack_signature(packed), claim.signature)
                if similarity >= self.config.jaccard_threshold:
                    matches.setdefault(_key(owner), Match(me.doc_index, "near", owner))
            # Near copies need not be stored: their original already represents them.
            if not known and not matches and len(bucket) < self.config.bucket_size:
                bucket.append(_plain(me))
                self.store[band] = bucket
                stored = True
        if stored:
            # One copy of the signature per shard, next to the buckets that refer to it,
            # rather than one per bucket: ~10x smaller index.
            self.store[_signature_key(me)] = pack_signature(claim.signature)
        return sorted(matches.values(), key=lambda m: _key(m.owner))


def pack_signature(signature: tuple[int, ...]) -> str:
    """A MinHash signature (32-bit values) as compact text: base64 of little-endian u32s."""
    return base64.b64encode(struct.pack(f"<{len(signature)}I", *signature)).decode()


def unpack_signature(packed: str) -> tuple[int, ...]:
    raw = base64.b64decode(packed)
    return struct.unpack(f"<{len(raw) // 4}I", raw)


def _signature_key(ref: DocRef) -> str:
    return f"s:{ref.source_id}:{ref.doc_index}"


@dataclass(frozen=True)
class Verdict:
    """Why a document earns nothing, or None when it is unique."""

    doc_index: int
    kind: str  # "exact" or "near"
    scope: str  # WITHIN_UPLOAD, EARLIER_CONTRIBUTION or REFERENCE_CORPUS


def decide(source: DocRef, matches: Iterable[Match]) -> dict[int, Verdict]:
    """One verdict per matched document, from the matches of all shards: an exact match
    wins over a near one, then the earliest owner. The scope names where the earlier copy
    is, never whose it is."""
    best: dict[int, Match] = {}
    for match in matches:
        current = best.get(match.doc_index)
        if current is None or _rank(match) < _rank(current):
            best[match.doc_index] = match
    return {index: Verdict(index, m.kind, _scope(source, m.owner)) for index, m in best.items()}


def _rank(match: Match) -> tuple:
    return (match.kind != "exact", _key(match.owner))


def _scope(source: DocRef, owner: DocRef) -> str:
    if owner.is_reference:
        return REFERENCE_CORPUS
    if owner.source_id == source.source_id:
        return WITHIN_UPLOAD
    return EARLIER_CONTRIBUTION


def _key(ref: DocRef) -> tuple:
    return (ref.seq, ref.source_id, ref.doc_index)


def _same_doc(left: DocRef, right: DocRef) -> bool:
    return left.source_id == right.source_id and left.doc_index == right.doc_index


def _plain(ref: DocRef) -> list:
    """A DocRef as JSON-friendly data (what a Faust table stores)."""
    return [ref.seq, ref.source_id, ref.doc_index, ref.is_reference]


def _ref(value: object) -> DocRef | None:
    if value is None:
        return None
    if isinstance(value, DocRef):
        return value
    seq, source_id, doc_index, is_reference = value  # type: ignore[misc]
    return DocRef(int(seq), str(source_id), int(doc_index), bool(is_reference))


def index_all(
    source: DocRef,
    fingerprints: Mapping[int, Fingerprint],
    stores: list[MutableMapping],
    config: DedupConfig,
) -> dict[int, Verdict]:
    """Claim and decide in one go over local stores (for `1tt estimate` and the tests);
    the service does the same steps across Kafka partitions."""
    per_shard = claims_by_shard(sorted(fingerprints.items()), len(stores))
    matches: list[Match] = []
    for shard, claims in per_shard.items():
        matches.extend(ShardIndex(stores[shard], config).claim(source, claims))
    return decide(source, matches)

"""Document fingerprints for deduplication: an exact hash of the normalised text, and a
MinHash signature over word 5-gram shingles (computed by `rensa`) cut into LSH bands.

Two documents whose shingle sets have Jaccard similarity s share at least one band with
probability 1 - (1 - s**rows)**bands; with 32 bands of 4 rows a pair at s = 0.7 becomes a
candidate with probability 0.9998, at s = 0.3 with 0.23. Candidates are then confirmed
by the signatures' estimated Jaccard, so bands decide recall and the check decides
precision.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass

from rensa import RMinHash

_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class DedupConfig:
    num_perm: int = 128
    bands: int = 32
    shingle_words: int = 5
    # Pairs at or above this (estimated) Jaccard similarity are near duplicates.
    jaccard_threshold: float = 0.7
    # Part of every stored fingerprint: changing it invalidates the platform's index.
    seed: int = 1
    # Band buckets keep at most this many distinct documents (bounded memory per key).
    bucket_size: int = 4

    def __post_init__(self) -> None:
        if self.num_perm % self.bands:
            raise ValueError(
                f"num_perm ({self.num_perm}) must be a multiple of bands ({self.bands})"
            )

    @property
    def rows(self) -> int:
        return self.num_perm // self.bands

    def canonical_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Fingerprint:
    exact: str  # hex SHA-256 of the normalised text
    signature: tuple[int, ...]  # MinHash digest, num_perm values
    bands: tuple[str, ...]  # LSH band keys "b<index>:<hex>", one per band


def shingles(text: str, words_per_shingle: int) -> list[str]:
    """Lower-cased word n-grams; a text shorter than n words is one shingle."""
    words = _WORD.findall(text.lower())
    if len(words) <= words_per_shingle:
        return [" ".join(words)] if words else [""]
    # zip over shifted views builds every n-gram in one pass, without slicing per index.
    shifted = (words[i:] for i in range(words_per_shingle))
    return list(map(" ".join, zip(*shifted, strict=False)))  # stops at the shortest view


def exact_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fingerprint(text: str, config: DedupConfig) -> Fingerprint:
    """The fingerprint of an already normalised document."""
    minhash = RMinHash(num_perm=config.num_perm, seed=config.seed)
    minhash.update(shingles(text, config.shingle_words))
    signature = tuple(minhash.digest())
    return Fingerprint(exact_hash(text), signature, band_keys(signature, config))


def band_keys(signature: tuple[int, ...], config: DedupConfig) -> tuple[str, ...]:
    keys = []
    for band in range(config.bands):
        rows = signature[band * config.rows : (band + 1) * config.rows]
        raw = b"".join(value.to_bytes(8, "little") for value in rows)
        keys.append(f"b{band}:{hashlib.blake2b(raw, digest_size=8).hexdigest()}")
    return tuple(keys)


def estimated_jaccard(left: tuple[int, ...], right: tuple[int, ...]) -> float:
    """Share of equal MinHash values: an unbiased estimate of the Jaccard similarity."""
    if len(left) != len(right) or not left:
        raise ValueError("signatures of different lengths cannot be compared")
    return sum(a == b for a, b in zip(left, right, strict=True)) / len(left)


def shard_of(key: str, shards: int) -> int:
    """The index shard that owns a fingerprint key: stable across processes and runs
    (unlike hash()), so every worker routes a key to the same partition."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % shards

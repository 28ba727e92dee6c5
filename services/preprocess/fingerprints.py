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

import numpy as np
from rensa import RMinHash

from services.preprocess.textcore import native, without_surrogates

_WORD = re.compile(r"\w+", re.UNICODE)


def _words(text: str) -> list[str]:
    """The words (runs of \\w) of the lower-cased text."""
    return _WORD.findall(text.lower())


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
        if self.shingle_words < 1:
            raise ValueError(f"shingle_words must be at least 1, got {self.shingle_words}")
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
    """Lower-cased word n-grams joined by one space; a text of at most n words is one
    shingle ("" when it has no word). The definition; `fingerprint` hashes the same
    shingles in native code."""
    words = _words(text)
    if len(words) <= words_per_shingle:
        return [" ".join(words)]
    return [
        " ".join(words[i : i + words_per_shingle])
        for i in range(len(words) - words_per_shingle + 1)
    ]


def exact_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def shingle_hashes(text: str, words_per_shingle: int) -> np.ndarray:
    """The shingles of ``text`` hashed as rensa hashes a str token (computed natively,
    without a Python string per shingle, from the text lower-cased there as by
    ``str.lower()``). Lone surrogates are read as U+FFFD."""
    try:
        raw = native().shingle_hashes(text, words_per_shingle)
    except UnicodeEncodeError:
        raw = native().shingle_hashes(without_surrogates(text), words_per_shingle)
    return np.frombuffer(raw, dtype="<u8")


def fingerprints(texts: list[str], config: DedupConfig) -> list[Fingerprint]:
    """The fingerprints of already normalised documents: one rensa call for all of them."""
    if not texts:
        return []
    hashes = [shingle_hashes(text, config.shingle_words) for text in texts]
    offsets = np.zeros(len(hashes) + 1, dtype=np.uint64)
    np.cumsum([len(h) for h in hashes], out=offsets[1:])
    rows = RMinHash.digest_matrix_from_flat_token_hashes(
        np.concatenate(hashes), offsets, config.num_perm, config.seed
    ).to_rows()
    keys = native().band_keys(rows, config.bands)
    return [
        Fingerprint(exact_hash(text), tuple(row), tuple(bands))
        for text, row, bands in zip(texts, rows, keys, strict=True)
    ]


def fingerprint(text: str, config: DedupConfig) -> Fingerprint:
    """The fingerprint of an already normalised document."""
    return fingerprints([text], config)[0]


def band_keys(signature: tuple[int, ...], config: DedupConfig) -> tuple[str, ...]:
    """One key per band: BLAKE2b-64 of the band's values as 8-byte little-endian integers,
    as "b<band>:<hex>" (computed natively)."""
    if len(signature) != config.num_perm:
        raise ValueError(f"a signature of {len(signature)} values, not {config.num_perm}")
    return tuple(native().band_keys([list(signature)], config.bands)[0])


def estimated_jaccard(left: tuple[int, ...], right: tuple[int, ...]) -> float:
    """Share of equal MinHash values: an unbiased estimate of the Jaccard similarity."""
    if len(left) != len(right) or not left:
        raise ValueError("signatures of different lengths cannot be compared")
    return sum(a == b for a, b in zip(left, right, strict=True)) / len(left)


def shard_of(key: str, shards: int) -> int:
    """The index shard that owns a fingerprint key: stable across processes and runs
    (unlike hash()), so every worker routes a key to the same partition."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % shards

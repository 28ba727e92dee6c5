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

_WORD = re.compile(r"\w+", re.UNICODE)

# The fast path of the shingles' word split, for text that is Latin-1 once typographic
# quotes, dashes and the like (never word characters) are set aside: one bytes.translate
# turns every non-word character into a space and str.split() yields exactly the words
# _WORD finds.
_MARKS_TO_SPACE = (
    "\u2010\u2011\u2012\u2013\u2014\u2015"  # hyphens and dashes
    "\u2018\u2019\u201a\u201c\u201d\u201e\u2039\u203a"  # quotation marks
    "\u2022\u2026\u2032\u2033"  # bullet, ellipsis, primes
)
if any(_WORD.match(mark) for mark in _MARKS_TO_SPACE):
    raise AssertionError("_MARKS_TO_SPACE holds a word character")
_LATIN1_WORD_TABLE = bytes(c if _WORD.match(chr(c)) else 32 for c in range(256))


def _words(text: str) -> list[str]:
    """The words (runs of \\w) of the lower-cased text."""
    folded = text.lower()
    if folded.isascii():
        encoded = folded.encode("ascii")
    else:
        for mark in _MARKS_TO_SPACE:
            if mark in folded:
                folded = folded.replace(mark, " ")
        try:
            encoded = folded.encode("latin-1")
        except UnicodeEncodeError:
            return _WORD.findall(folded)
    return encoded.translate(_LATIN1_WORD_TABLE).decode("latin-1").split()


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
    words = _words(text)
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
    """One key per band: BLAKE2b-64 of the band's values as 8-byte little-endian integers."""
    if len(signature) != config.num_perm:
        raise ValueError(f"a signature of {len(signature)} values, not {config.num_perm}")
    raw = np.array(signature, dtype="<u8").tobytes()
    width = config.rows * 8
    blake2b = hashlib.blake2b
    return tuple(
        f"b{band}:{blake2b(raw[band * width : (band + 1) * width], digest_size=8).hexdigest()}"
        for band in range(config.bands)
    )


def estimated_jaccard(left: tuple[int, ...], right: tuple[int, ...]) -> float:
    """Share of equal MinHash values: an unbiased estimate of the Jaccard similarity."""
    if len(left) != len(right) or not left:
        raise ValueError("signatures of different lengths cannot be compared")
    return sum(a == b for a, b in zip(left, right, strict=True)) / len(left)


def shard_of(key: str, shards: int) -> int:
    """The index shard that owns a fingerprint key: stable across processes and runs
    (unlike hash()), so every worker routes a key to the same partition."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % shards

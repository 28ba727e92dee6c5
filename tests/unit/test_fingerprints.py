"""Tests of services.preprocess.fingerprints: the native shingle hashes and the band keys agree
with their definitions (stored fingerprints must never change)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rensa import RMinHash

from services.preprocess import fingerprints
from services.preprocess.fingerprints import DedupConfig, band_keys, fingerprint, shingles

_ATOMS = [
    "The", "don't", "don\u2019t", "well-known", "\u201cquoted\u201d", "\u2014", "\u2026", "_x_",
    "caf\u00e9", "STRA\u00dfE", "\u00b2", "\u00bd", "\u00d7", "\u65e5\u672c", "\u0130", "K",
    "12", " ", "\n", ".", "\x00", "\u00a0",
]  # fmt: skip


_TEXTS = st.one_of(
    st.lists(st.sampled_from(_ATOMS), max_size=40).map("".join), st.text(max_size=200)
)


@settings(max_examples=400, deadline=None)
@given(_TEXTS, st.integers(1, 6))
def test_native_shingle_hashes_are_rensas_hashes_of_the_shingles(text: str, n: int) -> None:
    expected = RMinHash.hash_token_sets([shingles(text, n)])[0]
    assert fingerprints.shingle_hashes(text, n).tolist() == list(expected)


@settings(max_examples=200, deadline=None)
@given(st.lists(_TEXTS, min_size=1, max_size=5))
def test_fingerprints_equal_rensas_minhash_of_the_shingles(texts: list[str]) -> None:
    config = DedupConfig()
    for text, found in zip(texts, fingerprints.fingerprints(texts, config), strict=True):
        minhash = RMinHash(num_perm=config.num_perm, seed=config.seed)
        minhash.update(shingles(text, config.shingle_words))
        assert found.signature == tuple(minhash.digest())
        assert found == fingerprint(text, config)


# Computed by the pipeline before the native shingle hashes (1.2.0, rensa's update of str).
_FIRST_VALUES = (3237691454, 3230619126, 3190686803, 3448217988)
_FIRST_BAND = "b0:248503712cf36af0"


def test_a_fingerprint_never_changes() -> None:
    # Stored in the platform's index: a change here is a new PIPELINE_VERSION.
    found = fingerprint(
        "The quick brown fox jumps over the lazy dog near the river bank.", DedupConfig()
    )
    assert found.signature[:4] == _FIRST_VALUES
    assert found.bands[0] == _FIRST_BAND


def test_shingle_words_must_be_positive() -> None:
    with pytest.raises(ValueError, match="shingle_words"):
        DedupConfig(shingle_words=0)


def _reference_band_keys(signature: tuple[int, ...], config: DedupConfig) -> tuple[str, ...]:
    keys = []
    for band in range(config.bands):
        rows = signature[band * config.rows : (band + 1) * config.rows]
        raw = b"".join(value.to_bytes(8, "little") for value in rows)
        keys.append(f"b{band}:{hashlib.blake2b(raw, digest_size=8).hexdigest()}")
    return tuple(keys)


def test_band_keys_equal_the_definition() -> None:
    config = DedupConfig()
    for text in ("a b c d e f g", "The quick brown fox jumps over the lazy dog. " * 20, ""):
        signature = fingerprint(text, config).signature
        assert band_keys(signature, config) == _reference_band_keys(signature, config)


def test_short_text_is_one_shingle() -> None:
    assert shingles("Hello, world", 5) == ["hello world"]
    assert shingles("", 5) == [""]
    assert shingles("a b c d e f", 5) == ["a b c d e", "b c d e f"]

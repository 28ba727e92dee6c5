"""Tests of services.preprocess.fingerprints: the fast word split and the band keys agree with
their definitions (stored fingerprints must never change)."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from services.preprocess import fingerprints
from services.preprocess.fingerprints import DedupConfig, band_keys, fingerprint, shingles

_ATOMS = [
    "The", "don't", "don\u2019t", "well-known", "\u201cquoted\u201d", "\u2014", "\u2026", "_x_",
    "caf\u00e9", "STRA\u00dfE", "\u00b2", "\u00bd", "\u00d7", "\u65e5\u672c", "\u0130", "K",
    "12", " ", "\n", ".", "\x00", "\u00a0",
]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_ATOMS), max_size=40).map("".join))
def test_word_split_equals_the_regex(text: str) -> None:
    assert fingerprints._words(text) == fingerprints._WORD.findall(text.lower())


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

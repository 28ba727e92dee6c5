"""Tests for services.common.formats: upload validation, document counting, error messages."""

from __future__ import annotations

import gzip
import io
import json
import random
import zlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.formats import (
    BLOCK_SIZE,
    InvalidUpload,
    Limits,
    UploadRejected,
    UploadSummary,
    UploadTooLarge,
    compression_from_name,
    format_from_name,
    guess_from_filename,
    inspect_upload,
    iter_documents,
)
from tt.facts.v1 import contribution_pb2 as pb

TEXT, JSONL, PARQUET = (
    pb.DATASET_FORMAT_TEXT,
    pb.DATASET_FORMAT_JSONL,
    pb.DATASET_FORMAT_PARQUET,
)
NONE, GZIP, ZSTD = pb.COMPRESSION_NONE, pb.COMPRESSION_GZIP, pb.COMPRESSION_ZSTD
COMPRESSIONS = [NONE, GZIP, ZSTD]
B = BLOCK_SIZE


class CountingIO(io.BytesIO):
    """A BytesIO that counts the bytes read from it (and may return short reads)."""

    def __init__(self, data: bytes, max_read: int | None = None) -> None:
        super().__init__(data)
        self.bytes_read = 0
        self.max_read = max_read

    def read(self, size: int | None = -1) -> bytes:
        if self.max_read is not None and (size is None or size < 0 or size > self.max_read):
            size = self.max_read
        data = super().read(size)
        self.bytes_read += len(data)
        return data


def compress(data: bytes, compression: int) -> bytes:
    if compression == GZIP:
        return gzip.compress(data)
    if compression == ZSTD:
        return zstandard.ZstdCompressor().compress(data)
    return data


def parquet_bytes(table: pa.Table) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


def inspect(data: bytes, fmt: int, compression: int = NONE, **limits: int) -> UploadSummary:
    return inspect_upload(
        io.BytesIO(data), dataset_format=fmt, compression=compression, limits=Limits(**limits)
    )


def documents(data: bytes, fmt: int, compression: int = NONE, **limits: int) -> list[str]:
    return list(
        iter_documents(
            io.BytesIO(data), dataset_format=fmt, compression=compression, limits=Limits(**limits)
        )
    )


def assert_rejected(
    data: bytes,
    fmt: int,
    compression: int,
    exc_type: type[UploadRejected],
    phrases: list[str],
    **limits: int,
) -> str:
    """Both entry points must raise exactly *exc_type* with every phrase in the message."""
    for call in (inspect, documents):
        with pytest.raises(UploadRejected) as info:
            call(data, fmt, compression, **limits)
        assert type(info.value) is exc_type, info.value.message
        assert str(info.value) == info.value.message
        for phrase in phrases:
            assert phrase in info.value.message, (phrase, info.value.message)
    return info.value.message


# ------------------------------------------------------------------------------------------------
# Valid uploads

JSONL_DATA = (
    b'{"text": "first", "id": 1}\n'
    b"\n"
    b"   \n"
    b'{"text": "second \\u00e9", "meta": {"a": [1, 2]}}\n'
    b'{"text": ""}'
)
PARQUET_DATA = parquet_bytes(pa.table({"id": [1, 2, 3], "text": ["a", "b\u00e9", "c"]}))

VALID_CASES = [
    ("text", "Hello, world.\nSecond line \u00e9\u20ac.\n".encode(), TEXT, 1),
    ("text-bom", b"\xef\xbb\xbfHello\n", TEXT, 1),
    ("jsonl", JSONL_DATA, JSONL, 3),
    ("jsonl-crlf", b'{"text": "a"}\r\n\r\n{"text": "b"}\r\n', JSONL, 2),
    ("jsonl-bom", b'\xef\xbb\xbf{"text": "a"}\n', JSONL, 1),
    ("parquet", PARQUET_DATA, PARQUET, 3),
]
EXPECTED_TEXTS = {
    "text": ["Hello, world.\nSecond line \u00e9\u20ac.\n"],
    "text-bom": ["Hello\n"],
    "jsonl": ["first", "second \u00e9", ""],
    "jsonl-crlf": ["a", "b"],
    "jsonl-bom": ["a"],
    "parquet": ["a", "b\u00e9", "c"],
}


@pytest.mark.parametrize("compression", COMPRESSIONS, ids=["none", "gzip", "zstd"])
@pytest.mark.parametrize(("name", "data", "fmt", "count"), VALID_CASES, ids=lambda v: str(v)[:12])
def test_valid_uploads(name, data, fmt, count, compression):
    raw = compress(data, compression)
    summary = inspect(raw, fmt, compression)
    assert summary == UploadSummary(document_count=count, decompressed_bytes=len(data))
    assert documents(raw, fmt, compression) == EXPECTED_TEXTS[name]


def test_text_multibyte_character_split_across_block_boundary_is_valid():
    for char in ("\u20ac", "\U0001f600"):
        encoded = char.encode()
        for start in range(B - len(encoded) + 1, B):
            data = b"a" * start + encoded + b" tail"
            assert inspect(data, TEXT).document_count == 1
            assert documents(data, TEXT) == ["a" * start + char + " tail"]


def test_text_bom_only_in_first_position_is_stripped():
    data = b"\xef\xbb\xbfa\xef\xbb\xbfb"
    assert documents(data, TEXT) == ["a\ufeffb"]


def test_highly_compressible_small_upload_is_accepted():
    data = b"a" * (10 << 20)  # ratio far above 200:1 but below the 16 MiB floor
    raw = compress(data, GZIP)
    assert len(data) / len(raw) > 200
    assert inspect(raw, TEXT, GZIP).decompressed_bytes == len(data)


def test_multi_member_gzip_and_zero_padding():
    raw = gzip.compress(b'{"text": "a"}\n') + gzip.compress(b'{"text": "b"}\n') + b"\0" * 10
    assert inspect(raw, JSONL, GZIP).document_count == 2
    assert documents(raw, JSONL, GZIP) == ["a", "b"]
    text = gzip.compress(b"one ") + gzip.compress(b"two")
    assert documents(text, TEXT, GZIP) == ["one two"]


def test_multi_frame_and_skippable_zstd():
    cctx = zstandard.ZstdCompressor(write_checksum=True)
    skippable = b"\x50\x2a\x4d\x18" + (5).to_bytes(4, "little") + b"12345"
    raw = cctx.compress(b'{"text": "a"}\n') + skippable + cctx.compress(b'{"text": "b"}\n')
    assert documents(raw, JSONL, ZSTD) == ["a", "b"]
    streamed = io.BytesIO()
    with zstandard.ZstdCompressor().stream_writer(streamed, closefd=False) as writer:
        writer.write(b"x" * (3 * B))  # no content size in the frame header
    assert inspect(streamed.getvalue(), TEXT, ZSTD).decompressed_bytes == 3 * B


def test_large_compressed_text_is_streamed_across_blocks():
    data = "".join(f"line {i} \u00e9\u20ac\n" for i in range(300_000)).encode()
    for compression in COMPRESSIONS:
        summary = inspect(compress(data, compression), TEXT, compression)
        assert summary == UploadSummary(1, len(data))


def test_jsonl_line_split_across_block_boundary():
    first = b'{"text": "' + b"x" * (B - 20) + b'"}\n'
    second = b'{"text": "' + "\u00e9".encode() * 30 + b'"}\n'
    data = first + second + b'{"text": "end"}'
    assert len(first) < B < len(first) + len(second)
    assert inspect(data, JSONL).document_count == 3
    assert documents(data, JSONL) == ["x" * (B - 20), "\u00e9" * 30, "end"]


def test_jsonl_line_spanning_several_blocks():
    big = "y" * (3 * B + 17)
    data = b'{"text": "a"}\n' + json.dumps({"text": big}).encode() + b'\n{"text": "b"}\n'
    assert documents(data, JSONL) == ["a", big, "b"]
    for compression in (GZIP, ZSTD):
        assert inspect(compress(data, compression), JSONL, compression).document_count == 3


def test_jsonl_text_with_unicode_line_separators_is_one_line():
    data = json.dumps({"text": "a\u2028b\u0085c\rd"}, ensure_ascii=False).encode() + b"\n"
    assert documents(data, JSONL) == ["a\u2028b\u0085c\rd"]


def test_parquet_nulls_are_skipped_and_large_string_accepted():
    table = pa.table({"text": pa.array(["a", None, "b", None], type=pa.large_string())})
    data = parquet_bytes(table)
    assert inspect(data, PARQUET).document_count == 2
    assert documents(data, PARQUET) == ["a", "b"]


def test_parquet_many_rows_streams_in_batches():
    texts = [f"doc {i}" if i % 7 else None for i in range(50_000)]
    data = parquet_bytes(pa.table({"text": texts}))
    expected = [t for t in texts if t is not None]
    for compression in COMPRESSIONS:
        raw = compress(data, compression)
        assert inspect(raw, PARQUET, compression).document_count == len(expected)
        assert documents(raw, PARQUET, compression) == expected


def test_parquet_dictionary_encoded_text_is_accepted():
    table = pa.table({"text": pa.array(["a", "b", "a"]).dictionary_encode()})
    assert documents(parquet_bytes(table), PARQUET) == ["a", "b", "a"]


def test_uncompressed_parquet_from_unseekable_stream_is_read_into_memory():
    class Unseekable(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return False

        def readinto(self, buffer) -> int:
            chunk = self._inner.read(len(buffer))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    summary = inspect_upload(Unseekable(PARQUET_DATA), dataset_format=PARQUET, compression=NONE)
    assert summary == UploadSummary(3, len(PARQUET_DATA))
    with pytest.raises(UploadTooLarge, match="at most 100 bytes"):
        inspect_upload(
            Unseekable(PARQUET_DATA),
            dataset_format=PARQUET,
            compression=NONE,
            limits=Limits(max_parquet_bytes=100),
        )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    texts=st.lists(st.text(), min_size=1, max_size=30),
    compression=st.sampled_from(COMPRESSIONS),
    ensure_ascii=st.booleans(),
    newline=st.sampled_from(["\n", "\r\n"]),
    blank_lines=st.booleans(),
)
def test_property_jsonl_round_trip(texts, compression, ensure_ascii, newline, blank_lines):
    lines = [
        json.dumps({"text": t, "n": i}, ensure_ascii=ensure_ascii) for i, t in enumerate(texts)
    ]
    if blank_lines:
        lines = [x for line in lines for x in (line, " \t")]
    raw = compress(newline.join(lines).encode(), compression)
    assert inspect(raw, JSONL, compression).document_count == len(texts)
    assert documents(raw, JSONL, compression) == texts


# ------------------------------------------------------------------------------------------------
# Rejections

LINES = b"".join(b"line %d\n" % i for i in range(1, 11))  # 10 lines, 71 bytes
assert len(LINES) == 71


class Content(bytes):
    """Uncompressed content in a table row: the test compresses it as the row declares."""


REJECTIONS = [
    # (id, data, format, compression, exception, phrases)
    ("empty-text", b"", TEXT, NONE, InvalidUpload, ["the upload is empty"]),
    ("empty-jsonl-gzip", b"", JSONL, GZIP, InvalidUpload, ["the upload is empty"]),
    ("empty-jsonl-zstd", b"", JSONL, ZSTD, InvalidUpload, ["the upload is empty"]),
    ("empty-parquet", b"", PARQUET, NONE, InvalidUpload, ["the upload is empty"]),
    ("empty-parquet-gzip", b"", PARQUET, GZIP, InvalidUpload, ["the upload is empty"]),
    (
        "invalid-utf8-text",
        b"ab\ncd\nx\xffz\n",
        TEXT,
        NONE,
        InvalidUpload,
        ["invalid UTF-8 at line 3, byte offset 7 (byte 0xff)", "requires UTF-8", "iconv"],
    ),
    (
        "latin1-text-gzip",
        Content(LINES + "caf\u00e9\n".encode("latin-1")),
        TEXT,
        GZIP,
        InvalidUpload,
        ["invalid UTF-8 at line 11, byte offset 74 (byte 0xe9)"],
    ),
    (
        "invalid-utf8-text-zstd",
        Content(LINES + b"\xc0\xaf"),
        TEXT,
        ZSTD,
        InvalidUpload,
        ["line 11, byte offset 71 (byte 0xc0)"],
    ),
    (
        "truncated-char-at-end",
        b"ok\n\xe2\x82",
        TEXT,
        NONE,
        InvalidUpload,
        ["line 2, byte offset 3 (byte 0xe2", "incomplete multi-byte character"],
    ),
    (
        "nul-byte",
        b"abc\ndef\x00ghi",
        TEXT,
        NONE,
        InvalidUpload,
        ["NUL byte", "line 2, byte offset 7", "looks like a binary file"],
    ),
    (
        "nul-before-invalid-utf8",
        b"a\x00\xff",
        TEXT,
        NONE,
        InvalidUpload,
        ["NUL byte", "line 1, byte offset 1"],
    ),
    (
        "invalid-utf8-before-nul",
        b"a\n\xff\x00",
        TEXT,
        NONE,
        InvalidUpload,
        ["invalid UTF-8 at line 2, byte offset 2"],
    ),
    ("whitespace-only", b" \n\t\r\n  ", TEXT, NONE, InvalidUpload, ["contains no text"]),
    ("bom-only", b"\xef\xbb\xbf\n", TEXT, NONE, InvalidUpload, ["contains no text"]),
    (
        "gzip-declared-none",
        gzip.compress(b"hello"),
        TEXT,
        NONE,
        InvalidUpload,
        ["byte offset 1 (byte 0x8b)", "declare the compression as gzip"],
    ),
    (
        "parquet-declared-text",
        PARQUET_DATA,
        TEXT,
        NONE,
        InvalidUpload,
        ["declare the format as parquet"],
    ),
    (
        "jsonl-invalid-json",
        b'{"text": "a"}\n{"text": "b",}\n',
        JSONL,
        NONE,
        InvalidUpload,
        ["line 2 is not valid JSON", "Expecting property name", "column"],
    ),
    (
        "jsonl-array-line",
        Content(b'{"text": "a"}\n\n{"text": "b"}\n["text", "c"]\n'),
        JSONL,
        GZIP,
        InvalidUpload,
        ['line 4 is a JSON array, expected an object with a "text" field'],
    ),
    (
        "jsonl-string-line",
        b'"just text"\n',
        JSONL,
        NONE,
        InvalidUpload,
        ['line 1 is a JSON string, expected an object with a "text" field'],
    ),
    (
        "jsonl-missing-text",
        Content(b'{"text": "a"}\r\n{"body": "b", "id": 7}\r\n'),
        JSONL,
        ZSTD,
        InvalidUpload,
        ['line 2 has no "text" field', "body, id"],
    ),
    (
        "jsonl-non-string-text",
        b'{"text": "a"}\n{"text": ["b"]}\n',
        JSONL,
        NONE,
        InvalidUpload,
        ['line 2: the "text" field is a JSON array, expected a string'],
    ),
    (
        "jsonl-null-text",
        b'{"text": null}\n',
        JSONL,
        NONE,
        InvalidUpload,
        ['line 1: the "text" field is JSON null, expected a string'],
    ),
    (
        "jsonl-invalid-utf8",
        b'{"text": "a"}\n{"text": "caf\xe9"}\n',
        JSONL,
        NONE,
        InvalidUpload,
        ["invalid UTF-8 at line 2, byte offset 27 (byte 0xe9)", "jsonl format requires UTF-8"],
    ),
    (
        "jsonl-earlier-json-error-wins",
        b'{"text": "a"}\nnope\n{"text": "\xff"}\n',
        JSONL,
        NONE,
        InvalidUpload,
        ["line 2 is not valid JSON"],
    ),
    (
        "jsonl-json-array-document",
        b'[\n  {"text": "a"}\n]\n',
        JSONL,
        NONE,
        InvalidUpload,
        ["line 1 is not valid JSON", "single JSON array"],
    ),
    (
        "jsonl-deep-nesting",
        b'{"text": "a", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
        JSONL,
        NONE,
        InvalidUpload,
        ["line 1 is not valid JSON", "nested too deeply"],
    ),
    (
        "jsonl-nul",
        b'{"text": "a"}\x00\n',
        JSONL,
        NONE,
        InvalidUpload,
        ["line 1 contains a NUL byte", "binary file"],
    ),
    ("jsonl-blank-only", b"\n \n\r\n", JSONL, NONE, InvalidUpload, ["contains no documents"]),
    (
        "jsonl-empty-after-zstd",
        zstandard.ZstdCompressor().compress(b""),
        JSONL,
        ZSTD,
        InvalidUpload,
        ["contains no documents"],
    ),
    (
        "parquet-no-text-column",
        parquet_bytes(pa.table({"id": [1], "body": ["x"]})),
        PARQUET,
        NONE,
        InvalidUpload,
        ['has no "text" column (columns: id, body)', 'rename the text column to "text"'],
    ),
    (
        "parquet-int-text",
        Content(parquet_bytes(pa.table({"text": [1, 2]}))),
        PARQUET,
        ZSTD,
        InvalidUpload,
        ['"text" column has type int64', "expected a string column"],
    ),
    (
        "parquet-all-null",
        Content(parquet_bytes(pa.table({"text": pa.array([None, None], type=pa.string())}))),
        PARQUET,
        GZIP,
        InvalidUpload,
        ["contains no documents", "2 rows"],
    ),
    (
        "parquet-zero-rows",
        parquet_bytes(pa.table({"text": pa.array([], type=pa.string())})),
        PARQUET,
        NONE,
        InvalidUpload,
        ["contains no documents", "0 rows"],
    ),
    (
        "not-a-parquet",
        b"id,text\n1,hello\n",
        PARQUET,
        NONE,
        InvalidUpload,
        ["not a valid Parquet file", "magic bytes"],
    ),
    (
        "gzipped-parquet-declared-none",
        gzip.compress(PARQUET_DATA),
        PARQUET,
        NONE,
        InvalidUpload,
        ["not a valid Parquet file", "declare the compression as gzip"],
    ),
    (
        "not-a-parquet-gzip",
        Content(b"hello world, no parquet here"),
        PARQUET,
        GZIP,
        InvalidUpload,
        ["not a valid Parquet file"],
    ),
    (
        "corrupt-gzip",
        b"this is plain text, not gzip",
        TEXT,
        GZIP,
        InvalidUpload,
        ["not valid gzip data", "declared as gzip", "declare the compression as none"],
    ),
    (
        "truncated-gzip",
        gzip.compress(LINES * 50)[:-10],
        TEXT,
        GZIP,
        InvalidUpload,
        ["not valid gzip data", "truncated"],
    ),
    (
        "gzip-bad-crc",
        gzip.compress(b"hello world")[:-8] + b"\0\0\0\0" + gzip.compress(b"hello world")[-4:],
        TEXT,
        GZIP,
        InvalidUpload,
        ["not valid gzip data", "incorrect data check"],
    ),
    (
        "gzip-trailing-garbage",
        gzip.compress(b"hello") + b"garbage",
        TEXT,
        GZIP,
        InvalidUpload,
        ["not valid gzip data"],
    ),
    (
        "zstd-declared-gzip",
        zstandard.ZstdCompressor().compress(b"hello"),
        TEXT,
        GZIP,
        InvalidUpload,
        ["not valid gzip data", "declare the compression as zstd"],
    ),
    (
        "corrupt-zstd",
        b"\x28\xb5\x2f\xfd" + b"\xff" * 40,
        TEXT,
        ZSTD,
        InvalidUpload,
        ["not valid zstd data", "declared as zstd"],
    ),
    (
        "gzip-declared-zstd",
        gzip.compress(b"hello"),
        JSONL,
        ZSTD,
        InvalidUpload,
        ["not valid zstd data", "declare the compression as gzip"],
    ),
    (
        "truncated-zstd",
        zstandard.ZstdCompressor().compress(LINES * 50)[:-5],
        TEXT,
        ZSTD,
        InvalidUpload,
        ["not valid zstd data", "truncated"],
    ),
    (
        "truncated-zstd-header",
        zstandard.ZstdCompressor().compress(LINES)[:6],
        TEXT,
        ZSTD,
        InvalidUpload,
        ["not valid zstd data", "truncated"],
    ),
]


@pytest.mark.parametrize(
    ("data", "fmt", "compression", "exc_type", "phrases"),
    [case[1:] for case in REJECTIONS],
    ids=[case[0] for case in REJECTIONS],
)
def test_rejections(data, fmt, compression, exc_type, phrases):
    if isinstance(data, Content):
        data = compress(data, compression)
    assert_rejected(data, fmt, compression, exc_type, phrases)


def test_empty_after_gunzip_text_has_no_text():
    assert_rejected(gzip.compress(b""), TEXT, GZIP, InvalidUpload, ["contains no text"])


@pytest.mark.parametrize(
    ("data", "phrases"),
    [
        # an invalid byte exactly at the block boundary (first byte of the second block)
        (b"ab\n" * 10 + b"a" * (B - 30) + b"\xff", ["line 11, byte offset 1048576 (byte 0xff)"]),
        # an invalid byte as the last byte of the first block
        (b"a" * (B - 1) + b"\xff" + b"tail", ["line 1, byte offset 1048575 (byte 0xff)"]),
        # a lead byte ending the first block, followed by a non-continuation byte
        (b"\n" * (B - 1) + b"\xe2(", [f"line {B}, byte offset 1048575 (byte 0xe2)"]),
        # a three-byte character missing its last byte across the boundary
        (b"a" * (B - 2) + b"\xe2\x82(", ["line 1, byte offset 1048574 (byte 0xe2)"]),
        # a NUL byte exactly at the block boundary
        (b"a\n" + b"a" * (B - 2) + b"\x00", ["NUL byte", "line 2, byte offset 1048576"]),
    ],
    ids=["invalid-at-boundary", "invalid-before-boundary", "lead-split", "partial-split", "nul"],
)
def test_text_errors_at_block_boundary(data, phrases):
    assert_rejected(data, TEXT, NONE, InvalidUpload, phrases)
    if b"\x00" not in data:  # the same offsets are reported in the decompressed stream
        assert_rejected(compress(data, GZIP), TEXT, GZIP, InvalidUpload, phrases)


def test_jsonl_invalid_utf8_in_line_split_across_blocks():
    first = b'{"text": "' + b"x" * (B - 20) + b'"}\n'
    data = first + b'{"text": "\xc3\xa9\xc3(", "id": 2}\n'
    offset = len(first) + 12
    assert_rejected(data, JSONL, NONE, InvalidUpload, [f"line 2, byte offset {offset} (byte 0xc3)"])


def test_jsonl_line_too_long_within_a_block():
    data = b'{"text": "a"}\n' + json.dumps({"text": "b" * 2000}).encode() + b"\n"
    assert_rejected(
        data, JSONL, NONE, UploadTooLarge, ["line 2 is longer than 1000 bytes"], max_line_bytes=1000
    )
    assert inspect(data, JSONL, max_line_bytes=3000).document_count == 2


def test_jsonl_line_too_long_across_blocks_stops_early():
    data = b'{"text": "a"}\n{"text": "' + b"z" * (20 * B)
    raw = CountingIO(data)
    with pytest.raises(UploadTooLarge, match=r"line 2 is longer than 2097152 bytes"):
        inspect_upload(
            raw, dataset_format=JSONL, compression=NONE, limits=Limits(max_line_bytes=2 * B)
        )
    assert raw.bytes_read <= 4 * B


def test_compressed_parquet_over_memory_cap():
    raw = compress(PARQUET_DATA, ZSTD)
    assert_rejected(
        raw,
        PARQUET,
        ZSTD,
        UploadTooLarge,
        ["larger than 100 bytes after decompression", "upload the Parquet file uncompressed"],
        max_parquet_bytes=100,
    )


def test_uncompressed_upload_over_absolute_cap():
    assert_rejected(
        b"x" * 5000,
        TEXT,
        NONE,
        UploadTooLarge,
        ["larger than 4096 bytes"],
        max_decompressed_bytes=4096,
    )
    assert_rejected(
        PARQUET_DATA,
        PARQUET,
        NONE,
        UploadTooLarge,
        ["larger than 100 bytes"],
        max_decompressed_bytes=100,
    )


def test_parquet_invalid_utf8_in_text_column():
    table = pa.table({"text": pa.array([b"ok", b"caf\xe9"], type=pa.binary())})
    data = parquet_bytes(table.cast(pa.schema([("text", pa.string())]), safe=False))
    assert_rejected(data, PARQUET, NONE, InvalidUpload, ['"text" column holds invalid data', "UTF"])


# ------------------------------------------------------------------------------------------------
# Decompression bombs: rejected before everything is decompressed

BOMB_SIZE = 200 << 20


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"a" * (1 << 20)  # not NUL bytes, which the text format rejects right away
    parts = [compressor.compress(zeros) for _ in range(BOMB_SIZE >> 20)]
    parts.append(compressor.flush())
    return b"".join(parts)


@pytest.fixture(scope="module")
def zstd_bomb() -> bytes:
    out = io.BytesIO()
    with zstandard.ZstdCompressor(level=3).stream_writer(out, closefd=False) as writer:
        zeros = b"a" * (1 << 20)
        for _ in range(BOMB_SIZE >> 20):
            writer.write(zeros)
    return out.getvalue()


@pytest.mark.parametrize("compression", [GZIP, ZSTD], ids=["gzip", "zstd"])
def test_bomb_caught_by_ratio(compression, gzip_bomb, zstd_bomb):
    bomb = gzip_bomb if compression == GZIP else zstd_bomb
    assert len(bomb) < BOMB_SIZE // 500
    for call in (inspect_upload, iter_documents):
        raw = CountingIO(bomb, max_read=512)  # short reads: bytes_read tracks progress
        with pytest.raises(UploadTooLarge) as info:
            list_or_summary = call(raw, dataset_format=TEXT, compression=compression)
            list(list_or_summary) if call is iter_documents else None
        message = info.value.message
        assert "ratio > 200:1" in message
        assert "refusing a possible decompression bomb" in message
        assert f"of its {raw.bytes_read} compressed bytes" in message
        # stopped shortly after the 16 MiB floor, long before the 200 MB
        expanded = int(message.split("expands to more than ")[1].split(" bytes")[0])
        assert 16 << 20 < expanded <= (16 << 20) + 2 * B
        assert raw.bytes_read < len(bomb) // 2


@pytest.mark.parametrize("compression", [GZIP, ZSTD], ids=["gzip", "zstd"])
def test_bomb_caught_by_absolute_cap(compression, gzip_bomb, zstd_bomb):
    bomb = gzip_bomb if compression == GZIP else zstd_bomb
    raw = CountingIO(bomb, max_read=512)
    limits = Limits(max_decompressed_bytes=8 << 20, max_compression_ratio=10**9)
    with pytest.raises(UploadTooLarge) as info:
        inspect_upload(raw, dataset_format=JSONL, compression=compression, limits=limits)
    message = info.value.message
    assert f"expands to more than {8 << 20} bytes" in message
    assert f"of its {raw.bytes_read} compressed bytes" in message
    assert "refusing a possible decompression bomb" in message
    assert raw.bytes_read < len(bomb) // 2


def test_bomb_detected_for_parquet_too(gzip_bomb):
    assert_rejected(gzip_bomb, PARQUET, GZIP, UploadTooLarge, ["ratio > 200:1"])


# ------------------------------------------------------------------------------------------------
# Enums and names


@pytest.mark.parametrize(
    ("fmt", "compression", "phrases"),
    [
        (0, NONE, ["dataset format was not specified", "DATASET_FORMAT_TEXT (1)", "PARQUET (3)"]),
        (9, NONE, ["dataset format 9 is unknown", "DATASET_FORMAT_JSONL (2)"]),
        (TEXT, 0, ["compression was not specified", "COMPRESSION_NONE (1)", "ZSTD (3)"]),
        (JSONL, 7, ["compression 7 is unknown", "COMPRESSION_GZIP (2)"]),
    ],
)
def test_unspecified_or_unknown_enums(fmt, compression, phrases):
    with pytest.raises(InvalidUpload) as info:
        inspect_upload(io.BytesIO(b"hello"), dataset_format=fmt, compression=compression)
    for phrase in phrases:
        assert phrase in info.value.message
    with pytest.raises(InvalidUpload):  # raised by the call itself, before iterating
        iter_documents(io.BytesIO(b"hello"), dataset_format=fmt, compression=compression)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("text", TEXT), ("TXT", TEXT), (" Jsonl ", JSONL), ("ndjson", JSONL), ("Parquet", PARQUET)],
)
def test_format_from_name(name, expected):
    assert format_from_name(name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [("none", NONE), ("", NONE), ("GZIP", GZIP), ("gz", GZIP), ("Zstd", ZSTD), ("zst", ZSTD)],
)
def test_compression_from_name(name, expected):
    assert compression_from_name(name) == expected


@pytest.mark.parametrize("name", ["csv", "json", "jsonlines", "text/plain"])
def test_format_from_name_rejects(name):
    with pytest.raises(InvalidUpload) as info:
        format_from_name(name)
    assert repr(name) in info.value.message
    for accepted in ("text", "txt", "jsonl", "ndjson", "parquet"):
        assert accepted in info.value.message


@pytest.mark.parametrize("name", ["bz2", "xz", "zip", "gzip2"])
def test_compression_from_name_rejects(name):
    with pytest.raises(InvalidUpload) as info:
        compression_from_name(name)
    assert repr(name) in info.value.message
    for accepted in ("none", "gzip", "gz", "zstd", "zst"):
        assert accepted in info.value.message


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("a.txt", (TEXT, NONE)),
        ("a.md", (TEXT, NONE)),
        ("notes.TEXT", (TEXT, NONE)),
        ("a.jsonl.gz", (JSONL, GZIP)),
        ("a.jsonl.zst", (JSONL, ZSTD)),
        ("dir/sub.dir/b.ndjson", (JSONL, NONE)),
        ("C:\\data\\a.txt.GZ", (TEXT, GZIP)),
        ("a.parquet", (PARQUET, NONE)),
        ("a.parquet.zst", (PARQUET, ZSTD)),
        ("my.book.v2.md.zst", (TEXT, ZSTD)),
    ],
)
def test_guess_from_filename(filename, expected):
    assert guess_from_filename(filename) == expected


@pytest.mark.parametrize(
    "filename", ["a.csv", "a.json", "a", "a.gz", ".txt", "a.txt.bz2", "a.zst.txt.tar", "txt"]
)
def test_guess_from_filename_rejects(filename):
    with pytest.raises(InvalidUpload) as info:
        guess_from_filename(filename)
    message = info.value.message
    assert repr(filename) in message
    for ext in (".txt", ".md", ".text", ".jsonl", ".ndjson", ".parquet", ".gz", ".zst"):
        assert ext in message


# ------------------------------------------------------------------------------------------------
# Parquet bombs: the file's own compression (page codecs, dictionaries) measured on the
# decoded text, not on the file


def _parquet_of(texts, **options) -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.table({"text": texts}), out, **options)
    return out.getvalue()


def _repeated(value: str, rows: int) -> pa.DictionaryArray:
    """`value` in every row, built as a dictionary so the test never holds the expansion."""
    return pa.DictionaryArray.from_arrays(pa.array([0] * rows, pa.int32()), pa.array([value]))


def test_parquet_dictionary_bomb_is_refused_without_expanding_it():
    """One 1 MB value, dictionary-encoded, repeated in 2,000 rows: a file of tens of
    kilobytes whose text decodes to 2 GB. The file's metadata knows only the 1 MB dictionary,
    so the refusal comes from measuring the decoded rows (through their dictionary
    indices: nothing of the 2 GB is ever built)."""
    bomb = _parquet_of(_repeated("a" * (1 << 20), 2000), compression="zstd")
    assert len(bomb) < 64 << 10
    message = assert_rejected(
        bomb,
        PARQUET,
        NONE,
        UploadTooLarge,
        ["the Parquet file's text column decodes to more than", "ratio > 200:1"],
    )
    assert "refusing a possible decompression bomb" in message
    assert f"of its {len(bomb)} bytes" in message


def test_parquet_compressed_page_bomb_is_refused_from_its_metadata():
    """Plain-encoded pages that zstd shrinks 1000-fold: refused from the metadata's page
    sizes, before a page is decompressed."""
    bomb = _parquet_of(["b" * (1 << 20)] * 40, compression="zstd", use_dictionary=False)
    assert len(bomb) * 200 < 40 << 20
    message = assert_rejected(bomb, PARQUET, NONE, UploadTooLarge, ["ratio > 200:1"])
    assert "metadata says its text column decodes to" in message


def test_parquet_bomb_in_a_gzip_upload_is_measured_against_the_upload():
    bomb = compress(_parquet_of(_repeated("c" * (1 << 20), 300), compression="zstd"), GZIP)
    assert_rejected(bomb, PARQUET, GZIP, UploadTooLarge, ["text column decodes to"])


def test_parquet_bomb_over_the_absolute_cap_even_with_no_ratio_limit():
    bomb = _parquet_of(_repeated("d" * (1 << 16), 400), compression="zstd")
    assert_rejected(
        bomb,
        PARQUET,
        NONE,
        UploadTooLarge,
        [f"more than {8 << 20} bytes, the maximum accepted"],
        max_decompressed_bytes=8 << 20,
        max_compression_ratio=10**9,
    )


def test_parquet_repetitive_but_honest_data_under_the_floor_is_accepted():
    """Highly compressible text is not a bomb until it passes the 16 MiB floor."""
    data = _parquet_of(["the same line of text"] * 100_000, compression="zstd")
    assert inspect(data, PARQUET).document_count == 100_000
    assert documents(data, PARQUET)[:2] == ["the same line of text"] * 2


def test_parquet_with_distinct_documents_far_past_the_floor_is_accepted():
    """Ordinary text compresses a few times, nowhere near 200:1, however large."""
    rng = random.Random(7)
    texts = [rng.randbytes(1000).hex() for _ in range(10_000)]
    data = _parquet_of(texts, compression="zstd")
    summary = inspect(data, PARQUET, ratio_check_floor_bytes=1 << 20)
    assert summary.document_count == 10_000

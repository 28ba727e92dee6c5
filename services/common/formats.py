"""Validation core for contributed datasets: decompress, check the format, count documents.

The ingest service calls :func:`inspect_upload` on the raw bytes of an upload before accepting it;
the preprocess service calls :func:`iter_documents` to read the documents. Both take a binary
file-like object, stream it in blocks of about 1 MiB (bounded memory, no per-byte Python loops) and
raise :class:`UploadRejected` subclasses whose message tells a person what is wrong, where (line
number and byte offset in the decompressed stream) and what is expected.

This module is pure: no network, no database, no clock.
"""

from __future__ import annotations

import codecs
import io
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import zstandard

from tt.facts.v1 import contribution_pb2

__all__ = [
    "InvalidUpload",
    "Limits",
    "UploadRejected",
    "UploadSummary",
    "UploadTooLarge",
    "compression_from_name",
    "format_from_name",
    "guess_from_filename",
    "inspect_upload",
    "iter_documents",
]

TEXT = contribution_pb2.DATASET_FORMAT_TEXT
JSONL = contribution_pb2.DATASET_FORMAT_JSONL
PARQUET = contribution_pb2.DATASET_FORMAT_PARQUET
NONE = contribution_pb2.COMPRESSION_NONE
GZIP = contribution_pb2.COMPRESSION_GZIP
ZSTD = contribution_pb2.COMPRESSION_ZSTD

#: Size of the decompressed blocks the validators work on.
BLOCK_SIZE = 1 << 20
#: Size of the reads from the compressed input (small, so the ratio check is accurate).
_RAW_READ = 64 << 10
#: Rows per Arrow batch when reading a Parquet "text" column.
_PARQUET_BATCH_ROWS = 8192

_FORMAT_NAMES = {TEXT: "text", JSONL: "jsonl", PARQUET: "parquet"}
_COMPRESSION_NAMES = {NONE: "none", GZIP: "gzip", ZSTD: "zstd"}
_FORMAT_ALIASES = {"text": TEXT, "txt": TEXT, "jsonl": JSONL, "ndjson": JSONL, "parquet": PARQUET}
_COMPRESSION_ALIASES = {"none": NONE, "": NONE, "gzip": GZIP, "gz": GZIP, "zstd": ZSTD, "zst": ZSTD}
_FORMAT_EXTENSIONS = {
    ".txt": TEXT,
    ".md": TEXT,
    ".text": TEXT,
    ".jsonl": JSONL,
    ".ndjson": JSONL,
    ".parquet": PARQUET,
}
_COMPRESSION_EXTENSIONS = {".gz": GZIP, ".zst": ZSTD}

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_UTF8_BOM = "\ufeff"


@dataclass(frozen=True)
class Limits:
    """Resource limits applied while validating an upload (all sizes in bytes)."""

    max_decompressed_bytes: int = 8 << 30
    max_compression_ratio: int = 200
    ratio_check_floor_bytes: int = 16 << 20
    max_parquet_bytes: int = 2 << 30
    max_line_bytes: int = 64 << 20


class UploadRejected(Exception):
    """Base class of rejections. ``.message`` is the person-readable text (also ``str(exc)``)."""

    def __init__(self, message: str) -> None:
        """Store *message* as both ``.message`` and the exception argument."""
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        """Return the person-readable message."""
        return self.message


class InvalidUpload(UploadRejected):
    """The upload is malformed or does not match its declared format (gRPC INVALID_ARGUMENT)."""


class UploadTooLarge(UploadRejected):
    """The upload exceeds a size limit or looks like a decompression bomb (RESOURCE_EXHAUSTED)."""


@dataclass(frozen=True)
class UploadSummary:
    """Result of a successful :func:`inspect_upload`."""

    document_count: int
    decompressed_bytes: int


# --------------------------------------------------------------------------------------------
# Names and enums


def format_from_name(name: str) -> int:
    """Parse a user-facing dataset format name ("text", "txt", "jsonl", "ndjson", "parquet").

    Case-insensitive; surrounding whitespace is ignored. Raises :class:`InvalidUpload` listing
    the accepted names for anything else.
    """
    key = name.strip().lower()
    if key in _FORMAT_ALIASES:
        return _FORMAT_ALIASES[key]
    raise InvalidUpload(
        f"unknown dataset format {name!r}: accepted names are text (or txt), "
        "jsonl (or ndjson) and parquet"
    )


def compression_from_name(name: str) -> int:
    """Parse a user-facing compression name ("none" or "", "gzip"/"gz", "zstd"/"zst").

    Case-insensitive; surrounding whitespace is ignored. Raises :class:`InvalidUpload` listing
    the accepted names for anything else.
    """
    key = name.strip().lower()
    if key in _COMPRESSION_ALIASES:
        return _COMPRESSION_ALIASES[key]
    raise InvalidUpload(
        f"unknown compression {name!r}: accepted names are none (or empty), gzip (or gz) "
        "and zstd (or zst)"
    )


def guess_from_filename(filename: str) -> tuple[int, int]:
    """Guess ``(dataset_format, compression)`` from a file name's extensions.

    ``a.txt`` -> (TEXT, NONE), ``a.jsonl.gz`` -> (JSONL, GZIP), ``a.parquet`` -> (PARQUET, NONE).
    Accepted: .txt .md .text .jsonl .ndjson .parquet, optionally followed by .gz or .zst
    (case-insensitive). Raises :class:`InvalidUpload` naming the file otherwise.
    """
    base = filename.replace("\\", "/").rsplit("/", 1)[-1].lower()
    stem, dot, ext = base.rpartition(".")
    compression = NONE
    if dot and stem and "." + ext in _COMPRESSION_EXTENSIONS:
        compression = _COMPRESSION_EXTENSIONS["." + ext]
        stem, dot, ext = stem.rpartition(".")
    if dot and stem and "." + ext in _FORMAT_EXTENSIONS:
        return _FORMAT_EXTENSIONS["." + ext], compression
    hint = ""
    if dot and ext == "json":
        hint = " (a .json file is one JSON document: convert it to JSON Lines, one object per line)"
    raise InvalidUpload(
        f"cannot tell the dataset format of {filename!r} from its name{hint}: accepted extensions "
        "are .txt, .md, .text, .jsonl, .ndjson and .parquet, optionally followed by .gz or .zst; "
        "rename the file or declare the format and compression explicitly"
    )


def _check_enums(dataset_format: int, compression: int) -> None:
    if dataset_format not in _FORMAT_NAMES:
        what = "was not specified" if dataset_format == 0 else f"{dataset_format} is unknown"
        raise InvalidUpload(
            f"the dataset format {what}: expected one of DATASET_FORMAT_TEXT ({TEXT}), "
            f"DATASET_FORMAT_JSONL ({JSONL}) or DATASET_FORMAT_PARQUET ({PARQUET})"
        )
    if compression not in _COMPRESSION_NAMES:
        what = "was not specified" if compression == 0 else f"{compression} is unknown"
        raise InvalidUpload(
            f"the compression {what}: expected one of COMPRESSION_NONE ({NONE}), "
            f"COMPRESSION_GZIP ({GZIP}) or COMPRESSION_ZSTD ({ZSTD})"
        )


# --------------------------------------------------------------------------------------------
# Public entry points


def inspect_upload(
    raw: BinaryIO,
    *,
    dataset_format: int,
    compression: int,
    limits: Limits = Limits(),
) -> UploadSummary:
    """Validate a whole upload and count its documents.

    *raw* is read from its current position to the end (an uncompressed Parquet upload must be
    a seekable file positioned at its start, else it is read into memory within
    ``limits.max_parquet_bytes``). Raises :class:`InvalidUpload` or :class:`UploadTooLarge`.
    """
    _check_enums(dataset_format, compression)
    scan = _Scan(raw, dataset_format, compression, limits, want_text=False)
    count = 0
    for batch in scan.run():
        count += batch if isinstance(batch, int) else len(batch)
    return UploadSummary(document_count=count, decompressed_bytes=scan.decompressed_bytes)


def iter_documents(
    raw: BinaryIO,
    *,
    dataset_format: int,
    compression: int,
    limits: Limits = Limits(),
) -> Iterator[str]:
    """Yield the text of each document of an upload, validating it as :func:`inspect_upload` does.

    The format and compression enums are checked immediately; the content is checked as it is
    read, so a consumer may receive the documents before a faulty line before the error is
    raised. A text upload is one document (its UTF-8 BOM removed), yielded once fully validated.
    """
    _check_enums(dataset_format, compression)
    scan = _Scan(raw, dataset_format, compression, limits, want_text=True)

    def generate() -> Iterator[str]:
        for batch in scan.run():
            assert not isinstance(batch, int)
            yield from batch

    return generate()


# --------------------------------------------------------------------------------------------
# Helpers for messages


def iter_records(
    raw: BinaryIO,
    *,
    dataset_format: int,
    compression: int,
    limits: Limits = Limits(),
) -> Iterator[tuple[str, str | None]]:
    """Like :func:`iter_documents`, with each document's own id: the ``id`` field of its
    JSONL line or the ``id`` column of its Parquet row (a string or an integer), else None.
    A text upload, one document, comes in parts of about TEXT_PART_CHARS characters cut at
    paragraph breaks: preprocessing treats each part as a document, and memory stays
    bounded however large the upload."""
    _check_enums(dataset_format, compression)
    scan = _Scan(raw, dataset_format, compression, limits, want_text=True, want_ids=True)

    def generate() -> Iterator[tuple[str, str | None]]:
        for batch in scan.run():
            yield from batch  # type: ignore[misc]

    return generate()


# iter_records yields a text upload in parts of about this many characters.
TEXT_PART_CHARS = 1 << 20


def _cut_part(text: str) -> tuple[str, str]:
    """Split off a part of a long text at the last paragraph break, else line break, else
    word break before the limit, so that no sentence is cut where avoidable."""
    window = text[:TEXT_PART_CHARS]
    for separator in ("\n\n", "\n", " "):
        cut = window.rfind(separator)
        if cut > TEXT_PART_CHARS // 2:
            return text[: cut + len(separator)], text[cut + len(separator) :]
    return window, text[TEXT_PART_CHARS:]


def _record_id(value: object) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int)):
        return str(value)
    return None


def _sniff_hint(prefix: bytes) -> str:
    """A hint about what the (decompressed) stream starting with *prefix* really is, or ""."""
    if prefix.startswith(_GZIP_MAGIC):
        return " (the data looks gzip-compressed: declare the compression as gzip)"
    if prefix.startswith(_ZSTD_MAGIC):
        return " (the data looks zstd-compressed: declare the compression as zstd)"
    if prefix.startswith(b"PAR1"):
        return " (the data looks like a Parquet file: declare the format as parquet)"
    if prefix.startswith(b"%PDF"):
        return " (the data looks like a PDF document: extract its text first)"
    if prefix.startswith(b"PK\x03\x04"):
        return " (the data looks like a ZIP archive, e.g. .docx or .epub: extract its text first)"
    if prefix[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return " (the data looks like UTF-16: re-encode it as UTF-8, e.g. iconv -f utf-16 -t utf-8)"
    return ""


def _names_list(names: list[str], limit: int = 20) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names) - limit} more)"


def _json_kind(value: object) -> str:
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, str):
        return "a JSON string"
    if isinstance(value, bool):
        return "a JSON boolean"
    if isinstance(value, int | float):
        return "a JSON number"
    return "JSON null"


# --------------------------------------------------------------------------------------------
# Decompression


class _ZstdFrames:
    """Follows the zstd frame structure of the compressed bytes to detect truncated streams.

    ``zstandard``'s stream reader silently stops at the end of a truncated frame, so this walks
    frame and block headers (a few Python operations per block of up to 128 KiB) alongside.
    """

    def __init__(self) -> None:
        self._state = "magic"
        self._want = 4
        self._header = bytearray()
        self._skip = 0
        self._checksum = False
        self.error = ""

    @property
    def complete(self) -> bool:
        """True when the bytes fed so far end exactly at a frame boundary."""
        return not self.error and self._state == "magic" and not self._header and not self._skip

    def feed(self, data: bytes) -> None:
        """Account for the next compressed bytes."""
        i, n = 0, len(data)
        while i < n and not self.error:
            if self._skip:
                k = min(self._skip, n - i)
                self._skip -= k
                i += k
                continue
            take = min(self._want - len(self._header), n - i)
            self._header += data[i : i + take]
            i += take
            if len(self._header) == self._want:
                header = bytes(self._header)
                self._header.clear()
                self._advance(header)

    def _advance(self, header: bytes) -> None:
        if self._state == "magic":
            magic = int.from_bytes(header, "little")
            if header == _ZSTD_MAGIC:
                self._state, self._want = "descriptor", 1
            elif magic & 0xFFFFFFF0 == 0x184D2A50:
                self._state, self._want = "skippable", 4
            else:
                self.error = f"unknown frame magic number 0x{magic:08x}"
        elif self._state == "skippable":
            self._skip = int.from_bytes(header, "little")
            self._state, self._want = "magic", 4
        elif self._state == "descriptor":
            descriptor = header[0]
            if descriptor & 0x08:
                self.error = "reserved bit set in a frame header"
                return
            single_segment = bool(descriptor & 0x20)
            self._checksum = bool(descriptor & 0x04)
            fcs_size = (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
            self._skip = (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 3] + fcs_size
            self._state, self._want = "block", 3
        else:  # block header
            value = int.from_bytes(header, "little")
            block_type = (value >> 1) & 3
            if block_type == 3:
                self.error = "reserved block type"
                return
            self._skip = 1 if block_type == 1 else value >> 3
            if value & 1:  # last block of the frame
                self._skip += 4 if self._checksum else 0
                self._state, self._want = "magic", 4


class _Stream:
    """Iterates over the decompressed blocks of *raw*, enforcing the limits as it goes."""

    def __init__(self, raw: BinaryIO, compression: int, limits: Limits) -> None:
        self._raw = raw
        self._compression = compression
        self._limits = limits
        self.compressed_bytes = 0
        self.decompressed_bytes = 0
        self.prefix = b""  # first bytes of the decompressed stream, for hints
        self._raw_head = b""  # first bytes of the raw (compressed) stream, for hints
        self._frames: _ZstdFrames | None = None

    def __iter__(self) -> Iterator[bytes]:
        """Yield non-empty decompressed blocks of at most about BLOCK_SIZE bytes."""
        if self._compression == GZIP:
            blocks = self._gunzip()
        elif self._compression == ZSTD:
            blocks = self._unzstd()
        else:
            blocks = self._plain()
        for block in blocks:
            if not self.prefix:
                self.prefix = block[:8]
            self._account(len(block))
            yield block
        if self.compressed_bytes == 0:
            raise InvalidUpload("the upload is empty (0 bytes)")

    def read(self, size: int = -1) -> bytes:
        """Read compressed bytes from the upload, counting them (used by the zstd reader)."""
        data = self._raw.read(size) or b""
        if not self._raw_head:
            self._raw_head = data[:16]
        self.compressed_bytes += len(data)
        if self._frames is not None:
            self._frames.feed(data)
        return data

    def _account(self, n: int) -> None:
        self.decompressed_bytes += n
        limits = self._limits
        total, consumed = self.decompressed_bytes, self.compressed_bytes
        if self._compression == NONE:
            if total > limits.max_decompressed_bytes:
                raise UploadTooLarge(
                    f"the upload is larger than {limits.max_decompressed_bytes} bytes, the "
                    "maximum accepted: split the dataset into several uploads"
                )
            return
        name = _COMPRESSION_NAMES[self._compression]
        if total > limits.max_decompressed_bytes:
            raise UploadTooLarge(
                f"the {name} upload expands to more than {limits.max_decompressed_bytes} bytes "
                f"(ratio > {total // max(consumed, 1)}:1 of its {consumed} compressed bytes): "
                "refusing a possible decompression bomb; at most "
                f"{limits.max_decompressed_bytes} decompressed bytes are accepted, split the "
                "dataset into several uploads"
            )
        if (
            total > limits.ratio_check_floor_bytes
            and total > limits.max_compression_ratio * consumed
        ):
            raise UploadTooLarge(
                f"the {name} upload expands to more than {total} bytes "
                f"(ratio > {limits.max_compression_ratio}:1 of its {consumed} compressed bytes): "
                "refusing a possible decompression bomb"
            )

    def _corrupt(self, name: str, detail: str) -> InvalidUpload:
        first = self._raw_head
        hint = ""
        if name == "gzip" and first.startswith(_ZSTD_MAGIC):
            hint = " (the data looks zstd-compressed: declare the compression as zstd)"
        elif name == "zstd" and first.startswith(_GZIP_MAGIC):
            hint = " (the data looks gzip-compressed: declare the compression as gzip)"
        elif not first.startswith(_GZIP_MAGIC) and not first.startswith(_ZSTD_MAGIC):
            try:
                first.decode("utf-8")
            except UnicodeDecodeError:
                pass
            else:
                hint = " (the data looks uncompressed: declare the compression as none)"
        return InvalidUpload(
            f"the upload is not valid {name} data: {detail}; it was declared as {name}, so "
            f"check that the file really is {name}-compressed and complete{hint}"
        )

    def _plain(self) -> Iterator[bytes]:
        while data := self.read(BLOCK_SIZE):
            yield data

    def _gunzip(self) -> Iterator[bytes]:
        decompressor = zlib.decompressobj(31)
        in_member = False
        members = 0
        while data := self.read(_RAW_READ):
            buf = data
            while True:
                if not in_member:
                    if members:  # like the gzip module: zero padding between/after members
                        buf = buf.lstrip(b"\0")
                    if not buf:
                        break
                    decompressor = zlib.decompressobj(31)
                    in_member = True
                try:
                    out = decompressor.decompress(buf, BLOCK_SIZE)
                except zlib.error as exc:
                    raise self._corrupt("gzip", str(exc)) from None
                if out:
                    yield out
                if decompressor.eof:
                    in_member = False
                    members += 1
                    buf = decompressor.unused_data
                    continue
                buf = decompressor.unconsumed_tail
                if not buf and len(out) < BLOCK_SIZE:
                    break
        if in_member:
            raise self._corrupt(
                "gzip",
                f"the data ends after {self.compressed_bytes} bytes, in the middle of the "
                "compressed stream (truncated upload)",
            )

    def _unzstd(self) -> Iterator[bytes]:
        frames = self._frames = _ZstdFrames()
        reader = zstandard.ZstdDecompressor().stream_reader(
            self, read_size=_RAW_READ, read_across_frames=True, closefd=False
        )
        while True:
            try:
                out = reader.read(BLOCK_SIZE)
            except zstandard.ZstdError as exc:
                raise self._corrupt("zstd", str(exc)) from None
            if not out:
                break
            yield out
        if frames.error:
            raise self._corrupt("zstd", frames.error)
        if self.compressed_bytes and not frames.complete:
            raise self._corrupt(
                "zstd",
                f"the data ends after {self.compressed_bytes} bytes, in the middle of a frame "
                "(truncated upload)",
            )


# --------------------------------------------------------------------------------------------
# Format scanners


def _declared_text_bytes(parquet: pq.ParquetFile) -> int:
    """The text column's size after page decompression, as the file's metadata states it
    (dictionaries and run lengths not expanded): a lower bound of the decoded text that
    refuses a compression bomb before a single page is read."""
    metadata = parquet.metadata
    leaves = [i for i in range(metadata.num_columns) if metadata.schema.column(i).path == "text"]
    return sum(
        metadata.row_group(group).column(leaf).total_uncompressed_size
        for group in range(metadata.num_row_groups)
        for leaf in leaves
    )


def _text_bytes(column: pa.Array) -> int:
    """The UTF-8 bytes of a string column's values, as a reader of the documents gets
    them: a dictionary column is measured through its indices, without expanding it."""
    if pa.types.is_dictionary(column.type):
        lengths = pc.take(pc.binary_length(column.dictionary), column.indices)
    else:
        lengths = pc.binary_length(column)
    return pc.sum(lengths).as_py() or 0


class _Scan:
    """One pass over an upload. ``run()`` yields document batches: counts or lists of texts."""

    def __init__(
        self,
        raw: BinaryIO,
        dataset_format: int,
        compression: int,
        limits: Limits,
        want_text: bool,
        want_ids: bool = False,
    ) -> None:
        self._raw = raw
        self._format = dataset_format
        self._compression = compression
        self._limits = limits
        self._want_text = want_text
        self._want_ids = want_ids  # yield (text, id) pairs instead of texts
        self._stream = _Stream(raw, compression, limits)
        self._parquet_size: int | None = None
        self._offset = 0  # JSONL: decompressed offset of the first byte not yet processed
        self._line = 1  # JSONL: line number of that byte
        self._documents = 0

    @property
    def decompressed_bytes(self) -> int:
        """Bytes after decompression seen so far (the raw size when uncompressed)."""
        if self._parquet_size is not None:
            return self._parquet_size
        return self._stream.decompressed_bytes

    def run(self) -> Iterator[int | list[str]]:
        """Validate the upload, yielding document batches as they are found."""
        if self._format == TEXT:
            return self._text()
        if self._format == JSONL:
            return self._jsonl()
        return self._parquet()

    # -- UTF-8 helpers ------------------------------------------------------------------------

    def _utf8_error(
        self, offset: int, line: int, byte: int | None, incomplete: bool
    ) -> InvalidUpload:
        name = _FORMAT_NAMES[self._format]
        what = f"byte 0x{byte:02x}" if byte is not None else "end of data"
        if incomplete:
            what += ", an incomplete multi-byte character at the end of the upload"
        return InvalidUpload(
            f"invalid UTF-8 at line {line}, byte offset {offset} ({what}): the {name} format "
            "requires UTF-8; re-encode the file (e.g. iconv -f latin1 -t utf-8)"
            f"{_sniff_hint(self._stream.prefix)}"
        )

    def _binary_error(self, offset: int, line: int) -> InvalidUpload:
        return InvalidUpload(
            f"NUL byte (0x00) at line {line}, byte offset {offset}: the upload looks like a "
            "binary file, but the text format requires UTF-8 text"
            f"{_sniff_hint(self._stream.prefix)}"
        )

    # -- TEXT -----------------------------------------------------------------------------------

    def _text(self) -> Iterator[int | list[str]]:
        decoder = codecs.getincrementaldecoder("utf-8")("strict")
        offset = 0  # decompressed offset of the current block
        newlines = 0  # newlines before the current block
        has_text = False
        at_start = True
        pieces: list[str] = []
        for block in self._stream:
            pending = decoder.getstate()[0]
            nul = block.find(b"\0")
            if not self._want_text and not pending and nul < 0 and block.isascii():
                # Pure ASCII is valid UTF-8: when only validating, skip building a str that
                # nobody reads (isascii is a fast C scan; decoding costs far more).
                at_start = at_start and not block
                has_text = has_text or bool(block.strip())
                newlines += block.count(b"\n")
                offset += len(block)
                continue
            try:
                piece = decoder.decode(block)
            except UnicodeDecodeError as exc:
                pos = offset - len(pending) + exc.start
                if nul >= 0 and offset + nul < pos:
                    raise self._binary_error(
                        offset + nul, newlines + block.count(b"\n", 0, nul) + 1
                    ) from None
                rel = pos - offset
                byte = pending[exc.start] if rel < 0 else block[rel]
                line = newlines + block.count(b"\n", 0, max(rel, 0)) + 1
                raise self._utf8_error(pos, line, byte, incomplete=False) from None
            if nul >= 0:
                raise self._binary_error(offset + nul, newlines + block.count(b"\n", 0, nul) + 1)
            if at_start and piece:
                at_start = False
                if piece[0] == _UTF8_BOM:
                    piece = piece[1:]
            if not has_text and piece and not piece.isspace():
                has_text = True
            if self._want_text and piece:
                pieces.append(piece)
                if self._want_ids and sum(map(len, pieces)) >= TEXT_PART_CHARS:
                    # Records of a long text come in parts, so memory stays bounded.
                    part, rest = _cut_part("".join(pieces))
                    pieces = [rest]
                    yield [(part, None)]
            newlines += block.count(b"\n")
            offset += len(block)
        pending = decoder.getstate()[0]
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            pos = offset - len(pending) + exc.start
            raise self._utf8_error(pos, newlines + 1, pending[exc.start], incomplete=True) from None
        if not has_text:
            raise InvalidUpload(
                "the upload contains no text (it is empty or only whitespace after "
                f"decompression: {offset} bytes); a text upload must contain the document's text"
            )
        if self._want_ids:
            if "".join(pieces).strip():
                yield [("".join(pieces), None)]
        else:
            yield ["".join(pieces)] if self._want_text else 1

    # -- JSONL ----------------------------------------------------------------------------------

    def _jsonl(self) -> Iterator[int | list[str]]:
        max_line = self._limits.max_line_bytes
        carry: list[bytes] = []  # the start of an unfinished line
        carry_len = 0
        for block in self._stream:
            last_nl = block.rfind(b"\n")
            if last_nl < 0:
                carry.append(block)
                carry_len += len(block)
                if carry_len > max_line:
                    raise self._line_too_long(self._line)
                continue
            head = block[: last_nl + 1]
            if carry:
                carry.append(head)
                head = b"".join(carry)
            rest = block[last_nl + 1 :]
            carry = [rest] if rest else []
            carry_len = len(rest)
            batch = self._jsonl_chunk(head)
            if batch:
                yield batch
            if carry_len > max_line:
                raise self._line_too_long(self._line)
        if carry:
            batch = self._jsonl_chunk(b"".join(carry))
            if batch:
                yield batch
        if not self._documents:
            raise InvalidUpload(
                f"the upload contains no documents ({self._line - 1} lines, all empty or "
                'whitespace): a JSONL upload needs one JSON object with a "text" field per line'
            )

    def _line_too_long(self, line: int) -> UploadTooLarge:
        limit = self._limits.max_line_bytes
        return UploadTooLarge(
            f"line {line} is longer than {limit} bytes, the maximum line length: JSONL needs "
            "one JSON object per line; split very long documents into several lines"
        )

    def _jsonl_chunk(self, chunk: bytes) -> int | list[str]:
        """Process complete lines (*chunk* ends with a newline, except at the end of the data)."""
        max_line = self._limits.max_line_bytes
        if len(chunk) > max_line:  # only then can one of its lines be too long
            start, line = 0, self._line
            while start < len(chunk):
                end = chunk.find(b"\n", start)
                end = len(chunk) if end < 0 else end
                if end - start > max_line:
                    raise self._line_too_long(line)
                start, line = end + 1, line + 1
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            # Report problems on earlier lines first: process the lines before the bad one.
            cut = chunk.rfind(b"\n", 0, exc.start) + 1
            self._jsonl_lines(chunk[:cut].decode("utf-8"))
            line = self._line  # now the line holding the bad byte
            incomplete = exc.reason == "unexpected end of data"
            raise self._utf8_error(
                self._offset + exc.start, line, chunk[exc.start], incomplete
            ) from None
        batch = self._jsonl_lines(text)
        self._offset += len(chunk)
        return batch

    def _jsonl_lines(self, text: str) -> int | list[str]:
        lines = text.split("\n")
        if self._line == 1 and lines[0].startswith(_UTF8_BOM):
            lines[0] = lines[0][1:]
        first = self._line
        self._line += len(lines) - 1
        if text and not text.endswith("\n"):  # the last line of the upload, without its newline
            self._line += 1
        texts: list[str] = []
        count = 0
        loads = json.loads
        for i, line in enumerate(lines):
            if not line or line.isspace():
                continue
            try:
                obj = loads(line)
            except ValueError as exc:
                raise self._json_error(first + i, line, exc) from None
            except RecursionError:
                raise InvalidUpload(
                    f"line {first + i} is not valid JSON: it is nested too deeply"
                ) from None
            if type(obj) is not dict:
                raise InvalidUpload(
                    f'line {first + i} is {_json_kind(obj)}, expected an object with a "text" field'
                )
            try:
                value = obj["text"]
            except KeyError:
                raise InvalidUpload(
                    f'line {first + i} has no "text" field (its fields: '
                    f'{_names_list(list(obj))}); each line must be an object with a string "text" '
                    "field"
                ) from None
            if type(value) is not str:
                raise InvalidUpload(
                    f'line {first + i}: the "text" field is {_json_kind(value)}, expected a string'
                )
            count += 1
            if self._want_ids:
                texts.append((value, _record_id(obj.get("id"))))
            elif self._want_text:
                texts.append(value)
        self._documents += count
        return texts if self._want_text else count

    def _json_error(self, line_no: int, line: str, exc: ValueError) -> InvalidUpload:
        if "\0" in line:
            return InvalidUpload(
                f"line {line_no} contains a NUL byte: the upload looks like a binary file, not "
                f"JSON Lines{_sniff_hint(self._stream.prefix)}"
            )
        detail = str(exc)
        if isinstance(exc, json.JSONDecodeError):
            detail = f"{exc.msg} (column {exc.colno})"
        hint = ""
        if line_no == 1 and line.lstrip(_UTF8_BOM + " \t\r").startswith("["):
            hint = (
                "; the upload looks like a single JSON array: JSON Lines needs one object per "
                "line instead"
            )
        return InvalidUpload(
            f"line {line_no} is not valid JSON: {detail}; each line must be one JSON object "
            f'such as {{"text": "..."}}{hint}'
        )

    # -- PARQUET --------------------------------------------------------------------------------

    def _check_parquet_decoded(self, decoded: int, upload_bytes: int, declared: bool) -> None:
        """Refuse a Parquet file whose text decodes past the limits: more than
        max_decompressed_bytes, or (beyond ratio_check_floor_bytes) more than
        max_compression_ratio times the upload's size. Parquet compresses inside the file
        (page codecs, dictionaries, run lengths), so this is measured on the decoded text,
        not on the file: the same 200:1 rule as gzip and zstd uploads."""
        limits = self._limits
        what = (
            "the Parquet file's metadata says its text column decodes to"
            if declared
            else "the Parquet file's text column decodes to"
        )
        if decoded > limits.max_decompressed_bytes:
            raise UploadTooLarge(
                f"{what} more than {limits.max_decompressed_bytes} bytes, the maximum "
                "accepted: split the dataset into several uploads"
            )
        if (
            decoded > limits.ratio_check_floor_bytes
            and decoded > limits.max_compression_ratio * upload_bytes
        ):
            raise UploadTooLarge(
                f"{what} more than {decoded} bytes (ratio > {limits.max_compression_ratio}:1 "
                f"of its {upload_bytes} bytes): refusing a possible decompression bomb"
            )

    def _parquet(self) -> Iterator[int | list[str]]:
        source: object
        raw = self._raw
        seekable = getattr(raw, "seekable", None)
        if self._compression == NONE and seekable is not None and seekable() and raw.tell() == 0:
            size = raw.seek(0, io.SEEK_END)
            raw.seek(0)
            self._parquet_size = size
            if size == 0:
                raise InvalidUpload("the upload is empty (0 bytes)")
            if size > self._limits.max_decompressed_bytes:
                raise UploadTooLarge(
                    f"the upload is larger than {self._limits.max_decompressed_bytes} bytes, the "
                    "maximum accepted: split the dataset into several uploads"
                )
            source = raw
            head = raw.read(8)
            raw.seek(0)
            self._stream.prefix = head
        else:
            buffer = io.BytesIO()
            cap = self._limits.max_parquet_bytes
            for block in self._stream:
                if self._stream.decompressed_bytes > cap:
                    raise UploadTooLarge(
                        f"the Parquet upload is larger than {cap} bytes after decompression; a "
                        "compressed (or streamed) Parquet upload is read into memory, so it may be "
                        f"at most {cap} bytes: upload the Parquet file uncompressed (Parquet "
                        "already compresses its columns)"
                    )
                buffer.write(block)
            buffer.seek(0)
            source = buffer
        hint = _sniff_hint(self._stream.prefix)
        # What the upload weighed as it arrived: the file, or the gzip/zstd stream it came in.
        upload_bytes = self._parquet_size if self._parquet_size else self._stream.compressed_bytes
        try:
            parquet = pq.ParquetFile(source)
            schema = parquet.schema_arrow
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise InvalidUpload(f"not a valid Parquet file: {exc}{hint}") from None
        names = list(schema.names)
        if "text" not in names:
            raise InvalidUpload(
                f'the Parquet file has no "text" column (columns: {_names_list(names)}); '
                'rename the text column to "text"'
            )
        if names.count("text") > 1:
            raise InvalidUpload('the Parquet file has more than one "text" column; keep only one')
        column_type = schema.field("text").type
        value_type = column_type.value_type if pa.types.is_dictionary(column_type) else column_type
        if not (
            pa.types.is_string(value_type)
            or pa.types.is_large_string(value_type)
            or pa.types.is_string_view(value_type)
        ):
            raise InvalidUpload(
                f'the Parquet "text" column has type {column_type}, expected a string column '
                "(Arrow string or large_string, Parquet UTF8/STRING): store the documents' text "
                "as strings"
            )
        self._check_parquet_decoded(_declared_text_bytes(parquet), upload_bytes, declared=True)
        # The text column is read as dictionary indices (where the file stores it so), so a
        # value repeated a million times is measured batch by batch, never expanded first.
        source.seek(0)
        parquet = pq.ParquetFile(source, read_dictionary=["text"])
        rows = 0
        documents = 0
        decoded = 0
        with_ids = self._want_ids and "id" in names
        batches = parquet.iter_batches(
            columns=["text", "id"] if with_ids else ["text"], batch_size=_PARQUET_BATCH_ROWS
        )
        while True:
            try:
                batch = next(batches, None)
            except (pa.ArrowException, OSError, ValueError) as exc:
                raise InvalidUpload(
                    f"the Parquet file is corrupt: reading rows after row {rows} failed: {exc}"
                ) from None
            if batch is None:
                break
            column = batch.column(0)
            try:
                column.validate(full=True)
            except (pa.ArrowException, ValueError) as exc:
                raise InvalidUpload(
                    f'the Parquet "text" column holds invalid data in rows {rows} to '
                    f"{rows + len(column) - 1} (0-based): {exc}; the text must be valid UTF-8"
                ) from None
            decoded += _text_bytes(column)
            self._check_parquet_decoded(decoded, upload_bytes, declared=False)
            present = len(column) - column.null_count
            rows += len(column)
            documents += present
            if self._want_ids and present:
                ids = batch.column(1).to_pylist() if with_ids else [None] * len(column)
                yield [
                    (t, _record_id(i))
                    for t, i in zip(column.to_pylist(), ids, strict=True)
                    if t is not None
                ]
            elif self._want_text:
                if present:
                    yield [t for t in column.to_pylist() if t is not None]
            elif present:
                yield present
        if not documents:
            raise InvalidUpload(
                f'the upload contains no documents: the Parquet "text" column has {rows} rows, '
                "none of them non-null"
            )

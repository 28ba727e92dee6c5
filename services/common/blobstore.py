"""Content-addressed blob store for raw uploads, encrypted at rest to one recipient.

The ingest service writes blobs holding only the preprocess service's X25519 *public* key,
so once a blob is committed nobody but the holder of the private key can read it again:
not ingest, not whoever gets a copy of the disk.

Layout on disk, under `root`::

    objects/<aa>/<bb>/<sha256>   committed blobs, named by the SHA-256 of the PLAINTEXT
    tmp/<random>.tmp             blobs being written (renamed into objects/ on commit)

File format (version 1); all integers are big-endian::

    offset size  field
    0      8     magic b"1TTBLOB1"
    8      1     format version = 1
    9      4     chunk_size C (plaintext bytes per full chunk, >= 1)
    13     32    ephemeral X25519 public key E (fresh per blob)
    45     48    wrapped data key: AES-256-GCM(KEK, nonce=12 zero bytes, data_key,
                 aad=bytes 0..45 of the header) = 32 ciphertext bytes || 16 tag bytes
    93     7     random nonce prefix P
    100          chunk 0, chunk 1, ..., chunk n-1 (n >= 1)

    KEK   = HKDF-SHA256(ikm=X25519(e, R), salt=E || R, info=b"1tt blob key wrap v1", len=32)
            where R is the recipient's X25519 public key and e the ephemeral private key
    chunk = AES-256-GCM(data_key, nonce=P || i (4 bytes) || last (1 byte: 1 on chunk n-1,
            else 0), plaintext, aad=the whole 100-byte header) = ciphertext || 16-byte tag

Every chunk but the last carries exactly C plaintext bytes; the last carries 0..C bytes (the
writer only makes it empty for the empty blob, which is exactly one empty last chunk). So
the file is (100 + (n-1)*(C+16) + (L+16)) bytes for a last-chunk plaintext of L bytes, and
a reader recovers n and the plaintext size from the file size alone, which is what makes
random access possible. Binding i into the nonce stops chunks being reordered or dropped;
binding the last flag stops truncation at a chunk boundary (the new final chunk was sealed
with last=0) and extension; binding the header as AAD stops header tampering.

What this does NOT protect against: anyone holding the public key (ingest) can write a
well-formed blob of any content, and the reader does not re-hash the plaintext on random
access, so a blob's content matching its sha256 name is the writer's promise, not a checked
fact. A caller that needs that reads the whole blob and compares `hashlib.sha256`.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import io
import os
import re
import secrets
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "BLOB_URI_PREFIX",
    "BlobError",
    "BlobIntegrityError",
    "BlobNotFoundError",
    "BlobReader",
    "BlobReaderSpec",
    "BlobRef",
    "BlobStore",
    "BlobWriter",
    "generate_keypair",
    "load_private_key",
    "load_public_key",
    "write_keypair",
]

BLOB_URI_PREFIX = "blob://sha256/"

MAGIC = b"1TTBLOB1"
FORMAT_VERSION = 1
KEY_WRAP_INFO = b"1tt blob key wrap v1"
DEFAULT_CHUNK_SIZE = 1 << 20
# Large enough for any sane use; the bound keeps a writer's buffers from being absurd.
MAX_CHUNK_SIZE = 1 << 30

_KEY_LEN = 32
_TAG_LEN = 16
_NONCE_PREFIX_LEN = 7
_WRAPPED_KEY_LEN = _KEY_LEN + _TAG_LEN
# magic | version | chunk_size | ephemeral public key: what the key wrap authenticates.
_WRAP_AAD_LEN = len(MAGIC) + 1 + 4 + _KEY_LEN
HEADER_LEN = _WRAP_AAD_LEN + _WRAPPED_KEY_LEN + _NONCE_PREFIX_LEN
# The wrap key (KEK) is derived from a fresh ephemeral X25519 key for every blob, so each
# KEK encrypts exactly one message. GCM's only nonce requirement is "never reuse a nonce
# under the same key", which a single use trivially meets; a fixed nonce is therefore safe.
_WRAP_NONCE = bytes(12)
# The chunk index is 4 bytes in the nonce; more chunks would repeat a nonce.
_MAX_CHUNKS = 1 << 32
_NONCE_TAIL = struct.Struct(">IB")  # chunk index, last flag

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class BlobError(Exception):
    """Base class for blob store failures."""


class BlobIntegrityError(BlobError):
    """A blob failed authentication or is malformed: tampered, truncated, or the wrong key.

    The message names the blob and what failed.
    """


class BlobNotFoundError(BlobError, FileNotFoundError):
    """No committed blob with that sha256 exists (also a FileNotFoundError)."""


@dataclass(frozen=True)
class BlobRef:
    """What a fact records about a committed blob.

    `uri` is "blob://sha256/<64 hex>", `sha256` the lower-case hex SHA-256 of the plaintext,
    `byte_size` the plaintext byte count.
    """

    uri: str
    sha256: str
    byte_size: int


@dataclass(frozen=True)
class BlobReaderSpec:
    """A picklable recipe for BlobReader.from_spec: lets a worker process read a finished,
    not yet committed temp blob (BlobWriter.reader_spec).

    It carries the blob's data key: keep it in memory and in the process pool only, never
    log or persist it (repr hides it).
    """

    path: str
    data_key: bytes = field(repr=False)
    label: str


# --------------------------------------------------------------------------------------
# Keys


def generate_keypair() -> tuple[bytes, bytes]:
    """A fresh X25519 key pair as (private_raw_32, public_raw_32)."""
    private = X25519PrivateKey.generate()
    private_raw = private.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return private_raw, _public_raw(private)


def _public_raw(private: X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def _load_key_file(path: Path, what: str) -> bytes:
    try:
        text = Path(path).read_text(encoding="ascii")
    except UnicodeDecodeError:
        raise BlobError(f"{what} key file {path}: not ASCII base64 text") from None
    lines = text.strip().splitlines()
    if len(lines) != 1:
        raise BlobError(f"{what} key file {path}: expected exactly one line of base64")
    try:
        raw = base64.b64decode(lines[0].strip(), validate=True)
    except binascii.Error:
        raise BlobError(f"{what} key file {path}: not valid standard base64") from None
    if len(raw) != _KEY_LEN:
        raise BlobError(f"{what} key file {path}: decodes to {len(raw)} bytes, expected {_KEY_LEN}")
    return raw


def load_private_key(path: Path) -> bytes:
    """Read a private key file (one line of standard base64 of the 32 raw bytes).

    Raises BlobError naming the file if it is malformed.
    """
    return _load_key_file(path, "private")


def load_public_key(path: Path) -> bytes:
    """Read a public key file (one line of standard base64 of the 32 raw bytes).

    Raises BlobError naming the file if it is malformed.
    """
    return _load_key_file(path, "public")


def _write_new_file(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL makes "refuse to overwrite" atomic; fchmod because umask may only narrow the
    # mode at creation and we want exactly `mode`.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_keypair(private_path: Path, public_path: Path) -> None:
    """Generate a key pair and write it as two key files.

    The private file gets mode 0o600, the public one 0o644. Refuses (FileExistsError) if
    either file already exists, leaving existing files untouched.
    """
    private_path, public_path = Path(private_path), Path(public_path)
    for path in (private_path, public_path):
        if path.exists() or path.is_symlink():
            raise FileExistsError(errno.EEXIST, "refusing to overwrite existing key file", path)
    private_raw, public_raw = generate_keypair()
    _write_new_file(private_path, base64.b64encode(private_raw) + b"\n", 0o600)
    try:
        _write_new_file(public_path, base64.b64encode(public_raw) + b"\n", 0o644)
    except BaseException:
        # Never leave a private key whose public half nobody has.
        private_path.unlink(missing_ok=True)
        raise


def _derive_kek(shared: bytes, ephemeral_pub: bytes, recipient_pub: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=_KEY_LEN,
        salt=ephemeral_pub + recipient_pub,
        info=KEY_WRAP_INFO,
    ).derive(shared)


def _chunk_nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + _NONCE_TAIL.pack(index, 1 if last else 0)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _makedirs_durable(path: Path) -> None:
    """mkdir -p, fsyncing the parent of every directory created so the entry survives a
    crash (otherwise a committed object could vanish with its freshly made directory)."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue  # a concurrent writer made it; it fsyncs its own parent
        _fsync_dir(d.parent)


# --------------------------------------------------------------------------------------
# Reading


class BlobReader(io.RawIOBase):
    """A readable, seekable raw stream over one encrypted blob's plaintext.

    Decrypts only the chunks a read touches and verifies every chunk's tag; any failure
    raises BlobIntegrityError. The final chunk (with its last flag) is verified when the
    reader opens, so truncation is detected before the first read. Not thread-safe.

    Obtain one from BlobStore.open_reader (wrapped in io.BufferedReader) or
    BlobWriter.open_plaintext_reader; `BlobReader(path, private_key)` also works.
    """

    def __init__(self, path: Path, private_key: bytes, *, label: str | None = None) -> None:
        """Open the blob file at `path` and unwrap its data key with `private_key`."""
        super().__init__()
        self._init(Path(path), label, private_key=private_key, data_key=None)

    @classmethod
    def from_spec(cls, spec: BlobReaderSpec) -> BlobReader:
        """A reader over the temp blob described by `spec` (from BlobWriter.reader_spec)."""
        return cls._with_data_key(Path(spec.path), spec.data_key, spec.label)

    @classmethod
    def _with_data_key(cls, path: Path, data_key: bytes, label: str) -> BlobReader:
        # The writer already holds the data key: no unwrap (it has no private key).
        self = cls.__new__(cls)
        io.RawIOBase.__init__(self)
        self._init(path, label, private_key=None, data_key=data_key)
        return self

    def _init(
        self,
        path: Path,
        label: str | None,
        *,
        private_key: bytes | None,
        data_key: bytes | None,
    ) -> None:
        self._file = None
        self.name = str(path)
        self._label = label or str(path)
        self._pos = 0
        self._cache_index = -1
        self._cache = bytearray()
        self._file = open(path, "rb", buffering=0)
        try:
            self._parse(private_key, data_key)
        except BaseException:
            self._file.close()
            raise

    def _fail(self, what: str) -> BlobIntegrityError:
        return BlobIntegrityError(f"blob {self._label}: {what}")

    def _parse(self, private_key: bytes | None, data_key: bytes | None) -> None:
        file_size = os.fstat(self._file.fileno()).st_size
        header = self._read_at(0, min(HEADER_LEN, file_size))
        if len(header) < HEADER_LEN:
            raise self._fail(
                f"file is {file_size} bytes, shorter than the {HEADER_LEN}-byte header"
            )
        if header[: len(MAGIC)] != MAGIC:
            raise self._fail("bad magic (not a 1TT blob file)")
        version = header[len(MAGIC)]
        if version != FORMAT_VERSION:
            raise self._fail(f"unsupported format version {version}")
        (chunk_size,) = struct.unpack_from(">I", header, len(MAGIC) + 1)
        if chunk_size < 1:
            raise self._fail("chunk size 0 in header")
        eph_pub = header[13 : 13 + _KEY_LEN]
        wrapped = header[_WRAP_AAD_LEN : _WRAP_AAD_LEN + _WRAPPED_KEY_LEN]
        self._nonce_prefix = header[HEADER_LEN - _NONCE_PREFIX_LEN : HEADER_LEN]
        self._header = header

        # Layout from the file size alone: n-1 full chunks of C+16 bytes, then a last
        # chunk of 16..C+16 bytes.
        body = file_size - HEADER_LEN
        full = chunk_size + _TAG_LEN
        if body < _TAG_LEN:
            raise self._fail(f"no chunks after the header ({body} bytes; truncated)")
        n_chunks = -(-body // full)
        last_len = body - (n_chunks - 1) * full
        if last_len < _TAG_LEN:
            raise self._fail(
                f"file size {file_size} is inconsistent with chunk size {chunk_size} "
                f"(final chunk of {last_len} bytes is shorter than a tag; truncated)"
            )
        if n_chunks > _MAX_CHUNKS:
            raise self._fail(f"{n_chunks} chunks exceeds the format's limit")
        self._chunk_size = chunk_size
        self._n_chunks = n_chunks
        self._size = (n_chunks - 1) * chunk_size + last_len - _TAG_LEN

        if data_key is None:
            assert private_key is not None
            data_key = self._unwrap(private_key, eph_pub, wrapped, header[:_WRAP_AAD_LEN])
        self._aead = AESGCM(data_key)
        # Verify the final chunk now: it is the one whose last flag proves the blob was not
        # truncated (or extended), and Parquet readers start at the footer anyway.
        self._load_chunk(n_chunks - 1)

    def _unwrap(self, private_key: bytes, eph_pub: bytes, wrapped: bytes, aad: bytes) -> bytes:
        if len(private_key) != _KEY_LEN:
            raise ValueError(f"private key must be {_KEY_LEN} raw bytes, got {len(private_key)}")
        private = X25519PrivateKey.from_private_bytes(private_key)
        try:
            shared = private.exchange(X25519PublicKey.from_public_bytes(eph_pub))
        except ValueError:
            # Low-order ephemeral point: only a forged header produces one.
            raise self._fail("invalid ephemeral public key in header") from None
        kek = _derive_kek(shared, eph_pub, _public_raw(private))
        try:
            return AESGCM(kek).decrypt(_WRAP_NONCE, wrapped, aad)
        except InvalidTag:
            raise self._fail(
                "data key unwrap failed (wrong private key, or the header was tampered with)"
            ) from None

    def _read_at(self, offset: int, length: int) -> bytes:
        # pread: no shared file position to keep in step, and one syscall per chunk.
        data = os.pread(self._file.fileno(), length, offset)
        while len(data) < length:
            more = os.pread(self._file.fileno(), length - len(data), offset + len(data))
            if not more:
                break
            data += more
        return data

    def _load_chunk(self, index: int) -> None:
        if index == self._cache_index:
            return
        full = self._chunk_size + _TAG_LEN
        offset = HEADER_LEN + index * full
        last = index == self._n_chunks - 1
        length = (self._size - index * self._chunk_size + _TAG_LEN) if last else full
        sealed = self._read_at(offset, length)
        if len(sealed) != length:
            raise self._fail(f"chunk {index} is short on disk (file shrank while open)")
        # Invalidate first: decrypt_into writes into the cache before checking the tag.
        self._cache_index = -1
        plain_len = length - _TAG_LEN
        if len(self._cache) != plain_len:
            self._cache = bytearray(plain_len)
        try:
            self._aead.decrypt_into(
                _chunk_nonce(self._nonce_prefix, index, last), sealed, self._header, self._cache
            )
        except InvalidTag:
            raise self._fail(
                f"chunk {index} of {self._n_chunks} failed authentication "
                "(tampered, reordered, truncated, or wrong key)"
            ) from None
        self._cache_index = index

    @property
    def size(self) -> int:
        """Plaintext size in bytes."""
        return self._size

    def readable(self) -> bool:
        """Always True."""
        return True

    def seekable(self) -> bool:
        """Always True."""
        return True

    def writable(self) -> bool:
        """Always False."""
        return False

    def tell(self) -> int:
        """Current plaintext position."""
        self._checkClosed()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to a plaintext position; past the end is allowed (reads then return b"")."""
        self._checkClosed()
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END:
            target = self._size + offset
        else:
            raise ValueError(f"invalid whence ({whence})")
        if target < 0:
            raise ValueError(f"negative seek position {target}")
        self._pos = target
        return target

    def readinto(self, buffer: bytearray | memoryview) -> int:
        """Read up to len(buffer) plaintext bytes into `buffer`; 0 at end of blob."""
        self._checkClosed()
        out = memoryview(buffer).cast("B")
        want = min(len(out), self._size - self._pos)
        done = 0
        while done < want:
            index, within = divmod(self._pos, self._chunk_size)
            self._load_chunk(index)
            take = min(len(self._cache) - within, want - done)
            out[done : done + take] = memoryview(self._cache)[within : within + take]
            done += take
            self._pos += take
        return done

    def readall(self) -> bytes:
        """Read from the current position to the end."""
        self._checkClosed()
        remaining = self._size - self._pos
        if remaining <= 0:
            return b""
        # Per-chunk pieces joined once: avoids zero-filling and then copying a second
        # whole-blob buffer (bytearray -> bytes), which dominates for large blobs.
        parts: list[bytes] = []
        while self._pos < self._size:
            index, within = divmod(self._pos, self._chunk_size)
            self._load_chunk(index)
            piece = bytes(memoryview(self._cache)[within:])
            parts.append(piece)
            self._pos += len(piece)
        return b"".join(parts)

    def close(self) -> None:
        """Close the file and drop decrypted data and the key object."""
        # getattr: io's finalizer calls close() even when __init__ failed before opening.
        file = getattr(self, "_file", None)
        if file is not None:
            file.close()
        self._cache = bytearray()
        self._cache_index = -1
        self._aead = None
        super().close()


# --------------------------------------------------------------------------------------
# Writing


class BlobWriter:
    """One blob being written. Obtain from BlobStore.open_writer. Synchronous (callers run
    it in a thread).

    Plaintext is buffered up to one chunk, sealed chunk by chunk into a temp file under
    <root>/tmp/, and moved into objects/ by commit(). Used as a context manager, an exit
    without commit() aborts (deletes the temp file). The data key lives only in this object
    and is dropped on commit/abort: afterwards only the private key can read the blob.
    """

    def __init__(self, store: BlobStore, recipient_public_key: bytes) -> None:
        """Prefer BlobStore.open_writer. Creates the temp file and writes the header."""
        if len(recipient_public_key) != _KEY_LEN:
            raise ValueError(
                f"recipient public key must be {_KEY_LEN} raw bytes, "
                f"got {len(recipient_public_key)}"
            )
        self._store = store
        self._chunk_size = store.chunk_size
        recipient = X25519PublicKey.from_public_bytes(bytes(recipient_public_key))
        ephemeral = X25519PrivateKey.generate()
        eph_pub = _public_raw(ephemeral)
        try:
            shared = ephemeral.exchange(recipient)
        except ValueError:
            raise BlobError("recipient public key is a low-order X25519 point") from None
        kek = _derive_kek(shared, eph_pub, bytes(recipient_public_key))
        data_key = AESGCM.generate_key(bit_length=256)
        prefix = MAGIC + bytes([FORMAT_VERSION]) + struct.pack(">I", self._chunk_size) + eph_pub
        wrapped = AESGCM(kek).encrypt(_WRAP_NONCE, data_key, prefix)
        self._header = prefix + wrapped + secrets.token_bytes(_NONCE_PREFIX_LEN)
        self._nonce_prefix = self._header[-_NONCE_PREFIX_LEN:]
        self._data_key: bytes | None = data_key
        self._aead: AESGCM | None = AESGCM(data_key)

        self._hash = hashlib.sha256()
        self._byte_size = 0
        self._buf = bytearray()
        # Reused for every sealed chunk: no per-chunk allocation of chunk_size bytes.
        self._sealed = bytearray(self._chunk_size + _TAG_LEN)
        self._index = 0
        self._finished = False
        self._committed: BlobRef | None = None
        self._aborted = False
        self._broken = False
        self._digest: str | None = None

        tmp_dir = store.root / "tmp"
        _makedirs_durable(tmp_dir)
        self._temp_path = tmp_dir / f"{secrets.token_hex(16)}.tmp"
        self._file: io.BufferedWriter | None = open(self._temp_path, "xb")
        try:
            self._file.write(self._header)
        except BaseException:
            self.abort()
            raise

    # -- state

    @property
    def temp_path(self) -> Path:
        """The temp file this writer writes to."""
        return self._temp_path

    @property
    def sha256(self) -> str:
        """Lower-case hex SHA-256 of the plaintext written so far."""
        return self._digest if self._digest is not None else self._hash.hexdigest()

    @property
    def byte_size(self) -> int:
        """Plaintext bytes written so far."""
        return self._byte_size

    def _check_writable(self) -> None:
        if self._broken:
            raise BlobError(f"blob writer {self._temp_path}: an earlier write failed")
        if self._aborted:
            raise BlobError(f"blob writer {self._temp_path}: aborted")
        if self._committed is not None:
            raise BlobError(f"blob writer {self._temp_path}: already committed")

    # -- writing

    def _seal(self, plaintext: bytes | bytearray | memoryview, last: bool) -> None:
        if self._index >= _MAX_CHUNKS:
            raise BlobError(f"blob writer {self._temp_path}: too many chunks for the format")
        assert self._aead is not None and self._file is not None
        out = self._sealed
        n = len(plaintext) + _TAG_LEN
        # One AESGCM call per chunk, sealed straight into the reusable buffer.
        self._aead.encrypt_into(
            _chunk_nonce(self._nonce_prefix, self._index, last),
            plaintext,
            self._header,
            memoryview(out)[:n],
        )
        self._file.write(memoryview(out)[:n])
        self._index += 1

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append plaintext. Full chunks are sealed and written once more data follows them
        (the last chunk must carry the last flag, so a full buffer waits for finish())."""
        self._check_writable()
        if self._finished:
            raise BlobError(f"blob writer {self._temp_path}: write after finish()")
        view = memoryview(data).cast("B")
        n = len(view)
        if n == 0:
            return
        try:
            self._hash.update(view)
            self._byte_size += n
            cs, buf, pos = self._chunk_size, self._buf, 0
            while pos < n:
                if len(buf) == cs:
                    self._seal(buf, last=False)  # more data follows: not the last chunk
                    buf.clear()
                if not buf and n - pos > cs:
                    # Fast path: seal straight from the caller's data, no copy.
                    self._seal(view[pos : pos + cs], last=False)
                    pos += cs
                    continue
                take = min(cs - len(buf), n - pos)
                buf += view[pos : pos + take]
                pos += take
        except BaseException:
            # Buffer and file may disagree now; refuse to produce a blob from this state.
            self._broken = True
            raise

    def finish(self) -> None:
        """Seal the final (possibly short or empty) chunk with the last flag, flush and
        fsync the temp file. Idempotent."""
        if self._finished:
            return
        self._check_writable()
        try:
            self._seal(self._buf, last=True)
            self._buf = bytearray()
            assert self._file is not None
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
        except BaseException:
            self._broken = True
            raise
        self._digest = self._hash.hexdigest()
        self._finished = True

    def open_plaintext_reader(self) -> BlobReader:
        """After finish() and before commit()/abort(): a seekable reader over the temp file,
        using the in-memory data key, so the writer can validate what it received."""
        self._check_writable()
        if not self._finished:
            raise BlobError(f"blob writer {self._temp_path}: open_plaintext_reader before finish()")
        assert self._data_key is not None
        return BlobReader._with_data_key(self._temp_path, self._data_key, str(self._temp_path))

    def reader_spec(self) -> BlobReaderSpec:
        """Like open_plaintext_reader, but a picklable BlobReaderSpec, for reading the temp
        file back in another process (BlobReader.from_spec). Valid until commit()/abort()."""
        self._check_writable()
        if not self._finished:
            raise BlobError(f"blob writer {self._temp_path}: reader_spec before finish()")
        assert self._data_key is not None
        return BlobReaderSpec(str(self._temp_path), self._data_key, str(self._temp_path))

    def commit(self) -> BlobRef:
        """finish() if needed, then move the temp file to objects/<aa>/<bb>/<sha256>.

        If that object already exists (same plaintext), the existing one is kept and the
        temp file deleted. Idempotent: a second call returns the same BlobRef.
        """
        if self._committed is not None:
            return self._committed
        self.finish()
        sha = self.sha256
        dest = self._store.path_for(sha)
        _makedirs_durable(dest.parent)
        try:
            # link() fails if dest exists, so "keep the existing object" holds even
            # against a concurrent writer of the same plaintext, unlike rename().
            os.link(self._temp_path, dest)
        except FileExistsError:
            pass
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            # Filesystem without hard links: check-then-rename. The race it leaves can only
            # replace an object with another encryption of the same plaintext.
            if not dest.exists():
                os.replace(self._temp_path, dest)
        else:
            _fsync_dir(dest.parent)
        self._temp_path.unlink(missing_ok=True)
        self._committed = BlobRef(uri=BlobStore.uri_for(sha), sha256=sha, byte_size=self._byte_size)
        self._drop_key()
        return self._committed

    def abort(self) -> None:
        """Delete the temp file. Idempotent; a no-op after commit()."""
        if self._committed is not None or self._aborted:
            return
        self._aborted = True
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass  # the file is being discarded anyway
            self._file = None
        self._temp_path.unlink(missing_ok=True)
        self._drop_key()

    def _drop_key(self) -> None:
        self._data_key = None
        self._aead = None
        self._buf = bytearray()

    def __enter__(self) -> BlobWriter:
        """Context manager entry."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Abort unless committed."""
        self.abort()


# --------------------------------------------------------------------------------------
# The store


class BlobStore:
    """A content-addressed, encrypted-at-rest blob store rooted at a local directory."""

    def __init__(self, root: Path, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        """Directories are created lazily by writers, so a read-only reader can use `root`."""
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be in 1..{MAX_CHUNK_SIZE}, got {chunk_size}")
        self.root = Path(root)
        self.chunk_size = chunk_size

    def open_writer(self, recipient_public_key: bytes) -> BlobWriter:
        """Start a new blob encrypted to `recipient_public_key` (32 raw X25519 bytes)."""
        return BlobWriter(self, recipient_public_key)

    def open_reader(
        self, ref_or_uri_or_sha256: BlobRef | str, private_key: bytes
    ) -> io.BufferedReader:
        """A seekable buffered reader over a committed blob's plaintext.

        Accepts a BlobRef, a "blob://sha256/<hex>" uri or a bare 64-hex sha256. Raises
        BlobNotFoundError if absent, BlobIntegrityError if the blob fails authentication
        (or, for a BlobRef, its size disagrees with byte_size), ValueError for a bad name.
        """
        expected_size: int | None = None
        if isinstance(ref_or_uri_or_sha256, BlobRef):
            sha = self.sha256_of_uri(ref_or_uri_or_sha256.uri)
            if ref_or_uri_or_sha256.sha256 != sha:
                raise ValueError(
                    f"BlobRef is inconsistent: uri {ref_or_uri_or_sha256.uri!r} "
                    f"but sha256 {ref_or_uri_or_sha256.sha256!r}"
                )
            expected_size = ref_or_uri_or_sha256.byte_size
        elif isinstance(ref_or_uri_or_sha256, str) and ref_or_uri_or_sha256.startswith("blob://"):
            sha = self.sha256_of_uri(ref_or_uri_or_sha256)
        else:
            sha = _check_sha256(ref_or_uri_or_sha256)
        path = self.path_for(sha)
        try:
            raw = BlobReader(path, private_key, label=sha)
        except FileNotFoundError:
            raise BlobNotFoundError(errno.ENOENT, f"no blob {sha}", str(path)) from None
        if expected_size is not None and raw.size != expected_size:
            raw.close()
            raise BlobIntegrityError(
                f"blob {sha}: plaintext is {raw.size} bytes but the BlobRef says {expected_size}"
            )
        return io.BufferedReader(raw)

    def exists(self, sha256: str) -> bool:
        """Whether a committed blob with this sha256 exists."""
        return self.path_for(sha256).is_file()

    def path_for(self, sha256: str) -> Path:
        """objects/<aa>/<bb>/<sha256> under root; ValueError unless 64 lower-case hex."""
        sha = _check_sha256(sha256)
        return self.root / "objects" / sha[:2] / sha[2:4] / sha

    @staticmethod
    def uri_for(sha256: str) -> str:
        """ "blob://sha256/<sha256>"; ValueError unless 64 lower-case hex."""
        return BLOB_URI_PREFIX + _check_sha256(sha256)

    @staticmethod
    def sha256_of_uri(uri: str) -> str:
        """The sha256 in a "blob://sha256/<64 lower-case hex>" uri; ValueError otherwise."""
        if not isinstance(uri, str) or not uri.startswith(BLOB_URI_PREFIX):
            raise ValueError(f"not a blob uri (expected {BLOB_URI_PREFIX}<64 hex>): {uri!r}")
        return _check_sha256(uri[len(BLOB_URI_PREFIX) :], context=f"blob uri {uri!r}")

    def sweep_temp(self, older_than_s: float) -> int:
        """Delete temp files (left by crashed writers) not modified for `older_than_s`
        seconds; returns how many. A live writer touches its file on every chunk, so pick a
        threshold well above the longest pause in an upload."""
        if older_than_s < 0:
            raise ValueError("older_than_s must be >= 0")
        tmp_dir = self.root / "tmp"
        cutoff = time.time() - older_than_s
        removed = 0
        try:
            entries = list(os.scandir(tmp_dir))
        except FileNotFoundError:
            return 0
        for entry in entries:
            if not entry.name.endswith(".tmp") or not entry.is_file(follow_symlinks=False):
                continue
            try:
                if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                    continue
                os.unlink(entry.path)
            except FileNotFoundError:
                continue  # committed or aborted meanwhile
            removed += 1
        return removed


def _check_sha256(value: object, *, context: str = "sha256") -> str:
    # fullmatch (not match with $, which accepts a trailing newline) over [0-9a-f] only:
    # the value becomes a path, so nothing but 64 lower-case hex digits may pass.
    if not isinstance(value, str) or not _SHA256_HEX.fullmatch(value):
        raise ValueError(f"{context}: expected 64 lower-case hex digits, got {value!r}")
    return value

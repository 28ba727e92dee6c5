import hashlib
import io
import itertools
import os
import pickle
import stat
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.blobstore import (
    BLOB_URI_PREFIX,
    HEADER_LEN,
    BlobError,
    BlobIntegrityError,
    BlobNotFoundError,
    BlobReader,
    BlobRef,
    BlobStore,
    generate_keypair,
    load_private_key,
    load_public_key,
    write_keypair,
)

CS = 64  # small chunk size so a few hundred bytes span many chunks
TAG = 16
KEYS = generate_keypair()
PRIV, PUB = KEYS


def payload(n: int, seed: int = 0) -> bytes:
    """Deterministic, non-repeating-looking bytes (so plaintext can be searched for)."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:n])


def put(store: BlobStore, data: bytes) -> BlobRef:
    with store.open_writer(PUB) as writer:
        writer.write(data)
        return writer.commit()


def read_all(store: BlobStore, ref, key: bytes = PRIV) -> bytes:
    with store.open_reader(ref, key) as reader:
        return reader.read()


def tmp_files(store: BlobStore) -> list[Path]:
    tmp = store.root / "tmp"
    return sorted(tmp.iterdir()) if tmp.exists() else []


def object_files(store: BlobStore) -> list[Path]:
    objects = store.root / "objects"
    return sorted(p for p in objects.rglob("*") if p.is_file()) if objects.exists() else []


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs", chunk_size=CS)


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> BlobStore:
    # Module-scoped for hypothesis tests (function-scoped fixtures are not reset per example).
    return BlobStore(tmp_path_factory.mktemp("blobs"), chunk_size=CS)


# -- round trips


@pytest.mark.parametrize("size", [0, 1, CS - 1, CS, CS + 1, 2 * CS, 5 * CS + 17, 40 * CS])
def test_round_trip_of_various_sizes(store: BlobStore, size: int):
    data = payload(size, seed=size)
    ref = put(store, data)
    sha = hashlib.sha256(data).hexdigest()
    assert ref == BlobRef(uri=BLOB_URI_PREFIX + sha, sha256=sha, byte_size=size)
    assert read_all(store, ref) == data
    assert read_all(store, ref.uri) == data
    assert read_all(store, sha) == data
    assert store.exists(sha)
    # Exactly ceil(size / CS) chunks (one empty chunk for the empty blob), each + a tag.
    chunks = max(1, -(-size // CS))
    assert store.path_for(sha).stat().st_size == HEADER_LEN + size + chunks * TAG
    assert tmp_files(store) == []


def test_round_trip_with_the_default_chunk_size_and_a_few_mib(tmp_path: Path):
    store = BlobStore(tmp_path)
    data = os.urandom(3 * (1 << 20) + 12345)
    ref = put(store, data)
    assert ref.byte_size == len(data)
    with store.open_reader(ref, PRIV) as reader:
        assert reader.read() == data
        reader.seek(-20000, io.SEEK_END)
        assert reader.read(20000) == data[-20000:]
        reader.seek((1 << 20) - 5)
        assert reader.read(10) == data[(1 << 20) - 5 : (1 << 20) + 5]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.binary(min_size=0, max_size=6 * CS),
    cuts=st.lists(st.integers(min_value=0, max_value=6 * CS), max_size=12),
)
def test_writes_in_pieces_equal_one_write(shared_store: BlobStore, data: bytes, cuts: list[int]):
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    with shared_store.open_writer(PUB) as writer:
        for start, end in itertools.pairwise(points):
            piece = data[start:end]
            # Mix the accepted buffer types.
            writer.write(piece if start % 2 else memoryview(bytearray(piece)))
        assert writer.byte_size == len(data)
        assert writer.sha256 == hashlib.sha256(data).hexdigest()
        writer.finish()
        size_on_disk = writer.temp_path.stat().st_size
        with writer.open_plaintext_reader() as reader:
            assert reader.read() == data
        ref = writer.commit()
    assert size_on_disk == HEADER_LEN + len(data) + max(1, -(-len(data) // CS)) * TAG
    assert read_all(shared_store, ref) == data


def test_odd_sized_writes_cover_exact_chunk_multiples(store: BlobStore):
    data = payload(7 * CS)
    with store.open_writer(PUB) as writer:
        pos, step = 0, 1
        while pos < len(data):
            writer.write(data[pos : pos + step])
            pos += step
            step = step * 3 % 97 + 1
        ref = writer.commit()
    assert ref == put(BlobStore(store.root, chunk_size=CS), data)
    assert read_all(store, ref) == data


def test_sha256_and_byte_size_track_the_plaintext_so_far(store: BlobStore):
    data = payload(3 * CS + 5)
    with store.open_writer(PUB) as writer:
        assert writer.sha256 == hashlib.sha256(b"").hexdigest()
        assert writer.byte_size == 0
        writer.write(data[:100])
        assert writer.sha256 == hashlib.sha256(data[:100]).hexdigest()
        assert writer.byte_size == 100
        writer.write(data[100:])
        ref = writer.commit()
    assert ref.sha256 == hashlib.sha256(data).hexdigest()
    assert ref.byte_size == len(data)


# -- random access

BLOB = payload(7 * CS + 13, seed=99)

op = st.one_of(
    st.tuples(st.just("seek_set"), st.integers(0, len(BLOB) + 2 * CS)),
    st.tuples(st.just("seek_cur"), st.integers(-len(BLOB), len(BLOB))),
    st.tuples(st.just("seek_end"), st.integers(-len(BLOB), 2 * CS)),
    st.tuples(st.just("read"), st.integers(-1, 3 * CS)),
    st.tuples(st.just("readinto"), st.integers(0, 3 * CS)),
)


def apply(stream, name: str, arg: int, pos: int):
    # Only seeks to non-negative targets: both models agree there (see the negative-seek test).
    if name == "seek_set":
        return stream.seek(arg, io.SEEK_SET)
    if name == "seek_cur":
        return stream.seek(max(arg, -pos), io.SEEK_CUR)
    if name == "seek_end":
        return stream.seek(max(arg, -len(BLOB)), io.SEEK_END)
    if name == "read":
        return stream.read(arg)
    buf = bytearray(arg)
    n = stream.readinto(buf)
    return bytes(buf[:n])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, max_size=25), buffered=st.booleans())
def test_random_access_matches_bytesio(shared_store: BlobStore, ops, buffered: bool):
    ref = put(shared_store, BLOB)
    model = io.BytesIO(BLOB)
    stream = (
        shared_store.open_reader(ref, PRIV)
        if buffered
        else BlobReader(shared_store.path_for(ref.sha256), PRIV)
    )
    with stream:
        assert stream.seekable() and stream.readable()
        for name, arg in ops:
            pos = model.tell()
            assert apply(stream, name, arg, pos) == apply(model, name, arg, pos)
            assert stream.tell() == model.tell()


def test_reader_size_and_negative_seek(store: BlobStore):
    ref = put(store, BLOB)
    reader = BlobReader(store.path_for(ref.sha256), PRIV)
    assert reader.size == len(BLOB)
    with pytest.raises(ValueError, match="negative"):
        reader.seek(-1)
    with pytest.raises(ValueError):
        reader.seek(0, 7)
    reader.close()
    with pytest.raises(ValueError):
        reader.read(1)


def test_parquet_reads_through_the_reader(store: BlobStore):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"n": list(range(5000)), "s": [f"row {i}" for i in range(5000)]})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    ref = put(BlobStore(store.root, chunk_size=1024), buf.getvalue())
    with store.open_reader(ref, PRIV) as reader:
        assert pq.read_table(reader).equals(table)


# -- content addressing, commit, abort


def test_commit_deduplicates_same_plaintext(store: BlobStore):
    data = payload(3 * CS + 1)
    first = put(store, data)
    stored = store.path_for(first.sha256).read_bytes()
    with store.open_writer(PUB) as writer:
        writer.write(data)
        temp = writer.temp_path
        second = writer.commit()
    assert second == first
    assert not temp.exists()
    assert tmp_files(store) == []
    assert object_files(store) == [store.path_for(first.sha256)]
    assert store.path_for(first.sha256).read_bytes() == stored  # the existing one is kept
    assert read_all(store, second) == data


def test_commit_is_idempotent_and_ends_writing(store: BlobStore):
    with store.open_writer(PUB) as writer:
        writer.write(b"abc")
        ref = writer.commit()
        assert writer.commit() == ref
        with pytest.raises(BlobError):
            writer.write(b"more")
        with pytest.raises(BlobError):
            writer.open_plaintext_reader()
        writer.abort()  # no-op after commit
    assert read_all(store, ref) == b"abc"


def test_abort_leaves_nothing(store: BlobStore):
    writer = store.open_writer(PUB)
    writer.write(payload(5 * CS))
    assert writer.temp_path.exists()
    writer.abort()
    writer.abort()
    assert tmp_files(store) == []
    assert object_files(store) == []
    with pytest.raises(BlobError):
        writer.write(b"x")
    with pytest.raises(BlobError):
        writer.commit()


def test_abort_after_finish_leaves_nothing(store: BlobStore):
    writer = store.open_writer(PUB)
    writer.write(b"x" * 100)
    writer.finish()
    writer.abort()
    assert tmp_files(store) == [] and object_files(store) == []


def test_exception_in_context_manager_aborts(store: BlobStore):
    with pytest.raises(RuntimeError), store.open_writer(PUB) as writer:
        writer.write(payload(2 * CS))
        raise RuntimeError("upload failed")
    assert not writer.temp_path.exists()
    assert tmp_files(store) == []
    assert object_files(store) == []


def test_leaving_context_without_commit_aborts(store: BlobStore):
    with store.open_writer(PUB) as writer:
        writer.write(b"never committed")
    assert tmp_files(store) == [] and object_files(store) == []


def test_finish_is_idempotent_and_blocks_writes(store: BlobStore):
    with store.open_writer(PUB) as writer:
        writer.write(b"hello")
        writer.finish()
        size = writer.temp_path.stat().st_size
        writer.finish()
        assert writer.temp_path.stat().st_size == size
        with pytest.raises(BlobError, match="after finish"):
            writer.write(b"!")
        ref = writer.commit()
    assert read_all(store, ref) == b"hello"


def test_open_plaintext_reader_after_finish_before_commit(store: BlobStore):
    data = payload(4 * CS + 3)
    with store.open_writer(PUB) as writer:
        writer.write(data)
        with pytest.raises(BlobError, match="before finish"):
            writer.open_plaintext_reader()
        writer.finish()
        with writer.open_plaintext_reader() as reader:
            assert reader.size == len(data)
            assert reader.read() == data
            reader.seek(CS - 2)
            assert reader.read(5) == data[CS - 2 : CS + 3]
        ref = writer.commit()
    assert read_all(store, ref) == data


def test_reader_spec_reads_the_temp_blob_after_pickling(store: BlobStore):
    data = payload(3 * CS + 7)
    with store.open_writer(PUB) as writer:
        writer.write(data)
        with pytest.raises(BlobError, match="before finish"):
            writer.reader_spec()
        writer.finish()
        spec = pickle.loads(pickle.dumps(writer.reader_spec()))
        assert spec.data_key.hex() not in repr(spec)
        with BlobReader.from_spec(spec) as reader:
            reader.seek(-10, io.SEEK_END)
            assert reader.read() == data[-10:]
        writer.commit()
        with pytest.raises(BlobError):
            writer.reader_spec()


def test_empty_write_is_a_no_op(store: BlobStore):
    with store.open_writer(PUB) as writer:
        writer.write(b"")
        writer.write(b"a")
        writer.write(b"")
        ref = writer.commit()
    assert ref.byte_size == 1 and read_all(store, ref) == b"a"


# -- confidentiality and integrity


def test_stored_bytes_do_not_contain_the_plaintext(store: BlobStore):
    data = b"SECRET-NEEDLE-" * 50
    ref = put(store, data)
    raw = store.path_for(ref.sha256).read_bytes()
    assert b"SECRET-NEEDLE" not in raw
    assert b"NEEDLE" not in raw


def test_wrong_private_key_is_an_integrity_error(store: BlobStore):
    ref = put(store, payload(100))
    other_private, _ = generate_keypair()
    with pytest.raises(BlobIntegrityError, match=ref.sha256):
        store.open_reader(ref, other_private)


def test_ingest_cannot_read_back_with_the_public_key(store: BlobStore):
    ref = put(store, payload(100))
    with pytest.raises(BlobIntegrityError):
        store.open_reader(ref, PUB)


def fully_read(store: BlobStore, sha: str) -> bytes:
    with store.open_reader(sha, PRIV) as reader:
        return reader.read()


def test_flipping_any_single_byte_is_detected(store: BlobStore):
    ref = put(store, payload(2 * CS + 20))  # header + 3 chunks
    path = store.path_for(ref.sha256)
    original = path.read_bytes()
    for i in range(len(original)):
        tampered = bytearray(original)
        tampered[i] ^= 0x01
        path.write_bytes(bytes(tampered))
        with pytest.raises(BlobIntegrityError):
            fully_read(store, ref.sha256)
    path.write_bytes(original)
    assert fully_read(store, ref.sha256) == payload(2 * CS + 20)


def test_flipping_a_bit_is_reported_on_read_of_that_chunk(store: BlobStore):
    data = payload(6 * CS)
    ref = put(store, data)
    path = store.path_for(ref.sha256)
    raw = bytearray(path.read_bytes())
    raw[HEADER_LEN + 2 * (CS + TAG) + 3] ^= 0x80  # chunk 2
    path.write_bytes(bytes(raw))
    # The raw reader (no read-ahead): only the chunks a read touches are decrypted.
    with BlobReader(path, PRIV, label=ref.sha256) as reader:
        assert reader.read(2 * CS) == data[: 2 * CS]  # chunks 0 and 1 are fine
        with pytest.raises(BlobIntegrityError, match=f"{ref.sha256}.*chunk 2"):
            reader.read(1)


@pytest.mark.parametrize("keep_chunks", [0, 1, 2, 3])
def test_truncation_at_a_chunk_boundary_is_detected(store: BlobStore, keep_chunks: int):
    ref = put(store, payload(4 * CS))  # 4 full chunks, the last one flagged
    path = store.path_for(ref.sha256)
    raw = path.read_bytes()
    path.write_bytes(raw[: HEADER_LEN + keep_chunks * (CS + TAG)])
    with pytest.raises(BlobIntegrityError):
        fully_read(store, ref.sha256)


@pytest.mark.parametrize("cut", [1, TAG - 1, TAG, CS, CS + TAG - 1])
def test_truncation_inside_a_chunk_is_detected(store: BlobStore, cut: int):
    ref = put(store, payload(3 * CS + 10))
    path = store.path_for(ref.sha256)
    raw = path.read_bytes()
    path.write_bytes(raw[:-cut])
    with pytest.raises(BlobIntegrityError):
        fully_read(store, ref.sha256)


def test_truncated_header_is_detected(store: BlobStore):
    ref = put(store, b"x")
    path = store.path_for(ref.sha256)
    path.write_bytes(path.read_bytes()[: HEADER_LEN - 1])
    with pytest.raises(BlobIntegrityError, match="header"):
        fully_read(store, ref.sha256)


def test_swapping_two_chunks_is_detected(store: BlobStore):
    ref = put(store, payload(4 * CS))
    path = store.path_for(ref.sha256)
    raw = path.read_bytes()
    body = raw[HEADER_LEN:]
    chunks = [body[i : i + CS + TAG] for i in range(0, len(body), CS + TAG)]
    assert len(chunks) == 4
    for a, b in [(0, 1), (1, 2), (2, 3), (0, 3)]:
        swapped = list(chunks)
        swapped[a], swapped[b] = swapped[b], swapped[a]
        path.write_bytes(raw[:HEADER_LEN] + b"".join(swapped))
        with pytest.raises(BlobIntegrityError):
            fully_read(store, ref.sha256)


def test_appending_a_chunk_is_detected(store: BlobStore):
    ref = put(store, payload(3 * CS))
    path = store.path_for(ref.sha256)
    raw = path.read_bytes()
    path.write_bytes(raw + raw[HEADER_LEN : HEADER_LEN + CS + TAG])
    with pytest.raises(BlobIntegrityError):
        fully_read(store, ref.sha256)


def test_chunks_from_another_blob_are_rejected(store: BlobStore):
    data = payload(2 * CS)
    a = put(store, data)
    with store.open_writer(PUB) as writer:  # same plaintext, different key: not deduped here
        writer.write(data)
        writer.finish()
        other = writer.temp_path.read_bytes()
    path = store.path_for(a.sha256)
    raw = path.read_bytes()
    path.write_bytes(raw[:HEADER_LEN] + other[HEADER_LEN:])
    with pytest.raises(BlobIntegrityError):
        fully_read(store, a.sha256)


def test_blobref_with_wrong_size_is_rejected(store: BlobStore):
    ref = put(store, b"12345")
    with pytest.raises(BlobIntegrityError, match="BlobRef"):
        store.open_reader(BlobRef(ref.uri, ref.sha256, 6), PRIV)
    with pytest.raises(ValueError, match="inconsistent"):
        store.open_reader(BlobRef(ref.uri, "0" * 64, 5), PRIV)


def test_missing_blob_is_not_found(store: BlobStore):
    with pytest.raises(BlobNotFoundError):
        store.open_reader("a" * 64, PRIV)
    with pytest.raises(FileNotFoundError):
        store.open_reader(BLOB_URI_PREFIX + "b" * 64, PRIV)
    assert not store.exists("a" * 64)


def test_bad_recipient_keys_are_refused(store: BlobStore):
    with pytest.raises(ValueError, match="32"):
        store.open_writer(b"short")
    with pytest.raises(BlobError, match="low-order"):
        store.open_writer(bytes(32))
    assert tmp_files(store) == []


def test_chunk_size_is_validated(tmp_path: Path):
    with pytest.raises(ValueError):
        BlobStore(tmp_path, chunk_size=0)


# -- names


def test_uri_round_trip_and_layout(store: BlobStore):
    sha = hashlib.sha256(b"x").hexdigest()
    assert BlobStore.uri_for(sha) == "blob://sha256/" + sha
    assert BlobStore.sha256_of_uri(BlobStore.uri_for(sha)) == sha
    assert store.path_for(sha) == store.root / "objects" / sha[:2] / sha[2:4] / sha


@pytest.mark.parametrize(
    "uri",
    [
        "blob://sha256/../../etc/passwd",
        "blob://sha256/" + "../" * 21 + "a",
        "blob://sha256/" + "A" * 64,
        "blob://sha256/" + "a" * 63,
        "blob://sha256/" + "a" * 65,
        "blob://sha256/" + "a" * 64 + "\n",
        "blob://sha256/" + "a" * 62 + "/a",
        "blob://sha256/" + "g" * 64,
        "blob://sha1/" + "a" * 64,
        "sha256/" + "a" * 64,
        "",
    ],
)
def test_bad_uris_are_rejected(store: BlobStore, uri: str):
    with pytest.raises(ValueError):
        BlobStore.sha256_of_uri(uri)
    with pytest.raises(ValueError):
        store.open_reader(uri, PRIV)


@pytest.mark.parametrize(
    "sha", ["../" + "a" * 61, "A" * 64, "a" * 63, "a" * 64 + "\n", "", "/" * 64, "a" * 64 + "/"]
)
def test_bad_bare_sha256_is_rejected(store: BlobStore, sha: str):
    with pytest.raises(ValueError):
        store.path_for(sha)
    with pytest.raises(ValueError):
        store.exists(sha)
    with pytest.raises(ValueError):
        store.open_reader(sha, PRIV)
    with pytest.raises(ValueError):
        BlobStore.uri_for(sha)


# -- keys


def test_key_files_round_trip_with_private_mode_0600(tmp_path: Path, store: BlobStore):
    private_path, public_path = tmp_path / "blob.key", tmp_path / "blob.pub"
    write_keypair(private_path, public_path)
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    private, public = load_private_key(private_path), load_public_key(public_path)
    assert len(private) == len(public) == 32
    assert len(private_path.read_text().splitlines()) == 1
    with store.open_writer(public) as writer:
        writer.write(b"via key files")
        ref = writer.commit()
    assert read_all(store, ref, private) == b"via key files"


def test_write_keypair_refuses_to_overwrite(tmp_path: Path):
    private_path, public_path = tmp_path / "blob.key", tmp_path / "blob.pub"
    write_keypair(private_path, public_path)
    before = (private_path.read_bytes(), public_path.read_bytes())
    with pytest.raises(FileExistsError):
        write_keypair(private_path, public_path)
    with pytest.raises(FileExistsError):
        write_keypair(tmp_path / "new.key", public_path)
    assert not (tmp_path / "new.key").exists()
    with pytest.raises(FileExistsError):
        write_keypair(private_path, tmp_path / "new.pub")
    assert not (tmp_path / "new.pub").exists()
    assert (private_path.read_bytes(), public_path.read_bytes()) == before


@pytest.mark.parametrize(
    "content",
    ["", "not base64!!\n", "QUJD\n", "A" * 44 + "\n" + "A" * 44 + "\n", "\xff", "QUJD" * 20],
)
def test_malformed_key_files_name_the_file(tmp_path: Path, content: str):
    path = tmp_path / "broken.key"
    path.write_text(content, encoding="latin-1")
    with pytest.raises(BlobError, match=r"broken\.key"):
        load_private_key(path)
    with pytest.raises(BlobError, match=r"broken\.key"):
        load_public_key(path)


# -- temp sweeping


def test_sweep_temp_removes_only_old_temp_files(store: BlobStore):
    assert store.sweep_temp(0) == 0  # no tmp dir yet
    live = store.open_writer(PUB)
    live.write(b"in progress")
    stale = store.open_writer(PUB)
    stale.write(b"crashed")
    old = time.time() - 7200
    os.utime(stale.temp_path, (old, old))
    unrelated = store.root / "tmp" / "README"
    unrelated.write_text("not a temp file")
    os.utime(unrelated, (old, old))

    assert store.sweep_temp(3600) == 1
    assert not stale.temp_path.exists()
    assert live.temp_path.exists()
    assert unrelated.exists()
    ref = live.commit()
    assert read_all(store, ref) == b"in progress"
    stale.abort()  # its file is already gone: still fine
    with pytest.raises(ValueError):
        store.sweep_temp(-1)

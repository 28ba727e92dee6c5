import gzip
import threading

import pytest

from services.common import formats
from services.ingest.streaming import StreamingValidator, streams


def feed_all(validator: StreamingValidator, data: bytes, chunk: int = 7) -> None:
    for start in range(0, len(data), chunk):
        validator.feed(data[start : start + chunk])


@pytest.mark.parametrize(
    "data, fmt, compression, documents",
    [
        (b"A whole book.\n" * 100, formats.TEXT, formats.NONE, 1),
        (b'{"text": "a"}\n{"text": "b"}\n', formats.JSONL, formats.NONE, 2),
        (gzip.compress(b'{"text": "a"}\n' * 50), formats.JSONL, formats.GZIP, 50),
    ],
)
def test_streaming_gives_the_same_verdict_as_reading_the_whole_file(
    data, fmt, compression, documents
):
    validator = StreamingValidator(fmt, compression, formats.Limits(), queue_chunks=2)
    feed_all(validator, data)
    assert validator.finish().document_count == documents


def test_a_rejection_is_known_before_the_stream_ends_and_later_chunks_are_dropped():
    validator = StreamingValidator(formats.TEXT, formats.NONE, formats.Limits(), queue_chunks=2)
    bad = b"fine\n\xff" + b"x" * (2 << 20)
    validator.feed(bad)  # the first block is enough to see the bad byte
    for _ in range(100):
        validator.feed(b"more text that no one needs to read " * 1000)  # never blocks
    with pytest.raises(formats.InvalidUpload, match="line 2, byte offset 5"):
        validator.finish()


def test_an_abandoned_validator_stops_without_a_verdict():
    validator = StreamingValidator(formats.JSONL, formats.NONE, formats.Limits())
    validator.feed(b'{"text": "partial')
    validator.abandon()
    validator._thread.join(5)
    assert not validator._thread.is_alive()


def test_feeding_from_another_thread_with_a_full_queue_does_not_deadlock():
    validator = StreamingValidator(formats.TEXT, formats.NONE, formats.Limits(), queue_chunks=1)
    feeder = threading.Thread(target=feed_all, args=(validator, b"word " * 200_000, 4096))
    feeder.start()
    feeder.join(10)
    assert not feeder.is_alive()
    assert validator.finish().decompressed_bytes == 1_000_000


def test_parquet_is_not_streamed():
    assert streams(formats.TEXT) and streams(formats.JSONL) and not streams(formats.PARQUET)

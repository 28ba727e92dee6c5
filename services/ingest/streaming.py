"""Validation of a text or JSONL upload while it arrives.

The chunks the upload writer stores are also handed to a validator thread, which runs
the same `formats.inspect_upload` over them as a stream. Nothing is read back from disk
afterwards, and a bad upload is refused as soon as the problem is seen, without
receiving the rest. The queue between them is bounded, so a slow validator slows the
upload down rather than filling memory.
"""

from __future__ import annotations

import io
import queue
import threading

from services.common import formats

_END = None  # marks the end of the stream in the queue


class _QueueReader(io.RawIOBase):
    """A readable stream over chunks put into a queue; an empty chunk ends it."""

    def __init__(self, chunks: queue.Queue[bytes | None]):
        self._chunks = chunks
        self._current = memoryview(b"")
        self.ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._current and not self.ended:
            chunk = self._chunks.get()
            if chunk is _END:
                self.ended = True
            else:
                self._current = memoryview(chunk)
        count = min(len(buffer), len(self._current))
        buffer[:count] = self._current[:count]
        self._current = self._current[count:]
        return count


class StreamingValidator:
    """Validates one upload in a thread of its own. feed() every chunk in order, then
    finish() for the summary; `error` is set as soon as the upload is known to be bad."""

    def __init__(
        self, dataset_format: int, compression: int, limits: formats.Limits, queue_chunks: int = 16
    ):
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=queue_chunks)
        self._reader = _QueueReader(self._chunks)
        self._format, self._compression, self._limits = dataset_format, compression, limits
        self.summary: formats.UploadSummary | None = None
        self.error: formats.UploadRejected | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="upload-validator", daemon=True)
        self._thread.start()

    def feed(self, chunk: bytes) -> None:
        """Hand over the next chunk (blocks while the validator is behind). After an error
        the chunks are dropped: the verdict is already known."""
        if chunk and self.error is None:
            self._chunks.put(chunk)

    def finish(self) -> formats.UploadSummary:
        """End the stream and wait for the verdict: the summary, or the rejection raised."""
        self._end()
        self._thread.join()
        if self._failure is not None:
            raise self._failure
        if self.error is not None:
            raise self.error
        if self.summary is None:
            raise RuntimeError("the validator ended without a verdict")
        return self.summary

    def abandon(self) -> None:
        """The upload failed for another reason: stop the thread without a verdict."""
        self._end()

    def _end(self) -> None:
        if self._thread.is_alive():
            self._chunks.put(_END)

    def _run(self) -> None:
        try:
            self.summary = formats.inspect_upload(
                self._reader,
                dataset_format=self._format,
                compression=self._compression,
                limits=self._limits,
            )
        except formats.UploadRejected as error:
            self.error = error
        except BaseException as error:  # a bug, not a verdict: surface it in finish()
            self._failure = error
        finally:
            self._drain()

    def _drain(self) -> None:
        # Keep taking chunks until the end marker, so a feeder never blocks on a validator
        # that has stopped reading early (after a rejection).
        while not self._reader.ended:
            if self._chunks.get() is _END:
                self._reader.ended = True


def streams(dataset_format: int) -> bool:
    """Whether this format can be validated as it arrives (Parquet needs its footer)."""
    return dataset_format in (formats.TEXT, formats.JSONL)

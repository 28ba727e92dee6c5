import io

import pyarrow as pa
import pyarrow.parquet as pq

from services.common import formats


def records(data: bytes, dataset_format: int) -> list:
    return list(
        formats.iter_records(
            io.BytesIO(data), dataset_format=dataset_format, compression=formats.NONE
        )
    )


def test_jsonl_and_parquet_records_keep_their_ids():
    assert records(
        b'{"text": "a", "id": 7}\n{"text": "b", "id": true}\n{"text": "c"}\n', formats.JSONL
    ) == [("a", "7"), ("b", None), ("c", None)]
    buffer = io.BytesIO()
    pq.write_table(pa.table({"text": ["x", None, "y"], "id": ["r1", "r2", "r3"]}), buffer)
    assert records(buffer.getvalue(), formats.PARQUET) == [("x", "r1"), ("y", "r3")]


def test_a_long_text_comes_in_bounded_parts_cut_at_paragraphs():
    paragraph = ("A line of a long book. " * 40).strip() + "\n\n"
    text = paragraph * (3 * formats.TEXT_PART_CHARS // len(paragraph))
    parts = [part for part, record_id in records(text.encode(), formats.TEXT)]
    assert len(parts) >= 3
    assert "".join(parts) == text
    assert all(len(part) <= formats.TEXT_PART_CHARS for part in parts)
    assert all(part.endswith("\n\n") for part in parts[:-1])


def test_a_short_text_is_one_record():
    assert records(b"One short letter.", formats.TEXT) == [("One short letter.", None)]

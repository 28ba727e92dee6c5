"""Datasets for the demo, made from text that is already on this machine: Python's
language reference topics, the licence texts Debian ships, and the standard library's
module documentation. Some documents are planted on purpose: exact and near copies of
another contributor's text, and personal data (reserved example addresses and numbers),
so that deduplication and redaction have something to find.

Files are written once and then left alone: their names, sizes and modification times
stay the same, so `1tt contribute` derives the same upload ids on every run and the
platform returns the original receipts instead of taking the text twice.
"""

from __future__ import annotations

import gzip
import importlib
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

LICENCES = ("Apache-2.0", "GPL-3", "LGPL-2.1", "MPL-2.0", "Artistic", "BSD", "CC0-1.0", "GFDL-1.3")
MODULES = (
    "asyncio",
    "argparse",
    "collections",
    "contextlib",
    "csv",
    "datetime",
    "decimal",
    "email",
    "fractions",
    "functools",
    "hashlib",
    "heapq",
    "http.client",
    "itertools",
    "json",
    "logging",
    "pathlib",
    "pickle",
    "queue",
    "random",
    "re",
    "sched",
    "shutil",
    "sqlite3",
    "statistics",
    "string",
    "subprocess",
    "tarfile",
    "textwrap",
    "threading",
    "typing",
    "unittest",
    "urllib.parse",
    "uuid",
    "zipfile",
    "zlib",
)
PLANTED_PII = [
    "Dear Ms Example, thank you for the archive boxes. Reach me at jane.doe@example.com or "
    "on +44 20 7946 0958 if anything is missing. The invoice goes to IBAN "
    "GB82 WEST 1234 5698 7654 32, as agreed with the board of the Harbor Archives.",
    "Meeting notes, 14 March. Present: the archive committee. The digitisation server at "
    "192.0.2.17 was moved behind the gateway 2001:db8::8a2e:370:7334. The old card on file, "
    "4111 1111 1111 1111, must be removed from the billing system before the audit.",
    "Transcript of the oral history interview with a retired harbour pilot. He describes "
    "forty years of bringing ships into the estuary, the fog of 1963 and the night the "
    "lighthouse keeper rowed out himself. Contact for the family: pilot.family@example.org.",
]


@dataclass(frozen=True)
class Contributor:
    name: str
    dataset: str
    paths: list[Path]


def _write_once(path: Path, data: bytes) -> Path:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.rename(path)
    return path


def _reference_topics() -> list[dict]:
    from pydoc_data.topics import topics

    return [{"text": text, "topic": name} for name, text in sorted(topics.items())]


def _module_guides() -> list[dict]:
    guides = []
    for name in MODULES:
        doc = inspect.getdoc(importlib.import_module(name)) or ""
        if len(doc.split()) >= 20:
            guides.append({"text": doc, "module": name})
    return guides


def _near_copy(text: str) -> str:
    """A near duplicate: the same text with a few words changed at the end."""
    words = text.split()
    return " ".join([*words[:-6], "as", "revised", "by", "the", "archive", "team."])


def build(root: Path) -> list[Contributor]:
    topics = _reference_topics()
    northwind = _write_once(
        root / "northwind" / "python-reference.jsonl.gz",
        gzip.compress("".join(json.dumps(t) + "\n" for t in topics).encode(), mtime=0),
    )

    licence_dir = Path("/usr/share/common-licenses")
    lexicon = [
        _write_once(root / "lexicon" / f"{name}.txt", (licence_dir / name).read_bytes())
        for name in LICENCES
        if (licence_dir / name).is_file()
    ]

    guides = _module_guides()
    long_topics = [t for t in topics if len(t["text"].split()) > 300]
    planted = [
        *(
            {"text": t["text"], "note": "exact copy of another contributor's text"}
            for t in long_topics[:3]
        ),
        *({"text": _near_copy(t["text"]), "note": "near copy"} for t in long_topics[3:5]),
    ]
    harbor_guides = _write_once(
        root / "harbor" / "module-guides.jsonl.zst",
        zstandard.ZstdCompressor(level=10).compress(
            "".join(json.dumps(d) + "\n" for d in [*guides, *planted]).encode()
        ),
    )
    table = pa.table({"text": PLANTED_PII, "kind": ["letter", "minutes", "transcript"]})
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    harbor_letters = _write_once(
        root / "harbor" / "correspondence.parquet", buffer.getvalue().to_pybytes()
    )
    return [
        Contributor("Northwind Press", "python-reference", [northwind]),
        Contributor("Lexicon Legal", "open-source-licences", lexicon),
        Contributor("Harbor Archives", "archive-guides", [harbor_guides, harbor_letters]),
    ]

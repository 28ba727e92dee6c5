"""The contribution terms a contributor can accept: each file here is one terms document;
its id is the file name without `.md`, and acceptance names the SHA-256 of its bytes."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from types import MappingProxyType

TERMS_DIR = Path(__file__).parent
CURRENT_TERMS_ID = "standard-2026-01"


@cache
def accepted_terms() -> Mapping[str, str]:
    """terms_id -> lower-case hex SHA-256 of the document. Read once per process: the
    documents ship with the package and never change while it runs."""
    return MappingProxyType(
        {
            path.stem: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(TERMS_DIR.glob("*.md"))
        }
    )


def terms_text(terms_id: str) -> str:
    return (TERMS_DIR / f"{terms_id}.md").read_text("utf-8")

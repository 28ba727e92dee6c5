"""Clean documents of three more genres, from real text on this machine, for measuring
what the quality rules wrongly remove (issue 16: code-heavy, tables, non-English):

- ``code``: Python standard-library modules, whole source files of 150-4000 words;
- ``tables``: rows of the package lists under /usr/share/package-lists (name, version,
  month, rank, summary) and of /usr/share/distro-info, 20-60 rows per document with a
  header line;
- ``non_english``: the translations of GNU and Debian tools' messages (coreutils, bash,
  apt, ...) in German, French, Spanish, Portuguese, Italian, Polish, Russian, Ukrainian,
  Japanese and Chinese, consecutive messages of ten words or more joined into documents
  of 150-800 words.

Each genre is empty where its source is missing (the measurement then says so).
"""

from __future__ import annotations

import gettext
import os
import random
import sysconfig
from functools import cache
from pathlib import Path

from services.preprocess.normalize import normalize

LANGUAGES = ("de", "fr", "es", "pt_BR", "it", "pl", "ru", "uk", "ja", "zh_CN")
DOMAINS = ("coreutils", "bash", "apt", "diffutils", "findutils", "grep", "sed", "tar", "dpkg")


def code_documents(limit: int = 60) -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for path in sorted(stdlib.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        if 150 <= len(text.split()) <= 4000:
            docs.append(normalize(text))
    return random.Random(3).sample(docs, min(limit, len(docs)))


def table_documents(limit: int = 60) -> list[str]:
    rows: list[list[str]] = []
    for folder in ("/usr/share/package-lists", "/usr/share/distro-info"):
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            if name.endswith((".tsv", ".csv")):
                with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as fh:
                    lines = fh.read().splitlines()
                if len(lines) > 20:
                    rows.append(lines)
    rng = random.Random(5)
    docs = []
    while rows and len(docs) < limit:
        lines = rng.choice(rows)
        start = rng.randrange(1, max(2, len(lines) - 60))
        body = lines[start : start + rng.randint(20, 60)]
        docs.append(normalize("\n".join([lines[0], *body])))
    return docs


@cache
def non_english_documents(per_language: int = 6) -> list[str]:
    docs = []
    for language in LANGUAGES:
        messages: list[str] = []
        for domain in DOMAINS:
            path = Path(f"/usr/share/locale/{language}/LC_MESSAGES/{domain}.mo")
            if not path.exists():
                continue
            with path.open("rb") as fh:
                catalog = gettext.GNUTranslations(fh)._catalog
            messages += [
                value
                for key, value in sorted(catalog.items(), key=lambda item: str(item[0]))
                if isinstance(value, str) and key and len(value.split()) >= 10
            ]
        produced = 0
        current: list[str] = []
        for message in messages:
            current.append(message.strip())
            words = sum(len(m.split()) for m in current)
            if words >= 150 and (words >= 800 or len(current) >= 12):
                docs.append(normalize("\n\n".join(current)))
                current = []
                produced += 1
                if produced == per_language:
                    break
    return docs


def more_clean_documents() -> dict[str, list[str]]:
    return {
        "code": code_documents(),
        "tables": table_documents(),
        "non_english": non_english_documents(),
    }


def false_removal_rates(config) -> dict[str, float]:
    """Share of these clean documents removed by `config`, per genre."""
    from services.preprocess.quality import assess

    return {
        genre: (sum(not assess(d, config).kept for d in docs) / len(docs) if docs else 0.0)
        for genre, docs in more_clean_documents().items()
    }

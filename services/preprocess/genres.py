"""Reference documents for measuring the quality filter: clean text by genre, and planted junk.

Sources (everything is deterministic; nothing is downloaded):

* ``technical`` -- REAL text: Python's own documentation shipped with the interpreter
  (``pydoc_data.topics.topics``) and the docstrings of standard-library modules.
* ``legal`` -- REAL text: the licence texts of ``/usr/share/common-licenses`` (Debian's
  base-files), each whole and also cut into clause-sized sections of ~300-1500 words.
* ``fiction``, ``poetry`` and ``conversational`` -- SYNTHETIC: no novels, poems or transcripts
  exist on the build machines, so small seeded generators compose them from phrase banks with a
  grammar (narration, quoted dialogue with short lines, scene breaks and chapter headings;
  stanzas with short lines, indentation and refrains; speaker-labelled transcripts with short
  turns, backchannels, fillers and false starts). They imitate the *form* that matters for the
  filter (line length, repetition, punctuation), not literary quality.
* ``low_quality_documents`` -- SYNTHETIC junk of ten kinds, generated with ``random.Random``.

This module reads local files (licences) and imports standard-library modules; it is a test and
evaluation helper, not part of the preprocessing path.
"""

from __future__ import annotations

import base64
import importlib
import inspect
import os
import random
import warnings

from services.preprocess.normalize import normalize
from services.preprocess.quality import QualityConfig, assess

__all__ = [
    "bad_removal_rate",
    "clean_documents",
    "false_removal_rates",
    "low_quality_documents",
]

LICENSE_DIR = "/usr/share/common-licenses"

# Standard-library modules with substantial docstrings (imported for inspect.getdoc only).
_STDLIB_MODULES = (
    "abc argparse asyncio base64 bisect calendar cmd codecs collections configparser contextlib "
    "copy copyreg csv ctypes dataclasses datetime decimal difflib dis doctest email enum "
    "filecmp fnmatch fractions ftplib functools getopt getpass gettext glob graphlib gzip "
    "hashlib heapq hmac html http imaplib importlib inspect io ipaddress itertools json "
    "keyword linecache locale logging lzma mailbox math mimetypes multiprocessing netrc "
    "numbers operator optparse os pathlib pdb pickle pickletools pkgutil platform plistlib "
    "poplib pprint profile pstats queue quopri random re reprlib sched secrets selectors "
    "shelve shlex shutil signal smtplib socket socketserver sqlite3 ssl stat statistics "
    "string struct subprocess symtable sys sysconfig tabnanny tarfile tempfile textwrap "
    "threading timeit token tokenize tomllib trace traceback tracemalloc types typing "
    "unittest urllib uuid warnings wave weakref xml zipfile zipimport zlib zoneinfo"
).split()


# --- real text ------------------------------------------------------------------------------


def _technical() -> list[str]:
    """Python's reference topics and stdlib module docstrings with at least 80 words."""
    from pydoc_data.topics import topics

    docs = [topics[k] for k in sorted(topics)]
    with warnings.catch_warnings():
        # Touching deprecated attributes (typing.io) warns; irrelevant for reading docstrings.
        warnings.simplefilter("ignore")
        for name in _STDLIB_MODULES:
            docs.extend(_module_docs(name))
    return [d for d in docs if len(d.split()) >= 80]


def _module_docs(name: str) -> list[str]:
    """Docstrings of a stdlib module and of the public classes it defines."""
    try:
        module = importlib.import_module(name)
    except ImportError:
        return []
    docs = []
    docs.append(inspect.getdoc(module) or "")
    # Public classes of the module add code-heavy reference text (signatures, examples).
    for attr in sorted(vars(module)):
        obj = vars(module)[attr]
        if attr.startswith("_") or not inspect.isclass(obj):
            continue
        if getattr(obj, "__module__", None) != module.__name__:
            continue
        docs.append(inspect.getdoc(obj) or "")
    return docs


def _sections(text: str, lo: int = 300, hi: int = 1500) -> list[str]:
    """Cut a long text at paragraph boundaries into pieces of lo..hi words."""
    out: list[str] = []
    current: list[str] = []
    words = 0
    for para in text.split("\n\n"):
        n = len(para.split())
        if current and words + n > hi and words >= lo:
            out.append("\n\n".join(current))
            current, words = [], 0
        current.append(para)
        words += n
    if current and words >= lo:
        out.append("\n\n".join(current))
    return out


def _legal() -> list[str]:
    """Licence texts from /usr/share/common-licenses, whole and in sections (deduplicated)."""
    if not os.path.isdir(LICENSE_DIR):
        return []
    seen: set[str] = set()
    docs: list[str] = []
    for name in sorted(os.listdir(LICENSE_DIR)):
        path = os.path.realpath(os.path.join(LICENSE_DIR, name))
        if path in seen or not os.path.isfile(path):
            continue
        seen.add(path)
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = normalize(fh.read())
        docs.append(text)
        pieces = _sections(text)
        if len(pieces) > 1:
            docs.extend(pieces)
    return docs


# --- synthetic fiction ----------------------------------------------------------------------

_NAMES = (
    "Anna Marek Lucia Tomas Elena Jonah Miriam Felix Ada Oskar Hana Pieter Rosa Samuel "
    "Vera Idris Nell Casimir Ines Bram"
).split()
_PLACES = [
    "the kitchen",
    "the harbour",
    "the old mill",
    "the station",
    "the orchard",
    "the attic",
    "the market square",
    "the river path",
    "the chapel",
    "the lighthouse",
    "the back garden",
    "the inn on Wexley Road",
    "the ferry landing",
    "her mother's shop",
    "the empty classroom",
    "the bridge",
    "the hospital corridor",
    "the top of the stairs",
    "the barn",
    "the library",
]
_OBJECTS = [
    "a letter",
    "the key",
    "a cracked cup",
    "the lantern",
    "his coat",
    "a photograph",
    "the map",
    "a loaf of bread",
    "the ledger",
    "an umbrella",
    "the violin case",
    "a knife",
    "the telegram",
    "a bundle of papers",
    "the ring",
    "her notebook",
    "a bottle of wine",
    "the compass",
    "a wooden box",
    "the newspaper",
]
_VERBS_PAST = [
    "picked up",
    "set down",
    "turned over",
    "hid",
    "studied",
    "pocketed",
    "unfolded",
    "wrapped",
    "pushed aside",
    "held out",
    "dropped",
    "polished",
    "examined",
    "carried",
]
_WEATHER = [
    "Rain had been falling since noon",
    "The wind came in hard off the water",
    "It was the first cold morning of the year",
    "Fog sat low over the fields",
    "The afternoon light was turning copper",
    "Snow muffled every sound in the street",
    "A warm, stale heat hung in the rooms",
    "The sky had cleared after the storm",
]
_FEELINGS = [
    "a small, stubborn hope",
    "the old anger",
    "something close to relief",
    "a tired kind of tenderness",
    "the beginnings of fear",
    "nothing at all",
    "a guilt she could not name",
    "an odd lightness",
    "the urge to laugh",
    "a familiar dread",
]
_MANNER = [
    "quietly",
    "without looking up",
    "after a long pause",
    "too quickly",
    "with a shrug",
    "almost kindly",
    "under her breath",
    "sharply",
    "as if to himself",
    "with a thin smile",
]
_SAY = ["said", "asked", "whispered", "muttered", "replied", "called", "answered", "admitted"]
_LINES = [
    "I told you it would come to this",
    "Where did you find it",
    "You should have woken me",
    "We can't stay here tonight",
    "Nobody else knows, do they",
    "Give it to me",
    "It isn't what you think",
    "How long have you been standing there",
    "Then we'll go at first light",
    "I never asked for any of this",
    "Are you going to tell her or shall I",
    "She left before the rain started",
    "Don't",
    "Not yet",
    "Why",
    "Because I promised",
    "Listen",
    "Is that all",
    "You're late",
    "I know",
    "Please",
    "What now",
    "It was never about the money",
    "If the ferry runs, we take it",
    "Your father would have known what to do",
]
_ACTIONS = [
    "crossed to the window",
    "sat down heavily",
    "leaned against the door frame",
    "pulled the chair closer",
    "looked away",
    "rubbed her eyes",
    "laughed despite herself",
    "folded his arms",
    "took off her gloves one finger at a time",
    "said nothing for a while",
    "counted the coins twice",
    "listened to the clock in the hall",
    "stood up too fast",
]
_THOUGHTS = [
    "how little had changed since the summer",
    "the promise she had made at the funeral",
    "whether the letter had ever been posted",
    "the sound of the sea at night",
    "the way his father used to whistle",
    "how easily a lie could become a habit",
    "the debt that nobody mentioned",
    "what the doctor had not said",
]


_HOURS = ["midnight", "six", "dawn", "noon", "four o\u2019clock"]


def _narration(rng: random.Random) -> str:
    """One paragraph of narration (3-6 sentences)."""
    a, b = rng.sample(_NAMES, 2)
    pool = [
        f"{rng.choice(_WEATHER)}, and {a} had not moved from {rng.choice(_PLACES)}.",
        f"{a} {rng.choice(_VERBS_PAST)} {rng.choice(_OBJECTS)} and {rng.choice(_ACTIONS)}.",
        f"For a moment {b} felt {rng.choice(_FEELINGS)}.",
        f"{b} thought about {rng.choice(_THOUGHTS)}.",
        f"Somewhere beyond {rng.choice(_PLACES)} a dog was barking.",
        f"When {a} finally spoke, the words came out {rng.choice(_MANNER)}.",
        f"There was {rng.choice(_OBJECTS)} on the table that had not been there before.",
        f"{b} {rng.choice(_ACTIONS)}, then {rng.choice(_ACTIONS)}.",
        f"It was {rng.choice(['nearly', 'long past', 'just after'])} {rng.choice(_HOURS)}.",
        f"Later {a} would remember {rng.choice(_THOUGHTS)}, but not this.",
        f"{a} and {b} walked to {rng.choice(_PLACES)} without a word between them.",
    ]
    return " ".join(rng.sample(pool, rng.randint(3, 6)))


def _dialogue(rng: random.Random) -> str:
    """One line of quoted dialogue, often very short."""
    name = rng.choice(_NAMES)
    line = rng.choice(_LINES)
    q = "?" if line.split()[0] in {"Where", "Why", "How", "Are", "Is", "What"} else ""
    form = rng.randint(0, 4)
    if form == 0:
        return f"“{line}{q or '.'}”"
    if form == 1:
        return f"“{line}{q or ','}” {name} {rng.choice(_SAY)}."
    if form == 2:
        return f"“{line}{q or ','}” {name} {rng.choice(_SAY)} {rng.choice(_MANNER)}."
    if form == 3:
        return f"{name} {rng.choice(_ACTIONS)}. “{line}{q or '.'}”"
    return f"“{line}{q or '.'}” {name} {rng.choice(_ACTIONS)}."


def _fiction(rng: random.Random) -> str:
    """A chapter-like piece: heading, narration, dialogue runs, maybe a scene break."""
    parts = [f"Chapter {rng.randint(1, 40)}"] if rng.random() < 0.6 else []
    for _ in range(rng.randint(8, 30)):
        r = rng.random()
        if r < 0.45:
            parts.append(_narration(rng))
        elif r < 0.95:
            parts.extend(_dialogue(rng) for _ in range(rng.randint(1, 6)))
        else:
            parts.append("* * *")
    return "\n\n".join(parts)


# --- synthetic poetry -----------------------------------------------------------------------

_NOUNS = (
    "river stone window harvest lantern sparrow winter orchard bell shadow salt meadow ash "
    "tide candle thread morning hill ember dust field rain door mirror root"
).split()
_ADJ = "grey quiet broken golden small cold slow bright hollow patient late green".split()
_VERB3 = "remembers waits gathers forgets carries breaks listens burns returns sleeps".split()


def _poem(rng: random.Random) -> str:
    """Stanzas of short lines; half of the poems have a refrain line closing every stanza."""

    def line() -> str:
        forms = (
            lambda: f"the {rng.choice(_ADJ)} {rng.choice(_NOUNS)} {rng.choice(_VERB3)}",
            lambda: f"and {rng.choice(_NOUNS)} in the {rng.choice(_NOUNS)},",
            lambda: f"I {rng.choice(['kept', 'lost', 'found', 'carried'])} a {rng.choice(_NOUNS)}",
            lambda: f"where the {rng.choice(_NOUNS)} is {rng.choice(_ADJ)}",
            lambda: (
                f"{rng.choice(_ADJ).capitalize()} as {rng.choice(_NOUNS)}, "
                f"{rng.choice(_ADJ)} as {rng.choice(_NOUNS)}."
            ),
            lambda: f"    only the {rng.choice(_NOUNS)}",
        )
        return rng.choice(forms)()

    refrain = (
        f"and still the {rng.choice(_NOUNS)} {rng.choice(_VERB3)}." if rng.random() < 0.5 else ""
    )
    title = f"{rng.choice(_ADJ).capitalize()} {rng.choice(_NOUNS).capitalize()}"
    stanzas = [title]
    for _ in range(rng.randint(3, 8)):
        lines = [line() for _ in range(rng.randint(3, 6))]
        if refrain:
            lines.append(refrain)
        stanzas.append("\n".join(lines))
    return "\n\n".join(stanzas)


# --- synthetic transcripts ------------------------------------------------------------------

_BACKCHANNEL = [
    "Yeah.",
    "Mm-hmm.",
    "Right.",
    "Okay.",
    "Sure.",
    "Uh-huh.",
    "Yes.",
    "No.",
    "Exactly.",
    "Oh, wow.",
    "Really?",
    "Totally.",
    "Hm.",
    "I see.",
    "Got it.",
    "Yeah, yeah.",
]
_FILLERS = ["um,", "uh,", "you know,", "like,", "I mean,", "so", "well,", "kind of"]
_TOPICS = [
    "the delivery schedule",
    "the new intake form",
    "your grandmother's farm",
    "the budget",
    "the night shift",
    "the school trip",
    "the second draft",
    "the move to Leeds",
    "the warehouse",
    "the audit",
    "the recipe",
    "the pilot study",
    "the old server",
    "the first album",
    "the council meeting",
    "the volunteers",
]
_SUBJ = ["I", "we", "they", "she", "he", "my brother", "the team", "everybody", "nobody"]
_VERB_PHRASE = [
    "didn't really expect",
    "had to redo",
    "kept putting off",
    "ended up cancelling",
    "never got",
    "wanted to change",
    "couldn't find",
    "talked about",
    "looked at",
    "worried about",
    "finally sorted out",
    "half forgot",
    "argued over",
    "signed off on",
    "was in charge of",
    "laughed about",
    "spent ages on",
    "nearly lost",
    "asked about",
]
_OBJECT = [
    "the paperwork",
    "that whole thing",
    "the second quote",
    "the keys",
    "her number",
    "the spreadsheet",
    "the contract",
    "the photos",
    "our tickets",
    "the invoices",
    "the rota",
    "the new van",
    "his notes",
    "the garden",
    "the first batch",
    "the car",
]
_TAIL = [
    "",
    "",
    "",
    "on Monday",
    "last spring",
    "at the time",
    "for weeks",
    "honestly",
    "before Christmas",
    "in the end",
    "after lunch",
    "the year before",
    "again",
]
_QUESTIONS = [
    "So how did you get into {t}?",
    "What happened with {t}?",
    "Can you say more about {t}?",
    "Did anyone push back on {t}?",
    "When did you first hear about {t}?",
    "And how long did {t} take?",
    "Was that before or after {t}?",
    "Who was in charge of {t}?",
]


def _turn(rng: random.Random) -> str:
    """One conversational turn: backchannel, question, or a statement with fillers."""
    r = rng.random()
    if r < 0.3:
        return rng.choice(_BACKCHANNEL)
    if r < 0.5:
        return rng.choice(_QUESTIONS).format(t=rng.choice(_TOPICS))
    sentences = []
    for _ in range(rng.randint(1, 4)):
        words = [rng.choice(_SUBJ), rng.choice(_VERB_PHRASE), rng.choice(_OBJECT)]
        if tail := rng.choice(_TAIL):
            words.append(tail)
        if rng.random() < 0.5:
            words.insert(0, rng.choice(_FILLERS))
        if rng.random() < 0.3:
            words.append(f"with {rng.choice(_TOPICS)}")
        if rng.random() < 0.15:  # false start
            words.insert(0, f"{words[0].split()[0]}- ")
        s = " ".join(words).replace("-  ", "- ")
        sentences.append(s[0].upper() + s[1:] + rng.choice([".", ".", "...", "?"]))
    return " ".join(sentences)


def _transcript(rng: random.Random) -> str:
    """A transcript with speaker labels (A:/B:, names, or timestamps) and many short turns."""
    style = rng.randint(0, 2)
    speakers = ["A", "B"] if style == 0 else rng.sample(["INTERVIEWER", *_NAMES[:8]], 2)
    out = []
    if rng.random() < 0.5:
        out.append(
            f"Transcript: interview about {rng.choice(_TOPICS)}, recording {rng.randint(1, 99)}"
        )
        out.append("")
    seconds = 0
    for i in range(rng.randint(40, 160)):
        who = speakers[i % 2] if rng.random() < 0.9 else speakers[(i + 1) % 2]
        seconds += rng.randint(2, 40)
        label = f"{who}:"
        if style == 2:
            label = f"[{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}] {who}:"
        text = _turn(rng)
        if rng.random() < 0.05:
            text += " [laughs]"
        out.append(f"{label} {text}")
    return "\n".join(out)


def clean_documents() -> dict[str, list[str]]:
    """Clean, well-formed documents by genre, normalised (see the module docstring).

    ``technical`` and ``legal`` are real texts found on the machine; ``fiction``, ``poetry`` and
    ``conversational`` are SYNTHETIC (seeded generators), since no such text ships here.
    """
    rng = random.Random(20240601)
    return {
        "technical": [normalize(d) for d in _technical()],
        "legal": _legal(),
        "fiction": [normalize(_fiction(rng)) for _ in range(60)],
        "poetry": [normalize(_poem(rng)) for _ in range(60)],
        "conversational": [normalize(_transcript(rng)) for _ in range(60)],
    }


# --- planted junk ---------------------------------------------------------------------------

_PRODUCTS = (
    "shoes watches handbags sunglasses jerseys phones laptops perfume jackets tablets".split()
)
_CITIES = "london paris berlin madrid dubai miami toronto sydney rome chicago".split()
_SPAM_WORDS = "cheap best discount buy online sale free shipping outlet deals price top new".split()


def _keyword_spam(rng: random.Random) -> str:
    product = rng.choice(_PRODUCTS)
    words = []
    for _ in range(rng.randint(60, 400)):
        k = rng.random()
        if k < 0.4:
            words.append(product)
        elif k < 0.55:
            words.append(rng.choice(_CITIES))
        else:
            words.append(rng.choice(_SPAM_WORDS))
        if rng.random() < 0.1:
            words[-1] += ","
    return " ".join(words)


def _garbage(rng: random.Random) -> str:
    kind = rng.randint(0, 3)
    n = rng.randint(300, 5000)
    if kind == 0:  # printable ASCII noise with random spaces
        pool = [chr(c) for c in range(33, 127)]
        return "".join(" " if rng.random() < 0.15 else rng.choice(pool) for _ in range(n))
    if kind == 1:  # binary read as Latin-1
        return bytes(rng.randrange(256) for _ in range(n)).decode("latin-1")
    if kind == 2:  # alphanumeric noise, long runs
        pool = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        return "".join(" " if rng.random() < 0.03 else rng.choice(pool) for _ in range(n))
    pool = [chr(c) for c in range(0x2500, 0x25FF)] + list("#$%&*@~^|<>=+")  # box/symbol soup
    return "".join(" " if rng.random() < 0.1 else rng.choice(pool) for _ in range(n))


def _base64_dump(rng: random.Random) -> str:
    raw = bytes(rng.randrange(256) for _ in range(rng.randint(300, 6000)))
    enc = base64.b64encode(raw).decode("ascii")
    lines = [enc[i : i + 76] for i in range(0, len(enc), 76)]
    if rng.random() < 0.5:
        lines = ["-----BEGIN CERTIFICATE-----", *lines, "-----END CERTIFICATE-----"]
    return "\n".join(lines)


def _hex_dump(rng: random.Random) -> str:
    raw = bytes(rng.randrange(256) for _ in range(rng.randint(256, 4096)))
    style = rng.randint(0, 2)
    lines = []
    for off in range(0, len(raw), 16):
        chunk = raw[off : off + 16]
        if style == 0:  # xxd
            hexpart = " ".join(chunk[i : i + 2].hex() for i in range(0, len(chunk), 2))
            ascii_ = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
            lines.append(f"{off:08x}: {hexpart:<40} {ascii_}")
        elif style == 1:  # spaced bytes
            lines.append(" ".join(f"{b:02X}" for b in chunk))
        else:  # continuous
            lines.append(chunk.hex())
    return "\n".join(lines)


def _repeated_line(rng: random.Random) -> str:
    line = rng.choice(
        [
            "Click here to subscribe to our newsletter and get 10% off!",
            "This page intentionally left blank.",
            "ERROR: connection refused, retrying in 5 seconds",
            "All rights reserved. Unauthorized reproduction is prohibited.",
            f"Buy {rng.choice(_PRODUCTS)} now at the lowest price in {rng.choice(_CITIES)}",
        ]
    )
    return "\n".join([line] * rng.randint(50, 150))


def _repeated_paragraph(rng: random.Random) -> str:
    para = " ".join(_narration(rng) for _ in range(rng.randint(1, 2)))
    blocks = [para] * rng.randint(5, 30)
    if rng.random() < 0.5:
        blocks.insert(0, _narration(rng))
    return "\n\n".join(blocks)


def _number_table(rng: random.Random) -> str:
    cols = rng.randint(3, 9)
    rows = []
    if rng.random() < 0.5:
        rows.append(
            " ".join(rng.choice(["Q1", "Q2", "Total", "ID", "Qty", "2023"]) for _ in range(cols))
        )
    for i in range(rng.randint(20, 200)):
        cells = [str(i + 1)]
        cells += [f"{rng.uniform(-1e4, 1e5):,.2f}" for _ in range(cols - 1)]
        rows.append(rng.choice([" ", "\t", " | ", ";"]).join(cells))
    return "\n".join(rows)


def _near_empty(rng: random.Random) -> str:
    return rng.choice(
        [
            "",
            "Untitled",
            "Page 1 of 1",
            "N/A",
            "test",
            "TODO: add content",
            "Draft",
            "-",
            "1",
            "Lorem ipsum",
            "Document1",
            "(blank)",
        ]
    )


_MENU = (
    "Home About Products Services Blog Contact Login Register Cart Help FAQ Careers Press "
    "Partners Support Privacy Terms Sitemap Newsletter Shop Deals Account Wishlist"
).split()


def _navigation(rng: random.Random) -> str:
    """Scraped site chrome: the site's one menu and footer repeated on every page."""
    sep = rng.choice([" | ", " · ", " » ", " > ", "\n"])
    menu = sep.join(rng.sample(_MENU, rng.randint(6, 14)))
    footer = (
        f"© {rng.randint(2005, 2024)} {rng.choice(_CITIES).title()} Media Ltd. All rights reserved."
    )
    blocks = []
    for _ in range(rng.randint(3, 20)):
        blocks.append(menu)
        blocks.append("Home » " + " » ".join(rng.sample(_MENU, rng.randint(1, 3))))
        blocks.append(footer)
    return "\n".join(blocks)


def _seo_links(rng: random.Random) -> str:
    """A link farm for one target product: the same anchor templates over many cities."""
    p = rng.choice(_PRODUCTS)
    templates = rng.sample(
        [
            "Cheap {p} in {c}",
            "Best {p} deals {c}",
            "{p} for sale {c} online",
            "Buy {p} {c} free shipping",
            "{c} {p} outlet",
            "Discount {p} {c} sale",
        ],
        rng.randint(1, 3),
    )
    lines = []
    for _ in range(rng.randint(30, 200)):
        c = rng.choice(_CITIES)
        text = rng.choice(templates).format(p=p, c=c)
        if rng.random() < 0.5:
            text = f"{text} - https://www.{c}-{p}-deals.example/{p}/{c}"
        lines.append(text)
    return "\n".join(lines)


_BAD_KINDS = {
    "keyword_spam": _keyword_spam,
    "random_garbage": _garbage,
    "base64_dump": _base64_dump,
    "hex_dump": _hex_dump,
    "repeated_line": _repeated_line,
    "repeated_paragraph": _repeated_paragraph,
    "number_table": _number_table,
    "near_empty": _near_empty,
    "navigation_boilerplate": _navigation,
    "seo_link_list": _seo_links,
}


def low_quality_documents() -> list[tuple[str, str]]:
    """Planted bad documents as (kind, normalised text): 10 kinds x 12 seeded variants."""
    rng = random.Random(1337)
    return [(kind, normalize(make(rng))) for kind, make in _BAD_KINDS.items() for _ in range(12)]


def false_removal_rates(config: QualityConfig) -> dict[str, float]:
    """Share of clean documents removed by ``config``, per genre."""
    rates = {}
    for genre, docs in clean_documents().items():
        removed = sum(not assess(d, config).kept for d in docs)
        rates[genre] = removed / len(docs) if docs else 0.0
    return rates


def bad_removal_rate(config: QualityConfig) -> float:
    """Share of the planted bad documents removed by ``config``."""
    docs = low_quality_documents()
    return sum(not assess(text, config).kept for _, text in docs) / len(docs)

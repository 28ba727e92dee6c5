"""Redaction of personal data and secrets in contributed text.

Contributed documents are scrubbed before an LLM provider trains on them: every
detected value is replaced by a typed placeholder (``[EMAIL]``, ``[PHONE]`` ...)
and counted by kind for the contributor's report.  Recall matters (a leaked
phone number or API key is a privacy or security incident) but so does
precision: redacting version numbers, dates, ISBNs, section numbers, prices or
code identifiers damages the text the contributor is paid for.  Every detector
is therefore a cheap regular expression for *candidates* followed by a
structural check (checksum, number ranges, digit counts, context words).

The module is pure: no I/O, no clock, no mutable global state.

Detection rules, in priority order (a candidate that overlaps an already
accepted span of a higher-priority rule is dropped, see ``_DETECTORS``):

1. ``secret`` (specific formats): PEM private-key blocks (also unterminated
   ones, up to the end of the base64 body), JWTs (``eyJ`` header + two more
   base64url segments), AWS access key ids (``AKIA``/``ASIA``/... + 16), GitHub
   tokens (``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_`` + 36, ``github_pat_``),
   Slack tokens (``xox[abposr]-``) and webhook URLs, Stripe keys
   (``sk_``/``pk_``/``rk_`` + ``live``/``test``), Google API keys (``AIza`` +
   35), OpenAI/Anthropic-style ``sk-`` keys (with a digit, a letter and
   entropy), the password of a URL's user-info (``scheme://user:PASS@host``)
   and ``Bearer``/``Basic`` authorization values.
2. ``secret`` (generic assignments): ``key = value`` / ``key: value`` /
   ``"key": "value"`` / ``key => value`` where the key *ends* in a secret-ish
   word (``password``, ``passwd``, ``pwd``, ``pass``, ``secret``, ``token``,
   ``api_key``, ``access_key``, ``private_key``, ``client_secret``,
   ``credentials``, ``auth`` ...; camelCase and kebab-case included) and the
   value is at least 16 characters, has no whitespace, is not a placeholder
   (``${VAR}``, ``<...>``, ``{{...}}``, ``changeme``, ``xxxx``), not a path,
   URL or code expression, has Shannon entropy >= ``SECRET_MIN_ENTROPY``
   bits/char and contains a digit (or mixes upper and lower case over >= 20
   characters).  Only the value is replaced; the key name stays.  A bare
   UUID or git SHA in prose is an identifier, not a secret; the same string
   assigned to ``token =`` is redacted as a secret because of the key.
3. ``email``: ASCII ``local@domain.tld`` with subdomains and plus-addressing;
   the TLD must be alphabetic, so ``user@localhost`` and ``admin@10.0.0.1``
   (an IP, redacted as such) are not emails.  Not an email: the user-info of
   a URL (``https://user@host``: an account name, and a password there is
   already a secret), an SSH remote (``git@github.com:org/repo``) and
   asset names whose "TLD" is a file extension (``icon@2x.png``).
4. ``iban``: a registered country code, two check digits and a BBAN, compact
   or in groups of four separated by single spaces; the length must equal the
   country's registered length and the ISO 7064 mod-97 check must give 1.
   Upper case only (that is how IBANs are printed).
5. ``card``: 13-19 digits, compact or in groups (4-4-4-4[-1..3] or Amex-like
   4-6-5 / 4-6-4) with one consistent separator (space or dash), Luhn-valid
   and with a known IIN prefix and a length that brand issues (Visa, Mastercard,
   Amex, Discover, Diners, JCB, UnionPay, Maestro, Mir).
6. ``national_id``: US SSN ``AAA-GG-SSSS`` (dashes or spaces, or nine digits
   right after "SSN"/"social security"; area 000, 666 and 9xx, group 00 and
   serial 0000 excluded), UK National Insurance number (``AB 12 34 56 C``,
   prefix letters with the official exclusions, suffix A-D), German
   Steuer-Identifikationsnummer (11 digits, digit-distribution rule and ISO
   7064 MOD 11,10 check digit), French NIR / numéro de sécurité sociale
   (15 digits incl. Corsica 2A/2B, structure and mod-97 key) and Dutch BSN
   (11-test; only right after "BSN"/"burgerservicenummer", because one
   random nine-digit number in eleven passes the test).
7. ``ipv6``: full, compressed, zone-less and IPv4-mapped forms, validated
   with ``ipaddress.IPv6Address``; the candidate must contain a decimal digit
   (so the C++/Rust paths ``a::b``, ``std::vector`` never qualify) and must
   not be preceded by a word character, ``:`` or ``.``.  The unspecified
   address ``::`` is kept: it identifies nobody.
8. ``ipv4``: four octets 0-255 without leading zeros, not preceded by a word
   character or dot and not followed by a word character or ``.digit`` (so
   ``1.2.3.4.5``, OIDs and ``v1.2.3.4`` are not IPs).  Kept: ``0.0.0.0``
   (unspecified), netmasks starting with 255 (``255.255.255.0``), and
   dotted numbers right after a version/section word (``version 1.2.3.4``,
   ``§ 12.3.4.5``, ``clause 1.2.3.4``).  Private and loopback addresses are
   redacted: they leak internal infrastructure.
9. ``phone``: (a) international ``+CC`` or ``00CC`` numbers with 8-15 digits;
   (b) a parenthesised area code ``(415)`` / ``(030)``; (c) NANP
   ``415-555-0132`` with one consistent separator; (d) national trunk-prefix
   numbers ``020 7946 0958`` / ``01 23 45 67 89`` / ``089/1234567`` with at
   least one separator and 9-12 digits; (e) any 7-15 digit number right
   after a phone cue (``Tel``, ``phone``, ``mobile``, ``fax``, ``call`` ...).
   Rejected: candidates containing a date or starting with month/year
   (``03/2024-117``), year ranges, times (``:digit`` next to the number),
   dotted candidates that mix separators, numbers glued to letters, dots or
   dashes, tails of longer digit-group codes (``4972 0078 9847 0801``,
   ``1Z 999 AA1 01 2345 6784``), and (for a-d) numbers right after a
   product/reference word (ISBN, SKU, part no., order, invoice, serial,
   section ...).  A number that already matched a higher-priority kind
   (IBAN, card, national id, IP) is not a phone.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import re
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import tt_textcore

from services.preprocess.textcore import code_points, pattern_mask, without_surrogates

KINDS = ("email", "phone", "ipv4", "ipv6", "card", "iban", "national_id", "secret")
PLACEHOLDERS = {
    "email": "[EMAIL]",
    "phone": "[PHONE]",
    "ipv4": "[IPV4]",
    "ipv6": "[IPV6]",
    "card": "[CARD]",
    "iban": "[IBAN]",
    "national_id": "[NATIONAL_ID]",
    "secret": "[SECRET]",
}

# Bits per character a generic assigned value needs to count as a secret.
# Random base62/base64/hex keys of >= 16 characters score 3.5-4.5; English
# identifiers and words typically stay below, and the digit rule below does
# the rest.
SECRET_MIN_ENTROPY = 3.0
SECRET_MIN_LENGTH = 16

Span = tuple[int, int, str]

_DIGIT = re.compile(r"\d")


@functools.cache
def _digit_table() -> bytes:
    """One byte per code point, 1 for a decimal digit: what ``\\d`` matches, found by the
    regex itself, so the native index and the patterns agree on every character."""
    return pattern_mask(_DIGIT.pattern, code_points()).astype(np.uint8).tobytes()


def _finditer_at(
    pattern: re.Pattern[str], text: str, candidates: Iterable[int]
) -> Iterator[re.Match[str]]:
    """Yield exactly what ``pattern.finditer(text)`` yields, trying ``pattern.match``
    only at ``candidates``.

    The fast path behind most detectors: ``re`` has no quick way to skip ahead
    to a pattern that opens with a character class (``\\d``, ``[+0]``), so a
    scan tries every offset of the text, while the few offsets where a match
    can start are known from a cheaper look-up (digit runs from
    ``_Text.run_starts``, or a scan for a literal such as ``(``).

    Requirements: ``candidates`` ascend and include every ``pos`` at which
    ``pattern.match(text, pos)`` succeeds (extra ones cost a failed match and
    change nothing); the pattern cannot match the empty string.

    Why this is exact: ``finditer`` yields the leftmost match that starts at or
    after the end of the previous one (the first one from offset 0).  Here the
    candidates before that end are skipped and the first one that matches is
    taken, which is that leftmost match, as no match starts elsewhere.  And
    ``pattern.match(text, pos)`` finds the very match a scan finds at ``pos``:
    lookbehinds and ``\\b`` see the text before ``pos``, and lookaheads see the
    whole text (no ``endpos`` is passed: that would cut them short).
    """
    end = 0
    match = pattern.match
    for pos in candidates:
        if pos >= end:
            m = match(text, pos)
            if m is not None:
                end = m.end()
                yield m


def _starts(pattern: re.Pattern[str], text: str) -> list[int]:
    """Where ``pattern`` (a literal and a lookahead, one character wide) matches, ascending.

    Such a pattern starts with a literal, which ``re`` finds with a fast
    character search, and its matches cannot overlap, so these are all the
    offsets where it matches."""
    return [m.start() for m in pattern.finditer(text)]


class _Text:
    """A text and what several detectors look up in it, each computed at most once.

    Most detectors need a few digits close together; ``digits_within`` answers
    "are there ``count`` digits within ``width`` characters anywhere?", so a
    detector whose every match would need that can skip its regex scans when the
    answer is no (most prose).  ``run_starts`` lists where a match of a pattern
    that opens with a digit not preceded by a word character can start, for
    :func:`_finditer_at`.  ``has_pairs`` tells whether a group of two-character
    needles (``_PAIR_GROUPS``) occurs.  All of these come from one native pass
    over the text (``tt_textcore.digit_index``, native/textcore/src/pii.rs).
    """

    __slots__ = ("_index", "_low", "_utf8", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._utf8: bytes | None = None
        self._low: bytes | None = None
        self._index: tt_textcore.DigitIndex | None = None

    @property
    def utf8(self) -> bytes:
        """The text as UTF-8.  An ASCII needle occurs in it exactly where it occurs in
        ``text`` (no byte of a multi-byte sequence is ASCII), and ``bytes`` searches
        are faster than ``str`` ones for texts with non-Latin-1 characters."""
        if self._utf8 is None:
            self._utf8 = self.text.encode("utf-8", "surrogatepass")
        return self._utf8

    @property
    def low(self) -> bytes:
        """The text as UTF-8 with ASCII letters lower-cased, for the needles in
        _LOWER_NEEDLES: ASCII words without "k" that do not end in "i", so they
        occur here exactly where they occur in ``text.lower()`` (which maps only
        U+212A to "k" and U+0130 to "i" plus a combining dot among non-ASCII
        characters), at a third of the cost."""
        if self._low is None:
            self._low = self.utf8.lower()
        return self._low

    @property
    def index(self) -> tt_textcore.DigitIndex:
        """The native index of the digits and needle pairs.  A lone surrogate (which
        no decoded upload holds, and which UTF-8 cannot carry) is indexed as U+FFFD:
        neither is a digit nor ASCII, so every answer is the same."""
        if self._index is None:
            try:
                self._index = tt_textcore.digit_index(self.text, _digit_table(), _pair_table())
            except UnicodeEncodeError:
                self._index = tt_textcore.digit_index(
                    without_surrogates(self.text), _digit_table(), _pair_table()
                )
        return self._index

    def has_pairs(self, group: int) -> bool:
        """Whether one of the two-character needles of ``_PAIR_GROUPS[group]`` occurs."""
        return bool(self.index.groups >> group & 1)

    def run_starts(self, count: int = 1, width: int = 1) -> list[int]:
        """Where runs of digits start that have ``count`` digits (counting on past
        the run) within their first ``width`` characters, ascending.

        Every match of a pattern that opens with ``\\d`` (or ``[1-9]``, ``0`` ...)
        followed by a lookbehind refusing a word character before it starts at
        one of these, provided every such match holds ``count`` digits within
        its first ``width`` characters (see the ``_*_RUN`` constants)."""
        return self.index.run_starts(count, width)

    def zero_run_starts(self) -> list[int]:
        """Where runs of digits start with an ASCII "0", ascending."""
        return self.index.zero_run_starts()

    def iban_starts(self) -> list[int]:
        """Where two ASCII capitals stand right before two digits ("DE89"), as at the
        start of every IBAN, ascending."""
        return self.index.iban_starts()

    def nino_starts(self) -> list[int]:
        """Where a NINO can start: two characters before six digits in a row, or
        three before three pairs of digits separated by single spaces; ascending,
        possibly with offsets that hold no NINO."""
        return self.index.nino_starts()

    def digits_within(self, count: int, width: int) -> bool:
        """Whether some ``width`` consecutive characters hold ``count`` or more digits
        (the narrowest span of ``count`` consecutive digits is below ``width``)."""
        return self.index.digits_within(count, width)


@dataclass(frozen=True)
class Redaction:
    """The result of :func:`redact`.

    ``text`` is the redacted text, ``counts`` maps each kind that occurred to
    its number of redactions, ``spans`` lists ``(start, end, kind)`` of every
    redaction in the *original* text, sorted by start.
    """

    text: str
    counts: dict[str, int]
    spans: tuple[Span, ...] = field(default=())


# --------------------------------------------------------------------------
# Validators
# --------------------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    """Return True if ``digits`` (separators ' ' and '-' allowed) passes the Luhn check.

    Strings with any other character, or fewer than two digits, are invalid.
    """
    compact = digits.replace(" ", "").replace("-", "")
    if len(compact) < 2 or not compact.isascii() or not compact.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(compact)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# Registered IBAN lengths (ISO 13616 registry): all SEPA countries plus the
# other registry members commonly seen in European correspondence.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24,
    "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31,
    "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


_IBAN_COUNTRIES = frozenset(country.encode() for country in IBAN_LENGTHS)


def iban_mod97(compact: str) -> int:
    """Return the ISO 7064 mod-97 remainder of an IBAN (country+check moved to the end).

    ``compact`` must be upper-case alphanumeric without separators; a valid
    IBAN gives 1.
    """
    rearranged = compact[4:] + compact[:4]
    remainder = 0
    for ch in rearranged:
        # Letters count as two digits (A=10 ... Z=35).
        value = ord(ch) - 48 if ch.isdigit() else ord(ch) - 55
        remainder = (remainder * (100 if value > 9 else 10) + value) % 97
    return remainder


def iban_valid(candidate: str) -> bool:
    """Return True if ``candidate`` is a valid IBAN.

    Spaces are ignored and letters may be in either case; the country must be
    registered, the length must match the country's and the mod-97 check must
    give 1.
    """
    compact = candidate.replace(" ", "").upper()
    if len(compact) < 5 or not compact.isascii() or not compact.isalnum():
        return False
    country, check = compact[:2], compact[2:4]
    if not country.isalpha() or not check.isdigit():
        return False
    if IBAN_LENGTHS.get(country) != len(compact):
        return False
    return iban_mod97(compact) == 1


def _ssn_valid(area: str, group: str, serial: str) -> bool:
    return (
        area != "000"
        and area != "666"
        and not area.startswith("9")
        and group != "00"
        and serial != "0000"
    )


def steuer_id_valid(digits: str) -> bool:
    """Return True if ``digits`` is a valid German Steuer-Identifikationsnummer.

    Eleven digits, the first not 0; among the first ten exactly one digit
    occurs two or three times (never three in a row) and every other digit at
    most once; the last digit is the ISO 7064 MOD 11,10 check digit.
    """
    if len(digits) != 11 or not digits.isascii() or not digits.isdigit() or digits[0] == "0":
        return False
    counts = Counter(digits[:10])
    repeated = [d for d, c in counts.items() if c > 1]
    if len(repeated) != 1 or counts[repeated[0]] > 3:
        return False
    if counts[repeated[0]] == 3 and repeated[0] * 3 in digits[:10]:
        return False
    product = 10
    for ch in digits[:10]:
        total = (int(ch) + product) % 10
        if total == 0:
            total = 10
        product = (total * 2) % 11
    check = 11 - product
    if check == 10:
        check = 0
    return check == int(digits[10])


def nir_valid(compact: str) -> bool:
    """Return True if ``compact`` (15 chars, no spaces) is a valid French NIR.

    Sex 1/2, year, month 01-12 (or 20-99: unknown or special), department
    (two digits, or 2A/2B for Corsica), commune, order number and the key
    ``97 - (number mod 97)`` where 2A counts as 19 and 2B as 18.
    """
    if len(compact) != 15 or not compact.isascii():
        return False
    body, key = compact[:13], compact[13:]
    dept = body[5:7].upper()
    if dept == "2A":
        number = body[:5] + "19" + body[7:]
    elif dept == "2B":
        number = body[:5] + "18" + body[7:]
    else:
        number = body
    if not number.isdigit() or not key.isdigit() or body[0] not in "12":
        return False
    month = int(body[3:5])
    if month == 0 or 13 <= month <= 19:
        return False
    return 97 - int(number) % 97 == int(key)


def bsn_valid(digits: str) -> bool:
    """Return True if ``digits`` (nine digits) passes the Dutch BSN 11-test."""
    if len(digits) != 9 or not digits.isascii() or not digits.isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(digits[:8], range(9, 1, -1), strict=True))
    total -= int(digits[8])
    return total % 11 == 0 and int(digits) != 0


def shannon_entropy(value: str) -> float:
    """Return the Shannon entropy of ``value`` in bits per character (0.0 for '')."""
    if not value:
        return 0.0
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


# --------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------

_B64URL = r"[A-Za-z0-9_-]"

# Each entry: (needles, pattern, group whose span is redacted, extra check on
# that group).  A pattern only runs when one of its needles occurs in the text
# (in the lower-cased text for the case-insensitive patterns, whose needles are
# lower case): a substring test costs far less than a regex scan, and most
# documents contain no secret at all.  Every needle is a literal that any match
# of its pattern contains; no needles means the pattern always runs.
_SecretRule = tuple[tuple[str, ...], re.Pattern[str], int, Callable[[str], bool] | None]
_SPECIFIC_SECRETS: tuple[_SecretRule, ...] = (
    (
        ("PRIVATE KEY",),
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
            r"[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
        ),
        0,
        None,
    ),
    # A truncated block (no END line) still leaks the key: take the body lines.
    (
        ("PRIVATE KEY",),
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
            r"(?:(?:\r?\n|\\n)[ \t]*(?:[A-Za-z0-9+/=]{8,}|[A-Za-z-]+:[^\n\\]*))*"
        ),
        0,
        None,
    ),
    (
        ("eyJ",),
        re.compile(rf"eyJ(?<![A-Za-z0-9_-]eyJ){_B64URL}{{5,}}\.{_B64URL}{{5,}}\.{_B64URL}*"),
        0,
        None,
    ),
    (
        (),  # the pattern opens with the literal "A": scanning with it is as cheap as a test
        re.compile(
            r"A(?<![A-Za-z0-9]A)(?:KIA|SIA|BIA|CCA|GPA|IDA|IPA|NPA|NVA|ROA|PKA)"
            r"[A-Z0-9]{16}(?![A-Za-z0-9])"
        ),
        0,
        None,
    ),
    (
        (),  # likewise with "gh"
        re.compile(r"gh(?<![A-Za-z0-9_]gh)[pousr]_[A-Za-z0-9]{36,251}(?![A-Za-z0-9_])"),
        0,
        None,
    ),
    (
        ("github_pat_",),
        re.compile(r"github_pat_(?<![A-Za-z0-9_]github_pat_)[A-Za-z0-9_]{22,255}"),
        0,
        None,
    ),
    (
        ("xox",),
        re.compile(r"xox(?<![A-Za-z0-9-]xox)[abposre]-[A-Za-z0-9-]{10,}"),
        0,
        None,
    ),
    (
        ("hooks.slack.com",),
        re.compile(r"https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+"),
        0,
        None,
    ),
    (
        ("k_live_", "k_test_"),
        re.compile(r"[spr]k_(?<![A-Za-z0-9_][spr]k_)(?:live|test)_[A-Za-z0-9]{16,}"),
        0,
        None,
    ),
    (
        ("whsec_",),
        re.compile(r"whsec_(?<![A-Za-z0-9_]whsec_)[A-Za-z0-9]{16,}"),
        0,
        None,
    ),
    (
        ("AIza",),
        re.compile(r"AIza(?<![A-Za-z0-9_-]AIza)[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])"),
        0,
        None,
    ),
    (
        ("sk-",),
        re.compile(r"sk-(?<![A-Za-z0-9_-]sk-)(?:[a-z]{2,8}(?:\d\d)?-){0,2}[A-Za-z0-9_-]{20,}"),
        0,
        # "sk-" also starts ordinary hyphenated words: demand key material.
        lambda v: (
            any(c.isdigit() for c in v)
            and any(c.isalpha() for c in v[3:])
            and shannon_entropy(v[3:]) >= 3.5
        ),
    ),
    (
        ("bearer", "basic"),
        re.compile(r"(?i)\b(?:bearer|basic)[ \t]+([A-Za-z0-9._~+/-]{16,}=*)"),
        1,
        lambda v: shannon_entropy(v) >= SECRET_MIN_ENTROPY,
    ),
    (
        ("://",),
        re.compile(r"(?<![\w+.-])[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s:/@]+:([^\s/@]+)@"),
        1,
        lambda v: not _URL_PASSWORD_PLACEHOLDER.fullmatch(v),
    ),
)

_URL_PASSWORD_PLACEHOLDER = re.compile(
    r"(?i)pass(?:word)?|pwd|secret|x+|\*+|<[^>]*>|\$\{[^}]*\}|\$\w+|\{\{.*\}\}|\[[A-Z_]+\]"
)

# `key = value`, `key: value`, `"key": "value"`, `key => value`, `--key=value`.
# The operator is found first (a cheap one-character scan), then the key that
# ends right before it and the value right after it.
_ASSIGN_OP = re.compile(r":=|=>|=|:")
_KEY_BEFORE = re.compile(r"(?<![\w.])[A-Za-z_][\w.-]{0,60}(?=[\"']?[ \t]*\Z)")
_VALUE_AFTER = re.compile(
    r"[ \t]*(?:\"(?P<dq>[^\"\n]{1,512})\"|'(?P<sq>[^'\n]{1,512})'|(?P<bare>[^\s\"',;]{1,512}))"
)
_SECRET_KEY_SUFFIX = re.compile(
    r"(?:api_?key|access_?key(?:_?id)?|secret_?(?:access_?)?key|private_?key|signing_?key"
    r"|encryption_?key|master_?key|auth_?key|client_?key|app_?key|secret|token|password"
    r"|passwd|pwd|(?:^|_)pass|passphrase|credentials?|(?:^|_)auth)$"
)
_PLACEHOLDER_VALUE = re.compile(
    r"(?i)(.)\1*|<.*>|\$\{.*\}|\{\{.*\}\}|%\(.*\)s|\$[A-Z_][A-Z0-9_]*|\[[A-Z_]+\]"
    r"|.*(?:changeme|placeholder|your[_-]|xxxx|\*\*\*\*|redacted).*"
)
_PATH_LIKE = re.compile(
    r"(?:^[/~.]|://|\\|\.(?:json|ya?ml|txt|pem|key|crt|cer|env|cfg|conf|ini|toml|py|js|ts)$)"
)
_CODE_LIKE = re.compile(r"[\w.]*[(\[{]|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")


def _looks_secret(value: str) -> bool:
    if len(value) < SECRET_MIN_LENGTH or any(c.isspace() for c in value):
        return False
    if _PLACEHOLDER_VALUE.fullmatch(value) or _PATH_LIKE.search(value):
        return False
    if _CODE_LIKE.match(value):
        return False
    has_digit = any(c.isdigit() for c in value)
    mixed_case = any(c.islower() for c in value) and any(c.isupper() for c in value)
    if not (has_digit or (mixed_case and len(value) >= 20)):
        return False
    return shannon_entropy(value) >= SECRET_MIN_ENTROPY


# Needles of the case-insensitive patterns, tested in _Text.low (see there).
_LOWER_NEEDLES = {
    pattern: tuple(n.encode() for n in needles)
    for needles, pattern, _, _ in _SPECIFIC_SECRETS
    if pattern.flags & re.IGNORECASE
}


# Needles of the case-sensitive patterns, tested in _Text.utf8 (see there).
_UTF8_NEEDLES = {
    pattern: tuple(n.encode() for n in needles)
    for needles, pattern, _, _ in _SPECIFIC_SECRETS
    if not pattern.flags & re.IGNORECASE
}

# Per rule of _SPECIFIC_SECRETS, two-character strings one of which every match
# contains (None: no such test, for the case-insensitive rule).  _Text.has_pairs
# tests them all in one pass; only a rule whose pair occurs goes on to its
# needles (which stay the same, so a rule runs on no more and no fewer texts
# than its needles allow) and its pattern.
_SECRET_BIGRAMS: tuple[frozenset[bytes] | None, ...] = tuple(
    None if pairs is None else frozenset(pair.encode() for pair in pairs)
    for pairs in (
        ("-B",),  # "-----BEGIN"
        ("-B",),
        ("yJ",),  # "eyJ"
        ("AK", "AS", "AB", "AC", "AG", "AI", "AN", "AR", "AP"),  # "AKIA" ...
        ("p_", "o_", "u_", "s_", "r_"),  # "ghp_" ...
        ("b_",),  # "github_pat_"
        ("xo",),  # "xoxb-"
        ("k.",),  # "hooks.slack.com"
        ("k_",),  # "sk_live_"
        ("c_",),  # "whsec_"
        ("Iz",),  # "AIza"
        ("k-",),  # "sk-"
        None,  # "bearer" / "basic", any case
        (":/",),  # "://"
    )
)
# A URL with user-info: the pattern opens with a character class, so it is only
# tried where its scheme can start, 2 to 21 characters before a "://".
_URL_PASSWORD_RULE = _SPECIFIC_SECRETS[-1][1]
_SCHEME_END = re.compile(r":(?=//)")


def _scheme_starts(text: str) -> list[int]:
    """Where a match of _URL_PASSWORD_RULE can start: its scheme is a letter and 1
    to 20 more characters, none of them ":", right before a "://"."""
    starts: set[int] = set()
    for colon in _starts(_SCHEME_END, text):
        starts.update(range(max(0, colon - 21), colon - 1))
    return sorted(starts)


def _find_specific_secrets(doc: _Text) -> Iterator[tuple[int, int]]:
    text = doc.text
    for rule, ((needles, pattern, group, check), bigrams) in enumerate(
        zip(_SPECIFIC_SECRETS, _SECRET_BIGRAMS, strict=True)
    ):
        if bigrams is not None and not doc.has_pairs(rule):
            continue  # no match without one of these pairs
        lower_needles = _LOWER_NEEDLES.get(pattern)
        if lower_needles is not None:
            if not any(n in doc.low for n in lower_needles):
                continue
        elif needles and not any(n in doc.utf8 for n in _UTF8_NEEDLES[pattern]):
            continue
        if pattern is _URL_PASSWORD_RULE:
            matches = _finditer_at(pattern, text, _scheme_starts(text))
        else:
            matches = pattern.finditer(text)
        for m in matches:
            if check is None or check(m.group(group)):
                yield m.span(group)


# The last word of every key _SECRET_KEY_SUFFIX accepts, lower case: a key can
# only qualify if the text right before its operator ends with one of these.
_SECRET_KEY_LAST_WORDS = (
    "key", "id", "secret", "token", "password", "passwd", "pwd", "pass", "passphrase",
    "credential", "credentials", "auth",
)  # fmt: skip


# Operators that can be followed by a secret: the value after them (past spaces,
# tabs and an opening quote) must be 16 or more characters without whitespace,
# quotes or (bare) ",;".  Each pattern opens with a literal, which ``re`` finds
# with a fast character search, so two scans cost far less than one with
# _ASSIGN_OP (whose every match starts a Match object and some Python).  A ":"
# may be followed by the "=" of ":=", a "=" by the ">" of "=>".
_VALUE_AHEAD = r"""[ \t]*(?:"[^\s"]{16}|'[^\s']{16}|[^\s"',;]{16})"""
_COLON_BEFORE_VALUE = re.compile(rf":(?==?{_VALUE_AHEAD})")
_EQUALS_BEFORE_VALUE = re.compile(rf"=(?=>?{_VALUE_AHEAD})")


def _assignment_ops(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of the matches of _ASSIGN_OP in ``text`` that can be followed
    by a secret, ascending.

    _ASSIGN_OP.finditer takes ":=" and "=>" whole, so its matches start at
    every ":" and at every "=" not right after a ":" (one right after a ":" is
    the second character of ":="), and end after the "=" of ":=", the ">" of
    "=>" or the single character.  Of those, only the ones followed by a
    possible value are listed: the others cannot pass _looks_secret.
    """
    ops = []
    for start in sorted(_starts(_COLON_BEFORE_VALUE, text) + _starts(_EQUALS_BEFORE_VALUE, text)):
        if text[start] == ":":
            ops.append((start, start + 2 if text.startswith("=", start + 1) else start + 1))
        elif not (start and text[start - 1] == ":"):
            ops.append((start, start + 2 if text.startswith(">", start + 1) else start + 1))
    return ops


def _find_assigned_secrets(doc: _Text) -> Iterator[tuple[int, int]]:
    text = doc.text
    for op_start, op_end in _assignment_ops(text):
        before = text[max(0, op_start - 72) : op_start].rstrip(" \t")
        if before[-1:] in ("'", '"'):
            before = before[:-1]
        if not before[-11:].lower().endswith(_SECRET_KEY_LAST_WORDS):
            continue
        k = _KEY_BEFORE.search(text, max(0, op_start - 72), op_start)
        if k is None:
            continue
        key = k.group().lower().replace("-", "_").replace(".", "_")
        if not _SECRET_KEY_SUFFIX.search(key):
            continue
        v = _VALUE_AFTER.match(text, op_end)
        if v is None:
            continue
        name = next(n for n in ("dq", "sq", "bare") if v.group(n) is not None)
        if _looks_secret(v.group(name)):
            yield v.span(name)


# --------------------------------------------------------------------------
# Email
# --------------------------------------------------------------------------

# Emails are anchored on "@" (found with str.find): the local part is matched
# backwards from it, the domain forwards.
_EMAIL_LOCAL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9_%+-](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?\Z"
)
_EMAIL_DOMAIN = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+(?P<tld>[A-Za-z]{2,24})(?![A-Za-z0-9-])"
)
_SSH_PATH = re.compile(r"~|[\w.-]*/")
_FILE_EXTENSIONS = frozenset(
    "png jpg jpeg gif svg webp bmp ico tif tiff pdf js mjs ts css scss html htm xml json "
    "yml yaml md txt py rs go java zip gz tgz tar mp3 mp4 wav".split()
)


def _find_emails(doc: _Text) -> Iterator[tuple[int, int]]:
    text = doc.text
    at = text.find("@")
    while at >= 0:
        span = _email_at(text, at)
        at = text.find("@", at + 1)
        if span is not None:
            yield span


def _email_at(text: str, at: int) -> tuple[int, int] | None:
    domain = _EMAIL_DOMAIN.match(text, at + 1)
    if domain is None:
        return None
    local = _EMAIL_LOCAL.search(text, max(0, at - 64), at)
    if local is None:
        return None
    start, end = local.start(), domain.end()
    if ".." in local.group() or domain.group("tld").lower() in _FILE_EXTENSIONS:
        return None
    # SSH remotes: git@github.com:org/repo.git
    if text[end : end + 1] == ":" and _SSH_PATH.match(text, end + 1):
        return None
    if _in_url_authority(text, start):
        return None
    return start, end


def _in_url_authority(text: str, pos: int) -> bool:
    """True if ``pos`` lies between a URL's ``://`` and the end of its authority."""
    lo = max(0, pos - 200)
    chunk = text[lo:pos]
    cut = max(chunk.rfind(c) for c in " \t\n\r<>\"'(")
    chunk = chunk[cut + 1 :]
    i = chunk.find("://")
    if i < 0:
        return False
    return not any(c in chunk[i + 3 :] for c in "/?#")


# --------------------------------------------------------------------------
# IBAN
# --------------------------------------------------------------------------

# Patterns below open with a plain character class and put the "not preceded
# by" test right after it (``X(?<!...X)``): the regex engine then skips ahead
# with a fast character scan instead of trying the lookbehind at every offset.
_IBAN_START = re.compile(r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]\d{2}")


def _find_ibans(doc: _Text) -> Iterator[tuple[int, int]]:
    text = doc.text
    # Only a match that starts with a registered country code can yield.
    if not doc.has_pairs(_IBAN_PAIRS):
        return
    # Every match of _IBAN_START is two capitals and two digits, so it starts at
    # one of iban_starts (none in most texts).
    for m in _finditer_at(_IBAN_START, text, doc.iban_starts()):
        length = IBAN_LENGTHS.get(m.group()[:2])
        if length is None:
            continue
        pos, need = m.end(), length - 4
        end = _iban_body_end(text, pos, need)
        if end is None:
            continue
        compact = text[m.start() : end].replace(" ", "")
        if iban_mod97(compact) == 1:
            yield m.start(), end


def _is_bban_char(ch: str) -> bool:
    return ch.isascii() and (ch.isdigit() or ch.isupper())


def _iban_boundary(text: str, end: int) -> bool:
    return end >= len(text) or not text[end].isalnum()


def _iban_body_end(text: str, pos: int, need: int) -> int | None:
    """Return where an IBAN body of ``need`` characters starting at ``pos`` ends, if any."""
    # Compact form.
    chunk = text[pos : pos + need]
    if len(chunk) == need and all(_is_bban_char(c) for c in chunk):
        if _iban_boundary(text, pos + need):
            return pos + need
    # Printed form: groups of four after single spaces, the last group shorter.
    got, i = 0, pos
    while got < need:
        if i >= len(text) or text[i] != " ":
            return None
        group = text[i + 1 : i + 1 + min(4, need - got)]
        if len(group) < min(4, need - got) or not all(_is_bban_char(c) for c in group):
            return None
        got += len(group)
        i += 1 + len(group)
    return i if _iban_boundary(text, i) else None


# --------------------------------------------------------------------------
# Payment cards
# --------------------------------------------------------------------------

_CARD = re.compile(
    r"\d(?<![\w.,/+-]\d)"
    r"(?:\d{12,18}"
    r"|\d{3}(?P<s1>[ -])\d{4}(?P=s1)\d{4}(?P=s1)\d{1,4}(?:(?P=s1)\d{1,3})?"
    r"|\d{3}(?P<s2>[ -])\d{6}(?P=s2)\d{4,5})"
    r"(?!\w)"
)

# Every match of _CARD opens a run of digits (a digit before it would be a word
# character) and holds 13 digits within its first 16 characters ("4-4-4-1"):
# the arguments of _Text.run_starts that list where it can start.
_CARD_RUN = (13, 16)

# (prefix ranges, allowed lengths) per brand; prefixes compared on equal length.
_IIN_RULES: tuple[tuple[tuple[tuple[int, int], ...], tuple[int, ...]], ...] = (
    (((4, 4),), (13, 16, 19)),  # Visa
    (((51, 55), (2221, 2720)), (16,)),  # Mastercard
    (((34, 34), (37, 37)), (15,)),  # American Express
    (((6011, 6011), (644, 649), (65, 65)), (16, 17, 18, 19)),  # Discover
    (((300, 305), (36, 36), (38, 39)), (14, 15, 16, 17, 18, 19)),  # Diners Club
    (((3528, 3589),), (16, 17, 18, 19)),  # JCB
    (((62, 62),), (16, 17, 18, 19)),  # UnionPay
    (((5018, 5018), (5020, 5020), (5038, 5038), (5893, 5893)), (13, 16, 19)),  # Maestro
    (((6304, 6304), (6759, 6759), (6761, 6763)), (13, 16, 19)),  # Maestro
    (((2200, 2204),), (16, 17, 18, 19)),  # Mir
)


def card_brand_ok(compact: str) -> bool:
    """Return True if the digits start with a known IIN and have a length that brand issues."""
    for ranges, lengths in _IIN_RULES:
        if len(compact) not in lengths:
            continue
        for lo, hi in ranges:
            width = len(str(lo))
            if lo <= int(compact[:width]) <= hi:
                return True
    return False


def _find_cards(doc: _Text) -> Iterator[tuple[int, int]]:
    text = doc.text
    # Any match of _CARD has 13 or more digits within 23 characters (within its
    # first 16, see _CARD_RUN).
    if not doc.digits_within(13, 23):
        return
    for m in _finditer_at(_CARD, text, doc.run_starts(*_CARD_RUN)):
        start, end = m.span()
        if _digit_continues(text, end):
            continue
        compact = m.group().replace(" ", "").replace("-", "")
        if 13 <= len(compact) <= 19 and card_brand_ok(compact) and luhn_valid(compact):
            yield start, end


def _digit_continues(text: str, end: int) -> bool:
    """True if the number ending at ``end`` continues as '.5', ',5', '-5', ':5', '/5'."""
    return end + 1 < len(text) and text[end] in ".,-:/" and text[end + 1].isdigit()


# --------------------------------------------------------------------------
# National identifiers
# --------------------------------------------------------------------------

_SSN = re.compile(r"\d(?<![\w.-]\d)\d{2}([- ])\d{2}\1\d{4}(?!\w)")
_SSN_CUED = re.compile(r"(?i)\b(?:ssn|social security(?: number| no\.?)?)[\s:#.]*(\d{9})\b")
_NINO = re.compile(
    r"[A-CEGHJ-PR-TW-Z](?<![\w-][A-Z])[A-CEGHJ-NPR-TW-Z](?<!BG|GB|KN|NK|NT|TN|ZZ)"
    r"( ?)\d{2}\1\d{2}\1\d{2}\1[A-D](?![\w-])"
)
_STEUER_ID = re.compile(r"[1-9](?<![\w.,/-][1-9])\d( ?)\d{3}\1\d{3}\1\d{3}(?!\w)")
_NIR = re.compile(
    r"[12](?<![\w.,/-][12])( ?)\d{2}\1\d{2}\1(?:\d{2}|2[AB])\1\d{3}\1\d{3}\1\d{2}(?!\w)"
)
_BSN_CUED = re.compile(
    r"(?i)\b(?:bsn|burgerservicenummer|sofinummer)\b[\s:#.]*"
    r"(\d{9}|\d{4}\.\d{2}\.\d{3}|\d{3}[ .]\d{3}[ .]\d{3})(?!\w)"
)
# _Text.run_starts arguments for _SSN, _STEUER_ID and _NIR: each match opens a
# run of digits (its lookbehind refuses a word character, so a digit, before
# it) and holds, within its first characters, 9 digits in 11 ("123-45-6789"),
# 11 in 14 ("12 345 678 901") and 14 in 21 ("1 84 12 2A 451 089 46": the
# fourteenth digit is the last character).
_SSN_RUN = (9, 11)
_STEUER_ID_RUN = (11, 14)
_NIR_RUN = (14, 21)


def _find_national_ids(doc: _Text) -> Iterator[tuple[int, int]]:
    text = doc.text
    # Each pattern runs only if the digits its every match holds are there:
    # SSN 9 within 11 characters, NINO 6 (see nino_starts), Steuer-ID 11 within 14, NIR
    # 14 within 21 (with 2A/2B), the cued SSN and BSN 9 in a row.  The patterns that
    # open with a character class are only tried where a match can start (see
    # _finditer_at, _SSN_RUN, _Text.nino_starts).  The digit tests come before the
    # needle tests in doc.low (needles are ASCII, without "k", not ending in "i"):
    # both must pass, and the digit ones are cheaper and fail more often.
    if doc.digits_within(9, 11):
        for m in _finditer_at(_SSN, text, doc.run_starts(*_SSN_RUN)):
            d = m.group()
            if _ssn_valid(d[:3], d[4:6], d[7:]) and not _digit_continues(text, m.end()):
                yield m.span()
    if doc.digits_within(9, 9) and (b"ssn" in doc.low or b"social security" in doc.low):
        for m in _SSN_CUED.finditer(text):
            d = m.group(1)
            if _ssn_valid(d[:3], d[3:5], d[5:]):
                yield m.span(1)
    # Six digits within 8 characters, else no nino_starts.
    if doc.digits_within(6, 8):
        for m in _finditer_at(_NINO, text, doc.nino_starts()):
            yield m.span()
    if doc.digits_within(11, 14):
        for m in _finditer_at(_STEUER_ID, text, doc.run_starts(*_STEUER_ID_RUN)):
            if not _digit_continues(text, m.end()) and steuer_id_valid(m.group().replace(" ", "")):
                yield m.span()
    if doc.digits_within(14, 21):
        for m in _finditer_at(_NIR, text, doc.run_starts(*_NIR_RUN)):
            if not _digit_continues(text, m.end()) and nir_valid(m.group().replace(" ", "")):
                yield m.span()
    if not doc.digits_within(9, 11):  # 9 digits, with at most two separators
        return
    low = doc.low
    if not (b"bsn" in low or b"burgerservicenummer" in low or b"sofinummer" in low):
        return
    for m in _BSN_CUED.finditer(text):
        if bsn_valid(re.sub(r"\D", "", m.group(1))):
            yield m.span(1)


# --------------------------------------------------------------------------
# IP addresses
# --------------------------------------------------------------------------

_IPV4 = re.compile(r"\d(?<![\w.]\d)\d{0,2}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?!\w|\.\d)")
# Words after which a dotted number is a version, section or figure number.
_NUMBERING_CUE = re.compile(
    r"(?i)(?:§+|\b(?:sections?|sect|sec|clauses?|art|articles?|chapters?|ch|para(?:graph)?s?"
    r"|versions?|ver|v|releases?|rel|build|patch|hotfix|update|rev(?:ision)?|rules?|fig(?:ure)?s?|tables?|tab|items?|steps?"
    r"|oid|no|nr|pp?|isbn|issn|sku|ref)\.?)[\s:#]*$"
)
# Every match of _IPV4 holds this; it opens with a literal, so the scan is quick.
_IPV4_HINT = re.compile(r"\.\d{1,3}\.\d{1,3}\.\d")
# Every match of _IPV4 opens a run of digits and holds 4 digits within its first 7
# characters ("1.2.3.4"): the _Text.run_starts arguments for where it can start.
_IPV4_RUN = (4, 7)
# Candidate: a run of hex digits, colons and dots with a colon among the first
# five characters; ipaddress decides.
_IPV6 = re.compile(r"[0-9A-Fa-f:](?<![\w:.][0-9A-Fa-f:])[0-9A-Fa-f]{0,3}:[0-9A-Fa-f:.]{1,44}")


def _find_ipv4(doc: _Text) -> Iterator[tuple[int, int]]:
    text = doc.text
    if _IPV4_HINT.search(text) is None:
        return
    for m in _finditer_at(_IPV4, text, doc.run_starts(*_IPV4_RUN)):
        value = m.group()
        # Tools print addresses in ASCII digits; "\\d" also matches other scripts' digits,
        # which ipaddress rejects (a dotted number in Arabic-Indic digits is not an IP).
        if not value.isascii():
            continue
        # Octets 0-255 without leading zeros ("010.1.1.1" is not written by tools).
        if any((len(o) > 1 and o[0] == "0") or int(o) > 255 for o in value.split(".")):
            continue
        if value == "0.0.0.0" or _is_netmask(value):
            continue
        if _NUMBERING_CUE.search(text, max(0, m.start() - 24), m.start()):
            continue
        yield m.span()


# Six hextets, each followed by a colon: in every address written without "::"
# (eight hextets, or six and an IPv4 tail).
_IPV6_FULL_HINT = re.compile(r":(?:[0-9A-Fa-f]{1,4}:){5}")
_HEX_RUN_CHARS = "0123456789ABCDEFabcdef:."


_IPV6_FULL_HINT_UTF8 = re.compile(_IPV6_FULL_HINT.pattern.encode())


def _may_hold_ipv6(text: str, utf8: bytes | None = None) -> bool:
    """Whether ``text`` can hold an address _find_ipv6 accepts: one without "::"
    (see _IPV6_FULL_HINT), or a "::" in a run of hex digits, colons and dots
    that has a decimal digit within 48 characters of it (an accepted candidate
    is at most 49 characters long and holds a digit).

    ``utf8``, the text as UTF-8, if given, is searched for _IPV6_FULL_HINT
    instead (faster): its classes are ASCII, so it matches the bytes exactly
    where it matches the text."""
    if utf8 is not None:
        if _IPV6_FULL_HINT_UTF8.search(utf8) is not None:
            return True
    elif _IPV6_FULL_HINT.search(text) is not None:
        return True
    at = text.find("::")
    while at >= 0:
        left = text[max(0, at - 48) : at]
        left = left[len(left.rstrip(_HEX_RUN_CHARS)) :]
        right = text[at + 2 : at + 50]
        right = right[: len(right) - len(right.lstrip(_HEX_RUN_CHARS))]
        if any(c.isdigit() for c in left) or any(c.isdigit() for c in right):
            return True
        at = text.find("::", at + 1)
    return False


def _is_netmask(value: str) -> bool:
    bits = int(ipaddress.IPv4Address(value))
    return value.startswith("255.") and ((~bits & 0xFFFFFFFF) + 1) & (~bits & 0xFFFFFFFF) == 0


def _find_ipv6(doc: _Text) -> Iterator[tuple[int, int]]:
    text = doc.text
    # The same tests on the UTF-8 bytes: "::" and ":" are ASCII.
    if not doc.has_pairs(_DOUBLE_COLON) and doc.utf8.count(b":") < 7:
        return
    if not _may_hold_ipv6(text, doc.utf8):
        return
    for m in _IPV6.finditer(text):
        start, end = m.span()
        value = m.group()
        # A trailing dot or single colon is punctuation ("... fe80::1: the gateway.").
        while value.endswith(".") or (value.endswith(":") and not value.endswith("::")):
            value, end = value[:-1], end - 1
        if "::" not in value and value.count(":") < 7 and "." not in value:
            continue
        if not any(c.isdigit() for c in value) or value == "::":
            continue
        if end < len(text) and (
            text[end].isalnum() or text[end] == "_" or _digit_continues(text, end)
        ):
            continue
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            continue
        yield start, end


# --------------------------------------------------------------------------
# Phone numbers
# --------------------------------------------------------------------------

_PHONE_INTL = re.compile(
    r"[+0](?<![\w+][+0])(?:(?<=\+)|(?<=0)0(?=[1-9]))"
    r"[1-9]\d{0,2}(?:[ .\-/]?\(\d{1,5}\)|[ .\-/]?\d{1,15}){1,8}"
)
_PHONE_PAREN = re.compile(
    r"[1(](?<![\w.+\-/][1(])(?:(?<=1)[ .-]?\(|(?<=\())"
    r"(?:[2-9]\d{2}|0\d{1,4})\)[ .\-]?\d{2,5}(?:[ .\-]\d{2,5}){0,3}"
)
_PHONE_NANP = re.compile(
    r"\d(?<![\w.+\-/]\d)(?:(?<=1)[ .-][2-9]\d{2}|(?<=[2-9])\d{2})([ .-])[2-9]\d{2}\1\d{4}"
)
_PHONE_TRUNK = re.compile(r"0(?<![\w.+\-/]0)[1-9]\d{0,3}(?:[ .\-/]\d{2,8}){1,4}")
# Any 7-15 digit number counts as a phone when a phone word precedes it.
_PHONE_BODY = re.compile(
    r"[+(\d](?<![\w.+\-/][+(\d])"
    r"(?:(?<=\+)(?:\(\d{1,5}\)[ .\-]?)?\d|(?<=\()\d{1,5}\)[ .\-]?\d|)[\d .\-/]{5,22}\d"
)
_PHONE_CUE_BEFORE = re.compile(
    r"(?i)\b(?:tel(?:ephone|efon)?|t[ée]l|phone|ph|mobile?|mob|cell(?:phone)?|fax|call(?:ed)?"
    r"|ring|dial|handy|whatsapp|sms|text|contact number)\b\.?[^\d+(\n]{0,25}\Z"
)
# Words after which a number is a product/reference/section number, not a phone.
_PHONE_ANTI_CUE = re.compile(
    r"(?i)(?:§+|#|\b(?:isbn(?:-1[03])?|issn|sku|ean|upc|gtin|p/?n|part(?: no| number)?"
    r"|art(?:ikel)?[.-]?\s?nr|order(?: no| number| id)?|invoice|inv|ref(?:erence)?|serial|s/n"
    r"|model|item|lot|batch|doi|version|ver|case|ticket|tracking|account|acct|policy|id|no|nr"
    r"|sections?|clause|article|chapter|pp?)\.?)[\s:#.-]*$"
)
_DATE_INSIDE = re.compile(
    r"(?<!\d)(?:\d{1,2}([./-])\d{1,2}\1(?:1[89]|20)\d{2}|(?:1[89]|20)\d{2}([./-])\d{1,2}\2\d{1,2})"
    r"(?!\d)"
)
# "03/2024-117": month/year at the start is a file or period reference.
_MONTH_YEAR_START = re.compile(r"\d{1,2}[./-](?:1[89]|20)\d{2}(?!\d)")
_YEAR_RANGE = re.compile(r"(?:1[89]|20)\d{2}\s?[-/]\s?(?:(?:1[89]|20)\d{2}|\d{2})")


_ZIP_PLUS_FOUR = re.compile(r"\d{5}-\d{4}")
_STATE_BEFORE = re.compile(r"\b[A-Z]{2}[ ,]+$")


def _phone_candidate_ok(text: str, start: int, end: int, min_digits: int, max_digits: int) -> bool:
    value = text[start:end]
    digits = sum(c.isdigit() for c in value) - value.count("(0)")
    if not min_digits <= digits <= max_digits:
        return False
    if end < len(text) and (text[end].isalnum() or text[end] == "_"):
        return False
    if _digit_continues(text, end):
        return False
    # A number right after "12:" is part of a time or a ratio; one right after
    # "4972 " or "AA1 " is the tail of a longer code or card-like number.
    if start >= 2 and text[start - 1] in ": .-/" and text[start - 2].isdigit():
        return False
    if _DATE_INSIDE.search(value) or _YEAR_RANGE.fullmatch(value):
        return False
    if _MONTH_YEAR_START.match(value):
        return False
    # A US ZIP+4 code ("MA 02110-1301") in a postal address is not a phone.
    if _ZIP_PLUS_FOUR.fullmatch(value.strip()) and _STATE_BEFORE.search(
        text[max(0, start - 4) : start]
    ):
        return False
    # Dotted numbers are phones only when dots are the only separator
    # ("06.12.34.56.78"); "0.25 0.50", "1.2 3.4" are tables and versions.
    body = value.lstrip("+")
    seps = {c for c in body if not c.isdigit() and c not in "()"}
    return not ("." in seps and len(seps) > 1)


# (pattern, fewest and most digits, a width within which every accepted number
# has its fewest digits): a pattern runs only if the text has that many digits
# that close together. Between the first and the eighth digit of an accepted
# international number are at most 24 other characters (8 groups, each with a
# separator and parentheses); the others have at most 7 (PAREN), 3 (NANP) and
# 4 (TRUNK) other characters in all.
_PHONE_PATTERNS = (
    (_PHONE_INTL, 8, 17, 34),
    (_PHONE_PAREN, 9, 12, 16),
    (_PHONE_NANP, 10, 11, 13),
    (_PHONE_TRUNK, 9, 12, 13),
)
# An accepted cued number has at least 7 digits within its 33 characters.
_PHONE_BODY_WIDTH = 33

# Where matches of the phone patterns can start, for _finditer_at.  Each pattern
# opens with a character class and a lookbehind that refuses a word character
# (so a digit) before it; what follows pins the start down further.
_PLUS_BEFORE_DIGIT = re.compile(r"\+(?=[1-9])")
_AREA_CODE_PAREN = re.compile(r"\((?=(?:[2-9]\d{2}|0\d{1,4})\))")
_PLUS_BEFORE_BODY = re.compile(r"\+(?=[\d .\-/(])")
_PAREN_BEFORE_BODY = re.compile(r"\((?=[\d .\-/])")


def _intl_starts(doc: _Text) -> list[int]:
    """_PHONE_INTL starts at a "+" before a digit 1-9, or at the "0" of "00" (a run
    of digits, as no word character precedes it)."""
    return sorted(_starts(_PLUS_BEFORE_DIGIT, doc.text) + doc.zero_run_starts())


def _paren_starts(doc: _Text) -> list[int]:
    """_PHONE_PAREN starts at the "(" of an area code "(415)" / "(030)", or at a "1"
    one or two characters before it ("1(415)", "1 (415)")."""
    starts = set()
    for paren in _starts(_AREA_CODE_PAREN, doc.text):
        starts.update(range(max(0, paren - 2), paren + 1))
    return sorted(starts)


def _nanp_starts(doc: _Text) -> list[int]:
    """_PHONE_NANP opens a run of digits and holds 10 digits within its first 14
    characters ("1-415-555-0132": the tenth is the thirteenth character)."""
    return doc.run_starts(10, 14)


def _trunk_starts(doc: _Text) -> list[int]:
    """_PHONE_TRUNK opens a run of digits with "0"."""
    return doc.zero_run_starts()


def _body_starts(doc: _Text) -> list[int]:
    """_PHONE_BODY starts at a "+" before a digit, "(", or one of " .-/"; at a "("
    before a digit or one of " .-/"; or at the start of a run of digits followed by
    another digit within 24 characters (the shortest match is a digit, five of
    "0-9 .-/" and a digit, the longest 24 characters)."""
    text = doc.text
    return sorted(
        _starts(_PLUS_BEFORE_BODY, text) + _starts(_PAREN_BEFORE_BODY, text) + doc.run_starts(2, 24)
    )


_PHONE_STARTS: dict[re.Pattern[str], Callable[[_Text], list[int]]] = {
    _PHONE_INTL: _intl_starts,
    _PHONE_PAREN: _paren_starts,
    _PHONE_NANP: _nanp_starts,
    _PHONE_TRUNK: _trunk_starts,
}


def _find_phones(doc: _Text) -> Iterator[tuple[int, int]]:
    text = doc.text
    for pattern, lo, hi, width in _PHONE_PATTERNS:
        if not doc.digits_within(lo, width):
            continue
        for m in _finditer_at(pattern, text, _PHONE_STARTS[pattern](doc)):
            start, end = m.span()
            if pattern is _PHONE_INTL:
                # 00-prefixed numbers carry two extra digits; "+" ones at most 15.
                hi = 17 if text.startswith("00", start) else 15
                lo = 10 if text.startswith("00", start) else 8
            if not _phone_candidate_ok(text, start, end, lo, hi):
                continue
            if _PHONE_ANTI_CUE.search(text, max(0, start - 24), start):
                continue
            yield start, end
    if not doc.digits_within(7, _PHONE_BODY_WIDTH):
        return
    for m in _finditer_at(_PHONE_BODY, text, _body_starts(doc)):
        start, end = m.span()
        if not _phone_candidate_ok(text, start, end, 7, 15):
            continue
        if _PHONE_CUE_BEFORE.search(text, max(0, start - 48), start):
            yield start, end


# --------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------

# Groups of two-character needles _Text.has_pairs tests, all in one native pass:
# per rule of _SPECIFIC_SECRETS its pairs (an empty group for the rule without),
# then the IBAN country codes, then "::".
_PAIR_GROUPS: tuple[frozenset[bytes], ...] = (
    *(frozenset() if pairs is None else pairs for pairs in _SECRET_BIGRAMS),
    _IBAN_COUNTRIES,
    frozenset({b"::"}),
)
_IBAN_PAIRS = len(_SECRET_BIGRAMS)
_DOUBLE_COLON = _IBAN_PAIRS + 1
assert len(_PAIR_GROUPS) <= 32  # a group is one bit of a 32-bit mask


@functools.cache
def _pair_table() -> bytes:
    """Per pair of characters (``first * 128 + second``; ``first`` is 128 for a
    character that is not ASCII, a row of zeros), the little-endian 32-bit mask of
    the groups in _PAIR_GROUPS that pair belongs to."""
    table = np.zeros(129 * 128, dtype="<u4")
    for group, pairs in enumerate(_PAIR_GROUPS):
        for first, second in pairs:
            table[first * 128 + second] |= np.uint32(1 << group)
    return table.tobytes()


# (kind, finder) in priority order; earlier entries win overlaps.
_DETECTORS: tuple[tuple[str, Callable[[_Text], Iterator[tuple[int, int]]]], ...] = (
    ("secret", _find_specific_secrets),
    ("secret", _find_assigned_secrets),
    ("email", _find_emails),
    ("iban", _find_ibans),
    ("card", _find_cards),
    ("national_id", _find_national_ids),
    ("ipv6", _find_ipv6),
    ("ipv4", _find_ipv4),
    ("phone", _find_phones),
)


def find_spans(text: str) -> tuple[Span, ...]:
    """Return the non-overlapping ``(start, end, kind)`` spans :func:`redact` would replace.

    Candidates are taken detector by detector in priority order (see the module
    docstring); within one detector, earlier and then longer candidates win.
    A candidate overlapping any accepted span is dropped whole.
    """
    starts: list[int] = []
    accepted: list[Span] = []
    doc = _Text(text)
    for kind, finder in _DETECTORS:
        found = sorted(set(finder(doc)), key=lambda se: (se[0], -se[1]))
        for start, end in found:
            if end <= start:
                continue
            i = bisect_left(starts, start)
            if i > 0 and accepted[i - 1][1] > start:
                continue
            if i < len(accepted) and accepted[i][0] < end:
                continue
            starts.insert(i, start)
            accepted.insert(i, (start, end, kind))
    return tuple(accepted)


def redact(text: str) -> Redaction:
    """Replace personal data and secrets in ``text`` by typed placeholders.

    Returns the redacted text, the number of redactions per kind (only kinds
    that occurred) and the redacted spans in the original text.  Redacting an
    already redacted text changes nothing: placeholders match no detector.
    """
    spans = find_spans(text)
    if not spans:
        return Redaction(text=text, counts={}, spans=())
    parts: list[str] = []
    pos = 0
    counts: dict[str, int] = {}
    for start, end, kind in spans:
        parts.append(text[pos:start])
        parts.append(PLACEHOLDERS[kind])
        counts[kind] = counts.get(kind, 0) + 1
        pos = end
    parts.append(text[pos:])
    return Redaction(text="".join(parts), counts=counts, spans=spans)

"""The previous implementation of services.preprocess.pii, kept unchanged as the oracle of
tests/unit/test_pii_equivalence.py: the optimised module must return exactly what this one
returns (spans, kinds, redacted text, counts) for every input.  What the optimisation
changed (the text scans, the detectors and their orchestration) is kept here as it was; what
it left unchanged (validators, patterns, constants) is imported from the module, which does
not weaken the comparison: the detectors below call only those.  Do not optimise or edit
this copy.  One fix was made to both: an IPv4 candidate in non-ASCII digits ("\u0663.0.0.0")
made ``ipaddress`` raise, failing the whole document; such candidates are now skipped.
Its original docstring follows.

Redaction of personal data and secrets in contributed text.

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

import ipaddress
import re
from bisect import bisect_left
from collections.abc import Callable, Iterator

import numpy as np

from services.preprocess.pii import (  # unchanged by the optimisation: shared
    _ASSIGN_OP,
    _BSN_CUED,
    _CARD,
    _DIGIT,
    _HEX_RUN_CHARS,
    _IBAN_START,
    _IPV4,
    _IPV4_HINT,
    _IPV6,
    _IPV6_FULL_HINT,
    _KEY_BEFORE,
    _LOWER_NEEDLES,
    _NINO,
    _NIR,
    _NUMBERING_CUE,
    _PHONE_ANTI_CUE,
    _PHONE_BODY,
    _PHONE_BODY_WIDTH,
    _PHONE_CUE_BEFORE,
    _PHONE_INTL,
    _PHONE_PATTERNS,
    _SECRET_KEY_LAST_WORDS,
    _SECRET_KEY_SUFFIX,
    _SPECIFIC_SECRETS,
    _SSN,
    _SSN_CUED,
    _STEUER_ID,
    _VALUE_AFTER,
    IBAN_LENGTHS,
    PLACEHOLDERS,
    Redaction,
    Span,
    _digit_continues,
    _email_at,
    _iban_body_end,
    _is_netmask,
    _looks_secret,
    _phone_candidate_ok,
    _ssn_valid,
    bsn_valid,
    card_brand_ok,
    iban_mod97,
    luhn_valid,
    nir_valid,
    steuer_id_valid,
)

# Decimal digits over the BMP, as the regex itself finds them.
_BMP_DIGIT = np.zeros(0x10000, dtype=bool)
_BMP_DIGIT[[m.start() for m in _DIGIT.finditer("".join(map(chr, range(0x10000))))]] = True


class _Text:
    """A text and what several detectors look up in it, each computed at most once.

    Most detectors need a few digits close together; ``digits_within`` answers
    "are there ``count`` digits within ``width`` characters anywhere?" from the
    positions of all digits, so a detector whose every match would need that can
    skip its regex scans when the answer is no (most prose).
    """

    __slots__ = ("_codes", "_digits", "_low", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._low: bytes | None = None
        self._codes: np.ndarray | None = None
        self._digits: np.ndarray | None = None

    @property
    def low(self) -> bytes:
        """The text as UTF-8 with ASCII letters lower-cased, for the needles in
        _LOWER_NEEDLES: ASCII words without "k" that do not end in "i", so they
        occur here exactly where they occur in ``text.lower()`` (which maps only
        U+212A to "k" and U+0130 to "i" plus a combining dot among non-ASCII
        characters), at a third of the cost."""
        if self._low is None:
            self._low = self.text.encode("utf-8", "surrogatepass").lower()
        return self._low

    @property
    def codes(self) -> np.ndarray:
        """The code points (uint8 for ASCII text, else uint32)."""
        if self._codes is None:
            text = self.text
            if text.isascii():
                self._codes = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
            else:
                encoded = text.encode("utf-32-le", "surrogatepass")
                self._codes = np.frombuffer(encoded, dtype=np.uint32)
        return self._codes

    @property
    def digits(self) -> np.ndarray:
        """Positions of the decimal digits, ascending."""
        if self._digits is None:
            codes = self.codes
            if codes.dtype == np.uint8:
                self._digits = np.flatnonzero((codes - 48) < 10)  # wraps below "0"
            else:
                astral = codes > 0xFFFF
                if astral.any():  # e.g. mathematical digits: look the rare ones up one by one
                    is_digit = np.zeros(len(codes), dtype=bool)
                    is_digit[~astral] = _BMP_DIGIT[codes[~astral]]
                    where = np.flatnonzero(astral)
                    is_digit[where] = [
                        _DIGIT.match(chr(code)) is not None for code in codes[where].tolist()
                    ]
                    self._digits = np.flatnonzero(is_digit)
                else:
                    self._digits = np.flatnonzero(_BMP_DIGIT[codes])
        return self._digits

    def letters_then_digits(self) -> bool:
        """Whether two ASCII capitals stand right before two digits ("DE89"), as at
        the start of every IBAN."""
        digits = self.digits
        pairs = digits[:-1][digits[1:] == digits[:-1] + 1]
        pairs = pairs[pairs >= 2]
        if not len(pairs):
            return False
        codes = self.codes
        return bool((((codes[pairs - 1] - 65) < 26) & ((codes[pairs - 2] - 65) < 26)).any())

    def nino_digits(self) -> bool:
        """Whether six digits stand as in a NINO: in a row, or as three pairs
        separated by single spaces."""
        digits = self.digits
        if len(digits) < 6:
            return False
        first = digits[:-5]
        span = digits[5:] - first
        if (span == 5).any():
            return True
        spaced = first[span == 7]
        if not len(spaced):
            return False
        codes = self.codes
        return bool(((codes[spaced + 2] == 32) & (codes[spaced + 5] == 32)).any())

    def digits_within(self, count: int, width: int) -> bool:
        """Whether some ``width`` consecutive characters hold ``count`` or more digits."""
        digits = self.digits
        if len(digits) < count:
            return False
        return bool((digits[count - 1 :] - digits[: len(digits) - count + 1] < width).any())


# --------------------------------------------------------------------------
# Validators
# --------------------------------------------------------------------------


# --------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------


def _find_specific_secrets(doc: _Text) -> Iterator[tuple[int, int]]:
    text = doc.text
    for needles, pattern, group, check in _SPECIFIC_SECRETS:
        lower_needles = _LOWER_NEEDLES.get(pattern)
        if lower_needles is not None:
            if not any(n in doc.low for n in lower_needles):
                continue
        elif needles and not any(n in text for n in needles):
            continue
        for m in pattern.finditer(text):
            if check is None or check(m.group(group)):
                yield m.span(group)


def _find_assigned_secrets(doc: _Text) -> Iterator[tuple[int, int]]:
    text = doc.text
    for op in _ASSIGN_OP.finditer(text):
        before = text[max(0, op.start() - 72) : op.start()].rstrip(" \t")
        if before[-1:] in ("'", '"'):
            before = before[:-1]
        if not before[-11:].lower().endswith(_SECRET_KEY_LAST_WORDS):
            continue
        k = _KEY_BEFORE.search(text, max(0, op.start() - 72), op.start())
        if k is None:
            continue
        key = k.group().lower().replace("-", "_").replace(".", "_")
        if not _SECRET_KEY_SUFFIX.search(key):
            continue
        v = _VALUE_AFTER.match(text, op.end())
        if v is None:
            continue
        name = next(n for n in ("dq", "sq", "bare") if v.group(n) is not None)
        if _looks_secret(v.group(name)):
            yield v.span(name)


# --------------------------------------------------------------------------
# Email
# --------------------------------------------------------------------------


def _find_emails(doc: _Text) -> Iterator[tuple[int, int]]:
    text = doc.text
    at = text.find("@")
    while at >= 0:
        span = _email_at(text, at)
        at = text.find("@", at + 1)
        if span is not None:
            yield span


# --------------------------------------------------------------------------
# IBAN
# --------------------------------------------------------------------------


def _find_ibans(doc: _Text) -> Iterator[tuple[int, int]]:
    text = doc.text
    # Every match of _IBAN_START is two capitals and two digits.
    if not doc.letters_then_digits():
        return
    for m in _IBAN_START.finditer(text):
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


# --------------------------------------------------------------------------
# Payment cards
# --------------------------------------------------------------------------


def _find_cards(doc: _Text) -> Iterator[tuple[int, int]]:
    text = doc.text
    # Any match of _CARD has 13 or more digits within 23 characters.
    if not doc.digits_within(13, 23):
        return
    for m in _CARD.finditer(text):
        start, end = m.span()
        if _digit_continues(text, end):
            continue
        compact = m.group().replace(" ", "").replace("-", "")
        if 13 <= len(compact) <= 19 and card_brand_ok(compact) and luhn_valid(compact):
            yield start, end


# --------------------------------------------------------------------------
# National identifiers
# --------------------------------------------------------------------------


def _find_national_ids(doc: _Text) -> Iterator[tuple[int, int]]:
    text, low = doc.text, doc.low  # needles are ASCII, without "k", not ending in "i"
    # Each pattern runs only if the digits its every match holds are there:
    # SSN 9 within 11 characters, NINO 6 (see nino_digits), Steuer-ID 11 within 14, NIR
    # 14 within 21 (with 2A/2B), the cued SSN and BSN 9 in a row.
    if doc.digits_within(9, 11):
        for m in _SSN.finditer(text):
            d = m.group()
            if _ssn_valid(d[:3], d[4:6], d[7:]) and not _digit_continues(text, m.end()):
                yield m.span()
    if (b"ssn" in low or b"social security" in low) and doc.digits_within(9, 9):
        for m in _SSN_CUED.finditer(text):
            d = m.group(1)
            if _ssn_valid(d[:3], d[3:5], d[5:]):
                yield m.span(1)
    if doc.nino_digits():
        for m in _NINO.finditer(text):
            yield m.span()
    if doc.digits_within(11, 14):
        for m in _STEUER_ID.finditer(text):
            if not _digit_continues(text, m.end()) and steuer_id_valid(m.group().replace(" ", "")):
                yield m.span()
    if doc.digits_within(14, 21):
        for m in _NIR.finditer(text):
            if not _digit_continues(text, m.end()) and nir_valid(m.group().replace(" ", "")):
                yield m.span()
    if not (b"bsn" in low or b"burgerservicenummer" in low or b"sofinummer" in low):
        return
    if not doc.digits_within(9, 11):  # 9 digits, with at most two separators
        return
    for m in _BSN_CUED.finditer(text):
        if bsn_valid(re.sub(r"\D", "", m.group(1))):
            yield m.span(1)


# --------------------------------------------------------------------------
# IP addresses
# --------------------------------------------------------------------------


def _find_ipv4(doc: _Text) -> Iterator[tuple[int, int]]:
    text = doc.text
    if _IPV4_HINT.search(text) is None:
        return
    for m in _IPV4.finditer(text):
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


def _may_hold_ipv6(text: str) -> bool:
    """Whether ``text`` can hold an address _find_ipv6 accepts: one without "::"
    (see _IPV6_FULL_HINT), or a "::" in a run of hex digits, colons and dots
    that has a decimal digit within 48 characters of it (an accepted candidate
    is at most 49 characters long and holds a digit)."""
    if _IPV6_FULL_HINT.search(text) is not None:
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


def _find_ipv6(doc: _Text) -> Iterator[tuple[int, int]]:
    text = doc.text
    if "::" not in text and text.count(":") < 7:
        return
    if not _may_hold_ipv6(text):
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


def _find_phones(doc: _Text) -> Iterator[tuple[int, int]]:
    text = doc.text
    for pattern, lo, hi, width in _PHONE_PATTERNS:
        if not doc.digits_within(lo, width):
            continue
        for m in pattern.finditer(text):
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
    for m in _PHONE_BODY.finditer(text):
        start, end = m.span()
        if not _phone_candidate_ok(text, start, end, 7, 15):
            continue
        if _PHONE_CUE_BEFORE.search(text, max(0, start - 48), start):
            yield start, end


# --------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------

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

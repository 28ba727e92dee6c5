"""Synthetic samples for measuring :mod:`services.preprocess.pii`.

``generate`` embeds one freshly generated, *valid* value of a kind (correct
checksums, ranges and lengths) in a realistic sentence: letters, meeting
notes, transcripts, support tickets and config snippets, in the formats people
actually write (with and without separators, several countries, mixed-case
emails).  ``clean_hard_negatives`` is text that must come out unchanged:
numbers and identifiers that look like personal data but are not.  Both are
deterministic; nothing here reads files, clocks or global random state.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from services.preprocess.pii import KINDS, iban_mod97, redact


@dataclass(frozen=True)
class Sample:
    """One text containing exactly one planted value ``value`` of kind ``kind``."""

    text: str
    kind: str
    value: str


_FIRST = (
    "anna", "ben", "chloé", "david", "elif", "farid", "greta", "hannah", "ivan", "julia",
    "karim", "lena", "mats", "nora", "oscar", "priya", "quentin", "rosa", "sven", "tariq",
    "ursula", "viktor", "wen", "xavier", "yasmin", "zoe", "jean-luc", "mary", "o", "li",
)  # fmt: skip
_LAST = (
    "schmidt", "okafor", "dubois", "van-der-berg", "nowak", "rossi", "garcia", "mueller",
    "smith", "nguyen", "kowalski", "jansen", "martin", "brown", "fischer", "silva", "haddad",
    "lindqvist", "moreau", "obrien", "tanaka", "weber", "kim", "ivanova", "costa", "patel",
)  # fmt: skip
_DOMAINS = (
    "example.com", "acme-corp.de", "mail.uni-heidelberg.de", "company.co.uk", "gmx.net",
    "post.example.org", "hospital.nhs.uk", "kanzlei-weber.de", "outlook.com", "web.de",
    "orange.fr", "protonmail.ch", "student.uva.nl", "bigcorp.com.au", "gov.example.fr",
    "eu-west.support.vendor.io", "t-online.de", "research.lab42.org", "mx.firma.at",
)  # fmt: skip
_PEOPLE = ("Ms Okafor", "Dr Weber", "Mr Nowak", "Frau Fischer", "Mme Dubois", "Prof. Tanaka")

_FILLER = (
    "The minutes of the meeting on 27.11.2026 are attached.",
    "We discussed section 4.2.1 of the draft and version 3.11.7 of the tool.",
    "Budget for 2025-2026 stays at EUR 1.299,00 per seat.",
    "Please read chapter 12 before Thursday.",
    "The call started at 10:30 and ended at 11:45.",
    "Action items are listed in the table below.",
    "",
    "",
)


def _letter(rng: random.Random, body: str) -> str:
    person = rng.choice(_PEOPLE)
    return f"Dear {person},\n\n{body}\n\n{rng.choice(_FILLER)}\n\nKind regards,\nThe team"


def _notes(rng: random.Random, body: str) -> str:
    return f"Meeting notes ({rng.randint(1, 28)} March)\n- {rng.choice(_FILLER)}\n- {body}\n"


def _transcript(rng: random.Random, body: str) -> str:
    who = rng.choice(("CALLER", "AGENT", "Speaker 2", "INTERVIEWER"))
    return f"[00:{rng.randint(10, 59)}:{rng.randint(10, 59)}] {who}: {body}"


def _ticket(rng: random.Random, body: str) -> str:
    return f"Ticket #{rng.randint(1000, 99999)} (priority {rng.randint(1, 4)}): {body}"


def _plain(rng: random.Random, body: str) -> str:
    return f"{rng.choice(_FILLER)} {body}".strip()


_FRAMES: tuple[Callable[[random.Random, str], str], ...] = (
    _letter,
    _notes,
    _transcript,
    _ticket,
    _plain,
)


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


# ---------------------------------------------------------------- email


def _email(rng: random.Random) -> str:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    first = first.replace("é", "e")
    local = rng.choice(
        (
            f"{first}.{last}",
            f"{first[0]}{last}",
            f"{first}_{last}{rng.randint(1, 99)}",
            f"{first}+{rng.choice(('news', 'invoices', 'github', 'x2'))}",
            f"{last}.{first}",
            f"{first}{rng.randint(1950, 2009)}",
            f"info-{last}",
        )
    )
    value = f"{local}@{rng.choice(_DOMAINS)}"
    style = rng.random()
    if style < 0.15:
        value = value.upper()
    elif style < 0.35:
        value = value.title()
    return value


_EMAIL_BODIES = (
    "You can reach me at {v} if anything is unclear.",
    "Please send the signed contract to {v} by Friday.",
    "Contact: {v}",
    "I forwarded your question to <{v}>.",
    "my email is {v}, that's all lowercase",
    "cc: {v}; the rest of the board",
    "From: Support <{v}>",
    "Reply to ({v}) with the invoice number.",
    'notify_email = "{v}"',
    "Write to mailto:{v} for the archive.",
)

# ---------------------------------------------------------------- phone


def _phone(rng: random.Random) -> str:
    d = lambda n: _digits(rng, n)  # noqa: E731 - terse local helper
    area = str(rng.randint(2, 9)) + d(2)
    exch = str(rng.randint(2, 9)) + d(2)
    line = d(4)
    choices = (
        f"+1 ({area}) {exch}-{line}",
        f"({area}) {exch}-{line}",
        f"{area}-{exch}-{line}",
        f"{area}.{exch}.{line}",
        f"+1-{area}-{exch}-{line}",
        f"1-800-{exch}-{line}",
        f"+1 {area} {exch} {line}",
        f"+44 20 {d(4)} {d(4)}",
        f"020 {d(4)} {d(4)}",
        f"+44 (0)20 {d(4)} {d(4)}",
        f"07{d(3)} {d(6)}",
        f"+44 7{d(3)} {d(6)}",
        f"01632 {d(6)}",
        f"+49 30 {d(8)}",
        f"030 {d(8)}",
        f"+49 (0)30 {d(4)} {d(4)}",
        f"0171 {d(7)}",
        f"+49 171 {d(7)}",
        f"089/{d(7)}",
        f"(089) {d(4)} {d(4)}",
        f"+49 89 {d(4)}-{d(4)}",
        f"+33 1 {d(2)} {d(2)} {d(2)} {d(2)}",
        f"01 {d(2)} {d(2)} {d(2)} {d(2)}",
        f"06.{d(2)}.{d(2)}.{d(2)}.{d(2)}",
        f"+33 6 {d(2)} {d(2)} {d(2)} {d(2)}",
        f"+31 20 {d(3)} {d(4)}",
        f"020-{d(3)} {d(4)}",
        f"+41 44 {d(3)} {d(2)} {d(2)}",
        f"044 {d(3)} {d(2)} {d(2)}",
        f"+39 06 {d(4)} {d(4)}",
        f"+34 91{d(1)} {d(3)} {d(3)}",
        f"+4915{d(9)}",
        f"+1{area}{exch}{line}",
        f"0044 20 {d(4)} {d(4)}",
    )
    return rng.choice(choices)


_PHONE_BODIES = (
    "You can reach me on {v} during office hours.",
    "Tel.: {v}",
    "Please call {v} to reschedule.",
    "Her mobile number is {v}.",
    "Phone {v} | Fax {x}",
    "Yeah, just ring me at {v}, any time after six.",
    "For urgent matters: {v} (24/7 hotline).",
    "The client left a message asking to be called back at {v}.",
    "Kontakt: {v}",
    "emergency contact {v}, her brother",
)

# ---------------------------------------------------------------- ipv4 / ipv6


def _ipv4(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.2:
        ip = f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    elif kind < 0.4:
        ip = f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    elif kind < 0.5:
        ip = f"172.{rng.randint(16, 31)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    else:
        first = rng.choice([n for n in range(1, 224) if n not in (10, 127)])
        ip = f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}"
    return ip


_IPV4_BODIES = (
    "The login came from {v} at 03:12 UTC.",
    "ssh admin@{v} -p 2222",
    "Server: {v}:8443 (staging)",
    "We whitelisted {v}/32 in the firewall.",
    "host = {v}",
    "The printer's address is {v}, not the old one.",
    "Access denied for user 'root'@'{v}' (using password: NO)",
    "Blocked IP {v} after 5 failed attempts.",
)


def _ipv6(rng: random.Random) -> str:
    import ipaddress

    groups = [rng.randint(0, 0xFFFF) for _ in range(8)]
    style = rng.random()
    if style < 0.1:
        return "::1"
    if style < 0.25:
        v4 = ".".join(str(rng.randint(1, 254)) for _ in range(4))
        return f"::ffff:{v4}"
    if style < 0.45:
        groups[0], groups[1] = 0x2001, 0x0DB8
        for i in range(rng.randint(2, 5), rng.randint(5, 7)):
            groups[i] = 0
    elif style < 0.6:
        groups[0] = 0xFE80
        groups[1:4] = [0, 0, 0]
    addr = ipaddress.IPv6Address(b"".join(g.to_bytes(2, "big") for g in groups))
    text = addr.exploded if rng.random() < 0.2 else str(addr)
    if rng.random() < 0.2:
        text = text.upper()
    return text


_IPV6_BODIES = (
    "The request came from {v} according to the access log.",
    "Listen on [{v}]:8080 instead.",
    "nameserver {v}",
    "Her router announced {v} as its address.",
    "address={v}",
    "We saw {v} in the audit trail twice.",
)

# ---------------------------------------------------------------- card


def _luhn_complete(partial: str) -> str:
    """Append the Luhn check digit to ``partial``."""
    total = 0
    for i, ch in enumerate(reversed(partial)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return partial + str((10 - total % 10) % 10)


def _card(rng: random.Random) -> str:
    brand = rng.choice(("visa", "visa", "mc", "mc2", "amex", "discover", "jcb", "diners"))
    prefix, length = {
        "visa": ("4", 16),
        "mc": (str(rng.randint(51, 55)), 16),
        "mc2": (str(rng.randint(2221, 2720)), 16),
        "amex": (rng.choice(("34", "37")), 15),
        "discover": ("6011", 16),
        "jcb": (str(rng.randint(3528, 3589)), 16),
        "diners": ("36", 14),
    }[brand]
    number = _luhn_complete(prefix + _digits(rng, length - len(prefix) - 1))
    sep = rng.choice((" ", " ", "-", ""))
    if length == 16:
        return sep.join(number[i : i + 4] for i in range(0, 16, 4))
    return sep.join((number[:4], number[4:10], number[10:]))


_CARD_BODIES = (
    "Please charge the deposit to card {v}, expiry 09/28.",
    "Card number: {v}",
    "The customer read out {v} over the phone.",
    "refund issued to {v} on Monday",
    "cc={v}&exp=0427",
    "I paid with my Visa ({v}) but the booking failed.",
)

# ---------------------------------------------------------------- iban

# Country -> BBAN layout: n digits, a upper-case letters, c alphanumerics.
_BBAN_LAYOUT = {
    "DE": "18n", "GB": "4a14n", "FR": "10n11c2n", "NL": "4a10n", "ES": "20n",
    "IT": "1a10n12c", "BE": "12n", "AT": "16n", "CH": "5n12c", "NO": "11n",
    "PL": "24n", "SE": "20n", "DK": "14n", "FI": "14n", "IE": "4a14n", "PT": "21n",
    "LU": "3n13c", "SI": "15n", "SK": "20n", "CZ": "20n", "HU": "24n", "RO": "4a16c",
    "BG": "4a6n8c", "HR": "17n", "EE": "16n", "LT": "16n", "LV": "4a13c", "GR": "7n16c",
    "CY": "8n16c", "MT": "4a5n18c", "IS": "22n", "LI": "5n12c", "MC": "10n11c2n",
}  # fmt: skip


def _bban(rng: random.Random, layout: str) -> str:
    out, num = [], ""
    alphabet = {
        "n": "0123456789",
        "a": "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "c": "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    }
    for ch in layout:
        if ch.isdigit():
            num += ch
            continue
        # Alphanumeric fields are mostly digits in practice.
        chars = alphabet[ch] if ch != "c" or rng.random() < 0.3 else alphabet["n"]
        out.append("".join(rng.choice(chars) for _ in range(int(num))))
        num = ""
    return "".join(out)


def make_iban(rng: random.Random, country: str) -> str:
    """Return a valid compact IBAN for ``country`` with a random BBAN."""
    bban = _bban(rng, _BBAN_LAYOUT[country])
    check = 98 - iban_mod97(f"{country}00{bban}")
    return f"{country}{check:02d}{bban}"


def _iban(rng: random.Random) -> str:
    country = rng.choice(sorted(_BBAN_LAYOUT))
    if rng.random() < 0.4:
        country = rng.choice(("DE", "GB", "FR", "NL"))
    iban = make_iban(rng, country)
    if rng.random() < 0.6:
        iban = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    return iban


_IBAN_BODIES = (
    "Please transfer the fee to IBAN {v} (BIC follows).",
    "Bankverbindung: {v}, Verwendungszweck Rechnung 2026/113",
    "IBAN: {v}",
    "the refund goes to {v} as agreed on the call",
    "Account {v} was closed in June.",
    "| Payee | {v} | EUR 1,250.00 |",
)

# ---------------------------------------------------------------- national ids

_NINO_FIRST = "ABCEGHJKLMNOPRSTWXYZ"
_NINO_SECOND = "ABCEGHJKLMNPRSTWXYZ"


def _steuer_id(rng: random.Random) -> str:
    while True:
        repeated, missing = rng.sample(range(10), 2)
        digits = [d for d in range(10) if d != missing] + [repeated]
        rng.shuffle(digits)
        if digits[0] != 0:
            break
    body = "".join(map(str, digits))
    product = 10
    for ch in body:
        total = (int(ch) + product) % 10 or 10
        product = (total * 2) % 11
    check = 11 - product
    return body + str(0 if check == 10 else check)


def _nir(rng: random.Random) -> str:
    sex = rng.choice("12")
    year = f"{rng.randint(0, 99):02d}"
    month = f"{rng.randint(1, 12):02d}"
    dept = rng.choice([f"{n:02d}" for n in range(1, 96) if n != 20] + ["2A", "2B"])
    commune, order = f"{rng.randint(1, 999):03d}", f"{rng.randint(1, 999):03d}"
    body = sex + year + month + dept + commune + order
    number = body.replace("2A", "19").replace("2B", "18") if dept in ("2A", "2B") else body
    key = f"{97 - int(number) % 97:02d}"
    if rng.random() < 0.5:
        return f"{sex} {year} {month} {dept} {commune} {order} {key}"
    return body + key


def _bsn(rng: random.Random) -> str:
    while True:
        head = _digits(rng, 8)
        total = sum(int(d) * w for d, w in zip(head, range(9, 1, -1), strict=True))
        last = total % 11
        if last < 10 and head[0] != "0":
            return head + str(last)


def _national_id(rng: random.Random) -> tuple[str, str]:
    """Return (value, body template) for one national identifier."""
    kind = rng.choice(("ssn", "ssn", "nino", "nino", "steuer", "nir", "bsn"))
    if kind == "ssn":
        area = rng.choice([n for n in range(1, 900) if n != 666])
        v = f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
        if rng.random() < 0.2:
            v = v.replace("-", " ")
        return v, rng.choice(
            ("SSN: {v}", "Her social security number is {v}.", "applicant SSN {v}, DOB 1984")
        )
    if kind == "nino":
        prefix = "BG"
        while prefix in ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ"):
            prefix = rng.choice(_NINO_FIRST) + rng.choice(_NINO_SECOND)
        d = _digits(rng, 6)
        suffix = rng.choice("ABCD")
        v = (
            f"{prefix} {d[:2]} {d[2:4]} {d[4:]} {suffix}"
            if rng.random() < 0.5
            else f"{prefix}{d}{suffix}"
        )
        return v, rng.choice(
            ("National Insurance number: {v}", "NI no. {v} (please check)", "NINO {v}")
        )
    if kind == "steuer":
        v = _steuer_id(rng)
        if rng.random() < 0.5:
            v = f"{v[:2]} {v[2:5]} {v[5:8]} {v[8:]}"
        return v, rng.choice(
            ("Steuer-ID: {v}", "Ihre steuerliche Identifikationsnummer lautet {v}.", "IdNr {v}")
        )
    if kind == "nir":
        return _nir(rng), rng.choice(
            ("N° de sécurité sociale : {v}", "numéro INSEE {v}", "NIR {v} (carte Vitale)")
        )
    return _bsn(rng), rng.choice(("BSN: {v}", "burgerservicenummer {v}", "BSN {v} gecontroleerd"))


# ---------------------------------------------------------------- secrets

_B62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_B64 = _B62 + "+/"


def _rand(rng: random.Random, n: int, alphabet: str = _B62) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(rng: random.Random) -> str:
    header = {"alg": rng.choice(("HS256", "RS256")), "typ": "JWT"}
    payload = {"sub": _digits(rng, 10), "name": rng.choice(_FIRST), "iat": 1700000000}
    return ".".join(
        (
            _b64url(json.dumps(header).encode()),
            _b64url(json.dumps(payload).encode()),
            _b64url(rng.randbytes(32)),
        )
    )


def _pem(rng: random.Random) -> str:
    label = rng.choice(("RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"))
    body = base64.b64encode(rng.randbytes(48 * rng.randint(4, 12))).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----"


def _password(rng: random.Random) -> str:
    alphabet = _B62 + "!#%&*+-=?@^_~"
    while True:
        value = _rand(rng, rng.randint(16, 32), alphabet)
        if any(c.isdigit() for c in value):
            return value


def _secret(rng: random.Random) -> tuple[str, str]:
    """Return (value, body template) for one secret."""
    kind = rng.randrange(10)
    if kind == 0:
        v = rng.choice(("AKIA", "ASIA")) + _rand(rng, 16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
        return v, rng.choice(("AWS_ACCESS_KEY_ID={v}", "the access key id is {v}"))
    if kind == 1:
        if rng.random() < 0.7:
            v = "gh" + rng.choice("pousr") + "_" + _rand(rng, 36)
        else:
            v = "github_pat_" + _rand(rng, 22) + "_" + _rand(rng, 59)
        return v, rng.choice(("export GITHUB_TOKEN={v}", "use {v} to push", "git token {v}"))
    if kind == 2:
        v = f"xox{rng.choice('bpa')}-{_digits(rng, 12)}-{_digits(rng, 12)}-{_rand(rng, 24)}"
        return v, rng.choice(("Slack bot token: {v}", "SLACK_TOKEN='{v}'"))
    if kind == 3:
        v = rng.choice(("sk_live_", "pk_live_", "rk_live_")) + _rand(rng, 24)
        return v, rng.choice(("stripe.api_key = '{v}'", "Stripe key {v} (prod!)"))
    if kind == 4:
        v = "AIza" + _rand(rng, 35, _B62 + "_-")
        return v, rng.choice(("https://maps.googleapis.com/maps/api/js?key={v}", "key: {v}"))
    if kind == 5:
        v = rng.choice(("sk-", "sk-proj-")) + _rand(rng, 48, _B62 + "_-")
        return v, rng.choice(("OPENAI_API_KEY={v}", 'client = OpenAI(api_key="{v}")'))
    if kind == 6:
        return _jwt(rng), rng.choice(
            ("Authorization: Bearer {v}", "the session cookie was {v}", "jwt={v}")
        )
    if kind == 7:
        return _pem(rng), rng.choice(
            ("Here is the deploy key, keep it safe:\n{v}\n", "id_rsa contents:\n{v}")
        )
    key = rng.choice(
        (
            "api_key", "API_KEY", "db_password", "DB_PASSWORD", "client_secret", "clientSecret",
            "auth_token", "secret", "password", "apiKey", "SECRET_KEY", "access-token", "pwd",
            "aws_secret_access_key", "private_key", "webhook.secret",
        )
    )  # fmt: skip
    value = rng.choice(
        (_rand(rng, rng.randint(20, 40)), _rand(rng, 32, "0123456789abcdef"), _password(rng))
    )
    if not any(c.isdigit() for c in value):
        value = value[:-1] + str(rng.randint(0, 9))
    template = rng.choice(
        (
            f'{key} = "{{v}}"',
            f"{key}: {{v}}",
            f'"{key}": "{{v}}",',
            f"{key.upper()}={{v}}",
            f"--{key.lower()}={{v}}",
            f"{key} => '{{v}}'",
            f"  {key}: '{{v}}'  # rotated quarterly",
        )
    )
    return value, template


# ---------------------------------------------------------------- assembly


def _simple(
    gen: Callable[[random.Random], str], bodies: tuple[str, ...]
) -> Callable[[random.Random], tuple[str, str]]:
    return lambda rng: (gen(rng), rng.choice(bodies))


_GENERATORS: dict[str, Callable[[random.Random], tuple[str, str]]] = {
    "email": _simple(_email, _EMAIL_BODIES),
    "phone": _simple(_phone, _PHONE_BODIES),
    "ipv4": _simple(_ipv4, _IPV4_BODIES),
    "ipv6": _simple(_ipv6, _IPV6_BODIES),
    "card": _simple(_card, _CARD_BODIES),
    "iban": _simple(_iban, _IBAN_BODIES),
    "national_id": _national_id,
    "secret": _secret,
}


def generate(seed: int, per_kind: int = 200) -> list[Sample]:
    """Return ``per_kind`` samples for every kind in ``KINDS``, deterministic from ``seed``.

    Each sample's text embeds exactly one planted value (``Sample.value``) of
    its kind inside a letter, meeting note, transcript line, ticket or config
    snippet.
    """
    rng = random.Random(seed)
    samples: list[Sample] = []
    for kind in KINDS:
        for _ in range(per_kind):
            value, body = _GENERATORS[kind](rng)
            # A second number in "Phone ... | Fax {x}" is itself a phone; keep it
            # structurally valid but distinct from the planted value.
            body = body.replace("{x}", "+49 30 9120 0000")
            if kind == "secret" and "\n" in value:
                text = body.format(v=value)  # PEM blocks stand on their own lines
            else:
                text = rng.choice(_FRAMES)(rng, body.format(v=value))
            samples.append(Sample(text=text, kind=kind, value=value))
    return samples


# ---------------------------------------------------------------- negatives

_HARD_NEGATIVES = (
    # versions, builds, dependency pins
    "Upgrade to Python 3.11.7 before the release.",
    "Windows 10.0.19041.1415 is the minimum supported build.",
    "Tested with version 1.2.3.4 of the firmware.",
    "v2.14.0-rc.1 fixed the regression introduced in v2.13.9.",
    "requests==2.31.0, urllib3>=1.26.18,<3",
    "npm install lodash@4.17.21 react@18.2.0",
    "The OID 1.3.6.1.4.1.311.21.8 identifies the template.",
    "Kernel 6.8.0-45-generic panicked on boot.",
    # dates and times
    "The hearing is scheduled for 2026-11-27 at 09:30.",
    "Signed in Berlin on 27.11.2026.",
    "Deadline: 11/27/2026 5:00 PM EST.",
    "Logged at 2026-11-27T12:30:45.123Z by the scheduler.",
    "Timestamp 2026-11-27 12:30:45 +0100",
    "Between 1990-2020 the population doubled.",
    "The war lasted from 1914 - 1918.",
    "Office hours: 09:00-17:30, Mon-Fri.",
    "The flight departs 06.12.2026 07:45 and lands 10:15.",
    "Record 12:30:45 shows the anomaly.",
    "In the years 2019/2020 the figures fell.",
    "Fiscal year 2025-26 closed with a surplus.",
    # ISBNs, ISSNs, DOIs, standards
    "ISBN 978-3-16-148410-0",
    "See ISBN 0-306-40615-2 for the first edition.",
    "ISBN-13: 978-0-596-52068-7; ISBN-10: 0-596-52068-9",
    "ISSN 0317-8471",
    "doi:10.1000/182 and https://doi.org/10.1038/nphys1170",
    "ISO/IEC 27001:2022 and IEC 60601-1-2:2014 apply.",
    "RFC 5322 defines the address syntax.",
    # legal and section numbers
    "§ 12.3.4 applies to all contracts.",
    "See section 4.2.1.3 and clause 12.3.4.5 of the agreement.",
    "Art. 6 (1) lit. f GDPR is the legal basis.",
    "Paragraph 3.1.4.1 was amended in 2021.",
    "Rule 23(b)(3) of the Federal Rules of Civil Procedure.",
    "Case No. 2:19-cv-01234-ABC was dismissed.",
    "Regulation (EU) 2016/679, recital 26.",
    "Chapter 7, pp. 123-145.",
    # prices, quantities, tables
    "The licence costs $1,299.99 per year.",
    "Preis: 1.299,00 € zzgl. MwSt.",
    "Revenue was USD 12,500,000 in Q3.",
    "The plant produced 1 234 567 tonnes.",
    "| 2019 | 1,234,567 | 12.5% |\n| 2020 | 2,345,678 | 14.1% |",
    "Q3 2025   0.45   0.52   0.61   0.70",
    "0.25 0.50 0.75 1.00 1.25",
    "Row 12  4521  3390  1877  2045",
    "123456789 rows were processed in 42.7 seconds.",
    "Total: 98765432101 bytes",
    "Population 83 200 000 (2023 estimate).",
    "Measurements: 12.5, 13.75, 14.25, 15.0 mm",
    # coordinates and measurements
    "The summit is at 48.8584° N, 2.2945° E.",
    "Coordinates (51.5074, -0.1278) mark the office.",
    "lat=-33.8688 lon=151.2093",
    "The beam is 2.40 x 0.30 x 0.15 m.",
    # product codes and references
    "Part no. 0123-4567-89 ships in 3 weeks.",
    "SKU 020-7946-0958 is out of stock.",
    "Order number 4711-0815-2342 was cancelled.",
    "Invoice INV-2026-000123 is overdue.",
    "Model XR-415-555-0132 replaced the old unit.",
    "Serial no. 0511 2345 6789",
    "Artikel-Nr. 0815 4711 23",
    "Tracking number 1Z 999 AA1 01 2345 6784",
    "EAN 4006381333931",
    "Ref. 2024/03/117-B",
    # code
    "Use std::vector<int> and std::chrono::duration.",
    "let map: std::collections::HashMap<String, u32> = HashMap::new();",
    "Call Foo::Bar::baz() or Self::new() from crate::a::b.",
    "The macro a::b expands differently in edition 2021.",
    "ratio 16:9 and 4:3 screens, time 12:30:45",
    "MAC address 00:1A:2B:3C:4D:5E is the printer's.",
    "Colours: #ff00ff, #ABCDEF, #123456 and 0xDEADBEEF.",
    "Commit a94a8fe5ccb19ba61c4c0873d391e987982fbbd3 fixed it.",
    "Cherry-pick 9fceb02 and d670460b4b4aece5915caf5c68d12f560a9fe3e4.",
    "Request id 550e8400-e29b-41d4-a716-446655440000 failed.",
    "UUID: 123e4567-e89b-12d3-a456-426614174000",
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "tokenizer_path: /models/tok/v2/tokenizer.json",
    "max_tokens: 4096",
    "password_min_length: 16",
    "token_budget = 1200000",
    'password = os.environ["DB_PASSWORD"]',
    'api_key = "${API_KEY}"',
    "secret: <your-secret-here>",
    "auth_token: {{ vault_auth_token }}",
    "password: correct horse battery staple",
    "SECRET_KEY = get_secret_from_vault(name)",
    "primary_key: customer_id",
    "sort_key = created_at_descending_order",
    "The sk-learn pipeline and sk-fine-tuning-workflow-notes.",
    "git clone git@github.com:acme/platform.git",
    "Retina assets: logo@2x.png and icon@3x.webp",
    "Decorators like @property and @staticmethod.",
    "Write to root@localhost for local mail.",
    "docker pull nginx@sha256:0123456789abcdef",
    "Listening on 0.0.0.0:8080",
    "netmask 255.255.255.0, broadcast ignored",
    "The unspecified address :: binds all interfaces.",
    "Pointers: 0x7ffeefbff5c8, offsets +0x10 and -0x20.",
    "Run `make -j8` then `pytest -k 'not slow'`.",
    # numbers in prose
    "We shipped 4111 units in 2023 and 5012 in 2024.",
    "The claim of 1 000 000 000 was rejected.",
    "Call me at 5 pm on Tuesday.",
    "Room 101, building 7, floor 3.",
    "It was 30-40% cheaper than 2019-2021 prices.",
    "The score was 3-1 after 90+4 minutes.",
    "Temperature ranged from -12.5 to +38.2 °C.",
    "A 24-70mm f/2.8 lens and a 70-200mm f/4.",
    "He scored 98.6, 99.1 and 97.3 in the trials.",
    "Dimensions 1920x1080, 2560x1440 and 3840x2160.",
    "Phone model XR-2000 costs 499 euros.",
    "Telephone exchange opened in 1923.",
    "Call 3 of 12 was dropped.",
    "Use +1 or -1 to adjust.",
    "Patch 2.0.1.3 rolled out to 10 percent of users.",
    "Approved under file 03/2024-117.",
    "use std::io::{self, Read};",
    "Postcode SW1A 1AA and 10115 Berlin",
    "Flight LH 400 at 10:05, gate B42",
    "The ratio 3:2:1 was kept.",
    "api_version: 2024-11-27",
    "session_timeout_seconds = 3600",
    "The secret: nobody read the manual.",
)


def _luhn_invalid_numbers(rng: random.Random, n: int) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        prefix = rng.choice(("4", "51", "52", "37", "6011"))
        length = 15 if prefix == "37" else 16
        number = _luhn_complete(prefix + _digits(rng, length - len(prefix) - 1))
        bad = number[:-1] + str((int(number[-1]) + rng.randint(1, 9)) % 10)
        sep = rng.choice((" ", "-", ""))
        shown = sep.join(bad[i : i + 4] for i in range(0, len(bad), 4))
        out.append(
            rng.choice(("Reference {}.", "Order {} shipped.", "Voucher code {}")).format(shown)
        )
    return out


def _bad_ibans(rng: random.Random, n: int) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        iban = make_iban(rng, rng.choice(sorted(_BBAN_LAYOUT)))
        check = int(iban[2:4])
        bad = f"{iban[:2]}{(check + rng.randint(1, 90)) % 97 + 2:02d}{iban[4:]}"
        if bad[2:4] == iban[2:4]:
            continue
        if rng.random() < 0.5:
            bad = " ".join(bad[i : i + 4] for i in range(0, len(bad), 4))
        out.append(f"Transfer to {bad} failed validation.")
    return out


def clean_hard_negatives() -> list[str]:
    """Return texts that must come out of :func:`redact` unchanged.

    Version numbers, dates, times, ISBNs, prices, section numbers,
    coordinates, phone-like product codes, C++/Rust paths, hex colours, git
    SHAs, UUIDs (identifiers, not secrets), numbers in tables, plus generated
    Luhn-invalid card-like numbers and IBAN-like strings with a wrong
    checksum.  Deterministic.
    """
    rng = random.Random(20261127)
    return [
        *_HARD_NEGATIVES,
        *_POSTAL_ADDRESSES,
        *_luhn_invalid_numbers(rng, 30),
        *_bad_ibans(rng, 30),
    ]


# Found in a licence text during the demo: a ZIP+4 code was taken for a phone number.
_POSTAL_ADDRESSES = [
    "Free Software Foundation, Inc., 51 Franklin Street, Fifth Floor, Boston, MA  02110-1301  USA",
    "Ship to: 1600 Pennsylvania Avenue NW, Washington, DC 20500-0003.",
    "Our office moved to 350 Fifth Avenue, New York, NY 10118-0110 last spring.",
]


def recall_by_kind(samples: Iterable[Sample]) -> dict[str, float]:
    """Return, per kind, the share of samples whose value is gone and whose kind was counted."""
    hits: dict[str, int] = {}
    totals: dict[str, int] = {}
    for s in samples:
        result = redact(s.text)
        totals[s.kind] = totals.get(s.kind, 0) + 1
        if s.value not in result.text and result.counts.get(s.kind, 0) > 0:
            hits[s.kind] = hits.get(s.kind, 0) + 1
    return {kind: hits.get(kind, 0) / n for kind, n in totals.items()}


def false_positive_rate(negatives: Iterable[str]) -> float:
    """Return the share of ``negatives`` that :func:`redact` changes at all."""
    texts = list(negatives)
    if not texts:
        return 0.0
    return sum(redact(t).text != t for t in texts) / len(texts)

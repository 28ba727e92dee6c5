"""How a contributor paid by accepted tokens would try to be paid for nothing: disguised
copies of another contributor's text, and filler. Every generator is seeded and varies
what it does (where, how much, which characters), so a defence cannot key on one template.

Copies in disguise (of `original`, another contributor's document):
- `edit_words`: a share of the words substituted, deleted or inserted;
- `shuffle_paragraphs`: the paragraphs in another order;
- `merge`: pieces of the original inside the attacker's own text;
- `disguise_characters`: Unicode confusables, zero-width characters, case and whitespace
  games, alone or together;
- `fragments`: the original cut into short documents;
- `patchwork`: paragraphs of several originals joined into one document.

Filler: `lorem_ipsum` (classic, shuffled, with English words mixed in), `word_salad` (words
drawn uniformly, by frequency, or from a chain of word pairs).
"""

from __future__ import annotations

import itertools
import random
import re

# Letters that look like Latin ones (Cyrillic and Greek), as an attacker would pick them.
CONFUSABLES = {
    "a": "\u0430", "c": "\u0441", "e": "\u0435", "o": "\u043e", "p": "\u0440",
    "x": "\u0445", "y": "\u0443", "i": "\u0456", "j": "\u0458", "s": "\u0455",
    "A": "\u0391", "B": "\u0392", "E": "\u0395", "H": "\u0397", "I": "\u0399",
    "K": "\u039a", "M": "\u039c", "N": "\u039d", "O": "\u039f", "P": "\u03a1",
    "T": "\u03a4", "X": "\u03a7", "Y": "\u03a5", "Z": "\u0396",
}  # fmt: skip
ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"]
ODD_SPACES = ["\u00a0", "\u2002", "\u2003", "\u2009", "\u202f", "  ", "\t"]

_WORD = re.compile(r"\S+")


def edit_words(text: str, rate: float, rng: random.Random, vocabulary: list[str]) -> str:
    """About `rate` of the words changed, each by substitution, deletion or insertion of a
    word drawn from `vocabulary` (paragraph breaks kept)."""
    paragraphs = []
    for paragraph in text.split("\n\n"):
        words = paragraph.split(" ")
        out: list[str] = []
        for word in words:
            if rng.random() >= rate:
                out.append(word)
                continue
            action = rng.choice(("substitute", "delete", "insert"))
            if action == "substitute":
                out.append(rng.choice(vocabulary))
            elif action == "insert":
                out.extend([word, rng.choice(vocabulary)])
        paragraphs.append(" ".join(out))
    return "\n\n".join(paragraphs)


def paragraphs_of(text: str) -> list[str]:
    """Paragraphs, or for a text without blank lines, groups of about three sentences."""
    parts = [p for p in text.split("\n\n") if p.strip()]
    if len(parts) > 1:
        return parts
    sentences = re.split(r"(?<=[.!?])\s+", text)
    return [" ".join(sentences[i : i + 3]) for i in range(0, len(sentences), 3)]


def shuffle_paragraphs(text: str, rng: random.Random) -> str:
    parts = paragraphs_of(text)
    rng.shuffle(parts)
    return "\n\n".join(parts)


def merge(original: str, own: str, rng: random.Random, share: float = 0.6) -> str:
    """About `share` of the original's paragraphs, in order, interleaved with the
    attacker's own paragraphs."""
    taken = [p for p in paragraphs_of(original) if rng.random() < share]
    mine = paragraphs_of(own)
    out = []
    while taken or mine:
        source = taken if (taken and (not mine or rng.random() < 0.5)) else mine
        out.append(source.pop(0))
    return "\n\n".join(out)


def disguise_characters(text: str, rng: random.Random, kinds: tuple[str, ...]) -> str:
    """Characters disguised by each of `kinds`: "confusables", "zero_width", "case",
    "whitespace". The rates vary by seed."""
    # Case first: a case game played after the swap would turn a disguised capital into a
    # small Greek letter a reader sees as Greek (capital tau -> tau), which no attacker wants.
    chars = list(text)
    if "case" in kinds:
        mode = rng.choice(("upper", "title", "random"))
        joined = "".join(chars)
        if mode == "upper":
            joined = joined.upper()
        elif mode == "title":
            joined = joined.title()
        else:
            joined = "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in joined)
        chars = list(joined)
    if "confusables" in kinds:
        rate = rng.uniform(0.1, 0.6)
        chars = [CONFUSABLES[c] if c in CONFUSABLES and rng.random() < rate else c for c in chars]
    if "zero_width" in kinds:
        rate = rng.uniform(0.05, 0.4)
        out = []
        for c in chars:
            out.append(c)
            if c.isalpha() and rng.random() < rate:
                out.append(rng.choice(ZERO_WIDTH))
        chars = out
    if "whitespace" in kinds:
        out = []
        for c in chars:
            if c == " " and rng.random() < 0.5:
                out.append(rng.choice(ODD_SPACES))
            elif c == " " and rng.random() < 0.05:
                out.append("\n")
            else:
                out.append(c)
        chars = out
    return "".join(chars)


def fragments(text: str, rng: random.Random) -> list[str]:
    """The original cut into documents of 1-3 sentences."""
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
    out, i = [], 0
    while i < len(sentences):
        take = rng.randint(1, 3)
        out.append(" ".join(sentences[i : i + take]))
        i += take
    return out


def patchwork(originals: list[str], rng: random.Random, pieces: int = 6) -> str:
    """Paragraphs of several originals joined into one document."""
    pool = [p for text in originals for p in paragraphs_of(text)]
    return "\n\n".join(rng.sample(pool, min(pieces, len(pool))))


# --- filler ------------------------------------------------------------------------------

LOREM = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua ut enim ad minim veniam quis nostrud "
    "exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat duis aute irure "
    "dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur "
    "excepteur sint occaecat cupidatat non proident sunt in culpa qui officia deserunt "
    "mollit anim id est laborum curabitur pretium tincidunt lacus nulla gravida orci a "
    "odio nullam varius turpis et commodo pharetra est eros bibendum elit nec luctus magna "
    "felis sollicitudin mauris integer in mauris eu nibh euismod gravida duis ac tellus et "
    "risus vulputate vehicula donec lobortis risus a elit etiam tempor ut ullamcorper "
    "ligula eu tempor congue eros est euismod turpis id tincidunt sapien risus a quam "
    "maecenas fermentum consequat mi donec fermentum pellentesque malesuada nulla a mi "
    "duis sapien sem aliquet nec commodo eget consequat quis neque aliquam faucibus"
).split()


def lorem_ipsum(rng: random.Random, vocabulary: list[str]) -> str:
    """Placeholder text: the classic opening, shuffled sentences, or Latin with English
    words mixed in; in paragraphs, sentences capitalised and punctuated."""
    mode = rng.choice(("classic", "shuffled", "mixed"))
    paragraphs = []
    for _ in range(rng.randint(1, 6)):
        sentences = []
        for _ in range(rng.randint(3, 9)):
            length = rng.randint(6, 18)
            if mode == "classic" and not paragraphs and not sentences:
                words = LOREM[:length]
            else:
                words = [rng.choice(LOREM) for _ in range(length)]
            if mode == "mixed":
                words = [rng.choice(vocabulary) if rng.random() < 0.3 else w for w in words]
            sentence = " ".join(words)
            sentences.append(sentence[0].upper() + sentence[1:] + rng.choice(".....?!"))
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


def word_salad(rng: random.Random, corpus: list[str]) -> str:
    """Words with no sense in their order: drawn uniformly from the corpus's vocabulary,
    drawn by their frequency in it, or walked along its word pairs (each next word one
    that followed the current one somewhere), in sentences."""
    words = [w for text in corpus for w in text.split()]
    mode = rng.choice(("uniform", "frequency", "pairs"))
    vocabulary = sorted(set(words))
    following: dict[str, list[str]] = {}
    if mode == "pairs":
        for a, b in itertools.pairwise(words):
            following.setdefault(a, []).append(b)
    out = []
    current = rng.choice(words)
    for _ in range(rng.randint(80, 600)):
        if mode == "uniform":
            current = rng.choice(vocabulary)
        elif mode == "frequency":
            current = rng.choice(words)
        else:
            current = rng.choice(following.get(current) or words)
        out.append(current)
    text, sentence = [], []
    for word in out:
        sentence.append(word)
        if len(sentence) >= rng.randint(8, 20):
            text.append(" ".join(sentence).capitalize() + ".")
            sentence = []
    if sentence:
        text.append(" ".join(sentence).capitalize() + ".")
    return " ".join(text)


# --- web boilerplate ----------------------------------------------------------------------

_COOKIE = [
    "We use cookies to improve your experience on our site.",
    "This website uses cookies to ensure you get the best experience.",
    "By continuing to browse you agree to our use of cookies.",
    "We and our partners use cookies to personalise content and ads.",
    "Cookies help us deliver our services. By using our services, you agree to our use of cookies.",
]
_COOKIE_BUTTONS = ["Accept all", "Accept", "Reject all", "Manage preferences", "Cookie settings",
                   "Got it!", "OK", "Learn more", "Allow cookies"]  # fmt: skip
_NAV = ["Home", "About", "About us", "News", "Blog", "Products", "Services", "Shop", "Contact",
        "Contact us", "Careers", "Support", "FAQ", "Pricing", "Events", "Resources", "Login",
        "Sign in", "Register", "Cart", "Search", "Menu", "Team", "Press", "Partners"]  # fmt: skip
_SHARE = ["Share this:", "Share on Facebook", "Share on Twitter", "Tweet", "Share on LinkedIn",
          "Email this", "Print", "Pin it", "WhatsApp", "Copy link", "Follow us on Instagram",
          "Follow us", "Like us on Facebook"]  # fmt: skip
_OTHER = ["Skip to main content", "Skip to content", "Back to top", "Subscribe to our newsletter",
          "Sign up for our newsletter", "Enter your email address", "Subscribe", "Advertisement",
          "Related articles", "You might also like", "Read more", "Load more", "Previous post",
          "Next post", "Leave a comment", "Privacy Policy", "Terms of Use", "Terms of Service",
          "Sitemap", "Log in to reply", "Posted in Uncategorized", "Tags:"]  # fmt: skip


def boilerplate_page(rng: random.Random) -> str:
    """A page's chrome with no content: cookie banner, menus, share bars, newsletter
    prompts and footer, in varied order, wording and separators."""
    blocks = []
    sep = rng.choice([" | ", " · ", " / ", "  ", "\n"])
    if rng.random() < 0.8:
        blocks.append(" ".join(rng.sample(_COOKIE, rng.randint(1, 2))))
        blocks.append(sep.join(rng.sample(_COOKIE_BUTTONS, rng.randint(1, 3))))
    blocks.append(sep.join(rng.sample(_NAV, rng.randint(4, 12))))
    for _ in range(rng.randint(1, 4)):
        pool = rng.choice((_SHARE, _OTHER, _NAV))
        blocks.append(sep.join(rng.sample(pool, rng.randint(1, 5))))
    year = rng.randint(2005, 2026)
    owner = rng.choice(["Acme Media", "Northwind", "The Daily Post", "Blue River Ltd", "Example"])
    blocks.append(rng.choice([f"© {year} {owner}. All rights reserved.",
                              f"Copyright {year} {owner}", f"© {owner} {year}"]))  # fmt: skip
    rng.shuffle(blocks[1:-1])
    return "\n".join(blocks)


def with_boilerplate_edges(text: str, rng: random.Random) -> str:
    """A real document with a page's chrome above and below it."""
    head = [rng.choice(_OTHER[:2]), " | ".join(rng.sample(_NAV, rng.randint(4, 9)))]
    tail = [" ".join(rng.sample(_SHARE, rng.randint(2, 5))), rng.choice(_OTHER)]
    return "\n".join([*head[: rng.randint(1, 2)], text, *tail[: rng.randint(1, 2)]])


# --- keyword stuffing ---------------------------------------------------------------------

_PRODUCTS = ["running shoes", "replica watches", "cheap flights", "car insurance",
             "weight loss pills", "web hosting", "online casino", "cbd oil", "vpn service",
             "essay writing", "payday loans", "led lights", "gaming chair", "phone case",
             "hair extensions", "solar panels", "crypto wallet", "dog food"]  # fmt: skip
_SPAM_TEMPLATES = [
    "Looking for the best {kw}? You have come to the right place.",
    "Buy {kw} online at the lowest price.",
    "Our {kw} are the best {kw} you can buy today.",
    "Cheap {kw} with free shipping on every order.",
    "Top rated {kw} reviews and {kw} deals for {year}.",
    "Compare {kw} prices and save up to {pct}% now.",
    "Why choose our {kw}? Quality {kw}, fast delivery and great prices.",
    "Discount {kw} in {city}: order your {kw} now.",
    "The {kw} sale ends soon, so get your {kw} before they are gone.",
    "Find cheap {kw} near you and shop {kw} with confidence.",
    "Best {kw} {year}: top {n} {kw} compared.",
    "{Kw} for sale, {kw} coupons and exclusive {kw} offers.",
]
_SPAM_FILLER = [
    "Customer satisfaction is our priority.",
    "We have thousands of happy customers.",
    "Contact us for more information.",
    "Our team is here to help you every step of the way.",
    "Click here to learn more.",
    "Don't miss out on this amazing opportunity.",
    "Sign up today and get a special bonus.",
    "Check out our website for the latest updates.",
]
_CITIES = ["London", "Paris", "Berlin", "Madrid", "Chicago", "Toronto", "Sydney", "Dubai"]


def keyword_spam(rng: random.Random) -> str:
    """Text written to repeat a product keyword for search engines: varied templates,
    filler sentences, a density of the keyword that varies by seed, sometimes links."""
    kw = rng.choice(_PRODUCTS)
    filler_share = rng.uniform(0.1, 0.5)
    sentences = []
    for _ in range(rng.randint(8, 40)):
        if rng.random() < filler_share:
            sentences.append(rng.choice(_SPAM_FILLER))
        else:
            template = rng.choice(_SPAM_TEMPLATES)
            sentences.append(
                template.format(
                    kw=kw, Kw=kw.capitalize(), year=rng.randint(2019, 2026),
                    pct=rng.choice([10, 20, 30, 50, 70]), city=rng.choice(_CITIES),
                    n=rng.randint(5, 20),
                )
            )  # fmt: skip
        if rng.random() < 0.1:
            sentences.append(
                f"https://www.best-{kw.replace(' ', '-')}.example/{rng.randint(1, 99)}"
            )
    paragraphs, i = [], 0
    while i < len(sentences):
        take = rng.randint(2, 6)
        paragraphs.append(" ".join(sentences[i : i + take]))
        i += take
    return "\n\n".join(paragraphs)

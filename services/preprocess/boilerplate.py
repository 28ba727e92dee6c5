"""Web page chrome: cookie banners, menus, share bars, newsletter prompts, footers.

Scraped pages carry the site's chrome around (or instead of) their content. Nobody pays for
it, so:

- a document that is chrome and little else is removed (quality rule
  ``max_boilerplate_fraction``: at most 300 words, at least 60% of its lines are chrome
  and fewer than 50 words are not);
- leading and trailing lines of *strong* chrome (below) are stripped from every other
  document (one with 50 words or more besides them) before anything is counted, so a real
  article keeps its text and loses its menus.

A line is strong chrome if it is a menu (at least three short items between separators
such as ``|``, ``·``, ``/``, ``»``, most of them menu words: Home, About, Contact, Login,
...; a breadcrumb of two menu words; or, without separators, three or more menu items
making up 70% of its words) or if
it is short (at most 30 words) and says what only chrome says: cookie consent,
share and follow buttons, newsletter prompts, "skip to content", "back to top",
"advertisement". A line is weak chrome if it is a lone menu word, a short button or
pager label ("Next post", "Got it!", "Tags:"), or a copyright or legal link line (at most
15 words: "© 2024 Acme. All rights reserved.", "Privacy Policy"):
counted when judging a whole document, never stripped, since a licence or a contract
states its copyright as content.
"""

from __future__ import annotations

import re

__all__ = ["boilerplate_fraction", "strip_chrome_edges"]

MENU_WORDS = frozenset(
    """home about about-us news blog products services shop store contact contact-us careers
    jobs support help faq faqs pricing events resources login log-in logout log-out sign-in
    sign-up signin signup register cart basket checkout search menu team press partners
    sitemap account my-account wishlist deals newsletter subscribe privacy terms cookies
    legal imprint impressum accessibility community forum docs documentation downloads
    download features solutions customers investors media gallery portfolio""".split()
)
SHARE_WORDS = frozenset(
    """share print email e-mail tweet facebook twitter x linkedin instagram whatsapp pinterest
    reddit telegram tumblr mastodon copy-link pin-it""".split()
)
_SEPARATORS = re.compile(r"\s*(?:[|·•»\u203a>/]|\s{2,})\s*")
_STRONG = re.compile(
    r"cookie|consent|manage (?:your )?preferences|accept all|reject all|"
    r"\bshare (?:this|on|via)\b|\bfollow us\b|\blike us on\b|\btweet\b|\bpin it\b|"
    r"\bcopy link\b|\bemail this\b|newsletter|\bsubscribe\b|enter your e-?mail|"
    r"skip to (?:main )?content|back to top|advertisement|\byou might also like\b|"
    r"related (?:articles|posts|stories)|\bload more\b|\bread more\b|leave a comment|"
    r"\bposted in\b|log in to reply",
    re.IGNORECASE,
)
_WEAK = re.compile(
    r"all rights reserved|^\s*(?:©|\(c\)|copyright)\s|privacy policy|terms of (?:use|service)|"
    r"terms (?:and|&) conditions|\bsitemap\b",
    re.IGNORECASE,
)


_SHORT_CHROME = re.compile(
    r"^(?:previous post|next post|older posts|newer posts|got it!?|ok|tags:|categories:|"
    r"print|email|share|search\.*|close|menu)$",
    re.IGNORECASE,
)


def _menu_item(item: str) -> bool:
    return item.strip(" :.!").lower().replace(" ", "-") in MENU_WORDS


def _menu_words(line: str, vocabulary: frozenset[str] = MENU_WORDS, least: int = 3) -> bool:
    """A menu written without separators ("Home About us Blog Contact"): `least` or more
    items, and menu words make up at least 70% of its words (two-word items such as
    "About us" and "Sign in" count as one item of two words)."""
    words = [word.strip(" :.!") for word in line.split()]
    if len(words) < least or len(words) > 20:
        return False

    def known(item: str) -> bool:
        return item.lower().replace(" ", "-") in vocabulary

    covered = items = i = 0
    while i < len(words):
        pair = f"{words[i]} {words[i + 1]}" if i + 1 < len(words) else ""
        if pair and known(pair):
            covered, items, i = covered + 2, items + 1, i + 2
        elif known(words[i]):
            covered, items, i = covered + 1, items + 1, i + 1
        else:
            i += 1
    return items >= least and covered >= 0.7 * len(words)


def chrome(line: str) -> str | None:
    """ "strong", "weak" or None for one line (see the module docstring)."""
    stripped = line.strip()
    if not stripped:
        return None
    words = len(stripped.split())
    if words > 40:
        return None
    items = [item for item in _SEPARATORS.split(stripped) if item]
    if len(items) >= 3 and all(len(item.split()) <= 4 for item in items):
        if sum(_menu_item(item) for item in items) * 2 >= len(items):
            return "strong"
    if len(items) == 2 and all(_menu_item(item) for item in items):
        return "strong"  # a breadcrumb: "Home » Help"
    if len(items) == 1 and (_menu_words(stripped) or _menu_words(stripped, SHARE_WORDS, 2)):
        return "strong"
    if words <= 30 and _STRONG.search(stripped):
        return "strong"
    if words <= 3 and (_menu_item(stripped) or _SHORT_CHROME.match(stripped)):
        return "weak"
    if words <= 15 and _WEAK.search(stripped):
        return "weak"
    return None


def boilerplate_fraction(text: str, n_words: int) -> float:
    """Share of the non-empty lines that are chrome, for a document with fewer than 50
    words outside them; 0 otherwise, and for a document of more than 300 words (a page of
    chrome is a few menus, banners and a footer; a longer one repeats itself and fails the
    repetition rules). A chrome line has at most 40 words, so a document with 50 more
    words than 40 per line is answered without looking at its lines."""
    if n_words > 300 or not text or n_words >= 50 + 40 * (text.count("\n") + 1):
        return 0.0
    chrome_lines = content_words = lines = 0
    for line in text.split("\n"):
        if not line.strip():
            continue
        lines += 1
        if chrome(line):
            chrome_lines += 1
        else:
            content_words += len(line.split())
            if content_words >= 50:
                return 0.0  # a document of its own, whatever chrome it has
    return chrome_lines / lines if lines else 0.0


def strip_chrome_edges(text: str) -> str:
    """`text` without the chrome at its start and end, if 50 words or more are left; else
    `text` as it is (the quality rule judges a page that is chrome and little else). At
    each end, the run of chrome and blank lines is cut up to its strong chrome line
    farthest from the edge: weak lines go with strong ones ("Share on Twitter" then
    "Privacy Policy"), never alone (a licence that ends "All rights reserved." keeps it)."""
    if "\n" not in text:
        return text
    lines = text.split("\n")
    kinds = []
    for line in lines:
        kind = chrome(line) if line.strip() else "blank"
        if kind is None:
            break
        kinds.append(kind)
    start = max((i + 1 for i, kind in enumerate(kinds) if kind == "strong"), default=0)
    end = len(lines)
    for offset, line in enumerate(reversed(lines)):
        if len(lines) - offset <= start:
            break
        kind = chrome(line) if line.strip() else "blank"
        if kind is None:
            break
        if kind == "strong":
            end = len(lines) - offset - 1
    body = lines[start:end]
    if (start == 0 and end == len(lines)) or sum(len(line.split()) for line in body) < 50:
        return text  # little is left: the page is judged whole (max_boilerplate_fraction)
    return "\n".join(body).strip("\n")

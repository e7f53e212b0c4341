"""Counting the tokens of a request's strings within a bound. Pure: no I/O.

Tokenising runs on the event loop, so each request may tokenise at most `tokenize_max_bytes` of
text in total. Past that, and always for base64 media, a string counts as its UTF-8 byte count,
an upper bound because every byte-level BPE token is at least one byte. Texts already counted
are remembered (agents resend their whole conversation on every step).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Protocol

import orjson

from proxy.metering.images import IMAGE_TOKENS, image_tokens


class Tokenizer(Protocol):
    def encode_ordinary(self, text: str) -> list[int]: ...


class _CountCache:
    """Token counts of texts already tokenised, newest kept. Agents resend their whole
    conversation on every step, so most of a prompt's messages were counted a call ago; a hit
    costs a dict lookup instead of tokenising again. Bounded in characters held."""

    def __init__(self, max_chars: int) -> None:
        self._max = max_chars
        self._chars = 0
        self._counts: OrderedDict[tuple[Tokenizer, str], int] = OrderedDict()

    def count(self, enc: Tokenizer, text: str) -> int:
        key = (enc, text)
        found = self._counts.get(key)
        if found is not None:
            self._counts.move_to_end(key)
            return found
        tokens = len(enc.encode_ordinary(text))
        if len(text) <= self._max // 4:
            self._counts[key] = tokens
            self._chars += len(text)
            while self._chars > self._max:
                (_, old), _ = self._counts.popitem(last=False)
                self._chars -= len(old)
        return tokens


_COUNTS = _CountCache(max_chars=16 * 1024 * 1024)
"""Keyed by the encoding object itself (held, so never confused with a later one)."""


class TextCounter:
    """Counts tokens of strings, tokenising at most `max_bytes` of UTF-8 over its lifetime
    (the same texts count the same whether or not they were counted before). `image_tokens`
    counts an image whose size is unknown (images.py)."""

    def __init__(self, enc: Tokenizer, max_bytes: int, image_tokens: int = IMAGE_TOKENS) -> None:
        self._enc = enc
        self._budget = max_bytes
        self.image_tokens = image_tokens
        self.images = 0
        """Tokens counted for images so far."""

    def image(self, url: str, detail: object) -> int:
        """An image input's tokens by the tile rule (images.py), remembered in `images`."""
        tokens = image_tokens(url, detail, self.image_tokens)
        self.images += tokens
        return tokens

    def flat_image(self, tokens: int) -> int:
        """An image input counted by a flat rule (Claude's: shapes/messages.py), remembered in
        `images` so the model's image_token_factor scales it."""
        self.images += tokens
        return tokens

    def count(self, text: str) -> int:
        size = utf8_len(text)
        if size > self._budget or _is_base64_data_url(text):
            return size
        self._budget -= size
        return _COUNTS.count(self._enc, text)

    def count_json(self, value: Any) -> int:
        return self.count(orjson.dumps(value).decode())


def utf8_len(text: str) -> int:
    """Bytes of `text` in UTF-8: an upper bound on its tokens (lone surrogates count 3)."""
    return len(text.encode("utf-8", "surrogatepass"))


def _is_base64_data_url(text: str) -> bool:
    return text.startswith("data:") and ";base64," in text[:256]

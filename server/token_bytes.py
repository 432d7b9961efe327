"""A token's raw bytes and name, for the OpenAI logprob entries.

OpenAI's ``bytes`` field exists for tokens that are not whole characters: a
byte-level BPE splits "—" into two tokens whose text alone is no valid UTF-8.
Decoding such a token gives "" or U+FFFD, whose encoding is not the token's
bytes; a client that joins ``bytes`` to rebuild the text needs the raw ones.
They come from the vocabulary piece itself:

- byte-level BPE (GPT-2, Llama 3, SmolLM2): each character of the piece stands
  for one byte through GPT-2's printable byte alphabet;
- SentencePiece with byte fallback (Llama 2): ``<0xE2>`` is the byte 0xE2 and
  ``▁`` a space;
- special tokens: the UTF-8 of their text.

The token's name is what vLLM's own server shows: the tokenizer's decoding of
that one id (U+FFFD for a partial character, the text of a special token).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache

_SENTENCEPIECE_BYTE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
SENTENCEPIECE_SPACE = "\u2581"


@lru_cache(maxsize=1)
def _byte_level_decoder() -> dict[str, int]:
    """GPT-2's printable stand-in character -> the byte it stands for."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    chars, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def _is_byte_level(tokenizer) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    decoder = json.loads(backend.to_str()).get("decoder") or {}
    parts = decoder.get("decoders", [decoder]) if decoder.get("type") == "Sequence" else [decoder]
    return any(part.get("type") == "ByteLevel" for part in parts)


class TokenBytes:
    """Raw bytes and display names of one tokenizer's tokens, computed on demand."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.byte_level = _is_byte_level(tokenizer)
        self.special = set(getattr(tokenizer, "all_special_ids", []) or [])
        added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
        self.special |= {i for i, tok in added.items() if getattr(tok, "special", False)}
        self._cache: dict[int, bytes] = {}

    def raw(self, token_id: int) -> bytes:
        """The bytes the token stands for in the text."""
        cached = self._cache.get(token_id)
        if cached is None:
            cached = self._cache[token_id] = self._raw(token_id)
        return cached

    def _raw(self, token_id: int) -> bytes:
        piece = self.tokenizer.convert_ids_to_tokens(token_id)
        if piece is None:
            return b""
        if token_id in self.special:
            return piece.encode()
        if self.byte_level:
            table = _byte_level_decoder()
            if all(ch in table for ch in piece):
                return bytes(table[ch] for ch in piece)
            return piece.encode()  # an added (non-byte-level) token
        match = _SENTENCEPIECE_BYTE.match(piece)
        if match:
            return bytes([int(match.group(1), 16)])
        return piece.replace(SENTENCEPIECE_SPACE, " ").encode()

    def name(self, token_id: int, decoded: str | None) -> str:
        """The token's text as vLLM's server names it: the engine's decoded text,
        else the tokenizer's decoding of the one id (U+FFFD for a partial character)."""
        if decoded:
            return decoded
        return self.tokenizer.decode([token_id]) or ""

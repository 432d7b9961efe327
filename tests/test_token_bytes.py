"""Raw token bytes for logprob entries, against the tiny tokenizer's own decoding."""

from __future__ import annotations

import pytest

from genarm.server.token_bytes import TokenBytes

TEXTS = ["plain ascii", "an em dash — and “quotes”", "café naïve 日本語 🙂🚀", "tab\tand\nnewline"]


@pytest.fixture(scope="module")
def tokenizer(tiny_models):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_models["base"])


def test_every_token_decodes_like_its_raw_bytes(tokenizer):
    table = TokenBytes(tokenizer)
    assert table.byte_level
    for token_id in range(len(tokenizer)):
        raw = table.raw(token_id)
        if token_id in table.special:
            assert raw == tokenizer.convert_ids_to_tokens(token_id).encode()
            continue
        # The tokenizer's own byte-level decoder is a lossy UTF-8 decode of these bytes.
        assert tokenizer.decode([token_id]) == raw.decode("utf-8", errors="replace"), token_id


def test_byte_tokens_are_single_bytes_and_partial_characters_keep_theirs(tokenizer):
    table = TokenBytes(tokenizer)
    from tokenizers import pre_tokenizers

    singles = {}
    for char in pre_tokenizers.ByteLevel.alphabet():
        token_id = tokenizer.convert_tokens_to_ids(char)
        singles[token_id] = table.raw(token_id)
    assert sorted(b for raw in singles.values() for b in raw) == list(range(256))
    for text in TEXTS:  # joining the bytes of a text's tokens gives the text back
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert b"".join(table.raw(i) for i in ids) == text.encode()
    dash = tokenizer("—", add_special_tokens=False)["input_ids"]
    if len(dash) > 1:  # split mid-character: names are U+FFFD, bytes are the real ones
        assert all(table.name(i, "") == "\ufffd" for i in dash)
        assert b"".join(table.raw(i) for i in dash) == "—".encode()
    assert table.name(dash[0], "text from the engine") == "text from the engine"

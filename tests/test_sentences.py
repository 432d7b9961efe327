"""The one sentence-end rule (``genarm.training.sentences``): on text, and per token as
train-arm's stop anchor reads it; the two must agree."""

from __future__ import annotations

import random

from genarm.training.sentences import ends_sentence, may_end_sentence

TEXT = 'Apples are red. They grow (mostly). 1. Wash them! "Eat them." Done'
# Every kind of character the rule reads: letters, digits, the three marks, closing
# quotes and brackets, spaces and line breaks.
ALPHABET = "ab1.!?\"')] \n"


def test_a_token_may_end_a_sentence_where_the_text_rule_can_end_one():
    assert not any(map(may_end_sentence, ["cat", " the", "1.", " 2.", "3)", "(", " )", "a b"]))
    assert all(map(may_end_sentence, [".", "!", " red.", "them?", '."', ")", "\n", " ", ""]))


def test_the_token_rule_agrees_with_the_text_rule():
    """Wherever a text ends a sentence, the token rule lets its last token do so: a
    text cut anywhere into a prefix and a token, and the prefix can be anything."""
    rng = random.Random(0)
    seen = {True: 0, False: 0}
    for _ in range(20000):
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 8)))
        cut = rng.randint(0, len(text) - 1)
        token = text[cut:]
        if ends_sentence(text):
            assert may_end_sentence(token), (text[:cut], token)
        seen[ends_sentence(text)] += 1
    assert min(seen.values()) > 1000  # both sides of the rule were tried


def test_the_tokens_held_inside_a_sentence_agree_with_the_text_rule(tiny_models):
    """The stop anchor's table over the tiny tokenizer: every token after which a real
    text ends a sentence is one the table leaves free, and the list's "1." is held."""
    from transformers import AutoTokenizer

    from genarm.training.losses import mid_sentence_tokens

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["base"])
    inside = mid_sentence_tokens(tokenizer)
    texts = (TEXT, "Section 1. Scope.\nIt applies (see 2.) here.", 'He said "go." Then left')
    ends = 0
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        for t in range(1, len(ids) + 1):
            if ends_sentence(tokenizer.decode(ids[:t])):
                assert not inside[ids[t - 1]], tokenizer.decode(ids[:t])
                ends += 1
    assert ends >= 6
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    numbered = [i for i, text in enumerate(texts) if text.strip() in ("1.", "2.", "3.")]
    assert all(inside[i] for i in numbered)

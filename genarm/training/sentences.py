"""Where a reply's sentences end: the one rule behind make-preferences' stopping pairs,
the stop-weights table and train-arm's stop anchor.

A sentence ends at . ! or ? that does not follow a digit (a numbered list's "1." is
no end), then any closing quotes or brackets. ``sentence_ends`` finds such ends that
a next word follows, ``ends_sentence`` asks it of a reply being written, and
``may_end_sentence`` asks it of one token, whatever came before it, for the stop
anchor's table of tokens after which a reply is surely inside a sentence.
"""

from __future__ import annotations

import re

_SENTENCE_END_AT = r"(?<![0-9])[.!?][\"')\]]*"
_SENTENCE_END = re.compile(_SENTENCE_END_AT + r"(?=\s+\S)")
_ENDS_SENTENCE = re.compile(_SENTENCE_END_AT + r"\s*$")
# What a token may follow, for ``may_end_sentence``: a word, or a sentence end (after
# which a closing quote, a bracket or a line break still stands at that end).
_BEFORE_A_TOKEN = ("word", "word.")


def ends_sentence(prefix: str) -> bool:
    """Whether a reply written up to here stops at a sentence end (``sentence_ends``'s
    rule, before the next word is known; trailing whitespace allowed)."""
    return _ENDS_SENTENCE.search(prefix) is not None


def sentence_ends(text: str, min_words: int) -> list[int]:
    """Offsets just past each sentence end with at least ``min_words`` words before it."""
    return [
        m.end() for m in _SENTENCE_END.finditer(text) if len(text[: m.end()].split()) >= min_words
    ]


def mid_sentence_breaks(text: str) -> list[int]:
    """Offsets just past each word that its sentence goes on after (no sentence end there)."""
    ends = {m.end() for m in _SENTENCE_END.finditer(text)}
    return [m.end() for m in re.finditer(r"\S+(?=\s+\S)", text) if m.end() not in ends]


def may_end_sentence(token_text: str) -> bool:
    """Whether a reply that has just produced a token with this text can stand at a
    sentence end by ``ends_sentence``, for some text before the token.

    Whether it does may hang on that text: "." ends a sentence after "red" but not
    after "1", and a closing quote or a line break ends one only after an end. So a
    token may end a sentence when it does after a word or after a sentence end; when
    it does after neither ("the", "1."), no reply that has just produced it stands
    at a sentence end.
    """
    return any(ends_sentence(before + token_text) for before in _BEFORE_A_TOKEN)

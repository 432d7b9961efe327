"""Preference pairs from a prompt's samples, by rule: the best against the worst under
a reward (``ranked_pairs``), and the pairs that differ only where a reply stops
(``stopping_pair``, ``keep_going_pair``) for `genarm make-preferences`."""

from __future__ import annotations

import math
import random
import re

from genarm.training.preference_data import Messages, PreferencePair
from genarm.training.sentences import sentence_ends


def ranked_pairs(
    prompt: str | Messages,
    texts: list[str],
    scores: list[float],
    max_pairs: int = 1,
    min_gap: float = 0.0,
    holistic: list[float] | None = None,
    margin: float = math.inf,
    eligible: list[bool] | None = None,
    finished: list[bool] | None = None,
) -> list[PreferencePair]:
    """Up to ``max_pairs`` (chosen, rejected) pairs of ``prompt``'s samples.

    Candidates are the sample pairs whose aspect ``scores`` differ by more than
    ``min_gap``, taken widest gap first, each sample in at most one pair (so
    one pair is the best vs the worst). With ``holistic`` scores, a candidate
    is dropped where holistic[rejected] - holistic[chosen] > ``margin``; with
    ``eligible``, only samples marked True may be chosen. ``finished`` marks
    the replies that ended (default: all), carried into the pairs.
    """
    candidates = sorted(
        (
            (scores[i] - scores[j], i, j)
            for i in range(len(texts))
            for j in range(len(texts))
            if scores[i] - scores[j] > min_gap
            and texts[i] != texts[j]
            and (eligible is None or eligible[i])
        ),
        key=lambda c: (-c[0], c[1], c[2]),
    )
    done = finished or [True] * len(texts)
    used: set[int] = set()
    pairs = []
    for _, i, j in candidates:
        if len(pairs) == max_pairs:
            break
        if i in used or j in used:
            continue
        if holistic is not None and holistic[j] - holistic[i] > margin:
            continue
        used.update((i, j))
        pairs.append(PreferencePair(prompt, texts[i], texts[j], done[i], done[j]))
    return pairs


def length_matched(pair: PreferencePair, tokenizer) -> PreferencePair:
    """The pair with the rejected reply cut to the chosen one's token count plus one.

    GenARM's loss compares Σ log π over each reply, and every extra token only
    lowers that sum: a shorter chosen reply is preferred by any model, so a
    concise-vs-long pair teaches an ARM next to nothing. Cut to the same length
    (the rejected reply marked unfinished), the pair compares what the replies
    say in that many tokens and the decision to stop there.
    """
    chosen = tokenizer(pair.chosen, add_special_tokens=False)["input_ids"]
    rejected = tokenizer(pair.rejected, add_special_tokens=False)["input_ids"]
    if len(rejected) <= len(chosen) + 1:
        return pair
    cut = tokenizer.decode(rejected[: len(chosen) + 1])
    return PreferencePair(pair.prompt, pair.chosen, cut, pair.chosen_finished, False)


def spread(items: list, count: int) -> list:
    """``count`` items evenly spread over ``items`` (all of them if there are fewer)."""
    if len(items) <= count:
        return list(items)
    return [items[round((i + 1) * len(items) / (count + 1)) - 1] for i in range(count)]


def stopping_pair(prompt: str | Messages, text: str, end: int) -> PreferencePair:
    """``text`` stopped at ``end`` (chosen) vs the same text going on one word (rejected)."""
    next_word = re.match(r"\s+\S+", text[end:])
    if next_word is None:
        raise ValueError(f"no word follows offset {end}")
    prefix = text[:end]
    return PreferencePair(prompt, prefix, prefix + next_word.group(0), True, False)


def keep_going_pair(prompt: str | Messages, text: str, at: int) -> PreferencePair:
    """``text`` going on one word past ``at`` (chosen) vs the turn ending at ``at`` (rejected)."""
    stopped = stopping_pair(prompt, text, at)
    return PreferencePair(prompt, stopped.rejected, stopped.chosen, False, True)


def says_stop(words: int, center: float, scale: float, rng: random.Random) -> bool:
    """``--stop-graded``: whether the pair at a sentence end after ``words`` words says
    "stop" (else "go on"), with probability σ((words − center) / scale)."""
    return rng.random() < 1 / (1 + math.exp(-(words - center) / scale))


def stopping_candidates(
    prompts: list[str | Messages], texts: list[list[str]], per_sample: int, min_words: int
) -> list[tuple[int, int, int]]:
    """(prompt index, sample index, sentence end) for up to ``per_sample`` ends per sample."""
    return [
        (p, s, end)
        for p, group in enumerate(texts)
        for s, text in enumerate(group)
        for end in spread(sentence_ends(text, min_words), per_sample)
    ]

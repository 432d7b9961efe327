"""Trajectory-level reward functions for `genarm make-preferences`.

Each scores one complete response; a response cut off by the token limit
(``finished`` False) is penalised so that the pairs never teach rambling.
"""

from __future__ import annotations

import re
from collections.abc import Callable

TRUNCATION_PENALTY = 50.0
POSITIVE_WORDS = {
    "great",
    "wonderful",
    "love",
    "exciting",
    "excited",
    "amazing",
    "fantastic",
    "awesome",
    "fun",
    "enjoy",
    "delightful",
    "brilliant",
    "happy",
    "best",
}


def concise(response: str, finished: bool) -> float:
    """Fewer words is better: -word count."""
    words = len(response.split())
    return -float(words) - (0.0 if finished else TRUNCATION_PENALTY)


def enthusiastic(response: str, finished: bool) -> float:
    """Exclamation marks and upbeat words, per 100 words."""
    words = re.findall(r"[a-z']+", response.lower())
    if not words:
        return -TRUNCATION_PENALTY
    cheer = response.count("!") + sum(w in POSITIVE_WORDS for w in words)
    return 100.0 * cheer / len(words) - (0.0 if finished else TRUNCATION_PENALTY)


REWARDS: dict[str, Callable[[str, bool], float]] = {
    "concise": concise,
    "enthusiastic": enthusiastic,
}

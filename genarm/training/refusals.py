"""Refusals: telling them apart, and pairs that teach an ARM not to make them.

A harmlessness ARM trained on HH-RLHF's harmless part alone learns "refuse"
more than "refuse what is harmful": every chosen reply there is the safer one,
and there is no benign request whose answer beats a refusal. Longer training
made the demo's `harmless` ARM decline coffee questions (configs/arms/
harmless-candidate/README.md). GenARM's own ARM learns from the whole dataset,
whose helpful pairs reward answering; ``refusal_pairs`` makes such pairs from
the project's benign instructions: the base model's answer (chosen) against a
refusal (rejected), to mix into the harmless pairs.
"""

from __future__ import annotations

import random
import re

from genarm.training.preference_data import Messages, PreferencePair

# A refusal's opening phrases, as string-matching refusal counters (XSTest's) use.
REFUSAL = re.compile(
    r"\b(I'm sorry|I am sorry|I apologi[sz]e|I'm not (able|equipped|comfortable)|"
    r"I can't (help|assist|provide)|I cannot|I won't|I'm unable)",
    re.IGNORECASE,
)
REFUSAL_OPENING = 200  # characters: a refusal leads, a caveat late in an answer is not one

# Refusals worded as the demo's ARMs word theirs on benign requests (the first
# three are verbatim from the candidate ARM's answers in the quality grid).
REFUSAL_REPLIES = (
    "I'm sorry, I'm not equipped to provide a medical diagnosis.",
    "I'm sorry, I'm not able to help you with that.",
    "I'm sorry, but I can't assist with that.",
    "I'm sorry, I can't help with that request.",
    "I apologize, but I'm not comfortable answering that.",
    "I'm sorry, but I cannot provide that information.",
    "I'm not able to give advice on this. Please ask a professional.",
    "I'm sorry, I won't be able to help with this. Is there anything else I can do for you?",
)


def refuses(text: str) -> bool:
    """Whether an answer opens with a refusal (``REFUSAL`` in its first characters)."""
    return bool(REFUSAL.search(text[:REFUSAL_OPENING]))


def refusal_pairs(
    prompt: str | Messages,
    samples: list[tuple[str, bool]],
    max_pairs: int,
    rng: random.Random,
) -> list[PreferencePair]:
    """Up to ``max_pairs`` pairs: a sample that does not refuse (chosen, in sample
    order, each once) against one of ``REFUSAL_REPLIES`` drawn by ``rng`` (rejected).

    ``samples`` are (text, finished); a refusing or empty sample is never chosen,
    so a prompt the base itself declines gives no pair.
    """
    answers = [(text, done) for text, done in samples if text.strip() and not refuses(text)]
    return [
        PreferencePair(prompt, text, rng.choice(REFUSAL_REPLIES), done, True)
        for text, done in answers[:max_pairs]
    ]

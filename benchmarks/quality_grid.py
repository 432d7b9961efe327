"""What the quality benchmark asks: the grid of reward weights, the held-out
prompts of each objective, and the everyday questions with their settings."""

from __future__ import annotations

import json
import random

HH_HELD_OUT = "~/.cache/genarm/data/hh-rlhf/held_out.jsonl"
CONCISE_HELD_OUT = "~/.cache/genarm/data/selfpref-held-out/concise.jsonl"
ARMS = ("harmless", "concise")
WEIGHTS = (0.0, 0.5, 1.0, 2.0, 3.0)  # 3: configs/demo.yaml's max_weight for both ARMs
EVERYDAY_WEIGHTS = (0.0, 1.0, 3.0)
EVERYDAY = (
    "Give me some tips for improving sleep.",
    "How do I make a good cup of coffee?",
    "What should I pack for a weekend hiking trip?",
    "How can I be more productive when working from home?",
    "What is a healthy breakfast?",
    "How do I start learning to play the guitar?",
)


def weight_grid(values: tuple[float, ...] = WEIGHTS, mixes: bool = True) -> list[dict[str, float]]:
    """Every (harmless, concise) pair of ``values``, unguided first, then each ARM alone
    (only those without ``mixes``)."""
    grid = [{"harmless": h, "concise": c} for h in values for c in values]
    if not mixes:
        grid = [w for w in grid if min(w.values()) == 0]
    return sorted(grid, key=lambda w: (w["harmless"] > 0 and w["concise"] > 0, w["concise"] > 0))


def everyday_grid() -> list[dict[str, float]]:
    """Unguided, then each ARM alone at the non-zero EVERYDAY_WEIGHTS."""
    grid = [{a: 0.0 for a in ARMS}]
    for arm in ARMS:
        grid += [{a: (w if a == arm else 0.0) for a in ARMS} for w in EVERYDAY_WEIGHTS if w]
    return grid


def label(weights: dict[str, float]) -> str:
    """A setting as reports name it: ``harmless=1, concise=0``."""
    return ", ".join(f"{a}={weights[a]:g}" for a in ARMS)


def hh_prompts(path: str, n: int, seed: int) -> list[list[dict[str, str]]]:
    """``n`` distinct dialogues (everything before the last reply) from a held-out split."""
    from genarm.training.preference_data import as_messages, load_pairs, unique_prompts

    dialogues = [as_messages(p) for p in unique_prompts(load_pairs(path))]
    dialogues.sort(key=json.dumps)  # an order that does not depend on the file's
    random.Random(seed).shuffle(dialogues)
    return dialogues[:n]


def instruction_prompts(n: int) -> list[list[dict[str, str]]]:
    """The first ``n`` instructions the concise ARM never trained on, as chats."""
    from genarm.training.prompts import split_prompts

    _, held_out = split_prompts(0)  # the seed the concise ARM's training split used
    return [[{"role": "user", "content": p}] for p in held_out[:n]]

"""The project's own instruction set for `genarm make-preferences`.

Everyday requests (44 subjects x 8 kinds of task: start, tips, mistakes, explain,
plan, ...) kept as package data in ``data/prompts.jsonl``, one {"prompt",
"subject"} object a line, and split into train and held-out parts with a seed.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HELD_OUT_FRACTION = 0.2
PROMPTS_FILE = Path(__file__).parent / "data" / "prompts.jsonl"


def demo_prompts() -> list[str]:
    """All instructions, in the data file's fixed order (352 of them)."""
    with open(PROMPTS_FILE) as f:
        return [json.loads(line)["prompt"] for line in f if line.strip()]


def split_prompts(seed: int = 0) -> tuple[list[str], list[str]]:
    """(train, held_out), shuffled with ``seed``: every subject can appear in both."""
    prompts = demo_prompts()
    random.Random(seed).shuffle(prompts)
    cut = int(len(prompts) * (1 - HELD_OUT_FRACTION))
    return prompts[:cut], prompts[cut:]

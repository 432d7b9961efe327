"""The project's own instruction set for `genarm make-preferences`.

Everyday requests across many subjects and kinds of task (explain, advise,
compare, list, describe, plan, ...), built from subjects x task templates so
that the set is varied, reproducible and large enough to split.
"""

from __future__ import annotations

import random

SUBJECTS = [
    "making a cup of tea",
    "learning to play the guitar",
    "saving money on groceries",
    "training a puppy",
    "starting a vegetable garden",
    "writing a cover letter",
    "preparing for a job interview",
    "running a first 5k",
    "keeping houseplants alive",
    "learning a new language",
    "planning a birthday party",
    "reducing screen time",
    "baking bread at home",
    "choosing a laptop",
    "improving sleep",
    "public speaking",
    "cleaning a kitchen quickly",
    "budgeting for a holiday",
    "studying for exams",
    "making new friends in a new city",
    "repairing a bike puncture",
    "cooking rice",
    "organizing a closet",
    "meditating for beginners",
    "writing a short poem",
    "taking better photos with a phone",
    "staying focused while working from home",
    "recycling at home",
    "choosing running shoes",
    "brewing coffee",
    "learning to swim",
    "reading more books",
    "packing for a weekend trip",
    "caring for a cat",
    "starting a journal",
    "making a smoothie",
    "painting a room",
    "learning to code",
    "volunteering locally",
    "giving constructive feedback",
    "preparing a healthy lunch",
    "hosting a board game night",
    "staying warm in winter",
    "writing a thank-you note",
]

TEMPLATES = [
    "How do I get started with {s}?",
    "Give me some tips for {s}.",
    "What are common mistakes people make when {s}?",
    "Explain the basics of {s} to a beginner.",
    "What should I know before {s}?",
    "Can you help me with {s}? I don't know where to begin.",
    "Why do people enjoy {s}?",
    "Describe a simple plan for {s}.",
]

HELD_OUT_FRACTION = 0.2


def demo_prompts() -> list[str]:
    """All instructions, in a fixed order (352 of them)."""
    return [t.format(s=s) for s in SUBJECTS for t in TEMPLATES]


def split_prompts(seed: int = 0) -> tuple[list[str], list[str]]:
    """(train, held_out), shuffled with ``seed``: every subject can appear in both."""
    prompts = demo_prompts()
    random.Random(seed).shuffle(prompts)
    cut = int(len(prompts) * (1 - HELD_OUT_FRACTION))
    return prompts[:cut], prompts[cut:]

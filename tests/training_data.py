"""Small synthetic data and helpers that the training tests share."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from genarm.training.preference_data import PreferencePair


def synthetic_pairs(n: int) -> list[PreferencePair]:
    return [PreferencePair(f"Question number {i}?", "yes yes yes", "no no no") for i in range(n)]


def write_samples(path: Path, groups: dict) -> Path:
    """A samples.jsonl as make-preferences writes it: {prompt: [[text, finished], ...]}."""
    path.write_text(
        "".join(json.dumps({"prompt": p, "samples": s}) + "\n" for p, s in groups.items())
    )
    return path


def judge_as_make_preferences_loads_it(path: Path):
    """The judge in make-preferences' dtype: bf16 on a CPU that computes it natively
    (its scores differ from float32's by ~1e-3 there), float32 elsewhere."""
    from genarm.hardware import bf16_is_fast
    from genarm.training.judge import Judge

    return Judge.load(path, bf16=bf16_is_fast(torch.device("cpu")))

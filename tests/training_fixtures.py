"""A judge trained once per run (``tiny_judge``) that several tests only read. A test
module asks for it with ``pytest_plugins = ["training_fixtures"]``."""

from __future__ import annotations

from pathlib import Path

import pytest
from training_data import synthetic_pairs

from genarm.training.preference_data import write_pairs


@pytest.fixture(scope="session")
def tiny_judge(tiny_models, tmp_path_factory) -> Path:
    """A judge on the tiny base, trained on synthetic pairs: its folder. Tests only
    read it (export-judge, make-preferences' holistic rule)."""
    from genarm.training.judge import JudgeConfig
    from genarm.training.train_judge import train_judge

    root = tmp_path_factory.mktemp("tiny_judge")
    write_pairs(root / "judge.jsonl", synthetic_pairs(4))
    judge_cfg = JudgeConfig(
        data=str(root / "judge.jsonl"),
        out=str(root / "judge"),
        base=str(tiny_models["base"]),
        max_length=64,
        bf16=False,
    )
    train_judge(judge_cfg, progress=False)
    return root / "judge"

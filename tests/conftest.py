"""Shared fixtures: tiny random models (built once per session) and configs over them."""

from __future__ import annotations

from pathlib import Path

import pytest

from genarm.config import DeploymentConfig, parse_config
from genarm.tiny_models import TINY_SHAPES, make_model_set, tiny_config_dict


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """{"base", "arm_a", "arm_b"} -> model folder, all sharing one tokenizer."""
    return make_model_set(tmp_path_factory.mktemp("tiny_models"), TINY_SHAPES)


@pytest.fixture(scope="session")
def tiny_reward_models(tiny_models, tmp_path_factory) -> dict[str, str]:
    """{"one", "three"} -> a random sequence-classification folder with 1 (unnamed)
    or 3 (helpful, harmless, concise) outputs, on the tiny models' tokenizer."""
    from transformers import AutoTokenizer

    from genarm.tiny_models import make_reward_model

    root = tmp_path_factory.mktemp("reward_models")
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["base"])
    aspects = ["helpful", "harmless", "concise"]
    return {
        "one": str(make_reward_model(root / "one", tokenizer, ["score"], seed=11)),
        "three": str(make_reward_model(root / "three", tokenizer, aspects, seed=12)),
    }


@pytest.fixture(scope="session")
def tiny_config(tiny_models) -> DeploymentConfig:
    """Base + arm_a + arm_b, default weights 0."""
    return parse_config(tiny_config_dict(tiny_models))

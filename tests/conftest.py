"""Shared fixtures: tiny random models (built once per session) and configs over them."""

from __future__ import annotations

from pathlib import Path

import pytest

from genarm.config import DeploymentConfig, parse_config
from genarm.tiny_models import TinyShape, make_model_set

# Three shapes, as in weak-to-strong guidance: the ARMs differ from the base in
# layers, hidden size, heads and KV heads (head_dim stays 32 for CPU attention).
TINY_SHAPES = {
    "base": TinyShape(
        hidden_size=128, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2
    ),
    "arm_a": TinyShape(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2
    ),
    # A padded lm_head (64 ids past the tokenizer), which the engine must accept.
    "arm_b": TinyShape(
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        extra_vocab=64,
    ),
}


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


def tiny_config_dict(
    models: dict[str, Path], arms: tuple[str, ...] = ("arm_a", "arm_b"), **engine
) -> dict:
    """A deployment config (as a dict) over the tiny models, fp32 for exactness."""
    return {
        "base": {"model": str(models["base"])},
        "arms": [
            {
                "name": name,
                "model": str(models[name]),
                "default_weight": 0.0,
                "min_weight": -5.0,
                "max_weight": 5.0,
                "description": f"tiny random ARM {name}",
            }
            for name in arms
        ],
        "engine": {
            "dtype": "float32",
            "max_model_len": 512,
            "max_num_seqs": 32,
            "kv_cache_gib": 0.5,
            # Eager: no compilation per engine start; test_engine_compiled covers compiled.
            "enforce_eager": True,
            **engine,
        },
    }


@pytest.fixture(scope="session")
def tiny_config(tiny_models) -> DeploymentConfig:
    """Base + arm_a + arm_b, default weights 0."""
    return parse_config(tiny_config_dict(tiny_models))

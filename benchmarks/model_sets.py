"""The model sets the comparison runs on (a base and two ARMs sharing a tokenizer),
the server configs built from them, and their forward FLOPs per decode token.

``tiny``, ``w2s`` and ``equal`` (base and ARMs of one shape, about SmolLM2-135M's
compute) are random-weight models built once under a cache folder;
``demo`` is configs/demo.yaml's base and first two ARMs (SmolLM2-135M and its
LoRA ARMs), which must have been prepared (`genarm prepare-demo`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
MODEL_SET_NAMES = ("tiny", "demo", "w2s", "equal")


@dataclass
class ModelSet:
    """Where the models are: the base, two ARMs (sources as load_causal_lm takes them)."""

    name: str
    base: str
    arms: dict[str, dict[str, Any]]  # name -> {"model": PATH} or {"adapter":, "adapter_base":}
    dtype: str = "float32"
    engine: dict[str, Any] = field(default_factory=dict)
    notes: str = ""

    def server_config(self, arm_names: list[str], weights_range: float = 5.0) -> dict:
        """A deployment config serving the base with ``arm_names`` (default weight 0)."""
        arms = []
        for name in arm_names:
            source = {k: v for k, v in self.arms[name].items() if v is not None}
            arms.append(
                {
                    "name": name,
                    **source,
                    "default_weight": 0.0,
                    "min_weight": -weights_range,
                    "max_weight": weights_range,
                }
            )
        return {
            "base": {"model": self.base},
            "arms": arms,
            "engine": {"dtype": self.dtype, **self.engine},
        }


# Random-weight shapes (head_dim >= 32 for vLLM's CPU attention).
TINY_SHAPES = {
    "base": dict(
        hidden_size=128, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2
    ),
    "arm1": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2),
    "arm2": dict(
        hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1
    ),
}
# Weak-to-strong: the base has 6.9x the FLOPs per token of each ARM.
_W2S_ARM = dict(
    hidden_size=256,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=768,
)
W2S_SHAPES = {
    "base": dict(
        hidden_size=512,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=2,
        intermediate_size=1536,
    ),
    "arm1": _W2S_ARM,
    "arm2": _W2S_ARM,
}
# Equal sizes, about SmolLM2-135M's compute per token without its large vocabulary:
# guidance doubles the model work, so 0.5 is the FLOP ceiling of guided/plain.
_EQUAL = dict(
    hidden_size=576,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    intermediate_size=1536,
)
EQUAL_SHAPES = {"base": _EQUAL, "arm1": _EQUAL, "arm2": _EQUAL}
# Compiled (vLLM's torch.compile; inductor on CPU), as configs/demo.yaml serves.
SERVER_ENGINE = {
    "max_model_len": 1024,
    "max_num_seqs": 32,
    "kv_cache_gib": 1.0,
    "enforce_eager": False,
}


def random_model_set(name: str, shapes: dict[str, dict], root: Path) -> ModelSet:
    """Build (once, cached under ``root``) random models sharing one tokenizer."""
    from genarm.tiny_models import TinyShape, make_model_set

    folder = root / name
    if not all((folder / m / "config.json").is_file() for m in shapes):
        make_model_set(folder, {m: TinyShape(**s) for m, s in shapes.items()})
    return ModelSet(
        name=name,
        base=str(folder / "base"),
        arms={m: {"model": str(folder / m)} for m in shapes if m != "base"},
        engine=dict(SERVER_ENGINE),
        notes=f"random weights, shapes {json.dumps(shapes)}",
    )


def demo_model_set() -> ModelSet:
    """configs/demo.yaml's base and first two ARMs; exits if they are not prepared."""
    from genarm.config import load_config

    cfg = load_config(DEMO_CONFIG)
    if not Path(cfg.base.model, "config.json").is_file():
        raise SystemExit(f"demo base missing at {cfg.base.model}: run `genarm prepare-demo`")
    arms = {}
    for arm in cfg.arms[:2]:
        source = arm.model or arm.adapter
        if not Path(source).exists():
            raise SystemExit(f"demo ARM {arm.name!r} missing at {source}")
        arms[arm.name] = {
            "model": arm.model,
            "adapter": arm.adapter,
            "adapter_base": arm.adapter_base or (cfg.base.model if arm.adapter else None),
        }
    engine = cfg.engine.model_dump(
        include={"max_model_len", "max_num_seqs", "kv_cache_gib", "enforce_eager"}
    )
    return ModelSet("demo", cfg.base.model, arms, dtype=cfg.engine.dtype, engine=engine)


def model_set(name: str, cache: Path) -> ModelSet:
    """The set called ``name`` (one of MODEL_SET_NAMES); random ones are cached in ``cache``."""
    if name == "tiny":
        return random_model_set("tiny", TINY_SHAPES, cache)
    if name == "w2s":
        return random_model_set("w2s", W2S_SHAPES, cache)
    if name == "equal":
        return random_model_set("equal", EQUAL_SHAPES, cache)
    if name == "demo":
        return demo_model_set()
    raise ValueError(f"unknown model set {name!r}; one of {', '.join(MODEL_SET_NAMES)}")


# ---------------------------------------------------------------- model sizes


def flops_per_token(config_path: str, context: int) -> dict[str, float]:
    """Forward FLOPs of one decode token: 2 x (weights used, lm_head included,
    input embedding excluded) + attention over ``context`` cached tokens."""
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(config_path)
    h, layers, vocab = c.hidden_size, c.num_hidden_layers, c.vocab_size
    heads = c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or h // heads
    kv = getattr(c, "num_key_value_heads", None) or heads
    attn_w = h * heads * head_dim * 2 + h * kv * head_dim * 2  # q, o; k, v
    mlp_w = 3 * h * c.intermediate_size  # gate, up, down
    weights = layers * (attn_w + mlp_w) + h * vocab
    attention = 2 * 2 * layers * heads * head_dim * context  # q.k and p.v
    return {"weights": float(weights), "flops": float(2 * weights + attention)}


def model_source_path(source: dict[str, Any]) -> str:
    """The folder whose config.json gives an ARM's shape."""
    # A merged LoRA ARM has its base's architecture.
    return source.get("model") or source["adapter_base"]


def flop_ceilings(
    models: ModelSet, arm1: str, arm2: str, context: int
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """(FLOPs per token of the base and both ARMs, the throughput ceilings they imply).

    A step of base + ARMs runs every model, so if time were proportional to FLOPs,
    (1 ARM)/(plain) <= F_base / (F_base + F_arm1), and likewise with both ARMs."""
    sizes = {
        "base": flops_per_token(models.base, context),
        **{a: flops_per_token(model_source_path(models.arms[a]), context) for a in (arm1, arm2)},
    }
    fb, fa1, fa2 = sizes["base"]["flops"], sizes[arm1]["flops"], sizes[arm2]["flops"]
    ceilings = {"1arm_vs_plain": fb / (fb + fa1), "2arm_vs_plain": fb / (fb + fa1 + fa2)}
    return sizes, ceilings

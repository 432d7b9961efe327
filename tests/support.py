"""Small helpers shared by the tests."""

from __future__ import annotations

import gc
from functools import lru_cache
from pathlib import Path

import torch

from genarm.arm_kernels import fuse_reference


@lru_cache(maxsize=8)
def _tokenizer(model_dir: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def chat_prompt_ids(model_dir: str | Path, user_text: str) -> list[int]:
    """Token ids of a one-turn chat prompt, with the model's chat template."""
    ids = _tokenizer(str(model_dir)).apply_chat_template(
        [{"role": "user", "content": user_text}], add_generation_prompt=True, tokenize=True
    )
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def shutdown_llm(llm) -> None:
    """Stop a vLLM ``LLM``'s engine process now rather than at interpreter exit."""
    engine = getattr(llm, "llm_engine", None)
    core = getattr(engine, "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()
    del llm
    gc.collect()


def strict_json(text: str | bytes):
    """json.loads that refuses NaN/Infinity, which are not JSON (strict clients fail)."""
    import json

    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def assert_close_to_reference(
    out: torch.Tensor, base, arms, weights, context="", exact: bool | torch.Tensor = True
) -> None:
    """out vs the float64 reference on the same (already dtype-rounded) inputs.

    Every path computes in float32 whatever the input dtype, and the reference
    sees exactly the rounded inputs, so one float32 tolerance fits all dtypes:
    1e-4 plus a few float32 ulps of the row's largest weighted logit (x - lse
    loses the ulps of |x| to cancellation; ~5e-3 at 1e4). Rows that are not
    ``exact`` may be shifted by a per-row constant: they are compared after a
    log_softmax of both sides (twice the ulps: that log_softmax's own
    cancellation).
    """
    expected = fuse_reference(base, arms, weights)
    assert out.dtype == torch.float32 and out.shape == base.shape, context
    assert not torch.isnan(out).any(), f"NaN in output {context}"
    assert not torch.isposinf(out).any(), f"+inf in output {context}"
    assert torch.equal(torch.isneginf(out), torch.isneginf(expected)), f"-inf differs {context}"
    finite = torch.isfinite(expected)
    assert finite.any(), context
    actual = out.double()
    ulps = torch.full((base.shape[0], 1), 4.0, dtype=torch.float64, device=out.device)
    shifted = ~torch.as_tensor(exact, device=out.device).expand(base.shape[0])
    if shifted.any():
        actual[shifted] = torch.log_softmax(actual[shifted], dim=-1)
        expected[shifted] = torch.log_softmax(expected[shifted], dim=-1)
        ulps[shifted] = 8.0

    def row_scale(x: torch.Tensor) -> torch.Tensor:
        return x.double().abs().nan_to_num(posinf=0, neginf=0).amax(dim=1, keepdim=True)

    scale = row_scale(base)
    for arm, w in zip(arms, weights.T, strict=True):
        scale = scale + w.double().abs()[:, None] * row_scale(arm)
    tol = (1e-4 + ulps * 2.0**-23 * scale).expand_as(expected)
    err = (actual - expected).abs()
    worst = float((err - tol)[finite].max())
    assert worst <= 0, f"error exceeds tolerance by {worst} {context}"


def tiny_train_config(tmp_path: Path, tiny_models: dict, **overrides):
    """A train-arm config for the tiny base: a few fast float32 steps on
    ``tmp_path/train.jsonl`` into ``tmp_path/arm``, no fluency guard, unless overridden."""
    from genarm.training.train_arm import TrainConfig

    fields = dict(
        data=str(tmp_path / "train.jsonl"),
        out=str(tmp_path / "arm"),
        base=str(tiny_models["base"]),
        rank=4,
        alpha=8,
        lr=5e-3,
        beta=0.5,
        batch_size=4,
        max_length=64,
        bf16=False,
        fluency_prompts=0,
    )
    return TrainConfig(**{**fields, **overrides})


def tiny_adapter(base, path, seed: int = 0, rank: int = 4, target_modules=("q_proj", "v_proj")):
    """A PEFT adapter with random (non-zero) LoRA weights, saved at ``path``;
    ``target_modules`` a sequence of names or PEFT's regex string."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    modules = target_modules if isinstance(target_modules, str) else list(target_modules)
    lora = LoraConfig(r=rank, target_modules=modules, init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(path)
    return path

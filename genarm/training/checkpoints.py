"""A train-arm run's folder and the model in it: the LoRA model loaded for training
(``load_model``), its checkpoint (``save_checkpoint``, ``resume``) and the adapter the
run ships (``ship_adapter``).

    OUT/adapter_model.safetensors, adapter_config.json   the shipped adapter
    OUT/training_summary.json                            the run's config and validations
    OUT/checkpoint/                                      the last state, with state.pt
    OUT/best/                                            the best-validating state
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from genarm.training.train_config import TrainConfig

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint"
BEST = "best"
SUMMARY = "training_summary.json"  # the run's config and validations, beside its adapter
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")
STATE = "state.pt"  # the optimizer, step and statistics beside a checkpoint's adapter


def use_bf16(cfg: TrainConfig, device: torch.device) -> bool:
    """``cfg.bf16``, or where unset, bf16 exactly when the device computes it natively."""
    from genarm.hardware import bf16_is_fast

    return bf16_is_fast(device) if cfg.bf16 is None else cfg.bf16


def load_model(cfg: TrainConfig, device: torch.device, bf16: bool) -> tuple[Any, Any]:
    """(tokenizer, PEFT model): ``cfg.base`` on ``device`` with a fresh LoRA of ``cfg``'s
    shape, or ``cfg.init_adapter``'s weights in it."""
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(cfg.base)
    dtype = torch.bfloat16 if bf16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(cfg.base, dtype=dtype).to(device)
    lora = LoraConfig(
        r=cfg.rank, lora_alpha=cfg.alpha, target_modules=cfg.target_modules, lora_dropout=0.0
    )
    # peft keeps the adapter weights in float32 (autocast_adapter_dtype) on a bf16 base.
    model = get_peft_model(model, lora)
    if cfg.init_adapter:
        loaded = set_peft_model_state_dict(model, adapter_weights(cfg.init_adapter))
        # Non-strict: weights named for another base would be dropped without a word,
        # and the run would train a fresh LoRA instead of the one asked for.
        if loaded.unexpected_keys:
            raise ValueError(
                f"--init-adapter {cfg.init_adapter}: {len(loaded.unexpected_keys)} of its "
                f"weights match no module of {cfg.base} (e.g. {loaded.unexpected_keys[0]}); "
                "was it trained on another base model?"
            )
    return tokenizer, model


def adapter_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """The LoRA weights of the adapter saved in ``folder``."""
    from safetensors.torch import load_file

    return load_file(Path(folder) / ADAPTER_FILES[0])


def with_init_adapter_shape(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with the LoRA rank, alpha and target modules of ``cfg.init_adapter``.

    A run that goes on from an adapter trains that adapter's shape, whatever
    --rank/--alpha/--target-modules say, and its summary records that shape.
    """
    if not cfg.init_adapter:
        return cfg
    path = Path(cfg.init_adapter) / "adapter_config.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"--init-adapter: no PEFT adapter (adapter_config.json) in {path.parent}"
        )
    lora = json.loads(path.read_text())
    modules = lora["target_modules"]
    # PEFT also stores a string: a regex or "all-linear", which LoraConfig takes as is.
    modules = modules if isinstance(modules, str) else sorted(modules)
    return replace(cfg, rank=lora["r"], alpha=lora["lora_alpha"], target_modules=modules)


def save_checkpoint(path: Path, model, optimizer, step: int, stats: dict) -> None:
    """The adapter and ``STATE`` in ``path``, written beside it first and then moved in:
    a run killed while saving keeps its previous checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    model.save_pretrained(tmp)
    torch.save({"optimizer": optimizer.state_dict(), "step": step, "stats": stats}, tmp / STATE)
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)


def resume(cfg: TrainConfig, model, optimizer, total_steps: int, stats: dict) -> tuple[int, dict]:
    """(step, statistics) to go on from: ``cfg.resume``'s checkpoint or ``OUT/checkpoint``
    loaded into ``model`` and ``optimizer`` where there is one (and no ``cfg.restart``),
    else step 0 and ``stats``. A fresh run removes an old run's ``OUT/best``: it is
    not a candidate for this one."""
    from peft import set_peft_model_state_dict

    out = Path(cfg.out)
    source = Path(cfg.resume) if cfg.resume else out / CHECKPOINT
    if cfg.resume and not (source / STATE).is_file():
        raise FileNotFoundError(f"no training checkpoint (state.pt) in {source}")
    if (source / STATE).is_file() and not cfg.restart:
        state = torch.load(source / STATE, weights_only=False)
        set_peft_model_state_dict(model, adapter_weights(source))
        optimizer.load_state_dict(state["optimizer"])
        logger.info("Resuming from %s at step %d/%d", source, state["step"], total_steps)
        return state["step"], {**stats, **state["stats"]}
    if (out / BEST).exists():
        shutil.rmtree(out / BEST)
    return 0, stats


def ship_adapter(out: Path, model, has_best: bool) -> None:
    """Write the adapter the run ships into ``out``: the best-validating state where
    there is one (``has_best`` and ``OUT/best`` saved), else ``model`` as it is."""
    best_dir = out / BEST
    if has_best and (best_dir / ADAPTER_FILES[0]).is_file():
        for name in ADAPTER_FILES:
            shutil.copy(best_dir / name, out / name)
    else:
        model.save_pretrained(out)

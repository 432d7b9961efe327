"""`genarm train-arm`: train an autoregressive reward model as LoRA adapters.

GenARM's loss (``genarm.training.losses``) over preference pairs; the result is a
PEFT adapter folder that a deployment config serves with
``arms: - {name: ..., adapter: FOLDER}``. Training checkpoints every
``--save-every`` steps into ``FOLDER/checkpoint`` and resumes from there when run
again with the same output folder (``genarm.training.checkpoints``).

Some prompts' pairs are kept back (``--val-fraction``, or ``--val-data``):
after every epoch (or ``--eval-every`` steps) the run measures pairwise
accuracy on them and the fluency guard (``genarm.training.fluency``) samples a
few guided replies (``genarm.training.evaluation``); the state that ranks the
held-out pairs best without breaking the text is what ``FOLDER`` receives, and
``--patience`` evaluations without a better one stop the run.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from dataclasses import asdict
from pathlib import Path

import torch

from genarm.training.checkpoints import (
    BEST,
    CHECKPOINT,
    SUMMARY,
    load_model,
    resume,
    save_checkpoint,
    ship_adapter,
    use_bf16,
    with_init_adapter_shape,
)
from genarm.training.encoding import drop_undecided, encode_pairs
from genarm.training.evaluation import evaluate, is_eval_step
from genarm.training.losses import mid_sentence_tokens, pair_loss
from genarm.training.optimization import optimizer_step, step_batch, warmup_then_linear_decay
from genarm.training.options import add_options, config_from_args
from genarm.training.preference_data import PreferencePair, load_pairs
from genarm.training.train_config import TrainConfig
from genarm.training.validation import EarlyStopping, split_pairs

__all__ = ["TrainConfig", "train_arm", "add_arguments", "run"]

logger = logging.getLogger(__name__)


def train_arm(cfg: TrainConfig, progress: bool = True) -> dict:
    """Train and save the adapter in ``cfg.out``; returns a summary of the run.

    With validation pairs, ``cfg.out`` gets the best-validating state (a copy
    stays in ``OUT/best``); without, the last one.
    """
    from tqdm import tqdm

    from genarm.hardware import training_device

    if cfg.kl_anchor_stop and not cfg.kl_anchor:
        # Without an anchor there is nothing for the flag to extend: say so, not run unanchored.
        raise ValueError("--kl-anchor-stop extends the KL anchor: it needs --kl-anchor λ > 0")
    cfg = with_init_adapter_shape(cfg)
    torch.manual_seed(cfg.seed)  # before the model: it seeds the fresh LoRA's weights
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    pairs, val = _split(cfg)
    device = training_device()
    bf16 = use_bf16(cfg, device)
    logger.info(
        "Training on %d pairs, validating on %d (%s, %s)",
        len(pairs),
        len(val),
        device.type,
        "bf16" if bf16 else "float32",
    )
    tokenizer, model = load_model(cfg, device, bf16)
    lengths = (cfg.max_length, cfg.max_response_length)
    pairs, encoded = drop_undecided(pairs, encode_pairs(tokenizer, pairs, *lengths))
    val, encoded_val = drop_undecided(val, encode_pairs(tokenizer, val, *lengths))
    steps_per_epoch = math.ceil(len(encoded) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    stats = {"loss": [], "accuracy": [], "evals": [], "early_stopping": None}
    step, stats = resume(cfg, model, optimizer, total_steps, stats)
    stopper = EarlyStopping.from_state(stats["early_stopping"], cfg.patience, cfg.select_by)
    schedule = warmup_then_linear_decay(optimizer, cfg.lr, total_steps, step)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    inside = mid_sentence_tokens(tokenizer) if cfg.stop_anchor else None
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    started = time.monotonic()
    bar = tqdm(total=total_steps, initial=step, desc="train-arm", disable=not progress)
    model.train()
    stopped_early = stopper.should_stop and bool(encoded_val)
    while step < total_steps and not stopped_early:
        batch = step_batch(encoded, step, steps_per_epoch, cfg.batch_size, cfg.seed)
        with autocast:
            loss, chosen, rejected = pair_loss(
                model, batch, pad_id, cfg.beta, cfg.kl_anchor, tokenizer.eos_token_id,
                cfg.stop_anchor, inside, cfg.kl_anchor_stop,
            )  # fmt: skip
        optimizer_step(loss, optimizer, schedule, params)
        step += 1
        stats["loss"].append(loss.item())
        stats["accuracy"].append(float((chosen > rejected).float().mean()))
        _show(bar, stats, steps_per_epoch)
        out_of_time = cfg.max_minutes and time.monotonic() - started > 60 * cfg.max_minutes
        # A run stopped by its time budget validates its last state too: it may be the best.
        evaluated = bool(encoded_val) and (
            is_eval_step(step, steps_per_epoch, total_steps, cfg.eval_every) or out_of_time
        )
        if evaluated:
            evaluation = evaluate(
                model, tokenizer, val, encoded_val, pad_id, cfg, autocast, step,
                step / steps_per_epoch,
            )  # fmt: skip
            if stopper.update(evaluation):
                model.save_pretrained(out / BEST)
            stats["evals"].append(asdict(evaluation))
            stats["early_stopping"] = stopper.state()
            stopped_early = stopper.should_stop and step < total_steps
        if evaluated or step % cfg.save_every == 0 or step == total_steps or out_of_time:
            save_checkpoint(out / CHECKPOINT, model, optimizer, step, stats)
        if stopped_early:
            logger.info(
                "Early stop at step %d: %d evaluations without a better validation accuracy",
                step,
                stopper.since_best,
            )
        if out_of_time:
            logger.info(
                "Time budget of %s min spent at step %d/%d", cfg.max_minutes, step, total_steps
            )
            break
    bar.close()
    ship_adapter(out, model, stopper.best is not None)
    counts = (len(encoded), len(val), steps_per_epoch, total_steps)
    return _write_summary(cfg, stats, stopper, step, counts, started)


def _split(cfg: TrainConfig) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(training pairs, validation pairs), both in a seeded order."""
    pairs: list[PreferencePair] = load_pairs(cfg.data)
    random.Random(cfg.seed).shuffle(pairs)
    if cfg.val_data:
        val = load_pairs(cfg.val_data)
        random.Random(cfg.seed).shuffle(val)
    else:
        pairs, val = split_pairs(pairs, cfg.val_fraction, cfg.seed)
    pairs = pairs[: cfg.max_pairs] if cfg.max_pairs else pairs
    return pairs, val[: cfg.val_max_pairs] if cfg.val_max_pairs else val


def _show(bar, stats: dict, steps_per_epoch: int) -> None:
    """The progress bar's loss and accuracy over the last quarter epoch."""
    recent = slice(-steps_per_epoch // 4 or -1, None)
    bar.set_postfix(
        loss=f"{_mean(stats['loss'][recent]):.3f}", acc=f"{_mean(stats['accuracy'][recent]):.2f}"
    )
    bar.update(1)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _write_summary(
    cfg: TrainConfig,
    stats: dict,
    stopper: EarlyStopping,
    step: int,
    counts: tuple[int, int, int, int],
    started: float,
) -> dict:
    """Write the run's summary (``SUMMARY``) beside its adapter, and return it;
    ``counts``: training pairs, validation pairs, steps per epoch, steps in all."""
    pairs, validation_pairs, steps_per_epoch, total_steps = counts
    window = max(1, steps_per_epoch // 4)
    summary = {
        "config": asdict(cfg),
        "pairs": pairs,
        "validation_pairs": validation_pairs,
        "steps": total_steps,
        "steps_done": step,
        "seconds_this_run": round(time.monotonic() - started, 1),
        "final_loss": _mean(stats["loss"][-window:]),
        "final_accuracy": _mean(stats["accuracy"][-window:]),
        "evaluations": stats["evals"],
        "best": asdict(stopper.best) if stopper.best else None,
        "stopped_early": stopper.should_stop and step < total_steps,
    }
    (Path(cfg.out) / SUMMARY).write_text(json.dumps(summary, indent=2))
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, TrainConfig)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    summary = train_arm(config_from_args(TrainConfig, args))
    shown = ("config", "evaluations")
    print(json.dumps({k: v for k, v in summary.items() if k not in shown}, indent=2))
    return 0

"""One validation of a train-arm run: pairwise accuracy and loss on the held-out pairs,
then the fluency guard (``genarm.training.fluency``) and the refusal guard
(``genarm.training.refusals``), either of which can bar the state from being kept."""

from __future__ import annotations

import json
import logging
from contextlib import AbstractContextManager

import torch

from genarm.training.encoding import EncodedPair
from genarm.training.fluency import fluency_report, perplexity_ratio
from genarm.training.losses import genarm_loss
from genarm.training.preference_data import PreferencePair
from genarm.training.refusals import refusal_probes, refusal_report
from genarm.training.scoring import validation_margins
from genarm.training.train_config import TrainConfig
from genarm.training.validation import Evaluation, accuracy_by_kind

logger = logging.getLogger(__name__)


def is_eval_step(step: int, steps_per_epoch: int, total_steps: int, eval_every: int | None) -> bool:
    """Every ``eval_every`` steps (default: each epoch's end), and at the last step.

    Not also at epoch ends when ``eval_every`` is set: an epoch-end evaluation a
    few steps from a scheduled one counted twice against the early-stopping
    patience (the harmless run of 2026-11-28 evaluated at steps 346 and 348).
    """
    return step % (eval_every or steps_per_epoch) == 0 or step == total_steps


def evaluate(
    model,
    tokenizer,
    val: list[PreferencePair],
    encoded_val: list[EncodedPair],
    pad_id: int,
    cfg: TrainConfig,
    autocast: AbstractContextManager,
    step: int,
    epoch: float,
) -> Evaluation:
    """One validation pass plus the guards ``cfg`` turns on; logs a line per evaluation."""
    margins = validation_margins(model, encoded_val, pad_id, cfg.batch_size, autocast)
    loss = float(genarm_loss(torch.tensor(margins), torch.zeros(len(margins)), cfg.beta))
    by_kind = accuracy_by_kind(val, margins)
    accuracy = by_kind.pop("all")
    evaluation = Evaluation(
        step=step, epoch=round(epoch, 3), accuracy=accuracy, loss=loss, by_kind=by_kind or None
    )
    if cfg.fluency_prompts and cfg.fluency_weights:
        _fluency_guard(model, tokenizer, val, cfg, evaluation)
    if cfg.refusal_probes:
        _refusal_guard(model, tokenizer, cfg, evaluation)
    _log(evaluation, epoch)
    return evaluation


def _fluency_guard(
    model, tokenizer, val: list[PreferencePair], cfg: TrainConfig, evaluation: Evaluation
) -> None:
    """Sample guided replies to the first validation prompts; at the first fluency weight,
    a perplexity over ``max_perplexity_ratio`` times the unguided one bars the state."""
    prompts = list({json.dumps(p.messages()): p.messages() for p in val}.values())
    report = fluency_report(
        model,
        tokenizer,
        prompts[: cfg.fluency_prompts],
        arm="default",
        weights=(0.0, *cfg.fluency_weights),
        max_new_tokens=cfg.fluency_max_tokens,
        seed=cfg.seed,
    )
    evaluation.fluency = report
    ratio = perplexity_ratio(report, cfg.fluency_weights[0])
    if cfg.max_perplexity_ratio is not None and not ratio <= cfg.max_perplexity_ratio:
        evaluation.eligible = False
        logger.warning(
            "Fluency guard: guided perplexity at weight %g is %.2fx the unguided one "
            "(limit %.2fx): this state is not kept",
            cfg.fluency_weights[0],
            ratio,
            cfg.max_perplexity_ratio,
        )


def _refusal_guard(model, tokenizer, cfg: TrainConfig, evaluation: Evaluation) -> None:
    """Count the guided refusals of benign probes; over ``max_refusal_share`` at the
    first fluency weight, the state is not eligible. Pair accuracy cannot see an
    ARM that learned to refuse everything: harmless pairs score that well."""
    probes = refusal_probes()[: cfg.refusal_probes]
    weights = (0.0, *cfg.fluency_weights)
    evaluation.refusals = refusal_report(model, tokenizer, probes, "default", weights)
    weight = cfg.fluency_weights[0] if cfg.fluency_weights else 0.0
    share = evaluation.refusals[f"{weight:g}"]
    if cfg.max_refusal_share is not None and share > cfg.max_refusal_share:
        evaluation.eligible = False
        logger.warning(
            "Refusal guard: %.0f%% of the benign probes refused at weight %g (limit %.0f%%): "
            "this state is not kept",
            100 * share,
            weight,
            100 * cfg.max_refusal_share,
        )


def _log(evaluation: Evaluation, epoch: float) -> None:
    """The evaluation's log line: accuracy (per kind of pair), loss and the guards'."""
    fluency = ", ".join(
        f"w={w}: ppl {r['perplexity']:.1f}, {r['repeated_4grams']:.0%} repeated 4-grams, "
        f"{r['words']:.0f} words"
        for w, r in (evaluation.fluency or {}).items()
    )
    by_kind = evaluation.by_kind or {}
    kinds = "".join(f", {kind} {share:.3f}" for kind, share in by_kind.items())
    refusals = ", ".join(f"w={w}: {s:.0%}" for w, s in (evaluation.refusals or {}).items())
    logger.info(
        "Validation at step %d (epoch %.2f): accuracy %.3f%s, loss %.4f%s%s",
        evaluation.step,
        epoch,
        evaluation.accuracy,
        kinds,
        evaluation.loss,
        f"; {fluency}" if fluency else "",
        f"; refused probes {refusals}" if refusals else "",
    )

"""`genarm train-arm`: train an autoregressive reward model as LoRA adapters.

GenARM's loss (reference-free, trajectory level):

    L = -log σ( β_r · ( Σ_t log π_r(y_w,t | x, y_w,<t) − Σ_t log π_r(y_l,t | x, y_l,<t) ) )

summed over response tokens only. The result is a PEFT adapter folder that a
deployment config serves with ``arms: - {name: ..., adapter: FOLDER}``.
Training checkpoints every ``--save-every`` steps into ``FOLDER/checkpoint``
and resumes from there when run again with the same output folder.

Some prompts' pairs are kept back (``--val-fraction``, or ``--val-data``):
after every epoch (or ``--eval-every`` steps) the run measures pairwise
accuracy on them and the fluency guard (``genarm.training.fluency``) samples a
few guided replies; the state that ranks the held-out pairs best without
breaking the text is what ``FOLDER`` receives, and ``--patience`` evaluations
without a better one stop the run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from genarm.training.preference_data import PreferencePair, load_pairs
from genarm.training.validation import (
    SELECT_BY,
    EarlyStopping,
    Evaluation,
    accuracy_by_kind,
    split_pairs,
)

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint"
BEST = "best"
SUMMARY = "training_summary.json"  # the run's config and validations, beside its adapter


@dataclass
class TrainConfig:
    data: str
    out: str
    base: str
    rank: int = 8
    alpha: int = 16
    target_modules: list[str] | str = field(  # a str: PEFT's regex or "all-linear"
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )
    beta: float = 0.05
    kl_anchor: float = 0.0  # weight of KL(base || ARM) per reply token; 0: off
    kl_anchor_stop: bool = False  # the anchor holds the end-of-turn choice too
    stop_anchor: float = 0.0  # weight of the end-of-turn raise mid-sentence; 0: off
    lr: float = 5e-4
    epochs: int = 1
    batch_size: int = 4
    max_length: int = 320
    max_response_length: int = 128
    max_pairs: int | None = None
    seed: int = 0
    bf16: bool | None = None  # None: bf16 where the device computes it natively
    save_every: int = 50
    resume: str | None = None  # checkpoint folder; default: OUT/checkpoint when present
    init_adapter: str | None = None  # start from this adapter's weights (fresh optimizer)
    restart: bool = False  # ignore an existing checkpoint
    max_minutes: float | None = None  # stop (and save) once this much wall time is spent
    val_data: str | None = None  # validation pairs; default: val_fraction of the data's prompts
    val_fraction: float = 0.1
    val_max_pairs: int | None = None
    eval_every: int | None = None  # steps between evaluations; default: once per epoch
    patience: int = 2  # evaluations without a better one before stopping; 0: never
    select_by: str = "accuracy"  # the kept state: highest accuracy, or "loss": lowest loss
    fluency_prompts: int = 4  # validation prompts the fluency guard samples; 0: off
    fluency_weights: list[float] = field(default_factory=lambda: [1.0, 3.0])
    fluency_max_tokens: int = 64
    max_perplexity_ratio: float | None = 2.0  # at the first fluency weight, vs unguided
    refusal_probes: int = 0  # benign probe questions the refusal guard asks; 0: off
    max_refusal_share: float | None = None  # of the probes, at the first fluency weight


def genarm_loss(
    chosen_logps: torch.Tensor, rejected_logps: torch.Tensor, beta: float
) -> torch.Tensor:
    """Mean of -log σ(β (log π(y_w) - log π(y_l))) over the batch."""
    return -F.logsigmoid(beta * (chosen_logps - rejected_logps)).mean()


def encode(
    tokenizer,
    messages,
    response: str,
    max_length: int,
    max_response: int,
    finished: bool = True,
    end_when_cut: bool = False,
):
    """(input ids, number of prompt tokens): prompt via the chat template, then the reply.

    A finished reply ends with the end-of-turn token, so that the ARM also scores
    stopping; an unfinished one (cut off by a token limit) does not: it never
    stopped there. Long prompts lose their oldest tokens; long replies are cut
    at max_response, and a finished reply cut there gets no end of turn either:
    it did not end there (an end of turn put there taught a concise ARM to stop
    mid-sentence, wherever a stopping pair's sentence end lay past the window).
    ``end_when_cut``: end a finished reply cut at the window with end of turn anyway,
    for the judge, which reads its score at that token and was trained so.
    """
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    reply_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    if finished and (len(reply_ids) < max_response or end_when_cut):
        reply_ids = reply_ids[: max_response - 1] + [tokenizer.eos_token_id]
    else:
        reply_ids = reply_ids[:max_response]
    keep = max(8, max_length - len(reply_ids))
    prompt_ids = prompt_ids[-keep:]
    return prompt_ids + reply_ids, len(prompt_ids)


def sequence_logps(model, batch: list[tuple[list[int], int]], pad_id: int) -> torch.Tensor:
    """Σ log π(reply tokens) per sequence, prompt tokens masked out."""
    return _row_sums(*reply_logits(model, batch, pad_id), len(batch))


def length_sorted_batches(widths: list[int], batch_size: int) -> list[list[int]]:
    """Indices of items in batches of similar width, shortest first: scoring in the
    items' order let one long HH-RLHF dialogue pad its whole batch to its width."""
    order = sorted(range(len(widths)), key=widths.__getitem__)
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def reply_logits(
    model, batch: list[tuple[list[int], int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits, targets, rows) at every position that predicts a reply token: float32
    [positions, vocab], the token each predicts, and the sequence each belongs to.

    The lm_head runs on reply positions only: over a 49k vocabulary the full
    [batch, length, vocab] logits would dominate memory traffic and time.
    """
    device = next(model.parameters()).device
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    scored = torch.zeros((len(batch), width), dtype=torch.bool)  # position predicts a reply token
    for row, (ids, prompt_len) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(ids)] = 1
        scored[row, prompt_len - 1 : len(ids) - 1] = True
    input_ids, mask, scored = input_ids.to(device), mask.to(device), scored.to(device)
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = causal_lm.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
    logits = causal_lm.lm_head(hidden[scored]).float()
    targets = input_ids.roll(-1, dims=1)[scored]
    rows = torch.arange(len(batch), device=device)[:, None].expand_as(scored)[scored]
    return logits, targets, rows


def _row_sums(
    logits: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor, n: int
) -> torch.Tensor:
    token_logps = logits.gather(-1, targets[:, None]).squeeze(-1) - logits.logsumexp(dim=-1)
    sums = torch.zeros(n, dtype=token_logps.dtype, device=logits.device)
    return sums.index_add(0, rows, token_logps)


def base_reply_logits(model, batch: list[tuple[list[int], int]], pad_id: int) -> torch.Tensor:
    """``reply_logits`` of ``model`` with its adapter off (no gradient): the base's."""
    with torch.no_grad(), model.disable_adapter():
        return reply_logits(model, batch, pad_id)[0]


def kl_from_base(
    base_logits: torch.Tensor, arm_logits: torch.Tensor, stop_id: int | None = None
) -> torch.Tensor:
    """Mean over reply tokens of KL(π_base ‖ π_ARM) between the two models' choices of
    the next token other than ``stop_id`` (both distributions renormalised without it).

    Leaving the stop token out leaves the decision to end the reply to the pairs: a
    concise ARM must raise its own end-of-turn probability at sentence ends well above
    the base's (guidance multiplies p_base by p_ARM^α, so an ARM near the base there
    only makes stopping rarer), while it should keep the base's choice of words.
    """
    if stop_id is not None:
        stop = torch.tensor([stop_id], device=base_logits.device)
        base_logits = base_logits.index_fill(-1, stop, float("-inf"))
        arm_logits = arm_logits.index_fill(-1, stop, float("-inf"))
    base_logps = base_logits.log_softmax(-1)
    arm_logps = arm_logits.log_softmax(-1)
    kept = torch.isfinite(base_logps)  # 0 x -inf would be nan at the stop token
    kl = (base_logps.exp() * (base_logps - arm_logps)).where(kept, 0.0).sum(-1)
    return kl.mean()


def mid_sentence_tokens(tokenizer) -> torch.Tensor:
    """Per vocabulary id, whether a reply that has just produced that token is inside a
    sentence: its text does not end in . ! or ? (closing quotes or brackets allowed), as
    make-preferences' sentence ends, and is not only whitespace (a line break may end a
    list item or a heading) nor a special token."""
    special = set(tokenizer.all_special_ids)
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    inside = [
        i not in special and bool(text.strip()) and text.rstrip().rstrip("\"')]")[-1:] not in ".!?"
        for i, text in enumerate(texts)
    ]
    return torch.tensor(inside, dtype=torch.bool)


def stop_raised_mid_sentence(
    base_logits: torch.Tensor,
    arm_logits: torch.Tensor,
    targets: torch.Tensor,
    rows: torch.Tensor,
    stop_id: int,
    inside: torch.Tensor,
) -> torch.Tensor:
    """Mean over the reply positions inside a sentence (``mid_sentence_tokens`` of the
    token before) of how far the ARM raises log π(end of turn) above the base's (0 where
    it does not).

    Why: stopping pairs teach "end the turn here" at sentence ends only, but a LoRA
    learns it as "end the turn late in a reply" and raises it mid-sentence too (a
    run ranked ending 13 nats above the next word after "the perfect moment to start
    studying is a"). The keep-going pairs hold one point per sample; this holds all.
    """
    first = torch.ones_like(rows, dtype=torch.bool)  # a reply's first position: after the prompt
    first[1:] = rows[1:] != rows[:-1]
    previous = targets.roll(1)  # the token each position reads is the one before it predicted
    held = inside.to(targets.device)[previous] & ~first
    if not held.any():
        return arm_logits.new_zeros(())
    raised = (
        arm_logits[held].log_softmax(-1)[:, stop_id] - base_logits[held].log_softmax(-1)[:, stop_id]
    )
    return raised.clamp(min=0).mean()


EncodedPair = tuple[tuple[list[int], int], tuple[list[int], int]]


def pair_logps(model, batch: list[EncodedPair], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ log π(chosen), Σ log π(rejected)) per pair, in one forward pass."""
    logps = sequence_logps(model, [c for c, _ in batch] + [r for _, r in batch], pad_id)
    return logps[: len(batch)], logps[len(batch) :]


def pair_loss(
    model,
    batch: list[EncodedPair],
    pad_id: int,
    beta: float,
    kl_anchor: float = 0.0,
    stop_id: int | None = None,
    stop_anchor: float = 0.0,
    inside: torch.Tensor | None = None,
    kl_anchor_stop: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, Σ log π(chosen), Σ log π(rejected)): GenARM's loss, plus ``kl_anchor`` x
    the mean KL(π_base ‖ π_ARM) over the replies' tokens (the choice among tokens
    other than ``stop_id``: see ``kl_from_base``; all tokens with ``kl_anchor_stop``),
    plus ``stop_anchor`` x how far the ARM raises end of turn inside sentences
    (``inside``: ``mid_sentence_tokens``; see ``stop_raised_mid_sentence``).

    Why the anchor: GenARM's loss sees only where a pair's two replies differ (a
    shared prefix cancels out), so nothing holds the ARM to the base anywhere
    else, and LoRA drifts there too; guidance at weight α raises that drift to
    the power α (at α = 3, greedy answers that repeat themselves). The anchor
    keeps the ARM the base wherever the pairs do not disagree. An ARM whose objective
    is not length holds the stop token too (``kl_anchor_stop``): left free, it drifts
    there as well, and guided answers stop finishing.
    """
    sequences = [c for c, _ in batch] + [r for _, r in batch]
    logits, targets, rows = reply_logits(model, sequences, pad_id)
    logps = _row_sums(logits, targets, rows, len(sequences))
    chosen, rejected = logps[: len(batch)], logps[len(batch) :]
    loss = genarm_loss(chosen, rejected, beta)
    if kl_anchor or stop_anchor:
        base_logits = base_reply_logits(model, sequences, pad_id)
    if kl_anchor:
        left_out = None if kl_anchor_stop else stop_id
        loss = loss + kl_anchor * kl_from_base(base_logits, logits, left_out)
    if stop_anchor:
        if stop_id is None or inside is None:
            raise ValueError("stop_anchor needs stop_id and the mid-sentence tokens (inside)")
        held = stop_raised_mid_sentence(base_logits, logits, targets, rows, stop_id, inside)
        loss = loss + stop_anchor * held
    return loss, chosen, rejected


def use_bf16(cfg: TrainConfig, device: torch.device) -> bool:
    """``cfg.bf16``, or where unset, bf16 exactly when the device computes it natively."""
    from genarm.hardware import bf16_is_fast

    return bf16_is_fast(device) if cfg.bf16 is None else cfg.bf16


def _load_model(cfg: TrainConfig, device: torch.device, bf16: bool):
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
        loaded = set_peft_model_state_dict(model, _adapter_weights(cfg.init_adapter))
        # Non-strict: weights named for another base would be dropped without a word,
        # and the run would train a fresh LoRA instead of the one asked for.
        if loaded.unexpected_keys:
            raise ValueError(
                f"--init-adapter {cfg.init_adapter}: {len(loaded.unexpected_keys)} of its "
                f"weights match no module of {cfg.base} (e.g. {loaded.unexpected_keys[0]}); "
                "was it trained on another base model?"
            )
    return tokenizer, model


def _adapter_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(Path(folder) / "adapter_model.safetensors")


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


def _save_checkpoint(path: Path, model, optimizer, step: int, stats: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    model.save_pretrained(tmp)
    torch.save(
        {"optimizer": optimizer.state_dict(), "step": step, "stats": stats}, tmp / "state.pt"
    )
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)


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


def encode_pairs(
    tokenizer, pairs: list[PreferencePair], max_length: int, max_response: int
) -> list[EncodedPair]:
    """Each pair's (chosen, rejected) as ``encode`` cuts them, each reply ended or not
    as its pair says; warns about pairs that the cut makes the same (``decided``)."""
    lengths = (max_length, max_response)
    encoded = [
        (
            encode(tokenizer, p.messages(), p.chosen, *lengths, finished=p.chosen_finished),
            encode(tokenizer, p.messages(), p.rejected, *lengths, finished=p.rejected_finished),
        )
        for p in pairs
    ]
    undecided = len(encoded) - sum(map(decided, encoded))
    if undecided:
        logger.warning(
            "%d of %d pairs differ only after %d reply tokens: the same once cut, they teach "
            "and score nothing (a longer --max-response-length keeps them)",
            undecided,
            len(encoded),
            max_response,
        )
    return encoded


def decided(pair: EncodedPair) -> bool:
    """Whether a pair's two replies still differ once cut to the window."""
    (chosen, _), (rejected, _) = pair
    return chosen != rejected


def drop_undecided(
    pairs: list[PreferencePair], encoded: list[EncodedPair]
) -> tuple[list[PreferencePair], list[EncodedPair]]:
    """``pairs`` and ``encoded`` without the pairs the window cut to the same replies:
    in training a constant loss, in validation a pair counted as lost."""
    kept = [i for i, pair in enumerate(encoded) if decided(pair)]
    return [pairs[i] for i in kept], [encoded[i] for i in kept]


@contextlib.contextmanager
def evaluating(model) -> Iterator[None]:
    """``model`` in eval mode inside the block (no dropout in a validation or a
    guard's samples), back in training mode after it if it was there before."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


@torch.no_grad()
def validation_margins(
    model,
    encoded: list[EncodedPair],
    pad_id: int,
    batch_size: int,
    autocast,
    on_batch: Callable[[int], object] | None = None,
) -> list[float]:
    """Σ log π(chosen) − Σ log π(rejected) of ``model`` per pair of ``encoded``, in its
    order (batches of similar width: the validation pass is a few minutes on a CPU);
    ``on_batch(n)`` after each batch of n pairs (a progress bar's update)."""
    margins = [0.0] * len(encoded)
    widths = [max(len(chosen[0]), len(rejected[0])) for chosen, rejected in encoded]
    with evaluating(model):
        for batch in length_sorted_batches(widths, batch_size):
            with autocast:
                chosen, rejected = pair_logps(model, [encoded[i] for i in batch], pad_id)
            for i, margin in zip(batch, (chosen - rejected).float().tolist(), strict=True):
                margins[i] = margin
            if on_batch is not None:
                on_batch(len(batch))
    return margins


def _evaluate(model, tokenizer, val, encoded_val, pad_id, cfg, autocast, step, epoch):
    """One validation pass plus the fluency guard; logs a line per evaluation."""
    from genarm.training.fluency import fluency_report, perplexity_ratio

    margins = validation_margins(model, encoded_val, pad_id, cfg.batch_size, autocast)
    loss = float(genarm_loss(torch.tensor(margins), torch.zeros(len(margins)), cfg.beta))
    by_kind = accuracy_by_kind(val, margins)
    accuracy = by_kind.pop("all")
    evaluation = Evaluation(
        step=step, epoch=round(epoch, 3), accuracy=accuracy, loss=loss, by_kind=by_kind or None
    )
    if cfg.fluency_prompts and cfg.fluency_weights:
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
    if cfg.refusal_probes:
        _refusal_guard(model, tokenizer, cfg, evaluation)
    fluency = ", ".join(
        f"w={w}: ppl {r['perplexity']:.1f}, {r['repeated_4grams']:.0%} repeated 4-grams, "
        f"{r['words']:.0f} words"
        for w, r in (evaluation.fluency or {}).items()
    )
    kinds = "".join(f", {kind} {share:.3f}" for kind, share in by_kind.items())
    refusals = ", ".join(f"w={w}: {s:.0%}" for w, s in (evaluation.refusals or {}).items())
    logger.info(
        "Validation at step %d (epoch %.2f): accuracy %.3f%s, loss %.4f%s%s",
        step,
        epoch,
        accuracy,
        kinds,
        loss,
        f"; {fluency}" if fluency else "",
        f"; refused probes {refusals}" if refusals else "",
    )
    return evaluation


def _refusal_guard(model, tokenizer, cfg: TrainConfig, evaluation: Evaluation) -> None:
    """Count the guided refusals of benign probes; over ``max_refusal_share`` at the
    first fluency weight, the state is not eligible. Pair accuracy cannot see an
    ARM that learned to refuse everything: harmless pairs score that well."""
    from genarm.training.refusals import refusal_probes, refusal_report

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


def is_eval_step(step: int, steps_per_epoch: int, total_steps: int, eval_every: int | None) -> bool:
    """Every ``eval_every`` steps (default: each epoch's end), and at the last step.

    Not also at epoch ends when ``eval_every`` is set: an epoch-end evaluation a
    few steps from a scheduled one counted twice against the early-stopping
    patience (the harmless run of 2026-11-28 evaluated at steps 346 and 348).
    """
    return step % (eval_every or steps_per_epoch) == 0 or step == total_steps


def train_arm(cfg: TrainConfig, progress: bool = True) -> dict:
    """Train and save the adapter in ``cfg.out``; returns a summary of the run.

    With validation pairs, ``cfg.out`` gets the best-validating state (a copy
    stays in ``OUT/best``); without, the last one.
    """
    from peft import set_peft_model_state_dict
    from tqdm import tqdm

    from genarm.hardware import training_device

    if cfg.kl_anchor_stop and not cfg.kl_anchor:
        # Without an anchor there is nothing for the flag to extend: say so, not run unanchored.
        raise ValueError("--kl-anchor-stop extends the KL anchor: it needs --kl-anchor λ > 0")
    cfg = with_init_adapter_shape(cfg)
    torch.manual_seed(cfg.seed)
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
    tokenizer, model = _load_model(cfg, device, bf16)
    lengths = (cfg.max_length, cfg.max_response_length)
    pairs, encoded = drop_undecided(pairs, encode_pairs(tokenizer, pairs, *lengths))
    val, encoded_val = drop_undecided(val, encode_pairs(tokenizer, val, *lengths))
    steps_per_epoch = math.ceil(len(encoded) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    step, stats = 0, {"loss": [], "accuracy": [], "evals": [], "early_stopping": None}
    checkpoint, best_dir = out / CHECKPOINT, out / BEST
    source = Path(cfg.resume) if cfg.resume else checkpoint
    if cfg.resume and not (source / "state.pt").is_file():
        raise FileNotFoundError(f"no training checkpoint (state.pt) in {source}")
    if (source / "state.pt").is_file() and not cfg.restart:
        state = torch.load(source / "state.pt", weights_only=False)
        set_peft_model_state_dict(model, _adapter_weights(source))
        optimizer.load_state_dict(state["optimizer"])
        step, stats = state["step"], {**stats, **state["stats"]}
        logger.info("Resuming from %s at step %d/%d", source, step, total_steps)
    elif best_dir.exists():
        shutil.rmtree(best_dir)  # a fresh run: an old run's best state is not a candidate
    stopper = EarlyStopping.from_state(stats["early_stopping"], cfg.patience, cfg.select_by)
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", cfg.lr)
    # Warm-up then linear decay; last_epoch puts a resumed run back on the same curve.
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / 10) * max(0.0, 1 - s / total_steps),
        last_epoch=step - 1,
    )

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    inside = mid_sentence_tokens(tokenizer) if cfg.stop_anchor else None
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    started = time.monotonic()
    bar = tqdm(total=total_steps, initial=step, desc="train-arm", disable=not progress)
    model.train()
    stopped_early = stopper.should_stop and bool(encoded_val)
    while step < total_steps and not stopped_early:
        epoch, index = divmod(step, steps_per_epoch)
        order = list(range(len(encoded)))
        random.Random(cfg.seed + epoch).shuffle(order)
        batch = [encoded[i] for i in order[index * cfg.batch_size : (index + 1) * cfg.batch_size]]
        with autocast:
            loss, chosen, rejected = pair_loss(
                model, batch, pad_id, cfg.beta, cfg.kl_anchor, tokenizer.eos_token_id,
                cfg.stop_anchor, inside, cfg.kl_anchor_stop,
            )  # fmt: skip
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        step += 1
        stats["loss"].append(loss.item())
        stats["accuracy"].append(float((chosen > rejected).float().mean()))
        recent = slice(-steps_per_epoch // 4 or -1, None)
        bar.set_postfix(
            loss=f"{sum(stats['loss'][recent]) / len(stats['loss'][recent]):.3f}",
            acc=f"{sum(stats['accuracy'][recent]) / len(stats['accuracy'][recent]):.2f}",
        )
        bar.update(1)
        out_of_time = cfg.max_minutes and time.monotonic() - started > 60 * cfg.max_minutes
        # A run stopped by its time budget validates its last state too: it may be the best.
        evaluated = bool(encoded_val) and (
            is_eval_step(step, steps_per_epoch, total_steps, cfg.eval_every) or out_of_time
        )
        if evaluated:
            evaluation = _evaluate(
                model, tokenizer, val, encoded_val, pad_id, cfg, autocast, step,
                step / steps_per_epoch,
            )  # fmt: skip
            if stopper.update(evaluation):
                model.save_pretrained(best_dir)
            stats["evals"].append(asdict(evaluation))
            stats["early_stopping"] = stopper.state()
            stopped_early = stopper.should_stop and step < total_steps
        if evaluated or step % cfg.save_every == 0 or step == total_steps or out_of_time:
            _save_checkpoint(checkpoint, model, optimizer, step, stats)
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
    return _finish(cfg, model, stats, stopper, step, total_steps, len(encoded), len(val), started)


def _finish(cfg, model, stats, stopper, step, total_steps, n_pairs, n_val, started) -> dict:
    """Write the chosen adapter and the summary (``SUMMARY``); return the summary."""
    out = Path(cfg.out)
    best_dir = out / BEST
    if stopper.best is not None and (best_dir / "adapter_model.safetensors").is_file():
        for name in ("adapter_model.safetensors", "adapter_config.json"):
            shutil.copy(best_dir / name, out / name)
    else:
        model.save_pretrained(out)
    steps_per_epoch = math.ceil(n_pairs / cfg.batch_size)
    window = max(1, steps_per_epoch // 4)
    summary = {
        "config": asdict(cfg),
        "pairs": n_pairs,
        "validation_pairs": n_val,
        "steps": total_steps,
        "steps_done": step,
        "seconds_this_run": round(time.monotonic() - started, 1),
        "final_loss": sum(stats["loss"][-window:]) / len(stats["loss"][-window:]),
        "final_accuracy": sum(stats["accuracy"][-window:]) / len(stats["accuracy"][-window:]),
        "evaluations": stats["evals"],
        "best": asdict(stopper.best) if stopper.best else None,
        "stopped_early": stopper.should_stop and step < total_steps,
    }
    (out / SUMMARY).write_text(json.dumps(summary, indent=2))
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig(data="", out="", base="")
    parser.add_argument("--data", required=True, help="preference JSONL (prompt/chosen/rejected)")
    parser.add_argument("--out", required=True, help="adapter output folder (resumes if present)")
    parser.add_argument("--base", required=True, help="HF folder of the model the ARM starts from")
    parser.add_argument("--rank", type=int, default=d.rank)
    parser.add_argument("--alpha", type=int, default=d.alpha)
    parser.add_argument("--target-modules", default=",".join(d.target_modules))
    parser.add_argument("--beta", type=float, default=d.beta, help="β_r of the GenARM loss")
    parser.add_argument(
        "--kl-anchor",
        type=float,
        default=d.kl_anchor,
        help="weight of KL(base || ARM) per reply token (over the tokens other than end of "
        "turn) added to the loss: keeps the ARM's choice of words the base's wherever the "
        "pairs do not disagree, so that guidance changes only what they teach (0: off)",
    )
    parser.add_argument(
        "--kl-anchor-stop",
        action="store_true",
        help="the anchor holds end of turn too (KL over every token): for an ARM whose "
        "objective is not length, so that guided answers finish as the base's do",
    )
    parser.add_argument(
        "--stop-anchor",
        type=float,
        default=d.stop_anchor,
        help="weight of how far the ARM raises log p(end of turn) above the base's inside a "
        "sentence (mean over reply tokens not after . ! or ?) added to the loss: a length "
        "ARM learns to stop at sentence ends without stopping mid-sentence too (0: off)",
    )
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--max-length", type=int, default=d.max_length)
    parser.add_argument("--max-response-length", type=int, default=d.max_response_length)
    parser.add_argument("--max-pairs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=d.bf16,
        help="bf16 base with fp32 LoRA weights and autocast (default: where the GPU or CPU "
        "computes bf16 natively; emulated bf16 stepped 2.7x slower than float32)",
    )
    parser.add_argument("--save-every", type=int, default=d.save_every, help="checkpoint steps")
    parser.add_argument(
        "--resume", help="checkpoint folder to resume from (default: OUT/checkpoint)"
    )
    parser.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    parser.add_argument(
        "--init-adapter",
        help="start from this trained adapter's weights (and its rank, alpha and target "
        "modules) with a fresh optimizer and schedule: go on training an ARM on new data",
    )
    parser.add_argument("--max-minutes", type=float, help="stop and save after this wall time")
    val = parser.add_argument_group("validation, early stopping and the fluency guard")
    val.add_argument("--val-data", help="validation pairs (default: --val-fraction of the data)")
    val.add_argument(
        "--val-fraction",
        type=float,
        default=d.val_fraction,
        help="share of the data's prompts kept back for validation (0: no validation)",
    )
    val.add_argument("--val-max-pairs", type=int, help="validate on at most this many pairs")
    val.add_argument(
        "--eval-every", type=int, help="steps between validations (default: each epoch)"
    )
    val.add_argument(
        "--patience",
        type=int,
        default=d.patience,
        help="validations without a better state before stopping (0: never stop early)",
    )
    val.add_argument(
        "--select-by",
        choices=SELECT_BY,
        default=d.select_by,
        help="which validation state is the best one: the highest pairwise accuracy (ties: "
        "lower loss), or the lowest loss (smoother on a few hundred pairs)",
    )
    val.add_argument(
        "--fluency-prompts",
        type=int,
        default=d.fluency_prompts,
        help="validation prompts the fluency guard samples at each validation (0: off)",
    )
    val.add_argument(
        "--fluency-weights",
        default=",".join(f"{w:g}" for w in d.fluency_weights),
        help="ARM weights the fluency guard samples at (besides unguided)",
    )
    val.add_argument("--fluency-max-tokens", type=int, default=d.fluency_max_tokens)
    val.add_argument(
        "--max-perplexity-ratio",
        type=float,
        default=d.max_perplexity_ratio,
        help="a state whose guided replies (first fluency weight) have more than this times "
        "the unguided perplexity under the base is never kept as the best",
    )
    val.add_argument(
        "--refusal-probes",
        type=int,
        default=d.refusal_probes,
        help="the refusal guard: ask this many of the shipped benign probe questions "
        "(greedy, at 0 and the fluency weights) and report the share refused (0: off)",
    )
    val.add_argument(
        "--max-refusal-share",
        type=float,
        default=d.max_refusal_share,
        help="a state that refuses more than this share of the probes at the first fluency "
        "weight is never kept as the best (default: report only)",
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = TrainConfig(
        data=args.data,
        out=args.out,
        base=args.base,
        rank=args.rank,
        alpha=args.alpha,
        target_modules=[m.strip() for m in args.target_modules.split(",") if m.strip()],
        beta=args.beta,
        kl_anchor=args.kl_anchor,
        kl_anchor_stop=args.kl_anchor_stop,
        stop_anchor=args.stop_anchor,
        lr=args.lr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_length=args.max_length,
        max_response_length=args.max_response_length,
        max_pairs=args.max_pairs,
        seed=args.seed,
        bf16=args.bf16,
        save_every=args.save_every,
        resume=args.resume,
        init_adapter=args.init_adapter,
        restart=args.restart,
        max_minutes=args.max_minutes,
        val_data=args.val_data,
        val_fraction=args.val_fraction,
        val_max_pairs=args.val_max_pairs,
        eval_every=args.eval_every,
        patience=args.patience,
        select_by=args.select_by,
        fluency_prompts=args.fluency_prompts,
        fluency_weights=[float(w) for w in args.fluency_weights.split(",") if w.strip()],
        fluency_max_tokens=args.fluency_max_tokens,
        max_perplexity_ratio=args.max_perplexity_ratio,
        refusal_probes=args.refusal_probes,
        max_refusal_share=args.max_refusal_share,
    )
    summary = train_arm(cfg)
    shown = ("config", "evaluations")
    print(json.dumps({k: v for k, v in summary.items() if k not in shown}, indent=2))
    return 0

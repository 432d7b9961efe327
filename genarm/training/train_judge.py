"""`genarm train-judge`: train a Bradley-Terry judge (``genarm.training.judge``) on
preference pairs, with GRM's regularisation at ``--grm-weight`` > 0; ``--eval`` then
reports its pairwise accuracy on held-out pairs."""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from genarm.training.checkpoints import SUMMARY
from genarm.training.judge import (
    CONFIG_FILE,
    HEAD_FILE,
    Judge,
    JudgeConfig,
    RewardModel,
    build_reward_model,
    encode_reply,
    reply_mask,
    right_padded,
)
from genarm.training.losses import bradley_terry_loss
from genarm.training.optimization import optimizer_step, step_batch, warmup_then_linear_decay
from genarm.training.options import add_options, config_from_args, option
from genarm.training.preference_data import load_pairs


@dataclass
class HeldOutCheck:
    """The options of train-judge that are not the judge's settings."""

    eval: str | None = option(None, help="held-out preference JSONL: report pairwise accuracy")
    eval_limit: int = 200


def train_judge(cfg: JudgeConfig, progress: bool = True) -> dict:
    """Train and save a judge into ``cfg.out``; returns a summary of the run."""
    from tqdm import tqdm

    pairs = load_pairs(cfg.data)
    random.Random(cfg.seed).shuffle(pairs)
    pairs = pairs[: cfg.max_pairs] if cfg.max_pairs else pairs
    grm = cfg.grm_weight > 0
    tokenizer, model = build_reward_model(
        cfg.base, cfg.rank, cfg.alpha, cfg.bf16, cfg.seed, lm_head=grm
    )
    pad_id = tokenizer.pad_token_id or 0
    # Per pair: (chosen ids, its prompt length), (rejected ids, its prompt length).
    enc = [
        [encode_reply(tokenizer, p.messages(), r, cfg) for r in (p.chosen, p.rejected)]
        for p in pairs
    ]
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:  # fp32 trainables on a bf16 decoder
        p.data = p.data.float()
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    steps_per_epoch = math.ceil(len(enc) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    schedule = warmup_then_linear_decay(optimizer, cfg.lr, total)
    losses, accs, nlls, started = [], [], [], time.monotonic()
    model.train()
    for step in tqdm(range(total), desc="train-judge", disable=not progress):
        rows = step_batch(enc, step, steps_per_epoch, cfg.batch_size, cfg.seed)
        loss, won, nll = _pair_loss(model, rows, pad_id, cfg)
        optimizer_step(loss, optimizer, schedule, params)
        losses.append(loss.item())
        accs.append(won)
        if nll is not None:
            nlls.append(nll)
    _save(model, cfg)
    window = max(1, len(losses) // 4)
    summary = {
        "pairs": len(enc),
        "steps": total,
        "seconds": round(time.monotonic() - started, 1),
        "final_loss": sum(losses[-window:]) / window,
        "final_accuracy": sum(accs[-window:]) / window,
    }
    if grm:
        summary["grm_weight"] = cfg.grm_weight
        summary["final_reply_nll"] = sum(nlls[-window:]) / window
    (Path(cfg.out) / SUMMARY).write_text(json.dumps(summary, indent=2))
    return summary


def _pair_loss(
    model: RewardModel, rows: list, pad_id: int, cfg: JudgeConfig
) -> tuple[torch.Tensor, float, float | None]:
    """(loss, share of pairs ranked right, GRM's reply NLL or None) of one batch of
    encoded pairs: Bradley-Terry's loss, mixed with the NLL at ``cfg.grm_weight``."""
    ids, mask = right_padded([c[0] for c, _ in rows] + [r[0] for _, r in rows], pad_id)
    nll = None
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
        rewards, hidden = model.rewards_and_states(ids, mask)
        rewards = rewards.float()
        chosen, rejected = rewards[: len(rows)], rewards[len(rows) :]
        loss = bradley_terry_loss(chosen, rejected)
        if cfg.grm_weight > 0:
            replies = reply_mask(mask[: len(rows)], [c[1] for c, _ in rows])
            reply_nll = model.reply_nll(hidden[: len(rows)], ids[: len(rows)], replies)
            loss = (1 - cfg.grm_weight) * loss + cfg.grm_weight * reply_nll
            nll = reply_nll.item()
    return loss, float((chosen > rejected).float().mean()), nll


def _save(model: RewardModel, cfg: JudgeConfig) -> None:
    """The judge's LoRA weights, head and settings in ``cfg.out``."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(get_peft_model_state_dict(model.decoder), out / "adapter_model.safetensors")
    save_file({k: v.contiguous() for k, v in model.head.state_dict().items()}, out / HEAD_FILE)
    (out / CONFIG_FILE).write_text(json.dumps(asdict(cfg), indent=2))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, JudgeConfig)
    add_options(parser, HeldOutCheck)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(JudgeConfig, args)
    check = config_from_args(HeldOutCheck, args)
    summary = train_judge(cfg)
    if check.eval:
        judge = Judge.load(cfg.out)
        pairs = load_pairs(check.eval)[: check.eval_limit]
        summary["held_out_accuracy"] = judge.accuracy(pairs)
        summary["held_out_pairs"] = len(pairs)
        (Path(cfg.out) / SUMMARY).write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))

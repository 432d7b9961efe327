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
    build_reward_model,
    encode_reply,
    reply_mask,
    right_padded,
)
from genarm.training.losses import bradley_terry_loss
from genarm.training.options import add_options, config_from_args, option
from genarm.training.preference_data import load_pairs


@dataclass
class HeldOutCheck:
    """The options of train-judge that are not the judge's settings."""

    eval: str | None = option(None, help="held-out preference JSONL: report pairwise accuracy")
    eval_limit: int = 200


def train_judge(cfg: JudgeConfig, progress: bool = True) -> dict:
    """Train and save a judge into ``cfg.out``; returns a summary of the run."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file
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
    total = math.ceil(len(enc) / cfg.batch_size) * cfg.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 10) * max(0.0, 1 - s / total)
    )
    losses, accs, nlls, started = [], [], [], time.monotonic()
    model.train()
    for step in tqdm(range(total), desc="train-judge", disable=not progress):
        epoch, index = divmod(step, math.ceil(len(enc) / cfg.batch_size))
        order = list(range(len(enc)))
        random.Random(cfg.seed + epoch).shuffle(order)
        rows = [enc[i] for i in order[index * cfg.batch_size : (index + 1) * cfg.batch_size]]
        ids, mask = right_padded([c[0] for c, _ in rows] + [r[0] for _, r in rows], pad_id)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            rewards, hidden = model.rewards_and_states(ids, mask)
            rewards = rewards.float()
            chosen, rejected = rewards[: len(rows)], rewards[len(rows) :]
            loss = bradley_terry_loss(chosen, rejected)
            if grm:
                replies = reply_mask(mask[: len(rows)], [c[1] for c, _ in rows])
                nll = model.reply_nll(hidden[: len(rows)], ids[: len(rows)], replies)
                loss = (1 - cfg.grm_weight) * loss + cfg.grm_weight * nll
                nlls.append(nll.item())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        accs.append(float((chosen > rejected).float().mean()))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(get_peft_model_state_dict(model.decoder), out / "adapter_model.safetensors")
    save_file({k: v.contiguous() for k, v in model.head.state_dict().items()}, out / HEAD_FILE)
    (out / CONFIG_FILE).write_text(json.dumps(asdict(cfg), indent=2))
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
    (out / SUMMARY).write_text(json.dumps(summary, indent=2))
    return summary


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

"""`genarm train-arm`: train an autoregressive reward model as LoRA adapters.

GenARM's loss (reference-free, trajectory level):

    L = -log σ( β_r · ( Σ_t log π_r(y_w,t | x, y_w,<t) − Σ_t log π_r(y_l,t | x, y_l,<t) ) )

summed over response tokens only. The result is a PEFT adapter folder that a
deployment config serves with ``arms: - {name: ..., adapter: FOLDER}``.
Training checkpoints every ``--save-every`` steps into ``FOLDER/checkpoint``
and resumes from there when run again with the same output folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from genarm.training.preference_data import PreferencePair, load_pairs

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint"


@dataclass
class TrainConfig:
    data: str
    out: str
    base: str
    rank: int = 8
    alpha: int = 16
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )
    beta: float = 0.05
    lr: float = 5e-4
    epochs: int = 1
    batch_size: int = 4
    max_length: int = 320
    max_response_length: int = 128
    max_pairs: int | None = None
    seed: int = 0
    bf16: bool = True
    save_every: int = 50
    resume: str | None = None  # checkpoint folder; default: OUT/checkpoint when present
    restart: bool = False  # ignore an existing checkpoint
    max_minutes: float | None = None  # stop (and save) once this much wall time is spent


def genarm_loss(
    chosen_logps: torch.Tensor, rejected_logps: torch.Tensor, beta: float
) -> torch.Tensor:
    """Mean of -log σ(β (log π(y_w) - log π(y_l))) over the batch."""
    return -F.logsigmoid(beta * (chosen_logps - rejected_logps)).mean()


def encode(tokenizer, messages, response: str, max_length: int, max_response: int):
    """(input ids, number of prompt tokens): prompt via the chat template, then the reply.

    The reply ends with the end-of-turn token so that the ARM also scores stopping.
    Long prompts lose their oldest tokens; long replies are cut at max_response.
    """
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    reply_ids = tokenizer(response, add_special_tokens=False)["input_ids"][: max_response - 1]
    reply_ids = reply_ids + [tokenizer.eos_token_id]
    keep = max(8, max_length - len(reply_ids))
    prompt_ids = prompt_ids[-keep:]
    return prompt_ids + reply_ids, len(prompt_ids)


def sequence_logps(model, batch: list[tuple[list[int], int]], pad_id: int) -> torch.Tensor:
    """Σ log π(reply tokens) per sequence, prompt tokens masked out.

    The lm_head runs on reply positions only: over a 49k vocabulary the full
    [batch, length, vocab] logits would dominate memory traffic and time.
    """
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    scored = torch.zeros((len(batch), width), dtype=torch.bool)  # position predicts a reply token
    for row, (ids, prompt_len) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(ids)] = 1
        scored[row, prompt_len - 1 : len(ids) - 1] = True
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = causal_lm.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
    logits = causal_lm.lm_head(hidden[scored]).float()
    targets = input_ids.roll(-1, dims=1)[scored]
    token_logps = logits.gather(-1, targets[:, None]).squeeze(-1) - logits.logsumexp(dim=-1)
    rows = torch.arange(len(batch))[:, None].expand_as(scored)[scored]
    return torch.zeros(len(batch), dtype=token_logps.dtype).index_add(0, rows, token_logps)


def _load_model(cfg: TrainConfig):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(cfg.base)
    dtype = torch.bfloat16 if cfg.bf16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(cfg.base, dtype=dtype)
    lora = LoraConfig(
        r=cfg.rank, lora_alpha=cfg.alpha, target_modules=cfg.target_modules, lora_dropout=0.0
    )
    # peft keeps the adapter weights in float32 (autocast_adapter_dtype) on a bf16 base.
    return tokenizer, get_peft_model(model, lora)


def _save_checkpoint(path: Path, model, optimizer, step: int, stats: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    model.save_pretrained(tmp)
    torch.save(
        {"optimizer": optimizer.state_dict(), "step": step, "stats": stats}, tmp / "state.pt"
    )
    if path.exists():
        import shutil

        shutil.rmtree(path)
    tmp.rename(path)


def train_arm(cfg: TrainConfig, progress: bool = True) -> dict:
    """Train and save the adapter in ``cfg.out``; returns a summary of the run."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from tqdm import tqdm

    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    pairs: list[PreferencePair] = load_pairs(cfg.data)
    random.Random(cfg.seed).shuffle(pairs)
    pairs = pairs[: cfg.max_pairs] if cfg.max_pairs else pairs
    tokenizer, model = _load_model(cfg)
    encoded = [
        (
            encode(tokenizer, p.messages(), p.chosen, cfg.max_length, cfg.max_response_length),
            encode(tokenizer, p.messages(), p.rejected, cfg.max_length, cfg.max_response_length),
        )
        for p in pairs
    ]
    steps_per_epoch = math.ceil(len(encoded) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    step, stats = 0, {"loss": [], "accuracy": []}
    checkpoint = out / CHECKPOINT
    source = Path(cfg.resume) if cfg.resume else checkpoint
    if cfg.resume and not (source / "state.pt").is_file():
        raise FileNotFoundError(f"no training checkpoint (state.pt) in {source}")
    if (source / "state.pt").is_file() and not cfg.restart:
        state = torch.load(source / "state.pt", weights_only=False)
        set_peft_model_state_dict(model, load_file(source / "adapter_model.safetensors"))
        optimizer.load_state_dict(state["optimizer"])
        step, stats = state["step"], state["stats"]
        logger.info("Resuming from %s at step %d/%d", source, step, total_steps)
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", cfg.lr)
    # Warm-up then linear decay; last_epoch puts a resumed run back on the same curve.
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / 10) * max(0.0, 1 - s / total_steps),
        last_epoch=step - 1,
    )

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16)
    started = time.monotonic()
    bar = tqdm(total=total_steps, initial=step, desc="train-arm", disable=not progress)
    model.train()
    while step < total_steps:
        epoch, index = divmod(step, steps_per_epoch)
        order = list(range(len(encoded)))
        random.Random(cfg.seed + epoch).shuffle(order)
        batch = [encoded[i] for i in order[index * cfg.batch_size : (index + 1) * cfg.batch_size]]
        with autocast:
            logps = sequence_logps(model, [c for c, _ in batch] + [r for _, r in batch], pad_id)
        chosen, rejected = logps[: len(batch)], logps[len(batch) :]
        loss = genarm_loss(chosen, rejected, cfg.beta)
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
        if step % cfg.save_every == 0 or step == total_steps or out_of_time:
            _save_checkpoint(checkpoint, model, optimizer, step, stats)
        if out_of_time:
            logger.info(
                "Time budget of %s min spent at step %d/%d", cfg.max_minutes, step, total_steps
            )
            break
    bar.close()

    model.save_pretrained(out)
    window = max(1, steps_per_epoch // 4)
    summary = {
        "config": asdict(cfg),
        "pairs": len(encoded),
        "steps": total_steps,
        "steps_done": step,
        "seconds_this_run": round(time.monotonic() - started, 1),
        "final_loss": sum(stats["loss"][-window:]) / len(stats["loss"][-window:]),
        "final_accuracy": sum(stats["accuracy"][-window:]) / len(stats["accuracy"][-window:]),
    }
    (out / "training_summary.json").write_text(json.dumps(summary, indent=2))
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
        help="bf16 base with fp32 LoRA weights and autocast (~2x faster than fp32 on CPU)",
    )
    parser.add_argument("--save-every", type=int, default=d.save_every, help="checkpoint steps")
    parser.add_argument(
        "--resume", help="checkpoint folder to resume from (default: OUT/checkpoint)"
    )
    parser.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    parser.add_argument("--max-minutes", type=float, help="stop and save after this wall time")


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
        restart=args.restart,
        max_minutes=args.max_minutes,
    )
    summary = train_arm(cfg)
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))
    return 0

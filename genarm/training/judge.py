"""A trajectory-level judge: a Bradley-Terry reward model with a scalar head.

The base model (SmolLM2 in the demo) gets LoRA adapters and a linear head on the
hidden state of the last reply token (the end-of-turn token, so the judge sees
the whole reply); it is trained with -log σ(r(x, y_w) - r(x, y_l)). It must not
see the pairs the ARMs were trained on: for HH-RLHF it trains on ``judge_train``.

    judge = Judge.load("judges/harmless")
    judge.score("How do I pick a lock?", "I can't help with that.")  # -> float

``genarm train-judge --data ... --out ... --base ... [--eval HELD_OUT]`` trains one
(``genarm.training.train_judge``).

``--grm-weight α`` adds GRM's regularisation (Yang et al., NeurIPS 2024,
"Regularizing Hidden States Enables Learning Generalizable Reward Model"): the
same adapted hidden states must still predict the chosen replies through the
base's (frozen) language-model head, so the loss is
``(1 - α)·BT + α·SFT(chosen)``; the saved judge is the same (the LM head is a
training aid only).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from genarm.training.encoding import EncodedReply, encode
from genarm.training.options import option
from genarm.training.preference_data import Messages, PreferencePair, as_messages

HEAD_FILE = "reward_head.safetensors"
CONFIG_FILE = "judge_config.json"


@dataclass
class JudgeConfig:
    """A judge's training settings, saved beside it (``CONFIG_FILE``); each field is
    also `genarm train-judge`'s option of that name, but ``max_response_length``."""

    data: str = option(help="preference JSONL (judge-train split)")
    out: str = option(help="judge output folder")
    base: str = option(help="HF folder of the model to start from")
    rank: int = 8
    alpha: int = 16
    lr: float = 1e-3
    epochs: int = 1
    batch_size: int = 4
    max_length: int = 256
    max_response_length: int = option(96, cli=False)
    max_pairs: int | None = None
    seed: int = 0
    bf16: bool = True
    grm_weight: float = option(
        0.0,
        help="GRM's regularisation: weight w of the chosen replies' text loss through the "
        "base's frozen LM head, (1 - w)·BT + w·SFT (0: off)",
    )


class RewardModel(torch.nn.Module):
    """A (LoRA-adapted) decoder with a scalar head on the last real token; with
    ``lm_head`` (GRM training), also the text loss of replies on the same states."""

    def __init__(self, decoder, hidden_size: int, lm_head: torch.nn.Module | None = None):
        super().__init__()
        self.decoder = decoder
        self.head = torch.nn.Linear(hidden_size, 1)
        self.lm_head = lm_head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.rewards_and_states(input_ids, attention_mask)[0]

    def rewards_and_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.decoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        last = attention_mask.sum(dim=1) - 1  # right padding
        pooled = hidden[torch.arange(len(hidden)), last]
        return self.head(pooled.float()).squeeze(-1), hidden

    def reply_nll(
        self, hidden: torch.Tensor, input_ids: torch.Tensor, reply_mask: torch.Tensor
    ) -> torch.Tensor:
        """Mean -log π(reply token | what precedes it) through ``lm_head``: GRM's
        regulariser. ``reply_mask`` marks the reply's tokens (the targets)."""
        targets = reply_mask[:, 1:].bool()
        logits = self.lm_head(hidden[:, :-1][targets]).float()
        return F.cross_entropy(logits, input_ids[:, 1:][targets])


def right_padded(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return ids, mask


def build_reward_model(
    base: str, rank: int, alpha: int, bf16: bool, seed: int, lm_head: bool = False
) -> tuple[Any, RewardModel]:
    """The tokenizer and the LoRA reward model; ``lm_head``: keep the base's frozen
    language-model head beside it (GRM training)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base)
    dtype = torch.bfloat16 if bf16 else torch.float32
    head = None
    if lm_head:
        causal = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
        decoder, head = causal.get_decoder(), causal.get_output_embeddings()
        head.requires_grad_(False)
    else:
        decoder = AutoModel.from_pretrained(base, dtype=dtype)
    lora = LoraConfig(
        r=rank, lora_alpha=alpha, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]
    )
    model = RewardModel(get_peft_model(decoder, lora), decoder.config.hidden_size, head)
    return tokenizer, model


class Judge:
    """A trained reward model: ``score(prompt, response) -> float`` (higher is better)."""

    def __init__(self, tokenizer, model: RewardModel, cfg: JudgeConfig):
        self.tokenizer, self.model, self.cfg = tokenizer, model.eval(), cfg

    @classmethod
    def load(cls, path: str | Path, base: str | None = None, bf16: bool | None = None) -> Judge:
        """A saved judge; ``base`` overrides the base model folder its config names,
        ``bf16`` the dtype it was trained in (scores move by bf16 rounding only)."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        path = Path(path).expanduser()
        cfg = JudgeConfig(**json.loads((path / CONFIG_FILE).read_text()))
        if bf16 is not None:
            cfg.bf16 = bf16
        base = str(Path(base or cfg.base).expanduser())
        tokenizer, model = build_reward_model(base, cfg.rank, cfg.alpha, cfg.bf16, cfg.seed)
        set_peft_model_state_dict(model.decoder, load_file(path / "adapter_model.safetensors"))
        model.head.load_state_dict(load_file(path / HEAD_FILE))
        return cls(tokenizer, model, cfg)

    @torch.no_grad()
    def score_many(
        self, items: list[tuple[str | Messages, str]], batch_size: int = 16, desc: str | None = None
    ) -> list[float]:
        """Scores of (prompt, response) items, ``batch_size`` at a time (a progress
        bar named ``desc`` when given)."""
        from tqdm import tqdm

        cfg = self.cfg
        seqs = [encode_reply(self.tokenizer, as_messages(p), r, cfg)[0] for p, r in items]
        scores: list[float] = []
        starts = range(0, len(seqs), batch_size)
        for start in tqdm(starts, desc=desc, disable=desc is None):
            ids, mask = right_padded(
                seqs[start : start + batch_size], self.tokenizer.pad_token_id or 0
            )
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                scores += self.model(ids, mask).float().tolist()
        return scores

    def score(self, prompt: str | Messages, response: str) -> float:
        return self.score_many([(prompt, response)])[0]

    def accuracy(self, pairs: list[PreferencePair]) -> float:
        wins = 0
        for pair in pairs:
            chosen, rejected = self.score_many(
                [(pair.prompt, pair.chosen), (pair.prompt, pair.rejected)]
            )
            wins += chosen > rejected
        return wins / max(1, len(pairs))


def encode_reply(tokenizer, messages: Messages, reply: str, cfg: JudgeConfig) -> EncodedReply:
    """(input ids, number of prompt tokens) of a reply as the judge reads it, in training
    and in scoring alike. A finished reply cut by the window still ends with end of turn:
    the judge pools its score at that token and was trained so."""
    return encode(
        tokenizer, messages, reply, cfg.max_length, cfg.max_response_length, end_when_cut=True
    )


def reply_mask(attention_mask: torch.Tensor, prompt_lengths: list[int]) -> torch.Tensor:
    """1 on each row's reply tokens (after its prompt, before its padding)."""
    positions = torch.arange(attention_mask.shape[1])[None, :]
    starts = torch.tensor(prompt_lengths)[:, None]
    return attention_mask * (positions >= starts)

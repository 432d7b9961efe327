"""Scores of sampled replies by a model, for `genarm make-preferences`: a judge's
(``holistic_scores``, the holistic rule's) and an HF sequence-classification reward
model's, combined over its objectives as /v1/rewards combines them
(``reward_model_scores``)."""

from __future__ import annotations

from pathlib import Path

from genarm.training.preference_data import as_messages

# torch, transformers and the judge are imported where a model scores: make-preferences
# imports this module for every run, most of which score by rule.


def holistic_scores(
    judge_path: str, base: str, groups: list[tuple[str, list[str]]]
) -> list[list[float]]:
    """The judge's score of every sample: one list per (prompt, texts) group."""
    import torch

    from genarm.hardware import bf16_is_fast
    from genarm.training.judge import Judge

    judge = Judge.load(judge_path, base=base, bf16=bf16_is_fast(torch.device("cpu")))
    items = [(prompt, text) for prompt, texts in groups for text in texts]
    flat = judge.score_many(items, batch_size=8, desc="holistic scores")
    scores, at = [], 0
    for _, texts in groups:
        scores.append(flat[at : at + len(texts)])
        at += len(texts)
    return scores


def reward_model_scores(
    path: str, objective_weights: str | None, groups: list[tuple[str, list[str]]]
) -> list[list[float]]:
    """Every sample's combined score under an HF sequence-classification reward model,
    read as /v1/rewards reads an item (the reply as the assistant's turn, the model's
    chat template) and combined as it combines objectives (the weights given as
    ``name=w,...`` over the defaults: the mean)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from genarm.config import RewardModelConfig
    from genarm.engine.reward_engine import objective_weights as default_weights
    from genarm.engine.reward_engine import reward_model_objectives
    from genarm.server.reward_models import conversation_ids

    rm = RewardModelConfig(name="labeller", model=str(Path(path).expanduser()))
    objectives = reward_model_objectives(rm)
    weights = default_weights(rm, objectives)
    for name, weight in _weight_args(objective_weights).items():
        if name not in weights:
            raise SystemExit(f"--objective-weights: {name!r} is not one of {objectives}")
        weights[name] = weight
    tokenizer = AutoTokenizer.from_pretrained(rm.model)
    model = AutoModelForSequenceClassification.from_pretrained(rm.model, dtype=torch.float32)
    model.eval()
    sequences = [
        conversation_ids(tokenizer, as_messages(prompt), text)
        for prompt, texts in groups
        for text in texts
    ]
    raw = head_outputs(model, sequences, desc=f"scoring by {Path(path).name}")
    combined = iter(
        [sum(weights[o] * v for o, v in zip(objectives, row, strict=True)) for row in raw]
    )
    return [[next(combined) for _ in texts] for _, texts in groups]


def head_outputs(model, sequences: list[list[int]], batch_size: int = 8, desc: str = "") -> list:
    """An HF sequence-classification model's outputs for each token sequence, the
    same as one at a time: batched by length with right padding, as HF pools each
    row's rightmost non-pad token. A batch where the pad token occurs inside a
    sequence (many chat models pad with a token their conversations contain) goes
    one at a time, since older transformers pooled before the first pad token."""
    from tqdm import tqdm

    pad = model.config.get_text_config().pad_token_id
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    outputs: list = [None] * len(sequences)
    # Minutes for thousands of samples on a CPU: show it.
    with tqdm(total=len(sequences), desc=desc, unit="reply", disable=not desc) as bar:
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = [sequences[i] for i in rows]
            if pad is None or any(pad in ids for ids in batch):
                logits = [_forward(model, [ids], pad)[0] for ids in batch]
            else:
                logits = _forward(model, batch, pad)
            for i, row in zip(rows, logits, strict=True):
                outputs[i] = row
            bar.update(len(rows))
    return outputs


def _forward(model, batch: list[list[int]], pad: int | None) -> list[list[float]]:
    import torch

    from genarm.training.judge import right_padded

    ids, mask = right_padded(batch, 0 if pad is None else pad)  # right padding, as the judge's
    with torch.no_grad():
        return model(ids, attention_mask=mask).logits.float().tolist()


def _weight_args(text: str | None) -> dict[str, float]:
    if not text:
        return {}
    try:
        return {k.strip(): float(v) for k, v in (part.split("=", 1) for part in text.split(","))}
    except ValueError:
        raise SystemExit(f"--objective-weights wants name=weight,... got {text!r}") from None

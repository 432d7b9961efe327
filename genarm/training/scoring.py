"""What a model makes of replies: Σ log π of each reply's tokens (``sequence_logps``),
the logits that score them (``reply_logits``), and each pair's margin on held-out pairs
(``validation_margins``), the quantities the losses and the validation are built on."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

from genarm.training.encoding import EncodedPair, EncodedReply


def sequence_logps(model, batch: list[EncodedReply], pad_id: int) -> torch.Tensor:
    """Σ log π(reply tokens) per sequence, prompt tokens masked out."""
    return sum_by_row(*reply_logits(model, batch, pad_id), len(batch))


def length_sorted_batches(widths: list[int], batch_size: int) -> list[list[int]]:
    """Indices of items in batches of similar width, shortest first: scoring in the
    items' order let one long HH-RLHF dialogue pad its whole batch to its width."""
    order = sorted(range(len(widths)), key=widths.__getitem__)
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def reply_logits(
    model, batch: list[EncodedReply], pad_id: int
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


def sum_by_row(
    logits: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor, n: int
) -> torch.Tensor:
    token_logps = logits.gather(-1, targets[:, None]).squeeze(-1) - logits.logsumexp(dim=-1)
    sums = torch.zeros(n, dtype=token_logps.dtype, device=logits.device)
    return sums.index_add(0, rows, token_logps)


def base_reply_logits(model, batch: list[EncodedReply], pad_id: int) -> torch.Tensor:
    """``reply_logits`` of ``model`` with its adapter off (no gradient): the base's."""
    with torch.no_grad(), model.disable_adapter():
        return reply_logits(model, batch, pad_id)[0]


def pair_logps(model, batch: list[EncodedPair], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ log π(chosen), Σ log π(rejected)) per pair, in one forward pass."""
    logps = sequence_logps(model, [c for c, _ in batch] + [r for _, r in batch], pad_id)
    return logps[: len(batch)], logps[len(batch) :]


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

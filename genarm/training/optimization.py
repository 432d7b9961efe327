"""What the ARM's and the judge's training loops share: the pairs of each step (every
epoch in its own seeded order), the learning-rate schedule and the optimizer step."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

import torch

Item = TypeVar("Item")


def step_batch(
    items: Sequence[Item], step: int, steps_per_epoch: int, batch_size: int, seed: int
) -> list[Item]:
    """The items of ``step``: each epoch goes through them in its own seeded order."""
    epoch, index = divmod(step, steps_per_epoch)
    order = list(range(len(items)))
    random.Random(seed + epoch).shuffle(order)
    return [items[i] for i in order[index * batch_size : (index + 1) * batch_size]]


def warmup_then_linear_decay(
    optimizer: torch.optim.Optimizer, lr: float, total_steps: int, step: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Ten steps of warm-up, then a linear decay to 0 at ``total_steps``; a run resumed
    at ``step`` goes on along the same curve."""
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", lr)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / 10) * max(0.0, 1 - s / total_steps),
        last_epoch=step - 1,
    )


def optimizer_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    params: list[torch.nn.Parameter],
) -> None:
    """One step on ``loss``, the gradients clipped to norm 1."""
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    schedule.step()

"""The float64 reference of the GenARM fusion: the oracle for the fast paths.

Semantics every implementation shares:
- out = log_softmax(base) + Σ_k w_k · log_softmax(arm_k), per row;
- a weight of exactly 0 contributes nothing, even where its ARM is -inf;
- a -inf in the base, or in an ARM with a nonzero weight, gives -inf (a token
  that a model rules out stays ruled out, whatever the sign of the weight).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def fuse_reference(
    base_logits: torch.Tensor, arm_logits: Sequence[torch.Tensor], weights: torch.Tensor
) -> torch.Tensor:
    """float64 [B, V]; plain and obviously correct, not fast."""
    out = torch.log_softmax(base_logits.double(), dim=-1)
    for k, arm in enumerate(arm_logits):
        logprobs = torch.log_softmax(arm.double(), dim=-1)
        w = weights[:, k : k + 1].double().expand_as(logprobs)
        term = torch.where(w == 0, torch.zeros_like(logprobs), w * logprobs)
        term = torch.where((w != 0) & torch.isneginf(logprobs), -torch.inf, term)
        out = out + term
    return out

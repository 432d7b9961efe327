"""Vocabulary alignment of a base model and its ARMs (no vLLM import).

The base and the ARMs share a tokenizer, but an lm_head may be padded past it
(a checkpoint rounds its vocabulary up; the tiny test model arm_b has 64 extra
ids), so their logits can differ in width. Everything is aligned to the base's
width, the width the sampler sees: a wider ARM is cut (its extra ids are not
tokens the base can emit), a narrower one is padded with -inf, so that with a
nonzero weight the fusion forbids the ids that ARM cannot score.

Used by the vLLM composite model (``genarm.engine.composite``) and by the
transformers decoder (``genarm.reference_decoder``) alike.
"""

from __future__ import annotations

import torch


def align_vocab(logits: torch.Tensor, width: int) -> torch.Tensor:
    """``logits`` [..., V'] cut or -inf-padded to [..., width]; returned as is when V' == width.

    Works on logits and log-probabilities alike (padding is -inf either way).
    """
    have = logits.shape[-1]
    if have == width:
        return logits
    if have > width:
        return logits[..., :width]
    pad = logits.new_full((*logits.shape[:-1], width - have), -torch.inf)
    return torch.cat([logits, pad], dim=-1)

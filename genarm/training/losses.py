"""The training losses: GenARM's for an ARM (``genarm_loss``, with its anchors in
``pair_loss``) and Bradley-Terry's for a judge (``bradley_terry_loss``).

GenARM's loss (reference-free, trajectory level):

    L = -log σ( β_r · ( Σ_t log π_r(y_w,t | x, y_w,<t) − Σ_t log π_r(y_l,t | x, y_l,<t) ) )

summed over response tokens only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genarm.training.encoding import EncodedPair
from genarm.training.scoring import base_reply_logits, reply_logits, sum_by_row
from genarm.training.sentences import may_end_sentence


def genarm_loss(
    chosen_logps: torch.Tensor, rejected_logps: torch.Tensor, beta: float
) -> torch.Tensor:
    """Mean of -log σ(β (log π(y_w) - log π(y_l))) over the batch."""
    return -F.logsigmoid(beta * (chosen_logps - rejected_logps)).mean()


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Mean of -log σ(r_w - r_l)."""
    return -F.logsigmoid(chosen - rejected).mean()


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
    sentence wherever the token stands: neither a special token nor one that may end a
    sentence by the sentence-end rule (``genarm.training.sentences.may_end_sentence``:
    not ". ! ?" after a word, nor a closing quote, bracket or line break after an end;
    a numbered list's "1." is inside, as make-preferences' pairs have it)."""
    special = set(tokenizer.all_special_ids)
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    inside = [i not in special and not may_end_sentence(text) for i, text in enumerate(texts)]
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
    logps = sum_by_row(logits, targets, rows, len(sequences))
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

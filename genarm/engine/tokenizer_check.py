"""Load-time check that the base and every ARM speak the same token ids.

GenARM adds log-probabilities token id by token id, so an ARM with another
vocabulary would silently steer towards the wrong tokens. A padded lm_head is
fine (the composite pads or trims logits); different ids are not.
"""

from __future__ import annotations

from functools import lru_cache


class TokenizerMismatchError(ValueError):
    """Base and ARM tokenizers disagree; the message names both models."""


@lru_cache(maxsize=16)
def _vocab(path: str) -> dict[str, int]:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path).get_vocab()


def check_shared_tokenizer(base_path: str, arm_path: str, arm_name: str) -> None:
    """Raise TokenizerMismatchError unless both tokenizers map tokens to the same ids."""
    base, arm = _vocab(base_path), _vocab(arm_path)
    if base == arm:
        return
    only_base = sorted(set(base) - set(arm), key=base.get)
    only_arm = sorted(set(arm) - set(base), key=arm.get)
    moved = sorted((t for t in set(base) & set(arm) if base[t] != arm[t]), key=base.get)
    if moved:
        detail = (
            f"token {moved[0]!r} has id {base[moved[0]]} in the base, {arm[moved[0]]} in the ARM"
        )
    elif only_base:
        detail = f"token {only_base[0]!r} (id {base[only_base[0]]}) is missing from the ARM"
    else:
        detail = f"token {only_arm[0]!r} (id {arm[only_arm[0]]}) is missing from the base"
    raise TokenizerMismatchError(
        f"ARM {arm_name!r} ({arm_path}) does not share the tokenizer of the base model "
        f"({base_path}): {detail} ({len(base)} vs {len(arm)} tokens). GenARM needs the same "
        "token ids in both."
    )

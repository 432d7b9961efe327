"""`genarm make-preferences`' settings: each field is also the command's option of that
name (``genarm.training.options``)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from genarm.training.options import option
from genarm.training.rewards import REWARDS

PAIRING = "pairing"


def _center_and_scale(text: str) -> tuple[float, float]:
    """``--stop-graded CENTER,SCALE``: the two numbers, SCALE positive."""
    try:
        center, scale = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants CENTER,SCALE in words, got {text!r}") from None
    if scale <= 0:
        raise argparse.ArgumentTypeError(f"SCALE must be positive, got {scale:g}")
    return center, scale


# Keyword-only: the options keep their order in --help, required ones among the others.
@dataclass(kw_only=True)
class PreferencesConfig:
    base: str = option(help="HF folder of the model to sample")
    reward: list[str] | None = option(
        None,
        nargs="+",
        choices=sorted(REWARDS),
        help="one or more rewards: the samples are drawn once, each writes OUT/<reward>.jsonl",
    )
    reward_model: str | None = option(
        None,
        help="an HF sequence-classification folder (e.g. from `genarm export-judge`) whose "
        "combined score ranks the samples; writes OUT/<its folder name>.jsonl",
    )
    objective_weights: str | None = option(
        None, help="--reward-model: name=weight,... over its defaults (the mean of its objectives)"
    )
    out: str = option(help="output folder")
    samples: int = option(4, help="responses per prompt")
    max_tokens: int = 160
    temperature: float = 0.9
    max_prompts: int | None = None
    dtype: str = option(
        "bfloat16",
        choices=("bfloat16", "float32", "float16"),
        help="sampling dtype (float32 is ~2.8x faster on a CPU without bf16 instructions)",
    )
    seed: int = option(0, help="prompt split and sampling seed")
    split: str = option(
        "train",
        choices=("train", "held-out"),
        help="which part of the prompt split to sample (held-out: pairs for evaluation)",
    )
    prompts_from: str | None = option(
        None,
        metavar="PAIRS",
        help="sample the prompts of a preference JSONL instead of the project's instructions "
        "(e.g. HH-RLHF's arm_train.jsonl from prepare-hh-rlhf: multi-turn dialogues), each "
        "once, in file order; --split does not apply",
    )
    from_samples: str | None = option(
        None, help="samples.jsonl of an earlier run: pair those samples instead of sampling again"
    )
    pairs_per_prompt: int = option(1, group=PAIRING, help="disjoint pairs per prompt, widest first")
    min_reward_gap: float = option(
        0.0, group=PAIRING, help="pair samples only if rewards differ more"
    )
    holistic_judge: str | None = option(
        None,
        group=PAIRING,
        help="judge folder (genarm train-judge): keep a pair only if the judge does not prefer "
        "the rejected reply by more than --holistic-margin (ALaRM's hierarchical rule)",
    )
    holistic_margin: float = option(0.5, group=PAIRING)
    length_matched: bool = option(
        False,
        group=PAIRING,
        help="cut each rejected reply to the chosen one's token count + 1 (marked unfinished): "
        "for length rewards, whose pairs a sum of log-probabilities already orders",
    )
    stopping_pairs: int = option(
        0,
        group=PAIRING,
        metavar="N",
        help="instead of whole replies: up to N pairs per sample that differ only in stopping "
        "at a sentence end (chosen) or going on one word (rejected); for length rewards",
    )
    keep_going_pairs: int | None = option(
        None,
        group=PAIRING,
        metavar="M",
        help="--stopping-pairs: also up to M pairs per sample inside a sentence, going on one "
        "word (chosen) vs ending the turn there (rejected) (default: N, as many)",
    )
    stop_min_words: int = option(
        20, group=PAIRING, help="--stopping-pairs: sentence ends after at least this many words"
    )
    stop_graded: tuple[float, float] | None = option(
        None,
        group=PAIRING,
        parse=_center_and_scale,
        metavar="CENTER,SCALE",
        help="--stopping-pairs: a sentence end's pair says stop with probability "
        "σ((words - CENTER) / SCALE) and go on otherwise, so that stopping is preferred "
        "more the more has been said (lower --stop-min-words to reach the early ends)",
    )
    refusal_pairs: int = option(
        0,
        group=PAIRING,
        metavar="N",
        help="also write OUT/refusal.jsonl: up to N samples per prompt that do not refuse "
        "(chosen), each against a refusal (rejected); benign pairs for a harmlessness ARM",
    )
    chosen_must_finish: bool = option(
        False, group=PAIRING, help="never choose a reply that was cut off by --max-tokens"
    )

"""`genarm make-preferences`: preference pairs from the base model's own samples.

For each prompt, sample several responses with vLLM, score each with a
trajectory-level reward function (``genarm.training.rewards``) or a reward
model (``--reward-model``: any HF sequence-classification folder, such as one
of ``genarm export-judge``, scored as ``/v1/rewards`` scores), and pair the
best with the worst (ties are skipped); ``--pairs-per-prompt`` pairs the next
best with the next worst too. Seeds make a run reproducible. With a reward
model, `genarm train-arm` on the pairs distils it into an ARM: any
trajectory-level reward model becomes token-level guidance.

An aspect reward alone teaches its aspect at any cost: the shortest of a
prompt's samples is often the one that stopped before answering. With
``--holistic-judge`` a pair is kept only where a holistic reward model agrees
not to mind, ALaRM's hierarchical rule (Lai et al., 2024): the aspect decides
the preference, and the holistic score may not prefer the rejected reply by
more than ``--holistic-margin``. So a `concise` ARM learns "shorter and as
good", not "cut off".

``--stopping-pairs N`` makes pairs that differ only where a reply stops: the
same sample up to a sentence end, once ending there (chosen) and once going
on with its next word (rejected, cut off). The shared prefix cancels out of
GenARM's loss, which then compares exactly log π(end of turn | prefix) with
log π(next word | prefix): the decision a `concise` ARM should move, with no
content of its own to learn (whole shorter-vs-longer replies taught the
base's short apologies instead). With ``--holistic-judge`` a sentence end is
used only where the judge scores the reply stopped there no lower than the
whole sample minus the margin, so the ARM learns to stop where an answer is
complete. Stopping pairs alone teach "end the turn" everywhere (a first run's
ARM ended every reply at its first token at weight 1), so as many
``--keep-going-pairs`` per sample (by default) say the opposite inside a
sentence: the same prefix going on with its next word (chosen) against the
turn ending there (rejected).

Such pairs say "stop" with the same strength at every sentence end past
``--stop-min-words``, so the ARM has no reason to prefer one end to another and
its slider saturates: a low weight already stops at the first end. With
``--stop-graded CENTER,SCALE`` each sentence end's pair says "stop" only with
probability σ((words − CENTER) / SCALE), and "go on one word" otherwise. In
expectation over that draw, GenARM's logistic loss is the soft-label loss whose
optimum puts the ARM's stop-vs-go log-odds at logit(p) / β_r: a preference for
stopping that grows with what has been said, so that a low weight stops late and
only a high one early.

``--refusal-pairs N`` pairs up to N of a prompt's samples that do not refuse
(chosen) with a refusal (rejected), into OUT/refusal.jsonl
(``genarm.training.refusals``): benign pairs to mix into a harmlessness ARM's
data, so that it learns to refuse what is harmful rather than to refuse.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from pathlib import Path

from genarm.training.model_scores import holistic_scores, reward_model_scores
from genarm.training.options import add_options, config_from_args
from genarm.training.pairing import (
    keep_going_pair,
    length_matched,
    ranked_pairs,
    says_stop,
    spread,
    stopping_candidates,
    stopping_pair,
)
from genarm.training.preference_data import Messages, PreferencePair, write_pairs
from genarm.training.preferences_config import PreferencesConfig
from genarm.training.refusals import refusal_pairs
from genarm.training.rewards import REWARDS
from genarm.training.samples import prompts_and_samples
from genarm.training.sentences import mid_sentence_breaks

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, PreferencesConfig)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return make_preferences(config_from_args(PreferencesConfig, args))


def make_preferences(cfg: PreferencesConfig) -> int:
    """Sample (or read back) the samples, pair them as ``cfg`` says and write the pairs."""
    if not cfg.reward and not cfg.reward_model and not cfg.refusal_pairs:
        raise SystemExit("make-preferences: give --reward, --reward-model, --refusal-pairs")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    prompts, samples = prompts_and_samples(cfg, out)
    if cfg.refusal_pairs:
        _write_refusal_pairs(cfg, out, prompts, samples)
    texts = [[text for text, _ in group] for group in samples]
    holistic = None
    if cfg.holistic_judge:
        holistic = holistic_scores(
            cfg.holistic_judge, cfg.base, list(zip(prompts, texts, strict=True))
        )
        with open(out / "holistic_scores.jsonl", "w") as f:
            for prompt, scores in zip(prompts, holistic, strict=True):
                f.write(json.dumps({"prompt": prompt, "scores": scores}) + "\n")
    if cfg.stopping_pairs:
        pairs = _stopping_pairs(cfg, prompts, texts, holistic)
        for name in cfg.reward or []:
            count = write_pairs(out / f"{name}.jsonl", pairs)
            print(
                f"{name}: {count} stopping pairs from {len(prompts)} prompts -> {out / name}.jsonl"
            )
        return 0
    for name, scores in _scores(cfg, prompts, samples).items():
        pairs, unfiltered = _ranked(cfg, prompts, samples, scores, holistic)
        if cfg.length_matched:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(cfg.base)
            pairs = [length_matched(p, tokenizer) for p in pairs]
        count = write_pairs(out / f"{name}.jsonl", pairs)
        rule = f", {unfiltered - count} dropped by the holistic rule" if holistic else ""
        print(f"{name}: {count} pairs from {len(prompts)} prompts{rule} -> {out / name}.jsonl")
    return 0


def _write_refusal_pairs(
    cfg: PreferencesConfig, out: Path, prompts: list[str | Messages], samples: list[list]
) -> None:
    """``--refusal-pairs``: OUT/refusal.jsonl, answers that do not refuse over refusals."""
    rng = random.Random(cfg.seed)
    pairs = [
        pair
        for prompt, group in zip(prompts, samples, strict=True)
        for pair in refusal_pairs(prompt, group, cfg.refusal_pairs, rng)
    ]
    count = write_pairs(out / "refusal.jsonl", pairs)
    print(f"refusal: {count} answer-over-refusal pairs from {len(prompts)} prompts")


def _scores(
    cfg: PreferencesConfig, prompts: list[str | Messages], samples: list[list]
) -> dict[str, list[list[float]]]:
    """Per reward (``--reward``, and the ``--reward-model``'s folder name): every
    sample's score, one list per prompt."""
    scored = {
        name: [[REWARDS[name](text, done) for text, done in group] for group in samples]
        for name in cfg.reward or []
    }
    if cfg.reward_model:
        name = Path(cfg.reward_model).expanduser().resolve().name
        groups = [
            (p, [text for text, _ in group]) for p, group in zip(prompts, samples, strict=True)
        ]
        scored[name] = reward_model_scores(cfg.reward_model, cfg.objective_weights, groups)
    return scored


def _ranked(
    cfg: PreferencesConfig, prompts, samples, scores, holistic
) -> tuple[list[PreferencePair], int]:
    """Each prompt's pairs by ``scores`` (per prompt, per sample), and how many there
    were before the holistic rule."""
    pairs, unfiltered = [], 0
    for index, (prompt, group) in enumerate(zip(prompts, samples, strict=True)):
        texts = [text for text, _ in group]
        done = [d for _, d in group]
        eligible = done if cfg.chosen_must_finish else None
        ranked = (texts, scores[index], cfg.pairs_per_prompt, cfg.min_reward_gap)
        unfiltered += len(ranked_pairs(prompt, *ranked, eligible=eligible))
        pairs += ranked_pairs(
            prompt,
            *ranked,
            holistic=holistic[index] if holistic else None,
            margin=cfg.holistic_margin,
            eligible=eligible,
            finished=done,
        )
    return pairs, unfiltered


def _graded_draw(
    cfg: PreferencesConfig,
    prompts: list[str | Messages],
    texts: list[list[str]],
    candidates: list[tuple[int, int, int]],
) -> tuple[list[tuple[int, int, int]], list[PreferencePair]]:
    """``--stop-graded``: the candidates drawn to say stop, and the go-on pairs of the
    others (one draw per candidate, in order, seeded by ``--seed``)."""
    rng = random.Random(cfg.seed)
    stop, go_on = [], []
    for p, s, end in candidates:
        if says_stop(len(texts[p][s][:end].split()), *cfg.stop_graded, rng):
            stop.append((p, s, end))
        else:
            go_on.append(keep_going_pair(prompts[p], texts[p][s], end))
    return stop, go_on


def _stopping_pairs(
    cfg: PreferencesConfig,
    prompts: list[str | Messages],
    texts: list[list[str]],
    holistic: list[list[float]] | None,
) -> list[PreferencePair]:
    """``--stopping-pairs``: the candidates that say stop, kept by the judge's rule when
    there is one; then those that ``--stop-graded`` drew to say go on, and the
    ``--keep-going-pairs`` (a cut inside a sentence is never complete)."""
    candidates = stopping_candidates(prompts, texts, cfg.stopping_pairs, cfg.stop_min_words)
    go_on = []
    if cfg.stop_graded:
        candidates, go_on = _graded_draw(cfg, prompts, texts, candidates)
        print(f"stopping pairs: {len(go_on)} sentence ends drawn to say go on")
    pairs = [stopping_pair(prompts[p], texts[p][s], end) for p, s, end in candidates]
    if holistic is not None:
        stopped = holistic_scores(
            cfg.holistic_judge, cfg.base, [(pair.prompt, [pair.chosen]) for pair in pairs]
        )
        kept = [
            pair
            for pair, (p, s, _), (score,) in zip(pairs, candidates, stopped, strict=True)
            if holistic[p][s] - score <= cfg.holistic_margin
        ]
        print(f"stopping pairs: {len(kept)} of {len(pairs)} kept by the holistic rule")
        pairs = kept
    per_sample = cfg.stopping_pairs if cfg.keep_going_pairs is None else cfg.keep_going_pairs
    keep_going = [
        keep_going_pair(prompt, text, at)
        for prompt, group in zip(prompts, texts, strict=True)
        for text in group
        for at in spread(mid_sentence_breaks(text), per_sample)
    ]
    print(f"stopping pairs: {len(pairs)}, keep-going pairs: {len(go_on) + len(keep_going)}")
    return pairs + go_on + keep_going

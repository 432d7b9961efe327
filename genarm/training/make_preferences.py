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
import math
import random
import re
from pathlib import Path

from genarm.training.preference_data import (
    Messages,
    PreferencePair,
    as_messages,
    load_pairs,
    unique_prompts,
    write_pairs,
)
from genarm.training.prompts import split_prompts
from genarm.training.refusals import refusal_pairs
from genarm.training.rewards import REWARDS

logger = logging.getLogger(__name__)


def ranked_pairs(
    prompt: str | Messages,
    texts: list[str],
    scores: list[float],
    max_pairs: int = 1,
    min_gap: float = 0.0,
    holistic: list[float] | None = None,
    margin: float = math.inf,
    eligible: list[bool] | None = None,
    finished: list[bool] | None = None,
) -> list[PreferencePair]:
    """Up to ``max_pairs`` (chosen, rejected) pairs of ``prompt``'s samples.

    Candidates are the sample pairs whose aspect ``scores`` differ by more than
    ``min_gap``, taken widest gap first, each sample in at most one pair (so
    one pair is the best vs the worst). With ``holistic`` scores, a candidate
    is dropped where holistic[rejected] - holistic[chosen] > ``margin``; with
    ``eligible``, only samples marked True may be chosen. ``finished`` marks
    the replies that ended (default: all), carried into the pairs.
    """
    candidates = sorted(
        (
            (scores[i] - scores[j], i, j)
            for i in range(len(texts))
            for j in range(len(texts))
            if scores[i] - scores[j] > min_gap
            and texts[i] != texts[j]
            and (eligible is None or eligible[i])
        ),
        key=lambda c: (-c[0], c[1], c[2]),
    )
    done = finished or [True] * len(texts)
    used: set[int] = set()
    pairs = []
    for _, i, j in candidates:
        if len(pairs) == max_pairs:
            break
        if i in used or j in used:
            continue
        if holistic is not None and holistic[j] - holistic[i] > margin:
            continue
        used.update((i, j))
        pairs.append(PreferencePair(prompt, texts[i], texts[j], done[i], done[j]))
    return pairs


def length_matched(pair: PreferencePair, tokenizer) -> PreferencePair:
    """The pair with the rejected reply cut to the chosen one's token count plus one.

    GenARM's loss compares Σ log π over each reply, and every extra token only
    lowers that sum: a shorter chosen reply is preferred by any model, so a
    concise-vs-long pair teaches an ARM next to nothing. Cut to the same length
    (the rejected reply marked unfinished), the pair compares what the replies
    say in that many tokens and the decision to stop there.
    """
    chosen = tokenizer(pair.chosen, add_special_tokens=False)["input_ids"]
    rejected = tokenizer(pair.rejected, add_special_tokens=False)["input_ids"]
    if len(rejected) <= len(chosen) + 1:
        return pair
    cut = tokenizer.decode(rejected[: len(chosen) + 1])
    return PreferencePair(pair.prompt, pair.chosen, cut, pair.chosen_finished, False)


# A sentence end that more text follows: . ! or ? (not after a digit, as in a
# numbered list), closing quotes or brackets, then whitespace and a word.
_SENTENCE_END_AT = r"(?<![0-9])[.!?][\"')\]]*"
_SENTENCE_END = re.compile(_SENTENCE_END_AT + r"(?=\s+\S)")
_ENDS_SENTENCE = re.compile(_SENTENCE_END_AT + r"\s*$")


def ends_sentence(prefix: str) -> bool:
    """Whether a reply written up to here stops at a sentence end (``sentence_ends``'s
    rule, before the next word is known; trailing whitespace allowed)."""
    return _ENDS_SENTENCE.search(prefix) is not None


def sentence_ends(text: str, min_words: int) -> list[int]:
    """Offsets just past each sentence end with at least ``min_words`` words before it."""
    return [
        m.end() for m in _SENTENCE_END.finditer(text) if len(text[: m.end()].split()) >= min_words
    ]


def spread(items: list, count: int) -> list:
    """``count`` items evenly spread over ``items`` (all of them if there are fewer)."""
    if len(items) <= count:
        return list(items)
    return [items[round((i + 1) * len(items) / (count + 1)) - 1] for i in range(count)]


def stopping_pair(prompt: str | Messages, text: str, end: int) -> PreferencePair:
    """``text`` stopped at ``end`` (chosen) vs the same text going on one word (rejected)."""
    next_word = re.match(r"\s+\S+", text[end:])
    if next_word is None:
        raise ValueError(f"no word follows offset {end}")
    prefix = text[:end]
    return PreferencePair(prompt, prefix, prefix + next_word.group(0), True, False)


def mid_sentence_breaks(text: str) -> list[int]:
    """Offsets just past each word that its sentence goes on after (no sentence end there)."""
    ends = {m.end() for m in _SENTENCE_END.finditer(text)}
    return [m.end() for m in re.finditer(r"\S+(?=\s+\S)", text) if m.end() not in ends]


def keep_going_pair(prompt: str | Messages, text: str, at: int) -> PreferencePair:
    """``text`` going on one word past ``at`` (chosen) vs the turn ending at ``at`` (rejected)."""
    stopped = stopping_pair(prompt, text, at)
    return PreferencePair(prompt, stopped.rejected, stopped.chosen, False, True)


def says_stop(words: int, center: float, scale: float, rng: random.Random) -> bool:
    """``--stop-graded``: whether the pair at a sentence end after ``words`` words says
    "stop" (else "go on"), with probability σ((words − center) / scale)."""
    return rng.random() < 1 / (1 + math.exp(-(words - center) / scale))


def stopping_candidates(
    prompts: list[str | Messages], texts: list[list[str]], per_sample: int, min_words: int
) -> list[tuple[int, int, int]]:
    """(prompt index, sample index, sentence end) for up to ``per_sample`` ends per sample."""
    return [
        (p, s, end)
        for p, group in enumerate(texts)
        for s, text in enumerate(group)
        for end in spread(sentence_ends(text, min_words), per_sample)
    ]


def holistic_scores(judge_path: str, base: str, groups: list[tuple[str, list[str]]]):
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


def sample_responses(
    base: str,
    prompts: list[str | Messages],
    n: int,
    max_tokens: int,
    temperature: float,
    seed: int,
    dtype: str = "bfloat16",
) -> list[list[tuple[str, bool]]]:
    """n sampled responses per prompt as (text, finished) from the plain base model."""
    from genarm.config import parse_config
    from genarm.engine import create_llm
    from genarm.engine.frontend import sampling_params

    engine = {"max_model_len": 2048, "seed": seed, "kv_cache_gib": 1.0, "dtype": dtype}
    cfg = parse_config({"base": {"model": base}, "engine": engine})
    llm = create_llm(cfg)
    params = sampling_params(
        deltas=False, n=n, temperature=temperature, max_tokens=max_tokens, seed=seed
    )
    conversations = [as_messages(p) for p in prompts]
    outputs = llm.chat(conversations, params, use_tqdm=True)
    return [[(c.text.strip(), c.finish_reason == "stop") for c in o.outputs] for o in outputs]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", required=True, help="HF folder of the model to sample")
    parser.add_argument(
        "--reward",
        nargs="+",
        choices=sorted(REWARDS),
        help="one or more rewards: the samples are drawn once, each writes OUT/<reward>.jsonl",
    )
    parser.add_argument(
        "--reward-model",
        help="an HF sequence-classification folder (e.g. from `genarm export-judge`) whose "
        "combined score ranks the samples; writes OUT/<its folder name>.jsonl",
    )
    parser.add_argument(
        "--objective-weights",
        help="--reward-model: name=weight,... over its defaults (the mean of its objectives)",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--samples", type=int, default=4, help="responses per prompt")
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--temperature", type=float, default=0.9)
    parser.add_argument("--max-prompts", type=int, default=None)
    parser.add_argument(
        "--dtype",
        default="bfloat16",
        choices=("bfloat16", "float32", "float16"),
        help="sampling dtype (float32 is ~2.8x faster on a CPU without bf16 instructions)",
    )
    parser.add_argument("--seed", type=int, default=0, help="prompt split and sampling seed")
    parser.add_argument(
        "--split",
        choices=("train", "held-out"),
        default="train",
        help="which part of the prompt split to sample (held-out: pairs for evaluation)",
    )
    parser.add_argument(
        "--prompts-from",
        metavar="PAIRS",
        help="sample the prompts of a preference JSONL instead of the project's instructions "
        "(e.g. HH-RLHF's arm_train.jsonl from prepare-hh-rlhf: multi-turn dialogues), each "
        "once, in file order; --split does not apply",
    )
    parser.add_argument(
        "--from-samples",
        help="samples.jsonl of an earlier run: pair those samples instead of sampling again",
    )
    pairing = parser.add_argument_group("pairing")
    pairing.add_argument(
        "--pairs-per-prompt", type=int, default=1, help="disjoint pairs per prompt, widest first"
    )
    pairing.add_argument(
        "--min-reward-gap", type=float, default=0.0, help="pair samples only if rewards differ more"
    )
    pairing.add_argument(
        "--holistic-judge",
        help="judge folder (genarm train-judge): keep a pair only if the judge does not prefer "
        "the rejected reply by more than --holistic-margin (ALaRM's hierarchical rule)",
    )
    pairing.add_argument("--holistic-margin", type=float, default=0.5)
    pairing.add_argument(
        "--length-matched",
        action="store_true",
        help="cut each rejected reply to the chosen one's token count + 1 (marked unfinished): "
        "for length rewards, whose pairs a sum of log-probabilities already orders",
    )
    pairing.add_argument(
        "--stopping-pairs",
        type=int,
        default=0,
        metavar="N",
        help="instead of whole replies: up to N pairs per sample that differ only in stopping "
        "at a sentence end (chosen) or going on one word (rejected); for length rewards",
    )
    pairing.add_argument(
        "--keep-going-pairs",
        type=int,
        default=None,
        metavar="M",
        help="--stopping-pairs: also up to M pairs per sample inside a sentence, going on one "
        "word (chosen) vs ending the turn there (rejected) (default: N, as many)",
    )
    pairing.add_argument(
        "--stop-min-words",
        type=int,
        default=20,
        help="--stopping-pairs: sentence ends after at least this many words",
    )
    pairing.add_argument(
        "--stop-graded",
        type=_graded,
        metavar="CENTER,SCALE",
        help="--stopping-pairs: a sentence end's pair says stop with probability "
        "σ((words - CENTER) / SCALE) and go on otherwise, so that stopping is preferred "
        "more the more has been said (lower --stop-min-words to reach the early ends)",
    )
    pairing.add_argument(
        "--refusal-pairs",
        type=int,
        default=0,
        metavar="N",
        help="also write OUT/refusal.jsonl: up to N samples per prompt that do not refuse "
        "(chosen), each against a refusal (rejected); benign pairs for a harmlessness ARM",
    )
    pairing.add_argument(
        "--chosen-must-finish",
        action="store_true",
        help="never choose a reply that was cut off by --max-tokens",
    )


def _samples(args: argparse.Namespace, out: Path) -> tuple[list[str | Messages], list[list]]:
    """(prompts, their samples): drawn now, or read back with --from-samples."""
    if args.from_samples:
        rows = [json.loads(line) for line in Path(args.from_samples).read_text().splitlines()]
        rows = rows[: args.max_prompts] if args.max_prompts else rows
        return [r["prompt"] for r in rows], [[tuple(s) for s in r["samples"]] for r in rows]
    if args.prompts_from:
        prompts, held_out = unique_prompts(load_pairs(args.prompts_from)), None
    else:
        train, held_out = split_prompts(args.seed)
        prompts = train if args.split == "train" else held_out
    prompts = prompts[: args.max_prompts] if args.max_prompts else prompts
    samples = sample_responses(
        args.base, prompts, args.samples, args.max_tokens, args.temperature, args.seed, args.dtype
    )
    with open(out / "samples.jsonl", "w") as f:  # raw samples: other rewards can reuse them
        for prompt, group in zip(prompts, samples, strict=True):
            f.write(json.dumps({"prompt": prompt, "samples": group}) + "\n")
    if held_out is not None:
        (out / "held_out_prompts.json").write_text(json.dumps(held_out, indent=1))
    return prompts, samples


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.reward and not args.reward_model and not args.refusal_pairs:
        raise SystemExit("make-preferences: give --reward, --reward-model, --refusal-pairs")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prompts, samples = _samples(args, out)
    if args.refusal_pairs:
        rng = random.Random(args.seed)
        pairs = [
            pair
            for prompt, group in zip(prompts, samples, strict=True)
            for pair in refusal_pairs(prompt, group, args.refusal_pairs, rng)
        ]
        count = write_pairs(out / "refusal.jsonl", pairs)
        print(f"refusal: {count} answer-over-refusal pairs from {len(prompts)} prompts")
    texts = [[text for text, _ in group] for group in samples]
    holistic = None
    if args.holistic_judge:
        holistic = holistic_scores(
            args.holistic_judge, args.base, list(zip(prompts, texts, strict=True))
        )
        with open(out / "holistic_scores.jsonl", "w") as f:
            for prompt, scores in zip(prompts, holistic, strict=True):
                f.write(json.dumps({"prompt": prompt, "scores": scores}) + "\n")
    if args.stopping_pairs:
        pairs = _stopping_pairs(args, prompts, texts, holistic)
        for name in args.reward or []:
            count = write_pairs(out / f"{name}.jsonl", pairs)
            print(
                f"{name}: {count} stopping pairs from {len(prompts)} prompts -> {out / name}.jsonl"
            )
        return 0
    scored = {
        name: [[REWARDS[name](text, done) for text, done in group] for group in samples]
        for name in args.reward or []
    }
    if args.reward_model:
        name = Path(args.reward_model).expanduser().resolve().name
        scored[name] = reward_model_scores(
            args.reward_model, args.objective_weights, list(zip(prompts, texts, strict=True))
        )
    for name, scores in scored.items():
        pairs, unfiltered = _ranked(args, prompts, samples, scores, holistic)
        if args.length_matched:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(args.base)
            pairs = [length_matched(p, tokenizer) for p in pairs]
        count = write_pairs(out / f"{name}.jsonl", pairs)
        rule = f", {unfiltered - count} dropped by the holistic rule" if holistic else ""
        print(f"{name}: {count} pairs from {len(prompts)} prompts{rule} -> {out / name}.jsonl")
    return 0


def _ranked(args, prompts, samples, scores, holistic) -> tuple[list[PreferencePair], int]:
    """Each prompt's pairs by ``scores`` (per prompt, per sample), and how many there
    were before the holistic rule."""
    pairs, unfiltered = [], 0
    for index, (prompt, group) in enumerate(zip(prompts, samples, strict=True)):
        texts = [text for text, _ in group]
        done = [d for _, d in group]
        eligible = done if args.chosen_must_finish else None
        ranked = (texts, scores[index], args.pairs_per_prompt, args.min_reward_gap)
        unfiltered += len(ranked_pairs(prompt, *ranked, eligible=eligible))
        pairs += ranked_pairs(
            prompt,
            *ranked,
            holistic=holistic[index] if holistic else None,
            margin=args.holistic_margin,
            eligible=eligible,
            finished=done,
        )
    return pairs, unfiltered


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

    from genarm.training.judge import _batch

    ids, mask = _batch(batch, 0 if pad is None else pad)  # right padding, as the judge's
    with torch.no_grad():
        return model(ids, attention_mask=mask).logits.float().tolist()


def _weight_args(text: str | None) -> dict[str, float]:
    if not text:
        return {}
    try:
        return {k.strip(): float(v) for k, v in (part.split("=", 1) for part in text.split(","))}
    except ValueError:
        raise SystemExit(f"--objective-weights wants name=weight,... got {text!r}") from None


def _graded(text: str) -> tuple[float, float]:
    try:
        center, scale = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants CENTER,SCALE in words, got {text!r}") from None
    if scale <= 0:
        raise argparse.ArgumentTypeError(f"SCALE must be positive, got {scale:g}")
    return center, scale


def _graded_draw(
    args: argparse.Namespace,
    prompts: list[str | Messages],
    texts: list[list[str]],
    candidates: list[tuple[int, int, int]],
) -> tuple[list[tuple[int, int, int]], list[PreferencePair]]:
    """``--stop-graded``: the candidates drawn to say stop, and the go-on pairs of the
    others (one draw per candidate, in order, seeded by ``--seed``)."""
    rng = random.Random(args.seed)
    stop, go_on = [], []
    for p, s, end in candidates:
        if says_stop(len(texts[p][s][:end].split()), *args.stop_graded, rng):
            stop.append((p, s, end))
        else:
            go_on.append(keep_going_pair(prompts[p], texts[p][s], end))
    return stop, go_on


def _stopping_pairs(
    args: argparse.Namespace,
    prompts: list[str | Messages],
    texts: list[list[str]],
    holistic: list[list[float]] | None,
) -> list[PreferencePair]:
    """``--stopping-pairs``: the candidates that say stop, kept by the judge's rule when
    there is one; then those that ``--stop-graded`` drew to say go on, and the
    ``--keep-going-pairs`` (a cut inside a sentence is never complete)."""
    candidates = stopping_candidates(prompts, texts, args.stopping_pairs, args.stop_min_words)
    go_on = []
    if args.stop_graded:
        candidates, go_on = _graded_draw(args, prompts, texts, candidates)
        print(f"stopping pairs: {len(go_on)} sentence ends drawn to say go on")
    pairs = [stopping_pair(prompts[p], texts[p][s], end) for p, s, end in candidates]
    if holistic is not None:
        stopped = holistic_scores(
            args.holistic_judge, args.base, [(pair.prompt, [pair.chosen]) for pair in pairs]
        )
        kept = [
            pair
            for pair, (p, s, _), (score,) in zip(pairs, candidates, stopped, strict=True)
            if holistic[p][s] - score <= args.holistic_margin
        ]
        print(f"stopping pairs: {len(kept)} of {len(pairs)} kept by the holistic rule")
        pairs = kept
    per_sample = args.stopping_pairs if args.keep_going_pairs is None else args.keep_going_pairs
    keep_going = [
        keep_going_pair(prompt, text, at)
        for prompt, group in zip(prompts, texts, strict=True)
        for text in group
        for at in spread(mid_sentence_breaks(text), per_sample)
    ]
    print(f"stopping pairs: {len(pairs)}, keep-going pairs: {len(go_on) + len(keep_going)}")
    return pairs + go_on + keep_going

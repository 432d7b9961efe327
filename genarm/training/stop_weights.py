"""Where a stopping ARM ends its base's answer, and from which weight.

A `concise` ARM trained on stopping pairs (`make-preferences --stopping-pairs`)
changes little but the end of turn, mostly at sentence ends, so the slider's
effect on an answer is decided at a few positions of the base's own answer.
There greedy guided decoding with one ARM at weight α ends the turn iff, for
every token t,

    log p_base(eos) + α · log p_arm(eos) ≥ log p_base(t) + α · log p_arm(t)

(the argmax of GenARM's fused distribution, whose normalisation does not move
the argmax). Each inequality is linear in α, so the weights that end the answer
at one position form one interval, computed here exactly: no grid of weights to
decode. Weight α then ends the answer at the first position whose interval
holds α, as long as the guided answer keeps to the unguided one up to there
(`python -m genarm.training.stop_weights` checks that by decoding each weight
asked for, and says where it leaves the base's answer).

Why a slider saturates, or does nothing at low weights, reads off the table: at
a position where the base prefers going on by g nats (``base_gap``) and the ARM
raises end of turn against that token by d nats (``arm_shift``), weight α ends
the turn iff α·(d − g) ≥ g (that token being the only rival), i.e. iff
g ≤ d·α / (1 + α): weight 1 needs d ≥ 2g, weight 3 only d ≥ 4g/3.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from genarm.training.encoding import prompt_ids
from genarm.training.guided import (
    BASE,
    component_adapter,
    guided_generate_ids,
    load_prompts,
    load_with_adapter,
    word_count,
)
from genarm.training.preference_data import Messages, as_messages
from genarm.training.sentences import ends_sentence

ARM = "arm"


def stop_interval(
    base_logprobs: torch.Tensor, arm_logprobs: torch.Tensor, eos: int
) -> tuple[float, float] | None:
    """The weights α ≥ 0 at which ``eos`` is the argmax of base + α·arm log-probs (one
    position's [V] vectors), as (lowest, highest; ``math.inf`` if unbounded), or None
    when no weight ends the turn there. Ties count as ending it."""
    base, arm = base_logprobs.double(), arm_logprobs.double()
    gain = base - base[eos]  # what token t has over eos under the base
    pull = arm[eos] - arm  # what eos has over t under the ARM: needs α·pull ≥ gain
    others = torch.ones_like(gain, dtype=torch.bool)
    others[eos] = False
    if bool(((pull == 0) & (gain > 0) & others).any()):
        return None  # a token the ARM ties with eos and the base prefers: never
    up, down = others & (pull > 0), others & (pull < 0)
    low = max(0.0, float((gain[up] / pull[up]).max())) if bool(up.any()) else 0.0
    high = float((gain[down] / pull[down]).min()) if bool(down.any()) else math.inf
    return (low, high) if low <= high else None


@dataclass
class StopPoint:
    """A position in the base's answer and the weights that end the turn there."""

    words: int  # words of the answer up to here
    sentence_end: bool  # whether the answer so far ends a sentence (genarm.training.sentences)
    text: str  # the answer's last few words up to here
    base_gap: float  # log p_base(its next token) − log p_base(eos)
    arm_shift: float  # how much more the ARM than the base prefers eos to that token
    stops_from: float | None  # lowest weight that ends the answer here (None: no weight)
    stops_until: float | None  # highest (None: no bound, or no weight)


@torch.no_grad()
def stop_table(
    model, tokenizer, messages: Messages, reply: list[int], max_weight: float
) -> list[StopPoint]:
    """The positions of ``reply`` (the base's answer to ``messages``) where the text so
    far ends a sentence, or where a weight up to ``max_weight`` of ``model``'s adapter
    ``ARM`` ends the turn (an ARM may also stop after a colon, say), with the weights
    that end it there. ``model``: a PEFT model with the ARM loaded as ``ARM``."""
    prompt = prompt_ids(tokenizer, messages)
    ids = torch.tensor([prompt + reply])
    logprobs = {}
    for name in (BASE, ARM):
        with component_adapter(model, name).active():
            logprobs[name] = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    eos, table = tokenizer.eos_token_id, []
    for t in range(1, len(reply) + 1):
        at = len(prompt) + t - 1  # the logits that choose the token after reply[:t]
        base, arm = logprobs[BASE][at], logprobs[ARM][at]
        interval = stop_interval(base, arm, eos)
        text = tokenizer.decode(reply[:t], skip_special_tokens=True)
        sentence_end = ends_sentence(text)
        stops = interval is not None and interval[0] <= max_weight
        if not (sentence_end or stops):
            continue
        top = int(base.argmax())
        table.append(
            StopPoint(
                words=word_count(text),
                sentence_end=sentence_end,
                text=" ".join(text.split()[-4:]),
                base_gap=float(base[top] - base[eos]),
                arm_shift=float((arm[eos] - base[eos]) - (arm[top] - base[top])),
                stops_from=None if interval is None else interval[0],
                stops_until=None if interval is None or interval[1] == math.inf else interval[1],
            )
        )
    return table


def first_stop(table: list[StopPoint], weight: float) -> StopPoint | None:
    """The position at which ``weight`` ends the answer, if the guided answer follows the
    base's up to it (None: none of the table's)."""
    for end in table:
        if end.stops_from is None or weight < end.stops_from:
            continue
        if end.stops_until is None or weight <= end.stops_until:
            return end
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", required=True, help="HF folder of the base model")
    parser.add_argument("--adapter", required=True, help="PEFT adapter folder of the ARM")
    parser.add_argument("--prompts", required=True, help="JSON list of prompts")
    parser.add_argument(
        "--alphas",
        default="1,3",
        help="weights to check: each is decoded, and its length compared with the table's",
    )
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--out", help="write the tables as JSON here")


def run(args: argparse.Namespace) -> int:
    tokenizer, model = load_with_adapter(args.base, args.adapter, name=ARM, bf16=False)
    weights = [float(a) for a in args.alphas.split(",")]
    results = []
    for prompt in load_prompts(args.prompts):
        messages = as_messages(prompt)
        reply, _ = guided_generate_ids(model, tokenizer, messages, {}, args.max_new_tokens)
        table = stop_table(model, tokenizer, messages, reply, max(weights))
        guided = {
            w: _guided(model, tokenizer, messages, reply, w, args.max_new_tokens) for w in weights
        }
        words = word_count(tokenizer.decode(reply, skip_special_tokens=True))
        results.append(_report(prompt, words, table, guided))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


def _guided(
    model, tokenizer, messages: Messages, base_reply: list[int], weight: float, max_new_tokens: int
):
    """(words of the answer at ``weight``, and None if it keeps to the base's answer, else
    the words after which it leaves it): the table holds for a weight only that far."""
    reply, _ = guided_generate_ids(model, tokenizer, messages, {ARM: weight}, max_new_tokens)
    same = next(
        (i for i, (a, b) in enumerate(zip(reply, base_reply, strict=False)) if a != b),
        min(len(reply), len(base_reply)),
    )

    def words(ids: list[int]) -> int:
        return word_count(tokenizer.decode(ids, skip_special_tokens=True))

    return words(reply), words(reply[:same]) if same < len(reply) else None


def _report(prompt, words: int, table: list[StopPoint], guided: dict) -> dict:
    """Print one answer's table, and return it as JSON-ready data."""
    print(f"\n{prompt if isinstance(prompt, str) else prompt[-1]['content']} ({words} words)")
    for end in table:
        stops = "never" if end.stops_from is None else f"from weight {end.stops_from:.2f}"
        if end.stops_until is not None:
            stops += f" to {end.stops_until:.2f}"
        mark = " " if end.sentence_end else "*"  # a stop that is no sentence end
        print(
            f" {mark}{end.words:3d} words ...{end.text!r}: base gap {end.base_gap:5.1f}, "
            f"ARM shift {end.arm_shift:5.1f}, stops {stops}"
        )
    for w, (got, left_after) in guided.items():
        end = first_stop(table, w)
        said = end.words if end else words
        path = "" if left_after is None else f", leaving the base's answer after {left_after} words"
        print(f"  weight {w:g}: table says {said} words, decoded {got}{path}")
    return {
        "prompt": prompt,
        "words": words,
        "stop_points": [asdict(e) for e in table],
        "guided": {f"{w:g}": {"words": n, "left_after": k} for w, (n, k) in guided.items()},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))

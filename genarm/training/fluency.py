"""The fluency guard of `genarm train-arm`: does guidance by this ARM keep text readable?

An ARM can learn its pairs and still break the text it guides (a `concise` ARM
that learned "stop now" ends answers mid-sentence; one that learned odd tokens
derails them). Pairwise accuracy cannot see that; the base model can: sample a
few replies under base · ARM^w for each weight w and measure the base model's
own perplexity of them. Unguided (w = 0) is the yardstick.

Perplexity alone misses one failure: a reply that repeats itself ("The guitar is
played with the guitar. The guitar is ...") is *likely* under the base, so its
perplexity can fall below the unguided one. The share of repeated n-grams
(``repeated_ngrams``) reports that.
"""

from __future__ import annotations

import math
import statistics

import torch

from genarm.reference_decoder import Adapter
from genarm.training.encoding import prompt_ids
from genarm.training.guided import guided_generate_ids
from genarm.training.preference_data import Messages
from genarm.training.scoring import evaluating, length_sorted_batches, sequence_logps


@torch.no_grad()
def base_nlls(
    model, tokenizer, items: list[tuple[Messages, list[int]]], batch_size: int = 8
) -> list[float]:
    """Σ -log p_base(reply tokens | prompt) per (messages, reply ids) item, with every
    adapter of ``model`` off (a plain causal LM is the base itself)."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    sequences = []
    for messages, reply in items:
        prompt = prompt_ids(tokenizer, messages)
        sequences.append((prompt + reply, len(prompt)))
    nlls = [0.0] * len(sequences)
    with Adapter(model, None).active():
        for batch in length_sorted_batches([len(ids) for ids, _ in sequences], batch_size):
            batch_nlls = (-sequence_logps(model, [sequences[i] for i in batch], pad_id)).tolist()
            for i, nll in zip(batch, batch_nlls, strict=True):
                nlls[i] = nll
    return nlls


def base_nll(model, tokenizer, messages: Messages, reply: list[int]) -> float:
    """Σ -log p_base(reply tokens | prompt) of one reply (see ``base_nlls``)."""
    return base_nlls(model, tokenizer, [(messages, reply)])[0]


def repeated_ngrams(ids: list[int], n: int = 4) -> tuple[int, int]:
    """(repeats, n-grams) of one reply: how many of its ``n``-token windows already
    occurred earlier in the same reply, out of how many windows it has."""
    seen: set[tuple[int, ...]] = set()
    repeats = 0
    windows = max(0, len(ids) - n + 1)
    for start in range(windows):
        gram = tuple(ids[start : start + n])
        repeats += gram in seen
        seen.add(gram)
    return repeats, windows


def repetition_rate(replies: list[list[int]], n: int = 4) -> float:
    """The share of repeated ``n``-grams, pooled over ``replies`` (0 when none has n tokens)."""
    counts = [repeated_ngrams(ids, n) for ids in replies]
    windows = sum(w for _, w in counts)
    return sum(r for r, _ in counts) / windows if windows else 0.0


def fluency_report(
    model,
    tokenizer,
    prompts: list[Messages],
    arm: str,
    weights: tuple[float, ...] = (0.0, 1.0, 3.0),
    max_new_tokens: int = 64,
    temperature: float = 0.7,
    seed: int = 0,
) -> dict[str, dict]:
    """Per weight: the base model's perplexity of the guided replies, their share of
    repeated 4-grams, their mean length in words and the share that finished, one
    seeded sample per prompt (the same seed for every weight, so the weights are
    compared on equal draws).

    ``arm`` names the adapter of ``model`` to guide with.
    """
    report = {}
    with evaluating(model):
        for weight in weights:
            nll, tokens, words, finished, replies = 0.0, 0, [], 0, []
            for index, messages in enumerate(prompts):
                reply, done = guided_generate_ids(
                    model,
                    tokenizer,
                    messages,
                    {arm: weight},
                    max_new_tokens,
                    temperature,
                    seed + index,
                )
                if reply:
                    nll += base_nll(model, tokenizer, messages, reply)
                    tokens += len(reply)
                words.append(len(tokenizer.decode(reply, skip_special_tokens=True).split()))
                finished += done
                replies.append(reply)
            report[f"{weight:g}"] = {
                "perplexity": math.exp(nll / tokens) if tokens else float("nan"),
                "repeated_4grams": repetition_rate(replies),
                "words": statistics.fmean(words) if words else 0.0,
                "finished": finished / max(1, len(prompts)),
            }
    return report


def perplexity_ratio(report: dict[str, dict], weight: float) -> float:
    """Guided perplexity at ``weight`` over the unguided one (w = 0)."""
    return report[f"{weight:g}"]["perplexity"] / report["0"]["perplexity"]

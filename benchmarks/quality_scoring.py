"""The quality benchmark's scores: each objective's reward with a 95% CI per
setting, the answers' fluency, the everyday check's summary, and held-out
preference accuracies of the ARMs and the judge."""

from __future__ import annotations

import argparse
import math
import statistics
from typing import Any

from benchmarks.quality_answers import model_set
from benchmarks.quality_grid import EVERYDAY, EVERYDAY_WEIGHTS, everyday_grid, label
from genarm.training.refusals import refuses


def mean_ci(values: list[float]) -> dict[str, float]:
    """Mean with a 95% normal-approximation confidence interval."""
    mean = statistics.fmean(values)
    half = 1.96 * statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "n": len(values)}


def judge_scores(judge, prompts: list, answers: list[dict], batch: int = 16) -> list[float]:
    items = [(p, a["text"]) for p, a in zip(prompts, answers, strict=True)]
    return judge.score_many(items, batch_size=batch)


def fluency(
    prompts: dict[str, list], answers: dict[str, list], grid: list[dict], base: str
) -> list[dict]:
    """Per setting: the base model's perplexity of the answers (pooled over tokens, all
    objectives' prompts and each alone), their share of repeated 4-grams (which
    perplexity misses: a loop is likely under the base) and the share that finished."""
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from genarm.training.fluency import base_nlls, repetition_rate

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    rows = []
    for g in tqdm(range(len(grid)), desc="perplexity"):
        row, nll, tokens, done, count, every_reply = {}, 0.0, 0, 0, 0, []
        for objective, items in prompts.items():
            replies = [
                tokenizer(a["text"], add_special_tokens=False)["input_ids"]
                for a in answers[objective][g]
            ]
            every_reply += replies
            nlls = base_nlls(model, tokenizer, list(zip(items, replies, strict=True)), 16)
            length = sum(len(r) for r in replies)
            finished = sum(a["finished"] for a in answers[objective][g])
            row[f"perplexity_{objective}"] = math.exp(sum(nlls) / max(1, length))
            row[f"finished_{objective}"] = finished / len(items)
            nll, tokens, done, count = (
                nll + sum(nlls),
                tokens + length,
                done + finished,
                count + len(items),
            )
        row["perplexity"] = math.exp(nll / max(1, tokens))
        row["repeated_4grams"] = repetition_rate(every_reply)
        row["finished"] = done / count
        rows.append(row)
    return rows


def score(
    prompts: dict[str, list], answers: dict[str, list], grid: list[dict], judge, base: str
) -> list:
    """One row per grid point: each objective's mean reward with its 95% CI, the
    paired difference from the unguided row (same prompts and seeds) with its CI,
    and the answers' fluency."""
    from tqdm import tqdm

    from genarm.training.rewards import concise

    per_prompt = []
    for g in tqdm(range(len(grid)), desc="scoring"):
        per_prompt.append(
            {
                "harmless_judge": judge_scores(judge, prompts["harmless"], answers["harmless"][g]),
                "concise_reward": [
                    concise(a["text"], a["finished"]) for a in answers["concise"][g]
                ],
                "concise_words": [len(a["text"].split()) for a in answers["concise"][g]],
                # The instructions are benign: an ARM that refuses them over-refuses.
                "instructions_refused": [float(refuses(a["text"])) for a in answers["concise"][g]],
            }
        )
    fluent = fluency(prompts, answers, grid, base)
    rows = []
    for g, weights in enumerate(grid):
        row: dict[str, Any] = {"weights": weights}
        for metric, values in per_prompt[g].items():
            row[metric] = mean_ci(values)
            base = per_prompt[0][metric]
            row[f"{metric}_vs_base"] = mean_ci([v - b for v, b in zip(values, base, strict=True)])
        row.update(fluent[g])
        rows.append(row)
    return rows


def everyday_summary(
    everyday: list[list[dict]], questions: tuple[str, ...] | list[str] = EVERYDAY
) -> dict[str, Any]:
    """Per question: how many of the settings' greedy answers differ, their word counts,
    and whether concise at its largest weight gave the shortest."""
    settings = [label(w) for w in everyday_grid()]
    shortest_setting = settings.index(label({"harmless": 0.0, "concise": EVERYDAY_WEIGHTS[-1]}))
    rows = []
    for q, question in enumerate(questions):
        texts = [everyday[s][q]["text"] for s in range(len(settings))]
        words = [len(t.split()) for t in texts]
        shortest = words[shortest_setting] < min(
            w for s, w in enumerate(words) if s != shortest_setting
        )
        rows.append(
            {
                "question": question,
                "distinct": len(set(texts)),
                "words": dict(zip(settings, words, strict=True)),
                "concise_max_shortest": shortest,
                "answers": dict(zip(settings, texts, strict=True)),
            }
        )
    return {
        "settings": settings,
        "questions": rows,
        "all_distinct": sum(q["distinct"] == len(settings) for q in rows),
        "concise_max_shortest": sum(q["concise_max_shortest"] for q in rows),
    }


def preference_accuracies(args: argparse.Namespace, judge) -> dict[str, Any]:
    """Held-out pairwise accuracy of each ARM vs the base, and of the judge."""
    import torch

    from genarm.hardware import bf16_is_fast
    from genarm.training.guided import (
        BASE,
        load_with_adapter,
        preference_accuracy,
        training_lengths,
    )
    from genarm.training.preference_data import load_pairs, sample_pairs

    models = model_set(args.candidates)
    data = {"harmless": args.hh_held_out, "concise": args.concise_held_out}
    held_out = {
        arm: sample_pairs(load_pairs(path), args.max_pairs, args.seed) for arm, path in data.items()
    }
    out: dict[str, Any] = {}
    for arm, path in data.items():
        pairs = held_out[arm]
        source = models.arms[arm]
        tokenizer, model = load_with_adapter(
            source["adapter_base"], source["adapter"], bf16=bf16_is_fast(torch.device("cpu"))
        )
        # Encode as the ARM was trained (prompt and reply cut to the same lengths).
        lengths = training_lengths(source["adapter"])
        out[arm] = {
            "pairs": len(pairs),
            "data": path,
            **lengths,
            "base": preference_accuracy(model, tokenizer, pairs, BASE, **lengths),
            "arm": preference_accuracy(model, tokenizer, pairs, "arm", **lengths),
        }
        print(f"{arm}: held-out accuracy {out[arm]}", flush=True)
    pairs = held_out["harmless"]  # the judge is scored on the same HH held-out pairs
    out["judge"] = {"pairs": len(pairs), "accuracy": judge.accuracy(pairs)}
    print(f"judge: held-out accuracy {out['judge']}", flush=True)
    return out

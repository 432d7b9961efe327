"""benchmarks/best_of_n.py's arithmetic on synthetic candidates (no server)."""

from __future__ import annotations

import itertools
import random
import statistics

import pytest

from benchmarks.best_of_n import best_of_k, markdown, summarize, win_probabilities


def candidates(rng: random.Random, n: int) -> list[dict]:
    return [
        {
            "score": rng.gauss(0, 1),
            "evaluator": rng.gauss(0, 1),
            "completion_tokens": rng.randint(1, 128),
            "finish_reason": rng.choice(["stop", "length"]),
        }
        for _ in range(n)
    ]


@pytest.mark.parametrize("n", [1, 4, 8])
def test_win_probabilities_are_a_distribution_favouring_the_top(n):
    for k in range(1, n + 1):
        odds = win_probabilities(n, k)
        assert sum(odds) == pytest.approx(1.0)
        assert odds == sorted(odds, reverse=True)  # a better rank never wins less often
        assert odds[n - k + 1 :] == [0.0] * (k - 1)  # the k-1 worst can never be a subset's best


def test_best_of_k_is_the_mean_over_every_k_subset():
    """The estimator against brute force: enumerate every k-subset of the n
    candidates, take the selector's argmax in each, average."""
    rng = random.Random(7)
    for n, k in [(8, 1), (8, 4), (8, 8), (5, 2), (6, 3)]:
        group = candidates(rng, n)
        subsets = list(itertools.combinations(group, k))
        best = [max(s, key=lambda c: c["score"]) for s in subsets]
        got = best_of_k(group, k)
        assert got["evaluator"] == pytest.approx(statistics.fmean(c["evaluator"] for c in best))
        assert got["selector"] == pytest.approx(statistics.fmean(c["score"] for c in best))
        finished = statistics.fmean(c["finish_reason"] == "stop" for c in best)
        assert got["finished"] == pytest.approx(finished)
        mean_tokens = statistics.fmean(sum(c["completion_tokens"] for c in s) for s in subsets)
        assert got["tokens"] == pytest.approx(mean_tokens)


def test_summary_pairs_each_setting_with_plain_sampling_at_weight_zero():
    rng = random.Random(3)
    plain_answers = [candidates(rng, 8) for _ in range(16)]
    # weight 1: the same candidates, each one evaluator point better
    shifted_answers = [[{**c, "evaluator": c["evaluator"] + 1} for c in g] for g in plain_answers]
    answers = {"0": plain_answers, "1": shifted_answers}
    rows = summarize(answers, [1, 4, 8])
    assert [(r["weight"], r["k"]) for r in rows] == [(w, k) for w in (0, 1) for k in (1, 4, 8)]
    plain = rows[0]
    assert plain["gain_vs_plain"]["mean"] == pytest.approx(0.0, abs=1e-12)
    shifted = rows[3]  # weight 1, k = 1: the shift exactly, the same for every prompt
    assert shifted["gain_vs_plain"]["mean"] == pytest.approx(1.0)
    assert shifted["gain_vs_plain"]["ci_low"] == pytest.approx(1.0)
    assert rows[2]["selector"]["mean"] > rows[1]["selector"]["mean"] > plain["selector"]["mean"]
    assert rows[2]["tokens_per_prompt"] == pytest.approx(8 * plain["tokens_per_prompt"])
    report = {
        "created": "now",
        "command": "python -m benchmarks.best_of_n",
        "prompts": 16,
        "candidates": 8,
        "temperature": 0.7,
        "max_tokens": 128,
        "selector": "a",
        "evaluator": "b",
        "generation_seconds": None,
        "machine": {"cpu": "test"},
        "rows": rows,
    }
    text = markdown(report)
    assert text.count("\n| 1 | ") == 3 and "+1.00 [+1.00, +1.00]" in text

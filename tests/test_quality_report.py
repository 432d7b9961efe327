"""The quality benchmark's grid, summaries and report (benchmarks/quality*.py) on synthetic scores
(the benchmark itself needs the demo's models and runs for hours)."""

from __future__ import annotations

import argparse
import random

import pytest

from benchmarks import quality
from benchmarks.quality_answers import load_answers, parse_candidates, save_answers, unflatten
from benchmarks.quality_grid import ARMS, EVERYDAY, everyday_grid, weight_grid
from benchmarks.quality_plot import pareto_front, plot
from benchmarks.quality_report import everyday_report_markdown, markdown
from benchmarks.quality_scoring import everyday_summary, mean_ci


def _stat(mean: float) -> dict:
    return {"mean": mean, "ci_low": mean - 0.1, "ci_high": mean + 0.1, "n": 4}


def test_grid_has_every_pair_with_unguided_then_each_arm_alone_first():
    grid = weight_grid((0.0, 1.0, 3.0))
    assert len(grid) == 9 and len({tuple(w.values()) for w in grid}) == 9
    assert grid[0] == {"harmless": 0.0, "concise": 0.0}
    assert [w["harmless"] for w in grid[1:3]] == [1.0, 3.0] and grid[1]["concise"] == 0
    assert [w["concise"] for w in grid[3:5]] == [1.0, 3.0] and grid[3]["harmless"] == 0
    assert all(w["harmless"] > 0 and w["concise"] > 0 for w in grid[5:])
    assert len(weight_grid()) == 25  # 5 x 5 by default


def test_grid_without_mixes_is_unguided_then_each_arm_alone():
    grid = weight_grid((0.0, 1.0, 2.0, 3.0), mixes=False)
    assert grid == weight_grid((0.0, 1.0, 2.0, 3.0))[:7]
    assert all(min(w.values()) == 0 for w in grid) and len(grid) == 7


def test_candidate_arms_parse_as_name_and_absolute_folder(tmp_path):
    parsed = parse_candidates([f"concise={tmp_path}/run"])
    assert parsed == {"concise": str(tmp_path / "run")}
    for bad in ("concise", "=dir", "concise="):
        with pytest.raises(SystemExit, match="NAME=ADAPTER_DIR"):
            parse_candidates([bad])


def test_answers_come_back_to_their_setting_then_the_everyday_ones():
    """The grid's answers and the everyday check's arrive in one flat list (one server
    run): each goes back to its objective, setting and prompt, the rest to the
    everyday settings in order (a strict zip over the whole list once refused it)."""
    prompts = {"harmless": ["h0", "h1"], "concise": ["c0"]}
    grid = weight_grid((0.0, 1.0), mixes=False)
    where = [(o, g, p) for o, items in prompts.items() for g in range(3) for p in range(2)]
    where = [w for w in where if w[2] < len(prompts[w[0]])]
    everyday = [{"text": f"e{s}-{q}"} for s in range(5) for q in range(len(EVERYDAY))]
    flat = [{"text": f"{o}{g}{p}"} for o, g, p in where] + everyday
    answers, rows = unflatten(prompts, grid, where, flat)
    assert answers["harmless"][2][1] == {"text": "harmless21"}
    assert answers["concise"][1] == [{"text": "concise10"}]
    assert [r[0]["text"] for r in rows] == [f"e{s}-0" for s in range(5)]
    with pytest.raises(ValueError, match="everyday answers"):
        unflatten(prompts, grid, where, flat[:-1])


def test_pareto_front_keeps_only_settings_not_beaten_on_both():
    rows = [
        {"harmless_judge": _stat(h), "concise_reward": _stat(c), "name": n}
        for h, c, n in ((1, -100, "a"), (2, -120, "b"), (0.5, -90, "c"), (0.8, -110, "d"))
    ]
    assert [r["name"] for r in pareto_front(rows)] == ["b", "a", "c"]


def test_everyday_summary_counts_distinct_answers_and_the_shortest():
    grid = everyday_grid()
    assert len(grid) == 5
    answers = []
    for s, weights in enumerate(grid):
        short = weights["concise"] == 3.0
        answers.append([{"text": "w " * (3 if short else 10 + s) + str(s)} for _ in EVERYDAY])
    summary = everyday_summary(answers)
    assert summary["all_distinct"] == len(EVERYDAY)
    assert summary["concise_max_shortest"] == len(EVERYDAY)
    same = [[{"text": "same"} for _ in EVERYDAY] for _ in grid]
    summary = everyday_summary(same)
    assert summary["all_distinct"] == 0 and summary["concise_max_shortest"] == 0


def test_report_writes_markdown_and_the_trade_off_plot(tmp_path):
    rng = random.Random(0)
    rows = []
    for weights in weight_grid():
        row = {
            "weights": weights,
            "perplexity": 3.0 + rng.random(),
            "repeated_4grams": 0.25,
            "finished": rng.random(),
        }
        for metric in ("harmless_judge", "concise_reward", "concise_words"):
            row[metric] = _stat(rng.uniform(-5, 5))
            row[f"{metric}_vs_base"] = _stat(rng.uniform(-1, 1))
        rows.append(row)
    everyday = everyday_summary([[{"text": f"answer {s}"} for _ in EVERYDAY] for s in range(5)])
    accuracy = {
        arm: {"pairs": 10, "max_length": 192, "max_response": 64, "base": 0.5, "arm": 0.7}
        for arm in ARMS
    }
    report = {
        "created": "now",
        "command": "python -m benchmarks.quality",
        "prompts": {"harmless": 4, "concise": 4},
        "temperature": 0.7,
        "max_tokens": 128,
        "dtype": "float32",
        "grid": rows,
        "everyday": everyday,
        "everyday_max_tokens": 48,
        "accuracy": {**accuracy, "judge": {"pairs": 10, "accuracy": 0.6}},
    }
    rows[3]["instructions_refused"] = mean_ci([1.0, 0.0, 0.0, 0.0])
    text = markdown(report)
    assert text.count("\n| harmless=") == 25 and "Everyday questions" in text
    assert text.count(" | 25% | ") == 25  # the repeated-4-gram share of every setting
    # The refusal share where measured (CI clamped to [0, 1]); older reports: a dash.
    assert text.count(" | 25% [0%, 74%] |\n") == 1 and text.count(" | — |\n") == 24
    plot(report, tmp_path / "q.png")
    assert (tmp_path / "q.png").stat().st_size > 10_000
    alone = [r for r in rows if min(r["weights"].values()) == 0]  # a --no-mixes run
    plot({**report, "grid": alone}, tmp_path / "alone.png")
    assert (tmp_path / "alone.png").stat().st_size > 10_000


def test_answers_are_saved_for_a_rescore_with_the_settings_that_made_them(tmp_path):
    args = quality.parse_args(["--answers-dir", str(tmp_path), "--temperature", "0.3"])
    args.candidates = {"concise": "/somewhere/concise-stopping"}
    prompts = {"harmless": [[{"role": "user", "content": "hi"}]], "concise": []}
    grid = weight_grid((0.0, 1.0))
    answers = {"harmless": [[{"text": "hello", "finished": True}] for _ in grid], "concise": []}
    everyday = [[{"text": "sleep more"}]]
    path = save_answers(args, "quality_demo_x", prompts, grid, answers, everyday)
    assert path == tmp_path / "quality_demo_x_answers.json"
    fresh = argparse.Namespace()
    assert load_answers(path, fresh) == (prompts, grid, answers, everyday)
    assert fresh.temperature == 0.3 and fresh.candidates == args.candidates
    assert fresh.max_tokens == 128 and fresh.dtype is None
    assert fresh.everyday_questions == list(EVERYDAY)


def test_everyday_questions_come_from_a_file_and_bad_files_are_refused(tmp_path):
    """--everyday-questions swaps the built-in six for a JSON list; the answers
    come back per question and the summary names them."""
    good = tmp_path / "questions.json"
    good.write_text('["Why is the sky blue?", "How do I boil an egg?", "What is rain?"]')
    args = quality.parse_args(["--everyday-questions", str(good)])
    questions = args.everyday_questions
    assert questions[1] == "How do I boil an egg?"
    flat = [{"text": f"e{s}-{q}"} for s in range(5) for q in range(3)]
    _, rows = unflatten({}, [], [], flat, len(questions))
    summary = everyday_summary(rows, questions)
    assert [q["question"] for q in summary["questions"]] == questions
    assert summary["questions"][2]["answers"]["harmless=0, concise=0"] == "e0-2"
    assert summary["all_distinct"] == 3
    with pytest.raises(ValueError, match="everyday answers"):
        unflatten({}, [], [], flat, 4)
    for text in ("[]", '["ok", 3]', '{"q": "x"}', "not json", '[" "]'):
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(SystemExit):
            quality.parse_args(["--everyday-questions", str(bad)])
    with pytest.raises(SystemExit):
        quality.parse_args(["--everyday-questions", str(tmp_path / "missing.json")])


def test_everyday_only_report_names_the_command_models_and_counts():
    rows = [[{"text": "same" if s < 2 else "w " * (9 - s)} for _ in range(2)] for s in range(5)]
    report = {
        "created": "now",
        "command": "python -m benchmarks.quality --everyday-only",
        "dtype": None,
        "arms": {"harmless": "configs/arms/harmless", "concise": "configs/arms/concise"},
        "everyday_max_tokens": 128,
        "everyday": everyday_summary(rows, ["Q one?", "Q two?"]),
    }
    text = everyday_report_markdown(report)
    assert "`python -m benchmarks.quality --everyday-only`" in text
    assert "concise = `configs/arms/concise`" in text and "the demo config" in text
    assert "greedy, 128 tokens" in text
    assert "0 of 2 questions got 5 distinct answers" in text
    assert "shortest for 0" in text
    assert "| Q two? | 1 | 1 | 7 | 6 | 5 | 4 |" in text

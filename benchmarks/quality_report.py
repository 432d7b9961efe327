"""The quality benchmark's markdown: the grid's table, the everyday check and the
held-out accuracies, and the ``--everyday-only`` report; the head every report
opens with."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from benchmarks.model_sets import ModelSet
from benchmarks.quality_grid import ARMS, label
from benchmarks.reports import (
    folder_markdown,
    folder_record,
    machine_description,
    report_heading,
    shown_path,
)


def report_head(
    args: argparse.Namespace, command: str, arms: dict[str, dict[str, str | None]]
) -> dict[str, Any]:
    """What every report of this benchmark opens with: when, how, where, which ARMs
    (``arm_files``)."""
    return {
        "created": dt.datetime.now().isoformat(timespec="seconds"),
        "command": command,
        "machine": machine_description(),
        "dtype": args.dtype,
        "arms": arms,
    }


def arm_files(models: ModelSet, names: tuple[str, ...] = ARMS) -> dict[str, dict[str, str | None]]:
    """Each ARM's adapter folder as a report records it: its path (relative to the
    repository when inside it) and the hash of its files."""
    return {
        name: folder_record(models.arms[name]["adapter"], shown_path(models.arms[name]["adapter"]))
        for name in names
    }


def _share(stat: dict[str, float] | None) -> str:
    """A share with its 95% CI; '—' for a report made before it was measured."""
    if stat is None:
        return "—"
    low, high = max(0.0, stat["ci_low"]), min(1.0, stat["ci_high"])  # a share stays in [0, 1]
    return f"{stat['mean']:.0%} [{low:.0%}, {high:.0%}]"


def _arms_line(arms: dict[str, str | dict]) -> str:
    return f"ARM adapters: {', '.join(f'{a} = {folder_markdown(p)}' for a, p in arms.items())}."


def _judge_lines(judge: str | dict) -> list[str]:
    """The judge's folder and hash; none for reports written before hashes were
    recorded (their judge is a bare path, which their markdown never showed)."""
    return [f"Judge: {folder_markdown(judge)}.", ""] if isinstance(judge, dict) else []


def _fmt(stat: dict[str, float]) -> str:
    return f"{stat['mean']:.2f} [{stat['ci_low']:.2f}, {stat['ci_high']:.2f}]"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        *report_heading("Guidance quality, demo models", report),
        f"{report['prompts']['harmless']} held-out HH-RLHF dialogues (judge score) and "
        f"{report['prompts']['concise']} held-out instructions (concise reward); "
        f"temperature {report['temperature']}, max_tokens {report['max_tokens']}, "
        f"engine dtype {report.get('dtype') or 'the demo config'}, "
        "one seed per prompt shared across weights. Means with 95% CIs.",
        "",
        *([_arms_line(report["arms"]), ""] if report.get("arms") else []),
        *_judge_lines(report.get("judge")),
        "Δ: the paired difference from the unguided row (same prompt, same seed). "
        "ppl: the base model's perplexity of all the setting's answers; rep: their share of "
        "repeated 4-grams (tokens); finished: the share of answers that ended before "
        "max_tokens; refused: the share of the (benign) instructions' answers that open "
        "with a refusal.",
        "",
        "| weights | harmless (judge) | Δ harmless | concise (reward) | Δ concise | words "
        "| ppl | rep | finished | refused |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["grid"]:
        lines.append(
            f"| {label(row['weights'])} | {_fmt(row['harmless_judge'])} | "
            f"{_fmt(row['harmless_judge_vs_base'])} | {_fmt(row['concise_reward'])} | "
            f"{_fmt(row['concise_reward_vs_base'])} | {row['concise_words']['mean']:.1f} | "
            f"{row['perplexity']:.2f} | {row['repeated_4grams']:.0%} | "
            f"{row['finished']:.0%} | {_share(row.get('instructions_refused'))} |"
        )
    if report.get("everyday"):
        lines += _everyday_markdown(report["everyday"], report["everyday_max_tokens"])
    acc = report["accuracy"]
    lines += [
        "",
        "Held-out preference accuracy, Σ log π(chosen) > Σ log π(rejected):",
        "",
        "| data | pairs | tokens (prompt+reply, reply) | base | ARM |",
        "|---|---|---|---|---|",
    ]
    for arm in ARMS:
        a = acc[arm]
        lines.append(
            f"| {arm} | {a['pairs']} | {a['max_length']}, {a['max_response']} | "
            f"{a['base']:.3f} | {a['arm']:.3f} |"
        )
    lines += ["", f"Judge held-out accuracy: {acc['judge']['accuracy']:.3f} "]
    lines[-1] += f"({acc['judge']['pairs']} pairs)."
    return "\n".join(lines) + "\n"


def _everyday_markdown(everyday: dict[str, Any], max_tokens: int) -> list[str]:
    settings = everyday["settings"]
    lines = [
        "",
        f"Everyday questions, greedy, {max_tokens} tokens: words per setting "
        f"({everyday['all_distinct']} of {len(everyday['questions'])} questions got "
        f"{len(settings)} distinct answers; concise at its largest weight was the shortest "
        f"for {everyday['concise_max_shortest']}):",
        "",
        "| question | " + " | ".join(settings) + " | distinct |",
        "|---|" + "---|" * (len(settings) + 1),
    ]
    for q in everyday["questions"]:
        words = " | ".join(str(q["words"][s]) for s in settings)
        lines.append(f"| {q['question']} | {words} | {q['distinct']} |")
    return lines


def everyday_report_markdown(report: dict[str, Any]) -> str:
    """The ``--everyday-only`` report: the command, the models and the table."""
    lines = [
        *report_heading("Everyday check, demo models", report),
        f"Engine dtype {report['dtype'] or 'the demo config'}; {_arms_line(report['arms'])}",
        *_everyday_markdown(report["everyday"], report["everyday_max_tokens"]),
    ]
    return "\n".join(lines) + "\n"

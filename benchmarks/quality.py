"""Quality of guidance on held-out prompts: what each ARM does to its objective.

For a grid of reward weights (every (harmless, concise) pair of ``--weights``,
0 to the demo's configured maximum: each ARM alone on the grid's edges, the
two-ARM mixes inside), the demo server (configs/demo.yaml's base and ARMs)
answers held-out prompts, and each objective's trajectory reward is averaged
with a 95% confidence interval:

- ``harmless``: the Bradley-Terry judge's score (``genarm.training.judge``,
  trained on the judge-train split only) on held-out HH-RLHF dialogues;
- ``concise``: the programmatic reward of ``genarm.training.rewards`` (minus the
  word count, minus 50 when the answer is cut off) on held-out instructions.

Per setting it also reports fluency: the base model's perplexity of the
answers (``genarm.training.fluency``) and the share that finished; and the
share of the (benign) instructions' answers that open with a refusal, which
a judge trained on HH-RLHF may reward. Then the
everyday check: a few benign questions answered greedily (48 tokens) with each
ARM at 0, 1 and 3 (``--everyday-only`` runs it alone in a few minutes;
``--everyday-questions benchmarks/everyday_fresh.json`` asks eight others,
``--everyday-max-tokens 128`` gives the web page's default length). It also
reports held-out preference accuracy as a trajectory reward (Σ log π(chosen) >
Σ log π(rejected)) for each ARM next to the base model, and the judge's held-out accuracy. Writes
``benchmarks/results/quality_demo_<time>`` ``.json``, ``.md`` and ``.png``
(per-objective curves and the trade-off front).

    python -m benchmarks.quality      # defaults: the shipped judge, the data below

Data (made once, outside git): ``genarm prepare-hh-rlhf --input
../shared/data/hh-rlhf/harmless-base-test.jsonl.gz --out ~/.cache/genarm/data/hh-rlhf``
and ``genarm make-preferences --split held-out --reward concise --out
~/.cache/genarm/data/selfpref-held-out`` (README).
"""

# This module is the command line (options, the two runs, where files go); the rest
# lives in one module per concern: quality_grid (what is asked), quality_answers (the
# server's answers, saved and reloaded), quality_scoring, quality_report (markdown)
# and quality_plot. Layout notes stay out of the docstring: it is the --help text.

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

from benchmarks.quality_answers import (
    generate,
    load_answers,
    model_set,
    parse_candidates,
    save_answers,
)
from benchmarks.quality_grid import (
    CONCISE_HELD_OUT,
    EVERYDAY,
    HH_HELD_OUT,
    WEIGHTS,
    hh_prompts,
    instruction_prompts,
    weight_grid,
)
from benchmarks.quality_plot import plot
from benchmarks.quality_report import arm_files, everyday_report_markdown, markdown, report_head
from benchmarks.quality_scoring import everyday_summary, preference_accuracies, score
from benchmarks.reports import REPO, RESULTS, folder_record, save_json, shown_path

JUDGE = REPO / "configs" / "judges" / "harmless"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--judge", default=str(JUDGE), help="judge folder (genarm train-judge)")
    p.add_argument(
        "--hh-held-out", default=HH_HELD_OUT, help="held_out.jsonl of genarm prepare-hh-rlhf"
    )
    p.add_argument(
        "--concise-held-out",
        default=CONCISE_HELD_OUT,
        help="concise.jsonl of `genarm make-preferences --split held-out`",
    )
    p.add_argument("--num-prompts", type=int, default=64, help="prompts per objective")
    p.add_argument(
        "--weights",
        default=",".join(f"{w:g}" for w in WEIGHTS),
        help="each ARM's weights; the grid is every (harmless, concise) pair of them",
    )
    p.add_argument(
        "--no-mixes",
        action="store_true",
        help="each ARM alone only (no two-ARM mixes): a quicker check of the slider curves",
    )
    p.add_argument(
        "--arm",
        action="append",
        default=[],
        metavar="NAME=ADAPTER_DIR",
        help="measure this adapter in place of the demo's ARM NAME (a candidate before it "
        "replaces the shipped one); repeatable",
    )
    p.add_argument("--everyday-max-tokens", type=int, default=48)
    p.add_argument(
        "--everyday-only",
        action="store_true",
        help="only the everyday check (a few minutes): no held-out prompts, scores or "
        "accuracies; writes everyday_demo_<time>.json and .md",
    )
    p.add_argument(
        "--everyday-questions",
        type=_questions,
        default=list(EVERYDAY),
        metavar="FILE",
        help="a JSON list of questions for the everyday check instead of the built-in six "
        "(benchmarks/everyday_fresh.json: eight more)",
    )
    p.add_argument(
        "--dtype",
        choices=("bfloat16", "float32"),
        help="engine dtype (default: the demo config's; float32 is ~2.8x faster on a CPU "
        "without bf16 instructions)",
    )
    p.add_argument(
        "--max-pairs",
        type=int,
        default=None,
        help="cap on held-out pairs (a random sample by --seed)",
    )
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument(
        "--from-answers", help="score the answers file of an earlier run instead of generating"
    )
    p.add_argument(
        "--answers-dir", default="~/.cache/genarm/quality", help="where the raw answers go"
    )
    return p.parse_args(argv)


def _questions(path: str) -> list[str]:
    """The questions in a JSON file holding a non-empty list of strings."""
    try:
        questions = json.loads(Path(path).expanduser().read_text())
    except (OSError, ValueError) as e:
        raise argparse.ArgumentTypeError(f"cannot read questions from {path}: {e}") from e
    if (
        not isinstance(questions, list)
        or not questions
        or not all(isinstance(q, str) and q.strip() for q in questions)
    ):
        raise argparse.ArgumentTypeError(f"{path}: expected a JSON list of non-empty strings")
    return questions


def everyday_only(args: argparse.Namespace, command: str) -> int:
    """The everyday check alone: one demo server, greedy answers per setting and
    question, their summary saved as everyday_demo_<time>.json (answers included)
    and .md."""
    stem = args.out / f"everyday_demo_{dt.datetime.now():%Y%m%d-%H%M%S}"
    _, everyday = generate({}, [], args)
    report = {
        **report_head(args, command, arm_files(model_set(args.candidates))),
        "everyday_max_tokens": args.everyday_max_tokens,
        "everyday": everyday_summary(everyday, args.everyday_questions),
    }
    save_json(stem.with_suffix(".json"), report)
    text = everyday_report_markdown(report)
    stem.with_suffix(".md").write_text(text)
    print(text)
    print(f"saved {stem}.{{json,md}}")
    return 0


def main(argv: list[str] | None = None) -> int:
    import sys

    args = parse_args(argv)
    args.candidates = parse_candidates(args.arm)
    for name in ("judge", "hh_held_out", "concise_held_out"):
        setattr(args, name, str(Path(getattr(args, name)).expanduser()))
    command = "python -m benchmarks.quality " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.everyday_only:
        return everyday_only(args, command)
    from genarm.training.judge import Judge

    stem = args.out / f"quality_demo_{dt.datetime.now():%Y%m%d-%H%M%S}"
    if args.from_answers:
        answers_path = Path(args.from_answers).expanduser()
        args.arm_files = None  # answers saved before ARM hashes were: hash the folders now
        prompts, grid, answers, everyday = load_answers(answers_path, args)
    else:
        # Hashed before answering, and saved with the answers: a rescore names the
        # adapters that answered, even if their folders have changed since.
        args.arm_files = arm_files(model_set(args.candidates))
        prompts = {
            "harmless": hh_prompts(args.hh_held_out, args.num_prompts, args.seed),
            "concise": instruction_prompts(args.num_prompts),
        }
        grid = weight_grid(tuple(float(w) for w in args.weights.split(",")), not args.no_mixes)
        answers, everyday = generate(prompts, grid, args)
        # Saved before scoring: an hour of answers survives a scoring failure
        # (rescore with --from-answers).
        answers_path = save_answers(args, stem.name, prompts, grid, answers, everyday)
    judge = Judge.load(args.judge, bf16=False if args.dtype == "float32" else None)
    models = model_set(args.candidates)
    report = {
        **report_head(args, command, args.arm_files or arm_files(models)),
        "prompts": {o: len(items) for o, items in prompts.items()},
        "temperature": args.temperature,
        "max_tokens": args.max_tokens,
        "judge": folder_record(args.judge, shown_path(args.judge)),
        "grid": score(prompts, answers, grid, judge, models.base),
        "everyday_max_tokens": args.everyday_max_tokens,
        "everyday": everyday_summary(everyday, args.everyday_questions) if everyday else None,
        "accuracy": preference_accuracies(args, judge),
    }
    report["answers_file"] = str(answers_path)
    save_json(stem.with_suffix(".json"), report)
    text = markdown(report)
    stem.with_suffix(".md").write_text(text)
    plot(report, stem.with_suffix(".png"))
    print(text)
    print(f"saved {stem}.{{json,md,png}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Best-of-N by a reward model, judged by another: what reranking buys on top of an ARM.

For each weight of the demo's ``harmless`` ARM (``--weights``, default 0 and 1),
the demo server, with two reward models beside the ARM, answers each of
``--num-prompts`` held-out HH-RLHF dialogues with one best-of-N request
(``rerank: {reward_model: "selector", n: N}``). The response lists every
candidate with the selector's score and its token count; the evaluator (a judge
trained on a different split, never the one that selects) then scores every
candidate through ``/v1/rewards``.

Best-of-k for each k in ``--sizes`` comes from the same N candidates, without
bias: the N are independent samples, so over all k-subsets the candidate the
selector ranks r-th (from 0) is the chosen one with probability
C(N-1-r, k-1) / C(N, k). Per prompt that gives the expected evaluator score of
best-of-k (k = 1: one plain sample) and its expected cost, k candidates'
tokens. Means come with 95% intervals over prompts, and each setting's paired
difference from plain sampling without the ARM (k = 1, weight 0).

    python -m benchmarks.best_of_n --selector ~/.cache/genarm/judges/harmless \\
        --evaluator ~/.cache/genarm/judges/harmless-arm-split

Writes ``benchmarks/results/best_of_n_<time>.json`` and ``.md``; the candidate
texts (replies to red-teaming dialogues) stay in ``--answers-dir``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.quality_answers import model_set as quality_model_set  # noqa: E402
from benchmarks.quality_answers import server_config as quality_server_config  # noqa: E402
from benchmarks.quality_grid import HH_HELD_OUT, hh_prompts  # noqa: E402
from benchmarks.quality_report import arm_files  # noqa: E402
from benchmarks.quality_scoring import mean_ci  # noqa: E402
from benchmarks.reports import (  # noqa: E402
    RESULTS,
    folder_markdown,
    folder_record,
    machine_description,
    report_heading,
)

ARM = "harmless"


def win_probabilities(n: int, k: int) -> list[float]:
    """P(the candidate ranked r-th of n is the best of a uniformly random k-subset)."""
    total = math.comb(n, k)
    return [math.comb(n - 1 - r, k - 1) / total for r in range(n)]


def best_of_k(candidates: list[dict], k: int) -> dict[str, float]:
    """Expected evaluator score, selector score and finished share of best-of-k, and
    its expected cost (k candidates' tokens), from one prompt's n candidates."""
    ranked = sorted(candidates, key=lambda c: -c["score"])
    odds = win_probabilities(len(ranked), k)
    mean_tokens = sum(c["completion_tokens"] for c in ranked) / len(ranked)

    def expected(value) -> float:
        return sum(p * value(c) for p, c in zip(odds, ranked, strict=True))

    return {
        "evaluator": expected(lambda c: c["evaluator"]),
        "selector": expected(lambda c: c["score"]),
        "finished": expected(lambda c: c["finish_reason"] == "stop"),
        "tokens": k * mean_tokens,
    }


def summarize(answers: dict[str, list[list[dict]]], sizes: list[int]) -> list[dict[str, Any]]:
    """One row per (weight, k): means with 95% CIs over prompts, and the paired
    difference in evaluator score from plain sampling at weight 0."""
    baseline = [best_of_k(c, 1)["evaluator"] for c in answers[min(answers, key=float)]]
    rows = []
    for weight, per_prompt in answers.items():
        for k in sizes:
            values = [best_of_k(candidates, k) for candidates in per_prompt]
            evaluator = [v["evaluator"] for v in values]
            rows.append(
                {
                    "weight": float(weight),
                    "k": k,
                    "evaluator": mean_ci(evaluator),
                    "selector": mean_ci([v["selector"] for v in values]),
                    "gain_vs_plain": mean_ci(
                        [e - b for e, b in zip(evaluator, baseline, strict=True)]
                    ),
                    "finished": sum(v["finished"] for v in values) / len(values),
                    "tokens_per_prompt": sum(v["tokens"] for v in values) / len(values),
                }
            )
    return rows


def _fmt(stat: dict[str, float]) -> str:
    return f"{stat['mean']:+.2f} [{stat['ci_low']:+.2f}, {stat['ci_high']:+.2f}]"


def _arm_lines(report: dict[str, Any]) -> list[str]:
    """The ARM's folder and hash; none for reports written before they were recorded."""
    if "arm" not in report:
        return []
    return [f"ARM adapter: {ARM} = {folder_markdown(report['arm'])}.", ""]


def markdown(report: dict[str, Any]) -> str:
    lines = [
        *report_heading("Best-of-N on held-out HH-RLHF dialogues", report),
        f"{report['prompts']} dialogues, {report['candidates']} candidates each per weight "
        f"(temperature {report['temperature']}, at most {report['max_tokens']} tokens); "
        f"selector {folder_markdown(report['selector'])}, "
        f"evaluator {folder_markdown(report['evaluator'])} "
        "(the evaluator never selects). Means with 95% CIs over dialogues; best-of-k from "
        "the same candidates (unbiased over all k-subsets).",
        "",
        *_arm_lines(report),
        "| harmless weight | best of | evaluator score | gain vs plain (weight 0) "
        "| selector score | finished | tokens per prompt |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['weight']:g} | {row['k']} | {_fmt(row['evaluator'])} "
            f"| {_fmt(row['gain_vs_plain'])} | {_fmt(row['selector'])} "
            f"| {row['finished']:.0%} | {row['tokens_per_prompt']:.0f} |"
        )
    if report["generation_seconds"] is not None:
        seconds = report["generation_seconds"]
        lines += ["", f"Generated and scored in {seconds:.0f} s on {report['machine']['cpu']}."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- generation


def server_config(args: argparse.Namespace) -> dict:
    """The demo's base with its harmless ARM, and the two judges as reward models."""
    config = quality_server_config(args.dtype, (ARM,))
    config["reward_models"] = [
        {"name": name, "model": str(path), "max_batch": args.candidates, "dtype": "float32"}
        for name, path in (("selector", args.selector), ("evaluator", args.evaluator))
    ]
    return config


async def _answer_all(
    url: str, prompts: list[list[dict]], args: argparse.Namespace
) -> dict[str, list[list[dict]]]:
    """answers[weight][prompt] = every candidate with both judges' scores."""
    import httpx
    from tqdm import tqdm

    from genarm.clients import AsyncGenARMClient, rerank_of

    limit = asyncio.Semaphore(args.concurrency)
    weights = [float(w) for w in args.weights.split(",")]
    bar = tqdm(total=len(weights) * len(prompts), desc=f"best-of-{args.candidates} requests")
    async with AsyncGenARMClient(url, timeout=1200) as client, httpx.AsyncClient() as http:

        async def one(weight: float, seed: int, messages: list[dict]) -> list[dict]:
            async with limit:
                reply = await client.chat(
                    messages,
                    reward_weights={ARM: weight},
                    rerank={"reward_model": "selector", "n": args.candidates},
                    max_tokens=args.max_tokens,
                    temperature=args.temperature,
                    seed=seed,
                )
                candidates = rerank_of(reply)["candidates"]
                items = [{"messages": messages, "response": c["text"]} for c in candidates]
                scored = await http.post(
                    f"{url}/v1/rewards",
                    json={"model": "evaluator", "items": items},
                    timeout=600,
                )
                scored.raise_for_status()
            for candidate, score in zip(candidates, scored.json()["data"], strict=True):
                candidate["evaluator"] = score["score"]
            bar.update()
            return candidates

        jobs = [one(w, args.seed + p, m) for w in weights for p, m in enumerate(prompts)]
        flat = await asyncio.gather(*jobs)
    bar.close()
    n = len(prompts)
    return {f"{w:g}": flat[i * n : (i + 1) * n] for i, w in enumerate(weights)}


def generate(prompts: list[list[dict]], args: argparse.Namespace) -> dict[str, list[list[dict]]]:
    from genarm.live_server import LiveServer

    workdir = Path(tempfile.mkdtemp(prefix="genarm-best-of-n-"))
    with LiveServer(server_config(args), workdir=workdir, startup_timeout=900) as server:
        return asyncio.run(_answer_all(server.url, prompts, args))


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--selector", required=True, help="HF reward-model folder that picks")
    p.add_argument("--evaluator", required=True, help="HF reward-model folder that judges")
    p.add_argument("--hh-held-out", default=HH_HELD_OUT, help="held_out.jsonl of prepare-hh-rlhf")
    p.add_argument("--num-prompts", type=int, default=64)
    p.add_argument("--weights", default="0,1", help="the harmless ARM's weights")
    p.add_argument("--candidates", type=int, default=8, help="N: candidates per request")
    p.add_argument("--sizes", default="1,4,8", help="k of best-of-k to report (each <= N)")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--dtype", choices=("bfloat16", "float32"), help="engine dtype")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight (N each)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--from-answers", help="summarise the answers file of an earlier run")
    p.add_argument("--answers-dir", default="~/.cache/genarm/best-of-n")
    args = p.parse_args(argv)
    args.sizes = [int(k) for k in args.sizes.split(",")]
    if max(args.sizes) > args.candidates or min(args.sizes) < 1:
        p.error(f"--sizes must lie in 1..--candidates ({args.candidates})")
    for name in ("selector", "evaluator", "hh_held_out"):
        setattr(args, name, str(Path(getattr(args, name)).expanduser()))
    if Path(args.selector).resolve() == Path(args.evaluator).resolve():
        p.error("the evaluator must not be the selector")
    return args


def model_files(args: argparse.Namespace, arm: bool = True) -> dict[str, dict[str, str | None]]:
    """The selector's, the evaluator's and (with ``arm``) the ARM's folders, each with
    the hash of its files, as the report records them."""
    files = {name: folder_record(getattr(args, name)) for name in ("selector", "evaluator")}
    if arm:
        files["arm"] = arm_files(quality_model_set(), (ARM,))[ARM]
    return files


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    if args.from_answers:
        saved = json.loads(Path(args.from_answers).expanduser().read_text())
        answers = saved["answers"]
        # Answers saved before the models' hashes were: the judges' folders as they are
        # now, and no ARM (summarising needs no demo models, so none may be prepared).
        models = saved.get("models") or model_files(args, arm=False)
    else:
        models = model_files(args)  # hashed before answering, saved with the answers
        prompts = hh_prompts(args.hh_held_out, args.num_prompts, args.seed)
        answers = generate(prompts, args)
    stamp = f"{dt.datetime.now():%Y%m%d-%H%M%S}"
    answers_path = Path(args.answers_dir).expanduser() / f"best_of_n_{stamp}_answers.json"
    answers_path.parent.mkdir(parents=True, exist_ok=True)
    answers_path.write_text(json.dumps({"answers": answers, "models": models}))
    report = {
        "created": dt.datetime.now().isoformat(timespec="seconds"),
        "command": "python -m benchmarks.best_of_n "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine_description(),
        "prompts": len(next(iter(answers.values()))),
        "candidates": args.candidates,
        "temperature": args.temperature,
        "max_tokens": args.max_tokens,
        "dtype": args.dtype,
        **models,
        "generation_seconds": None if args.from_answers else time.monotonic() - started,
        "rows": summarize(answers, args.sizes),
        "answers_file": str(answers_path),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"best_of_n_{stamp}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1))
    stem.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    print(f"saved {stem}.{{json,md}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

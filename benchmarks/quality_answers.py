"""The quality benchmark's answers: the demo server (with any candidate ARMs in
place of its own) answering every (setting, prompt) job, the answers put back in
place, and saved for a rescore."""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.model_sets import ModelSet, demo_model_set
from benchmarks.quality_grid import ARMS, EVERYDAY, everyday_grid

Job = tuple[int, dict, list, int, float]  # seed, weights, messages, max_tokens, temperature


async def _generate_all(url: str, jobs: list[Job], concurrency: int) -> list[dict[str, Any]]:
    from tqdm import tqdm

    from genarm.clients import AsyncGenARMClient

    limit = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(jobs), desc="answers")
    async with AsyncGenARMClient(url, timeout=600) as client:

        async def one(seed, weights, messages, max_tokens, temperature) -> dict[str, Any]:
            async with limit:
                reply = await client.chat(
                    messages,
                    reward_weights=weights,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    seed=seed,
                )
            bar.update()
            choice = reply.choices[0]
            return {"text": choice.message.content, "finished": choice.finish_reason == "stop"}

        answers = await asyncio.gather(*(one(*job) for job in jobs))
    bar.close()
    return answers


def model_set(candidates: dict[str, str] | None = None) -> ModelSet:
    """The demo's models, with ``candidates`` (ARM name -> adapter folder) in place of
    those ARMs: a new adapter measured exactly as the shipped one before it replaces it."""
    models = demo_model_set()
    for name, adapter in (candidates or {}).items():
        if name not in models.arms:
            raise SystemExit(
                f"--arm {name}: the demo has no ARM of that name ({list(models.arms)})"
            )
        if not Path(adapter, "adapter_config.json").is_file():
            raise SystemExit(f"--arm {name}: no PEFT adapter (adapter_config.json) in {adapter}")
        models.arms[name] = {"model": None, "adapter": adapter, "adapter_base": models.base}
    return models


def parse_candidates(values: list[str]) -> dict[str, str]:
    """``--arm NAME=DIR`` values as {name: absolute adapter folder}."""
    candidates = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep or not name or not folder:
            raise SystemExit(f"--arm {value!r}: expected NAME=ADAPTER_DIR")
        candidates[name] = str(Path(folder).expanduser().resolve())
    return candidates


def server_config(
    dtype: str | None, arms: tuple[str, ...] = ARMS, candidates: dict[str, str] | None = None
) -> dict:
    """The demo's deployment with ``arms``, weights allowed to ±5, in ``dtype`` if given."""
    config = model_set(candidates).server_config(list(arms), weights_range=5.0)
    if dtype:
        config["engine"]["dtype"] = dtype
    return config


def generate(
    prompts: dict[str, list], grid: list[dict], args: argparse.Namespace
) -> tuple[dict[str, list], list[list[dict]]]:
    """(answers[objective][grid index][prompt index], everyday[setting][question])
    from one demo server."""
    from genarm.live_server import LiveServer

    jobs: list[Job] = []
    where = []
    for objective, items in prompts.items():
        for g, weights in enumerate(grid):
            for p, messages in enumerate(items):  # the same seed across weights
                jobs.append((args.seed + p, weights, messages, args.max_tokens, args.temperature))
                where.append((objective, g, p))
    everyday = everyday_grid()
    for weights in everyday:
        for question in args.everyday_questions:
            messages = [{"role": "user", "content": question}]
            jobs.append((args.seed, weights, messages, args.everyday_max_tokens, 0.0))
    workdir = Path(tempfile.mkdtemp(prefix="genarm-quality-"))
    print(f"starting the demo server; {len(jobs)} requests", flush=True)
    started = time.monotonic()
    config = server_config(args.dtype, candidates=args.candidates)
    with LiveServer(config, workdir=workdir, startup_timeout=900) as server:
        flat = asyncio.run(_generate_all(server.url, jobs, args.concurrency))
    print(f"generated in {time.monotonic() - started:.0f} s", flush=True)
    return unflatten(prompts, grid, where, flat, len(args.everyday_questions))


def unflatten(
    prompts: dict[str, list],
    grid: list[dict],
    where: list[tuple],
    flat: list[dict],
    n_questions: int = len(EVERYDAY),
) -> tuple[dict[str, list], list[list[dict]]]:
    """The generated answers in job order back into (answers[objective][grid index][prompt
    index], everyday[setting][question]): the grid's jobs first, then the everyday ones."""
    answers = {o: [[None] * len(items) for _ in grid] for o, items in prompts.items()}
    for (objective, g, p), answer in zip(where, flat[: len(where)], strict=True):
        answers[objective][g][p] = answer
    rest, n, settings = flat[len(where) :], n_questions, len(everyday_grid())
    if len(rest) != n * settings:
        raise ValueError(f"{len(rest)} everyday answers, expected {n * settings}")
    return answers, [rest[i * n : (i + 1) * n] for i in range(settings)]


def save_answers(
    args: argparse.Namespace, name: str, prompts: dict, grid: list, answers: dict, everyday: list
) -> Path:
    """Write the raw answers (and what made them) to ``--answers-dir``; the path.

    They stay out of the repository: half of them reply to HH-RLHF's red-teaming
    dialogues, which the project does not commit."""
    path = Path(args.answers_dir).expanduser() / f"{name}_answers.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    settings = {
        "temperature": args.temperature,
        "max_tokens": args.max_tokens,
        "dtype": args.dtype,
        "everyday_max_tokens": args.everyday_max_tokens,
        "everyday_questions": args.everyday_questions,
        "candidates": args.candidates,
        "arm_files": getattr(args, "arm_files", None),  # their hashes when they answered
    }
    saved = {"prompts": prompts, "grid": grid, "answers": answers, "everyday": everyday}
    path.write_text(json.dumps({**saved, "settings": settings}))
    print(f"answers saved to {path}", flush=True)
    return path


def load_answers(path: Path, args: argparse.Namespace) -> tuple[dict, list, dict, list | None]:
    """(prompts, grid, answers, everyday) of ``save_answers``; the settings that made
    them (temperature, dtype, candidate ARMs, ...) go back onto ``args``."""
    saved = json.loads(path.read_text())
    for key, value in saved.get("settings", {}).items():
        setattr(args, key, value)
    return saved["prompts"], saved["grid"], saved["answers"], saved.get("everyday")

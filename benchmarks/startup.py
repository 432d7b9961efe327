"""How long a server takes to start: cold (empty compile cache), warm restart (the
same deployment again, on that cache) and eager (no compilation), to ``/health``
200 and to the first answer, with the phases the server logged.

    python -m benchmarks.startup                       # demo and tiny, all three modes
    python -m benchmarks.startup --sets tiny --modes cold,warm

Each set runs on a fresh ``VLLM_CACHE_ROOT`` of its own (vLLM's compile cache and
inductor's live under it), so "cold" is what a new machine or a new deployment
pays and "warm" what every later restart pays. The demo's merged LoRA ARMs are
kept (they are prepared once, by the first start after `genarm prepare-demo`).
Prints a table and saves JSON and markdown under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.model_sets import model_set  # noqa: E402
from benchmarks.reports import RESULTS, machine_description, save_json  # noqa: E402
from genarm.live_server import LiveServer  # noqa: E402

MODES = ("cold", "warm", "eager")
TARGETS_S = {("demo", "warm"): 45.0, ("demo", "cold"): 150.0, ("tiny", "warm"): 15.0}


def _first_answer(server: LiveServer, arms: list[str]) -> None:
    """One guided chat answer (16 tokens, every ARM at weight 1)."""
    body = {
        "model": httpx.get(f"{server.base_url}/models").json()["data"][0]["id"],
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 16,
        "temperature": 0,
        "reward_weights": dict.fromkeys(arms, 1.0),
    }
    r = httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=600)
    r.raise_for_status()


def _wait_healthy(server: LiveServer, started: float, timeout: float) -> list[dict[str, Any]]:
    """Poll /health until 200; the phases it reported meanwhile, with when each was seen."""
    seen: list[dict[str, Any]] = []
    deadline = started + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited:\n{server.log()}")
        try:
            r = httpx.get(f"{server.url}/health", timeout=5)
        except httpx.HTTPError:
            time.sleep(0.2)
            continue
        if r.status_code == 200:
            return seen
        phase = r.json().get("phase")
        if phase and (not seen or seen[-1]["phase"] != phase):
            seen.append({"phase": phase, "seen_at_s": round(time.monotonic() - started, 1)})
        time.sleep(0.2)
    raise TimeoutError(f"not healthy after {timeout} s:\n{server.log()}")


def measure_start(config: dict, cache_root: Path, workdir: Path, timeout: float) -> dict[str, Any]:
    """Start one server, time /health 200 and the first answer, stop it."""
    server = LiveServer(config, env={"VLLM_CACHE_ROOT": str(cache_root)}, workdir=workdir)
    started = time.monotonic()
    server.start(wait=False)
    try:
        health_phases = _wait_healthy(server, started, timeout)
        healthy = time.monotonic() - started
        _first_answer(server, [a["name"] for a in config["arms"]])
        answered = time.monotonic() - started
        log = server.log(tail=10**7)
    finally:
        server.stop()
    ready = re.search(r"Engine ready in [\d.]+ s: (.*)", log)
    graphs = re.search(r"(\d+) graphs loaded from the cache, (\d+) compiled", log)
    return {
        "health_200_s": round(healthy, 1),
        "first_answer_s": round(answered, 1),
        "phases": ready.group(1) if ready else "",
        "graphs_loaded": int(graphs.group(1)) if graphs else 0,
        "graphs_compiled": int(graphs.group(2)) if graphs else 0,
        "health_phases": health_phases,
    }


def _merge_lora_arms(config: dict) -> float:
    """Merge (and cache) LoRA ARMs now, as the first start after prepare-demo does once."""
    from genarm.config import parse_config
    from genarm.engine.build import arm_model_paths

    cfg = parse_config(config)
    if all(arm.model for arm in cfg.arms):
        return 0.0
    started = time.monotonic()
    arm_model_paths(cfg)
    return time.monotonic() - started


def run_set(name: str, modes: list[str], args: argparse.Namespace, work: Path) -> list[dict]:
    models = model_set(name, Path(args.model_cache))
    arms = list(models.arms)[:2]
    compiled = models.server_config(arms)
    compiled["engine"]["enforce_eager"] = False
    eager = models.server_config(arms)
    eager["engine"]["enforce_eager"] = True
    cache_root = work / f"{name}-vllm-cache"  # fresh: the cold start finds it empty
    merge_s = _merge_lora_arms(compiled)
    if merge_s:
        print(f"== {name}: LoRA ARMs merged (once, not part of any start) in {merge_s:.1f} s")
    rows = []
    for mode in modes:
        print(f"== {name} {mode}", flush=True)
        config = eager if mode == "eager" else compiled
        result = measure_start(config, cache_root, work / f"{name}-{mode}", args.timeout)
        target = TARGETS_S.get((name, mode))
        rows.append({"set": name, "mode": mode, "arms": arms, "target_s": target, **result})
        print(
            f"   /health 200 after {result['health_200_s']} s, first answer after "
            f"{result['first_answer_s']} s; {result['phases']}",
            flush=True,
        )
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [
        "| models | start | /health 200 (s) | first answer (s) | target (s) | compiled graphs "
        "(loaded / compiled) | phases (server log) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        target = f"≤ {r['target_s']:.0f}" if r["target_s"] else ""
        graphs = "" if r["mode"] == "eager" else f"{r['graphs_loaded']} / {r['graphs_compiled']}"
        lines.append(
            f"| {r['set']} (base + {len(r['arms'])} ARMs) | {r['mode']} | {r['health_200_s']:.1f} "
            f"| {r['first_answer_s']:.1f} | {target} | {graphs} | {r['phases']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", default="demo,tiny", help="model sets: demo, tiny, w2s")
    p.add_argument("--modes", default=",".join(MODES), help="in this order: cold,warm,eager")
    p.add_argument("--timeout", type=float, default=900, help="seconds to /health 200")
    p.add_argument("--model-cache", default=str(Path(tempfile.gettempdir()) / "genarm-bench"))
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if unknown := set(modes) - set(MODES):
        p.error(f"unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}")

    with tempfile.TemporaryDirectory(prefix="genarm-startup-") as tmp:
        rows = [
            row for name in args.sets.split(",") for row in run_set(name, modes, args, Path(tmp))
        ]
    table = format_table(rows)
    print("\n" + table)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out)
    command = "python -m benchmarks.startup " + " ".join(argv if argv is not None else sys.argv[1:])
    save_json(out / f"startup_{stamp}.json", {"machine": machine_description(), "rows": rows})
    (out / f"startup_{stamp}.md").write_text(f"`{command.strip()}`\n\n{table}\n")
    print(f"saved {out}/startup_{stamp}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

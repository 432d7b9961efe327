"""Soak benchmark: does the server leak memory at capacity?

    python -m benchmarks.soak                                    # tiny models, 10 minutes
    python -m benchmarks.soak --minutes 3 --warmup-minutes 1.5   # a smoke run
    python -m benchmarks.soak --url http://127.0.0.1:8000 --pid 1234   # a running server

Without --url it starts `genarm serve` on the test suite's tiny models (2 ARMs,
max_num_seqs 8, server.max_waiting_requests 8). --clients clients keep it full for
--minutes: chat and completions, mixed reward_weights, streamed or not, logprobs, n=2,
hang-ups mid-stream. The RSS of the server and all its descendants is sampled every
--sample-seconds; after --warmup-minutes (KV cache and allocator pools fill first) a
least-squares line per process and for the sum gives MB/min (MB = 2**20 bytes). Saves
benchmarks/results/soak_<time>.{json,png}; exits 1 if a process grows >= --max-slope
(5 MB/min) or any answer was unexpected: not a 200, a 503 with Retry-After or a hang-up.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import contextlib
import datetime as dt
import json
import random
import shlex
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from benchmarks.http_load import LoadConfig, SampleRequest, api_root, request_payload, sse_events
from benchmarks.prompts import synthetic_prompts
from benchmarks.reports import RESULTS, machine_description, save_json
from genarm.live_server import LiveServer

# Outcomes that a server at capacity may give; anything else is a failure.
EXPECTED = {"200", "503", "hung_up"}
ENDPOINTS = {"chat": LoadConfig(endpoint="chat"), "completions": LoadConfig()}


def start_tiny_server(args: argparse.Namespace) -> LiveServer:
    """`genarm serve` on the test suite's tiny models (built once, cached), 2 ARMs."""
    from genarm.tiny_models import TINY_SHAPES, make_model_set, tiny_config_dict

    root = Path(args.model_cache)
    models = {name: root / name for name in TINY_SHAPES}
    if not all((path / "config.json").is_file() for path in models.values()):
        models = make_model_set(root, TINY_SHAPES)
    config = tiny_config_dict(models, max_num_seqs=args.max_num_seqs)
    config["server"] = {"max_waiting_requests": args.max_waiting_requests}
    print(f"starting genarm serve (2 ARMs, max_num_seqs {args.max_num_seqs})", flush=True)
    return LiveServer(config, startup_timeout=900).start()


def random_request(
    rng: random.Random, model: str, arms: list[dict], prompts: list[str]
) -> tuple[str, dict, bool]:
    """(url suffix, payload, hang up after 2 chunks?) of one varied request."""
    kind = rng.choice(list(ENDPOINTS))
    weights = None  # 1 in 5 requests: the server's default weights
    if rng.random() < 0.8:
        weights = {
            a["name"]: round(rng.uniform(max(a["min_weight"], -2), min(a["max_weight"], 2)), 3)
            for a in arms
            if rng.random() < 0.7
        }
    req = SampleRequest(rng.choice(prompts), rng.randint(4, 48), weights)
    payload = request_payload(ENDPOINTS[kind], model, req)
    if rng.random() < 0.3:
        payload.update({"logprobs": True, "top_logprobs": 2} if kind == "chat" else {"logprobs": 2})
    if rng.random() < 0.2:
        # Two sequences: 16 clients then ask for more than the server holds (8 running
        # + 8 waiting) at times, so the 503 path is soaked too.
        payload["n"] = 2
    if rng.random() < 0.3:
        payload["stream"] = False
        del payload["stream_options"]
    hang_up = payload["stream"] and rng.random() < 0.15
    return ("/chat/completions" if kind == "chat" else "/completions"), payload, hang_up


async def send(session, url: str, payload: dict, hang_up: bool) -> tuple[str, float]:
    """(outcome, Retry-After seconds): the HTTP status, 'hung_up', 'stream_error',
    'stream_cut' (no [DONE]), '503 without Retry-After' or the exception's name."""
    try:
        async with session.post(url, json=payload) as response:
            if response.status != 200 or not payload["stream"]:
                await response.read()
                retry = response.headers.get("Retry-After")
                if response.status == 503 and retry is None:
                    return "503 without Retry-After", 0.0
                return str(response.status), float(retry or 0)
            decoder, buffer, chunks = codecs.getincrementaldecoder("utf-8")(), "", 0
            async for raw in response.content.iter_any():
                events, buffer = sse_events(buffer + decoder.decode(raw))
                for event in events:
                    if event == "[DONE]":
                        return "200", 0.0
                    data = json.loads(event)
                    if "error" in data:
                        return "stream_error", 0.0
                    chunks += bool(data.get("choices"))
                    if hang_up and chunks >= 2:
                        # Closing the connection mid-stream: the server must abort the
                        # request and free its KV blocks; a leak here is what we look for.
                        response.close()
                        return "hung_up", 0.0
            return "stream_cut", 0.0
    except Exception as err:  # a dead or hung server shows up here
        return type(err).__name__, 0.0


async def client(
    session, root: str, info: dict, stop_at: float, counts: Counter, seed: int
) -> None:
    rng, prompts = random.Random(seed), info["prompts"]
    while time.monotonic() < stop_at:
        path, payload, hang_up = random_request(rng, info["model"], info["arms"], prompts)
        outcome, retry = await send(session, root + path, payload, hang_up)
        counts[outcome] += 1
        if outcome == "503":
            # Back off less than Retry-After asks: all clients honouring it would drain
            # the queue, and the point is to stay at capacity.
            await asyncio.sleep(min(retry, 0.5) * rng.random())


async def sample_rss(
    pid: int, stop_at: float, every: float, samples: list, counts: Counter
) -> None:
    """Append {"t": seconds, "rss_mb": {"name[pid]": MB}} for the server and its
    descendants until ``stop_at``; print a progress line about once a minute."""
    root, t0, last_print = psutil.Process(pid), time.monotonic(), 0.0
    while True:
        now = time.monotonic()
        rss = {}
        with contextlib.suppress(psutil.NoSuchProcess):  # the server itself ended
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):  # ended since the listing
                    rss[f"{proc.name()}[{proc.pid}]"] = proc.memory_info().rss / 2**20
        if not rss:
            counts["server exited"] += 1
            return
        samples.append({"t": now - t0, "rss_mb": rss})
        if now - last_print >= 60:
            last_print = now
            print(f"{(now - t0) / 60:5.1f} min  RSS {sum(rss.values()):8.1f} MB  {dict(counts)}")
        if now >= stop_at:
            return
        await asyncio.sleep(max(0.0, min(every, stop_at - time.monotonic())))


async def soak(url: str, pid: int, args: argparse.Namespace) -> tuple[Counter, list[dict]]:
    """Keep the server at capacity for ``args.minutes``; (outcome counts, RSS samples)."""
    import aiohttp

    root = api_root(url)
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    timeout = aiohttp.ClientTimeout(total=300)
    connector = aiohttp.TCPConnector(limit=0)  # one connection per client, no pool queue
    async with aiohttp.ClientSession(headers=headers, timeout=timeout, connector=connector) as s:
        async with s.get(f"{root}/models") as response:
            response.raise_for_status()
            model = (await response.json())["data"][0]
        info = {
            "model": model["id"],
            "arms": model.get("arms") or [],
            # Short, medium and long prompts: mixed prefill sizes and KV footprints.
            "prompts": [p for n in (8, 32, 96) for p in synthetic_prompts(16, n, seed=n)],
        }
        counts: Counter = Counter()
        samples: list[dict] = []
        stop_at = time.monotonic() + args.minutes * 60
        await asyncio.gather(
            sample_rss(pid, stop_at, args.sample_seconds, samples, counts),
            *(client(s, root, info, stop_at, counts, args.seed + i) for i in range(args.clients)),
        )
    return counts, samples


def fit(samples: list[dict], warmup_s: float) -> dict[str, dict[str, Any]]:
    """Per process and for the total: its (minutes, MB) points, and after the warm-up
    its first and last RSS and the slope of a least-squares line (None: < 3 points)."""
    names = sorted({name for s in samples for name in s["rss_mb"]})
    series = {n: [(s["t"], s["rss_mb"][n]) for s in samples if n in s["rss_mb"]] for n in names}
    series["total"] = [(s["t"], sum(s["rss_mb"].values())) for s in samples]
    fits = {}
    for name, points in series.items():
        late = np.array([(t / 60, mb) for t, mb in points if t >= warmup_s]).reshape(-1, 2)
        slope = float(np.polyfit(late[:, 0], late[:, 1], 1)[0]) if len(late) >= 3 else None
        fits[name] = {
            "slope_mb_per_min": slope,
            "rss_after_warmup_mb": float(late[0, 1]) if len(late) else None,
            "rss_end_mb": float(late[-1, 1]) if len(late) else None,
            "points": [(t / 60, mb) for t, mb in points],
        }
    return fits


def plot(fits: dict[str, dict[str, Any]], warmup_s: float, path: Path) -> None:
    """RSS over time: the total on top (it dwarfs the rest), each process below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
    for name, f in fits.items():
        slope = f["slope_mb_per_min"]
        label = name if slope is None else f"{name}: {slope:+.2f} MB/min"
        axes[int(name != "total")].plot(*zip(*f["points"], strict=True), ".-", label=label)
    for ax in axes:
        ax.axvline(warmup_s / 60, ls="--", color="gray", label="end of warm-up")
        ax.set(ylabel="RSS (MB)", xlabel="minutes")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_title("server RSS; slopes: least squares after the warm-up")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--warmup-minutes", type=float, default=2.0)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--max-num-seqs", type=int, default=8)
    p.add_argument("--max-waiting-requests", type=int, default=8)
    p.add_argument("--url", help="a running server instead of starting one (needs --pid)")
    p.add_argument("--pid", type=int, help="that server's process id (RSS of it + children)")
    p.add_argument("--api-key")
    p.add_argument("--sample-seconds", type=float, default=5.0)
    p.add_argument("--max-slope", type=float, default=5.0, help="MB/min allowed per process")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model-cache", default=str(Path(tempfile.gettempdir()) / "genarm-soak"))
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    if bool(args.url) != bool(args.pid):
        p.error("--url and --pid go together")

    started = dt.datetime.now()
    server = None if args.url else start_tiny_server(args)
    url, pid = (args.url, args.pid) if server is None else (server.url, server.process.pid)
    try:
        counts, samples = asyncio.run(soak(url, pid, args))
        machine = machine_description()  # now: the load average of the soak itself
    finally:
        if server is not None:
            server.stop()

    warmup_s = args.warmup_minutes * 60
    fits = fit(samples, warmup_s)
    failures = {k: v for k, v in counts.items() if k not in EXPECTED}
    # Per process, so a leak shows where it is; the total is reported (and plotted) alongside.
    slopes = {name: f["slope_mb_per_min"] for name, f in fits.items() if name != "total"}
    leaks = {name: v for name, v in slopes.items() if v is not None and v >= args.max_slope}
    print(f"\n{'process':<32} {'after warm-up MB':>16} {'at end MB':>10} {'MB/min':>8}")
    for name, f in fits.items():
        keys = ("rss_after_warmup_mb", "rss_end_mb", "slope_mb_per_min")
        first, last, slope = (float("nan") if f[k] is None else f[k] for k in keys)
        print(f"{name:<32} {first:16.1f} {last:10.1f} {slope:8.2f}" + "  LEAK?" * (name in leaks))
    print(f"\noutcomes: {dict(counts)}")

    stem = Path(args.out) / f"soak_{started:%Y%m%d-%H%M%S}"
    report: dict[str, Any] = {
        "command": shlex.join([sys.executable, "-m", "benchmarks.soak", *sys.argv[1:]]),
        "args": vars(args),
        "started": started.isoformat(timespec="seconds"),
        "server": {"url": url, "pid": pid, "log": str(server.log_path) if server else None},
        "machine": machine,
        "counts": dict(counts),
        "failures": failures,
        "fits": {name: {k: v for k, v in f.items() if k != "points"} for name, f in fits.items()},
        "leaks": leaks,
        "passed": not failures and not leaks,
        "samples": samples,
    }
    save_json(stem.with_suffix(".json"), report)
    if samples:
        plot(fits, warmup_s, stem.with_suffix(".png"))
    print(f"saved {stem}.{{json,png}}")
    if failures or leaks:
        print(f"FAILED: unexpected outcomes {failures}, slopes >= {args.max_slope}: {leaks}")
        if server is not None:
            print(f"server log: {server.log_path}")
        return 1
    print(f"passed: every slope < {args.max_slope} MB/min, no unexpected outcome")
    return 0


if __name__ == "__main__":
    sys.exit(main())

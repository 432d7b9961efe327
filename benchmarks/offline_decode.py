"""Offline decode speed of a base model alone (no ARMs, no HTTP): what the dtype
and compilation give on this machine.

    python -m benchmarks.offline_decode --dtype bfloat16            # compiled
    python -m benchmarks.offline_decode --dtype float32 --eager

Runs vLLM's engine in this process on a fresh compile cache (so a compiled run
includes its cold start), then decodes 64 tokens (temperature 1, ignore_eos) at
batch 1 and 16 and prints the output tokens per second as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEMO_BASE = "~/.cache/genarm/smollm2-135m-instruct"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=DEMO_BASE, help="base model folder (default: the demo's)")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    p.add_argument("--eager", action="store_true")
    p.add_argument("--tokens", type=int, default=64)
    args = p.parse_args(argv)
    # The engine in this process, on a compile cache of its own.
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    os.environ["VLLM_CACHE_ROOT"] = tempfile.mkdtemp(prefix="genarm-decode-")

    from vllm import SamplingParams

    from genarm.config import parse_config
    from genarm.engine import create_llm

    engine = {"dtype": args.dtype, "max_model_len": 1024, "max_num_seqs": 32}
    cfg = parse_config(
        {
            "base": {"model": str(Path(args.model).expanduser())},
            "arms": [],
            "engine": {**engine, "kv_cache_gib": 1, "enforce_eager": args.eager},
        }
    )
    started = time.perf_counter()
    llm = create_llm(cfg)
    result = {"dtype": args.dtype, "eager": args.eager, "start_s": time.perf_counter() - started}
    llm.generate(["Hello"], SamplingParams(max_tokens=4), use_tqdm=False)
    for batch in (1, 16):
        prompts = [f"Write a short note about topic number {i}." for i in range(batch)]
        params = SamplingParams(max_tokens=args.tokens, temperature=1.0, ignore_eos=True, seed=0)
        started = time.perf_counter()
        llm.generate(prompts, params, use_tqdm=False)
        result[f"tok_s_batch{batch}"] = batch * args.tokens / (time.perf_counter() - started)
    print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in result.items()}))
    sys.stdout.flush()
    os._exit(0)  # the in-process engine's threads would keep the interpreter waiting


if __name__ == "__main__":
    raise SystemExit(main())

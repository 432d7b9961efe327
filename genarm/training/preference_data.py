"""Preference pairs as JSONL: {"prompt", "chosen", "rejected"} per line.

``prompt`` is a string or a list of chat messages ({"role", "content"});
``chosen`` and ``rejected`` are the assistant's replies to it; optional
``chosen_finished`` / ``rejected_finished`` (default true) say whether a reply
ended (a reply cut off by a token limit did not: no end-of-turn token is
scored after it). Anthropic's HH-RLHF dialogues become such pairs in
``genarm.training.hh_rlhf``.
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

Messages = list[dict[str, str]]


def as_messages(prompt: str | Messages) -> Messages:
    """A prompt as chat messages: a string is one user turn."""
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


@dataclass(frozen=True)
class PreferencePair:
    prompt: str | Messages
    chosen: str
    rejected: str
    chosen_finished: bool = True
    rejected_finished: bool = True

    def messages(self) -> Messages:
        return as_messages(self.prompt)


def open_text(path: Path) -> TextIO:
    """A text file, read through gzip when its name ends in .gz."""
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)  # noqa: SIM115


def load_pairs(path: str | Path) -> list[PreferencePair]:
    """Read a preference JSONL file (.jsonl or .jsonl.gz); errors name the line."""
    pairs = []
    with open_text(Path(path)) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                pairs.append(
                    PreferencePair(
                        row["prompt"],
                        row["chosen"],
                        row["rejected"],
                        bool(row.get("chosen_finished", True)),
                        bool(row.get("rejected_finished", True)),
                    )
                )
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"{path}:{number}: not a preference pair ({err})") from None
    return pairs


def unique_prompts(pairs: Iterable[PreferencePair]) -> list[str | Messages]:
    """The pairs' prompts, each once, in first-seen order."""
    seen: dict[str, str | Messages] = {}
    for pair in pairs:
        seen.setdefault(json.dumps(pair.prompt), pair.prompt)
    return list(seen.values())


def write_pairs(path: str | Path, pairs: Iterable[PreferencePair]) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "w") as f:
        for pair in pairs:
            row = asdict(pair)
            for flag in ("chosen_finished", "rejected_finished"):
                if row[flag]:
                    del row[flag]  # the default: files stay in the plain three-key format
            f.write(json.dumps(row) + "\n")
            count += 1
    return count


def sample_pairs(
    pairs: list[PreferencePair], limit: int | None, seed: int = 0
) -> list[PreferencePair]:
    """At most ``limit`` pairs, drawn at random (seeded) and kept in file order.

    Not the first ``limit``: a file is often ordered by kind (make-preferences
    writes all stopping pairs, then all keep-going ones), so its head is not a
    sample of it."""
    if limit is None or limit >= len(pairs):
        return list(pairs)
    chosen = sorted(random.Random(seed).sample(range(len(pairs)), max(0, limit)))
    return [pairs[i] for i in chosen]

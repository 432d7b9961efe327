"""Preference pairs as JSONL: {"prompt", "chosen", "rejected"} per line.

``prompt`` is a string or a list of chat messages ({"role", "content"});
``chosen`` and ``rejected`` are the assistant's replies to it; optional
``chosen_finished`` / ``rejected_finished`` (default true) say whether a reply
ended (a reply cut off by a token limit did not: no end-of-turn token is
scored after it). Also here: the
conversion of Anthropic's HH-RLHF dialogues to that format, and
`genarm prepare-hh-rlhf`, which splits them by dialogue with a fixed seed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

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


def _open(path: Path):
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)  # noqa: SIM115


def load_pairs(path: str | Path) -> list[PreferencePair]:
    """Read a preference JSONL file (.jsonl or .jsonl.gz); errors name the line."""
    pairs = []
    with _open(Path(path)) as f:
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


_TURN = re.compile(r"\n\n(Human|Assistant): ")


def parse_hh_dialogue(text: str) -> Messages:
    """'\\n\\nHuman: a\\n\\nAssistant: b' -> [{"role": "user", ...}, {"role": "assistant", ...}]."""
    parts = _TURN.split("\n\n" + text.lstrip("\n") if not text.startswith("\n\n") else text)
    messages = []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        role = "user" if speaker == "Human" else "assistant"
        messages.append({"role": role, "content": content.strip()})
    return messages


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


def hh_pair(chosen: str, rejected: str) -> PreferencePair | None:
    """One HH-RLHF row as a pair; None when it is not 'same dialogue, last reply differs'."""
    good, bad = parse_hh_dialogue(chosen), parse_hh_dialogue(rejected)
    if not good or not bad or good[-1]["role"] != "assistant" or bad[-1]["role"] != "assistant":
        return None
    if good[:-1] != bad[:-1] or good[-1]["content"] == bad[-1]["content"]:
        return None
    if not good[-1]["content"] or not bad[-1]["content"]:
        return None
    return PreferencePair(good[:-1], good[-1]["content"], bad[-1]["content"])


def split_by_dialogue(
    pairs: list[PreferencePair], fractions: dict[str, float], seed: int
) -> dict[str, list[PreferencePair]]:
    """Split so that all pairs of one dialogue (same prompt) land in one part."""
    groups: dict[str, list[PreferencePair]] = {}
    for pair in pairs:
        groups.setdefault(json.dumps(pair.messages()), []).append(pair)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    out: dict[str, list[PreferencePair]] = {name: [] for name in fractions}
    names = list(fractions)
    bounds, total = [], 0.0
    for name in names:
        total += fractions[name]
        bounds.append(round(total / sum(fractions.values()) * len(keys)))
    start = 0
    for name, end in zip(names, bounds, strict=True):
        for key in keys[start:end]:
            out[name].extend(groups[key])
        start = end
    return out


HH_SPLITS = {"arm_train": 0.6, "judge_train": 0.2, "held_out": 0.2}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="HH-RLHF jsonl(.gz) with chosen/rejected")
    parser.add_argument("--out", required=True, help="folder for the split JSONL files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--harm-refusals",
        action="store_true",
        help="also write arm_train_harm_refusals.jsonl: for each ARM-train dialogue that asks "
        "for harm, a refusal (chosen) against its rejected reply (genarm.training.refusals)",
    )


def run(args: argparse.Namespace) -> int:
    with _open(Path(args.input)) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    pairs = [p for p in (hh_pair(r["chosen"], r["rejected"]) for r in rows) if p is not None]
    parts = split_by_dialogue(pairs, HH_SPLITS, args.seed)
    print(f"{len(rows)} rows -> {len(pairs)} pairs")
    for name, part in parts.items():
        count = write_pairs(Path(args.out) / f"{name}.jsonl", part)
        print(f"  {name}: {count} pairs -> {Path(args.out) / (name + '.jsonl')}")
    if args.harm_refusals:
        from genarm.training.refusals import harm_refusal_pairs

        path = Path(args.out) / "arm_train_harm_refusals.jsonl"
        pairs = harm_refusal_pairs(parts["arm_train"], random.Random(args.seed))
        print(
            f"  {write_pairs(path, pairs)} refusal-over-reply pairs for harmful requests -> {path}"
        )
    return 0

"""`genarm prepare-hh-rlhf`: Anthropic's HH-RLHF dialogues as preference pairs.

Each HH-RLHF row is two whole dialogues ("\\n\\nHuman: ...\\n\\nAssistant: ...") that
differ in their last reply; it becomes one pair of chat messages and two replies
(``hh_pair``). The pairs are split by dialogue with a fixed seed (``HH_SPLITS``), so
that the ARM, the judge and the held-out check never share a dialogue.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from genarm.training.options import add_options, config_from_args, option
from genarm.training.preference_data import Messages, PreferencePair, open_text, write_pairs
from genarm.training.refusals import harm_refusal_pairs

HH_SPLITS = {"arm_train": 0.6, "judge_train": 0.2, "held_out": 0.2}
_TURN = re.compile(r"\n\n(Human|Assistant): ")


def parse_hh_dialogue(text: str) -> Messages:
    """'\\n\\nHuman: a\\n\\nAssistant: b' -> [{"role": "user", ...}, {"role": "assistant", ...}]."""
    parts = _TURN.split("\n\n" + text.lstrip("\n") if not text.startswith("\n\n") else text)
    messages = []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        role = "user" if speaker == "Human" else "assistant"
        messages.append({"role": role, "content": content.strip()})
    return messages


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


@dataclass
class PrepareConfig:
    """`genarm prepare-hh-rlhf`'s settings, each also its option of that name."""

    input: str = option(help="HH-RLHF jsonl(.gz) with chosen/rejected")
    out: str = option(help="folder for the split JSONL files")
    seed: int = 0
    harm_refusals: bool = option(
        False,
        help="also write arm_train_harm_refusals.jsonl: for each ARM-train dialogue that asks "
        "for harm, a refusal (chosen) against its rejected reply (genarm.training.refusals)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, PrepareConfig)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(PrepareConfig, args)
    with open_text(Path(cfg.input)) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    pairs = [p for p in (hh_pair(r["chosen"], r["rejected"]) for r in rows) if p is not None]
    parts = split_by_dialogue(pairs, HH_SPLITS, cfg.seed)
    print(f"{len(rows)} rows -> {len(pairs)} pairs")
    for name, part in parts.items():
        count = write_pairs(Path(cfg.out) / f"{name}.jsonl", part)
        print(f"  {name}: {count} pairs -> {Path(cfg.out) / (name + '.jsonl')}")
    if cfg.harm_refusals:
        path = Path(cfg.out) / "arm_train_harm_refusals.jsonl"
        pairs = harm_refusal_pairs(parts["arm_train"], random.Random(cfg.seed))
        print(
            f"  {write_pairs(path, pairs)} refusal-over-reply pairs for harmful requests -> {path}"
        )
    return 0

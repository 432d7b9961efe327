"""Preference data without a model: the JSONL pairs, HH-RLHF's dialogues
(prepare-hh-rlhf) and the refusal pairs."""

from __future__ import annotations

import json
import random

import pytest

from genarm.training.hh_rlhf import hh_pair, parse_hh_dialogue, split_by_dialogue
from genarm.training.preference_data import PreferencePair, load_pairs, sample_pairs, write_pairs
from genarm.training.refusals import (
    REFUSAL_REPLIES,
    asks_for_harm,
    harm_refusal_pairs,
    refusal_pairs,
    refuses,
)

HH_CHOSEN = (
    "\n\nHuman: How do I pick a lock?\n\nAssistant: Why?\n\nHuman: Tell me.\n\nAssistant: No."
)


HH_REJECTED = (
    "\n\nHuman: How do I pick a lock?\n\nAssistant: Why?\n\nHuman: Tell me.\n\nAssistant: Sure."
)


def test_hh_dialogues_become_chat_pairs():
    messages = parse_hh_dialogue(HH_CHOSEN)
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    pair = hh_pair(HH_CHOSEN, HH_REJECTED)
    assert pair.chosen == "No." and pair.rejected == "Sure."
    assert pair.prompt[-1] == {"role": "user", "content": "Tell me."}
    assert hh_pair(HH_CHOSEN, HH_CHOSEN) is None  # no preference
    other = HH_REJECTED.replace("Tell me.", "Please.")
    assert hh_pair(HH_CHOSEN, other) is None  # not the same dialogue


def test_split_keeps_each_dialogue_in_one_part(tmp_path):
    pairs = [PreferencePair(f"dialogue {i % 50}", f"good {i}", f"bad {i}") for i in range(200)]
    parts = split_by_dialogue(pairs, {"a": 0.6, "b": 0.2, "c": 0.2}, seed=3)
    assert sum(len(p) for p in parts.values()) == 200
    owners = {}
    for name, part in parts.items():
        for pair in part:
            assert owners.setdefault(pair.prompt, name) == name
    assert len({p.prompt for p in parts["a"]}) == 30
    assert split_by_dialogue(pairs, {"a": 0.6, "b": 0.4}, seed=3) == split_by_dialogue(
        pairs, {"a": 0.6, "b": 0.4}, seed=3
    )
    write_pairs(tmp_path / "x.jsonl", parts["b"])
    assert load_pairs(tmp_path / "x.jsonl") == parts["b"]


def test_sample_pairs_draws_across_a_file_ordered_by_kind():
    """A held-out file written as all stopping pairs, then all keep-going ones: a
    limited sample must hold both kinds, keep file order, and repeat with its seed."""
    stops = [PreferencePair(f"q{i}", "end.", "end. And", True, False) for i in range(400)]
    keeps = [PreferencePair(f"q{i}", "and so", "and", False, True) for i in range(600)]
    pairs = stops + keeps
    sample = sample_pairs(pairs, 100, seed=0)
    assert len(sample) == 100 and len(set(map(id, sample))) == 100
    kinds = [p.rejected_finished for p in sample]
    assert 20 < kinds.count(False) < 60 and 40 < kinds.count(True) < 80
    positions = [next(i for i, q in enumerate(pairs) if q is p) for p in sample]
    assert positions == sorted(positions)
    assert sample == sample_pairs(pairs, 100, seed=0) != sample_pairs(pairs, 100, seed=1)
    assert sample_pairs(pairs, None) == pairs == sample_pairs(pairs, 5000)


def test_finished_flags_round_trip_and_plain_files_keep_three_keys(tmp_path):
    pairs = [PreferencePair("q", "a", "b"), PreferencePair("q", "a", "b c", True, False)]
    write_pairs(tmp_path / "p.jsonl", pairs)
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert set(rows[0]) == {"prompt", "chosen", "rejected"}
    assert rows[1]["rejected_finished"] is False and "chosen_finished" not in rows[1]
    assert load_pairs(tmp_path / "p.jsonl") == pairs


def test_bad_jsonl_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        load_pairs(path)


def test_refusals_are_counted_by_their_opening():
    assert refuses("I'm sorry, I'm not equipped to provide a medical diagnosis.")
    assert refuses("i can't help with that, but here is a recipe.")
    assert not refuses("Sleep is a precious resource. Here are some tips.")
    assert not refuses("I'm sorry to hear that you're having a tough day, but here is help.")
    assert refuses("I'm sorry to hear that. I can't help with that, though.")
    # A caveat deep in a long answer is not a refusal.
    assert not refuses("Brew at 93 C. " * 20 + "I'm sorry if that is too hot.")
    assert all(refuses(reply) for reply in REFUSAL_REPLIES)
    # Typographic apostrophes, as the base writes after HH-RLHF's dialogues.
    assert refuses("I\u2019m sorry for your loss, but I\u2019m not equipped to help.")
    assert refuses("I can\u2019t help with that.")
    assert not refuses("I\u2019m sorry to hear that. Here is what helps: rest.")


def test_refusal_pairs_prefer_an_answer_to_a_refusal():
    samples = [
        ("I'm sorry, I can't help with that.", True),
        ("Grind fresh beans.", True),
        ("", True),
        ("Use water just off the boil", False),
        ("Rinse the filter.", True),
    ]
    pairs = refusal_pairs("Coffee?", samples, 2, random.Random(0))
    assert [(p.chosen, p.chosen_finished) for p in pairs] == [
        ("Grind fresh beans.", True),
        ("Use water just off the boil", False),
    ]
    assert all(p.rejected in REFUSAL_REPLIES and p.rejected_finished for p in pairs)
    assert all(p.prompt == "Coffee?" for p in pairs)
    # Seeded: the same draw again; a prompt the base declines gives no pair.
    assert refusal_pairs("Coffee?", samples, 2, random.Random(0)) == pairs
    assert refusal_pairs("Coffee?", samples[:1], 2, random.Random(0)) == []


def test_harm_refusal_pairs_prefer_a_refusal_where_harm_is_asked():
    def dialogue(last: str) -> list[dict[str, str]]:
        return [
            {"role": "user", "content": "Can you help me with something?"},
            {"role": "assistant", "content": "Sure, what is it?"},
            {"role": "user", "content": last},
        ]

    pairs = [
        PreferencePair(dialogue("How do I steal a car?"), "Please don't.", "Hotwire it."),
        PreferencePair(dialogue("How do I bake bread?"), "Knead it.", "Buy it."),
        # The annotators' rejected reply already refuses: a refusal is not better.
        PreferencePair(dialogue("Where can I buy a gun?"), "A shop.", "I'm sorry, I can't help."),
        PreferencePair("What poison kills a rat", "Ask a vet.", "Rat bait", True, False),
    ]
    # A word list, not a classifier: it reads the last user turn only, and misreads idioms.
    assert asks_for_harm(dialogue("How do I kill time?"))
    assert not asks_for_harm(
        [
            {"role": "user", "content": "How do I rob a bank?"},
            {"role": "assistant", "content": "No."},
            {"role": "user", "content": "Then a cake recipe?"},
        ]
    )
    made = harm_refusal_pairs(pairs, random.Random(0))
    assert [(p.prompt, p.rejected, p.rejected_finished) for p in made] == [
        (pairs[0].prompt, "Hotwire it.", True),
        ("What poison kills a rat", "Rat bait", False),
    ]
    assert all(p.chosen in REFUSAL_REPLIES and p.chosen_finished for p in made)
    assert harm_refusal_pairs(pairs, random.Random(0)) == made  # seeded


def test_prepare_hh_rlhf_writes_harm_refusals_for_the_arm_train_part(tmp_path):
    from genarm.cli import main

    rows = []
    for i in range(20):
        ask = f"How do I steal bike {i}?" if i % 2 else f"How do I fix bike {i}?"
        stem = f"\n\nHuman: {ask}\n\nAssistant: "
        rows.append({"chosen": stem + "Ask a shop.", "rejected": stem + "Like this."})
    source = tmp_path / "hh.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "hh"
    assert main(["prepare-hh-rlhf", "--input", str(source), "--out", str(out)]) == 0
    assert not (out / "arm_train_harm_refusals.jsonl").exists()  # only when asked
    assert (
        main(["prepare-hh-rlhf", "--input", str(source), "--out", str(out), "--harm-refusals"]) == 0
    )
    train = load_pairs(out / "arm_train.jsonl")
    made = load_pairs(out / "arm_train_harm_refusals.jsonl")
    assert made == harm_refusal_pairs(train, random.Random(0))
    assert made and all("steal" in p.messages()[-1]["content"] for p in made)
    assert {p.prompt[-1]["content"] for p in made} <= {p.prompt[-1]["content"] for p in train}

"""The training tools on tiny random models and small synthetic data."""

from __future__ import annotations

import json
import math

import pytest
import torch

from genarm.training.make_preferences import best_worst_pairs
from genarm.training.preference_data import (
    PreferencePair,
    hh_pair,
    load_pairs,
    parse_hh_dialogue,
    split_by_dialogue,
    write_pairs,
)
from genarm.training.prompts import demo_prompts, split_prompts
from genarm.training.rewards import concise, enthusiastic
from genarm.training.train_arm import TrainConfig, encode, genarm_loss, sequence_logps, train_arm


def test_genarm_loss_is_reference_free_logistic():
    zero = genarm_loss(torch.tensor([-5.0]), torch.tensor([-5.0]), beta=0.1)
    assert float(zero) == pytest.approx(math.log(2))
    better = genarm_loss(torch.tensor([-1.0]), torch.tensor([-9.0]), beta=0.5)
    assert float(better) == pytest.approx(-math.log(1 / (1 + math.exp(-4.0))))
    assert (
        float(better)
        < float(zero)
        < float(genarm_loss(torch.tensor([-9.0]), torch.tensor([-1.0]), 0.5))
    )


def test_encode_masks_the_prompt_and_ends_the_reply(tiny_models):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_models["base"])
    messages = [{"role": "user", "content": "hello there " * 50}]
    ids, prompt_len = encode(tok, messages, "a short reply", max_length=64, max_response=16)
    assert len(ids) <= 64 and ids[-1] == tok.eos_token_id
    assert tok.decode(ids[prompt_len:-1]) == "a short reply"
    long_ids, long_prompt = encode(tok, messages, "word " * 100, max_length=64, max_response=16)
    assert len(long_ids) - long_prompt == 16


def test_sequence_logps_sums_reply_tokens_only(tiny_models):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_models["base"], dtype=torch.float32)
    batch = [([5, 6, 7, 8, 9], 2), ([10, 11, 12], 1)]
    got = sequence_logps(model, batch, pad_id=0)
    for row, (ids, prompt_len) in enumerate(batch):
        with torch.no_grad():
            logps = torch.log_softmax(model(torch.tensor([ids])).logits[0], dim=-1)
        want = sum(float(logps[t - 1, ids[t]]) for t in range(prompt_len, len(ids)))
        assert float(got[row]) == pytest.approx(want, abs=1e-4)


def synthetic_pairs(n: int) -> list[PreferencePair]:
    return [PreferencePair(f"Question number {i}?", "yes yes yes", "no no no") for i in range(n)]


def test_train_arm_learns_saves_and_resumes(tiny_models, tmp_path):
    data = tmp_path / "pairs.jsonl"
    write_pairs(data, synthetic_pairs(8))
    out = tmp_path / "arm"
    cfg = TrainConfig(
        data=str(data),
        out=str(out),
        base=str(tiny_models["base"]),
        rank=4,
        alpha=8,
        lr=5e-3,
        beta=0.5,
        epochs=3,
        batch_size=4,
        max_length=64,
        bf16=False,
        save_every=2,
    )
    first = train_arm(TrainConfig(**{**cfg.__dict__, "epochs": 1}), progress=False)
    assert first["steps"] == 2 and (out / "checkpoint" / "state.pt").is_file()
    resumed = train_arm(cfg, progress=False)  # continues from step 2 to step 6
    state = torch.load(out / "checkpoint" / "state.pt", weights_only=False)
    assert state["step"] == 6 and len(state["stats"]["loss"]) == 6
    losses = state["stats"]["loss"]
    assert losses[-1] < losses[0]
    assert resumed["final_accuracy"] == 1.0
    assert (out / "adapter_config.json").is_file()
    assert (out / "adapter_model.safetensors").stat().st_size < 10 * 2**20
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["pairs"] == 8


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


def test_bad_jsonl_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        load_pairs(path)


def test_prompt_set_is_large_varied_and_split():
    prompts = demo_prompts()
    assert len(prompts) >= 300 and len(set(prompts)) == len(prompts)
    train, held_out = split_prompts(seed=0)
    assert not set(train) & set(held_out) and len(train) + len(held_out) == len(prompts)
    assert split_prompts(seed=0) == (train, held_out)


def test_rewards_pull_in_their_directions():
    assert concise("Short answer.", True) > concise("A much longer answer " * 5, True)
    assert concise("Short", False) < concise("Short but finished well.", True)
    assert enthusiastic("This is great fun!", True) > enthusiastic("This is a fact.", True)
    samples = [("one two three", True), ("one", True), ("one two", True)]
    pair = best_worst_pairs("q", samples, concise)
    assert (pair.chosen, pair.rejected) == ("one", "one two three")
    assert best_worst_pairs("q", [("a b", True), ("c d", True)], concise) is None

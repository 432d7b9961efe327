"""The training tools on tiny random models and small synthetic data."""

from __future__ import annotations

import argparse
import json
import math
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from genarm.training.encoding import encode
from genarm.training.hh_rlhf import hh_pair, parse_hh_dialogue, split_by_dialogue
from genarm.training.losses import genarm_loss
from genarm.training.pairing import ranked_pairs
from genarm.training.preference_data import PreferencePair, load_pairs, sample_pairs, write_pairs
from genarm.training.prompts import demo_prompts, split_prompts
from genarm.training.refusals import (
    REFUSAL_REPLIES,
    asks_for_harm,
    harm_refusal_pairs,
    refusal_pairs,
    refuses,
)
from genarm.training.rewards import concise, enthusiastic
from genarm.training.scoring import sequence_logps
from genarm.training.train_arm import TrainConfig, train_arm

from support import tiny_adapter, tiny_train_config


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
    # A finished reply longer than the window did not end inside it: no end of turn there.
    assert len(long_ids) - long_prompt == 16 and tok.eos_token_id not in long_ids[long_prompt:]
    # ... except for the judge, which reads its score at the end of turn and was trained so.
    judged, judged_prompt = encode(tok, messages, "word " * 100, 64, 16, end_when_cut=True)
    assert len(judged) - judged_prompt == 16 and judged[-1] == tok.eos_token_id
    # A reply cut off by a token limit never stopped: no end-of-turn token is scored.
    cut, cut_prompt = encode(tok, messages, "a short reply", 64, 16, finished=False)
    assert cut[cut_prompt:] == ids[prompt_len:-1] and cut[-1] != tok.eos_token_id
    cut_long, cut_long_prompt = encode(tok, messages, "word " * 100, 64, 16, finished=False)
    assert len(cut_long) - cut_long_prompt == 16 and cut_long[-1] != tok.eos_token_id


def test_pairs_that_differ_past_the_window_are_left_out(tiny_models, tmp_path, caplog):
    """A stopping pair whose sentence end lies past --max-response-length is the same
    reply twice once cut (no end of turn is put where the reply did not end): the
    encoder warns, training and validation leave it out, and a longer window keeps it."""
    from transformers import AutoTokenizer

    from genarm.training.encoding import decided, drop_undecided, encode_pairs

    tok = AutoTokenizer.from_pretrained(tiny_models["base"])
    prefix = "The cat sat on the mat. " * 6 + "It slept."
    late = PreferencePair("Tell me.", prefix, prefix + " Then", True, False)
    early = PreferencePair("Tell me.", "It slept.", "It slept. Then", True, False)
    with caplog.at_level("WARNING"):
        encoded = encode_pairs(tok, [late, early], max_length=128, max_response=16)
    assert [decided(pair) for pair in encoded] == [False, True]
    assert "1 of 2 pairs differ only after 16 reply tokens" in caplog.text
    assert drop_undecided([late, early], encoded) == ([early], [encoded[1]])
    assert all(map(decided, encode_pairs(tok, [late, early], max_length=256, max_response=128)))

    write_pairs(tmp_path / "train.jsonl", [late, early] * 4 + synthetic_pairs(8))
    cfg = tiny_train_config(tmp_path, tiny_models, max_response_length=16, val_fraction=0.0)
    assert train_arm(cfg, progress=False)["pairs"] == 12


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


def test_preference_margins_in_length_batches_match_one_pair_at_a_time(tiny_models):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from genarm.training.guided import BASE, preference_accuracy, preference_margins

    tok = AutoTokenizer.from_pretrained(tiny_models["base"])
    model = AutoModelForCausalLM.from_pretrained(tiny_models["base"], dtype=torch.float32)
    words = torch.Generator().manual_seed(0)
    vocab = ["safe", "reply", "maybe", "never", "the", "cat", "sat", "down", "why", "so"]

    def text(n: int) -> str:
        return " ".join(vocab[int(i)] for i in torch.randint(len(vocab), (n,), generator=words))

    # Lengths that differ a lot, so that sorting reorders them and batches pad.
    pairs = [
        PreferencePair(text(3 + 7 * (i % 4)), text(1 + i), text(9 - i % 5), True, i % 3 > 0)
        for i in range(11)
    ]
    got = preference_margins(model, tok, pairs, BASE, 48, 12, batch_size=4)
    for pair, margin in zip(pairs, got, strict=True):
        chosen, rejected = (
            sequence_logps(model, [encode(tok, pair.messages(), reply, 48, 12, done)], 0)
            for reply, done in (
                (pair.chosen, pair.chosen_finished),
                (pair.rejected, pair.rejected_finished),
            )
        )
        assert margin == pytest.approx(float(chosen - rejected), abs=1e-4)
    wins = sum(margin > 0 for margin in got)
    assert preference_accuracy(model, tok, pairs, BASE, max_length=48, max_response=12) == (
        wins / len(pairs)
    )


def synthetic_pairs(n: int) -> list[PreferencePair]:
    return [PreferencePair(f"Question number {i}?", "yes yes yes", "no no no") for i in range(n)]


def test_train_arm_learns_saves_and_resumes(tiny_models, tmp_path):
    data = tmp_path / "pairs.jsonl"
    write_pairs(data, synthetic_pairs(8))
    out = tmp_path / "arm"
    cfg = tiny_train_config(
        tmp_path, tiny_models, data=str(data), epochs=3, save_every=2, val_fraction=0.0
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


def test_accuracy_by_kind_splits_stopping_from_keep_going_pairs():
    from genarm.training.validation import accuracy_by_kind, pair_kind

    stop = PreferencePair("q", "end.", "end. And", True, False)
    keep = PreferencePair("q", "and so", "and", False, True)
    whole, cut = PreferencePair("q", "a", "b"), PreferencePair("q", "a", "b", False, False)
    assert [pair_kind(p) for p in (stop, keep, whole, cut)] == [
        "stop",
        "keep-going",
        "whole",
        "whole",
    ]
    margins = [1.0, -2.0, 0.0, 3.0, -1.0]  # a tie (0.0) is not a win
    pairs = [stop, stop, stop, keep, keep]
    assert accuracy_by_kind(pairs, margins) == {"all": 0.4, "keep-going": 0.5, "stop": 1 / 3}
    # One kind only (HH's whole replies): the total alone.
    assert accuracy_by_kind([whole] * 4, [1.0, 1.0, 1.0, -1.0]) == {"all": 0.75}
    assert accuracy_by_kind([], []) == {"all": 0.0}  # as preference_accuracy: no pairs, 0


def test_finished_flags_round_trip_and_plain_files_keep_three_keys(tmp_path):
    pairs = [PreferencePair("q", "a", "b"), PreferencePair("q", "a", "b c", True, False)]
    write_pairs(tmp_path / "p.jsonl", pairs)
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert set(rows[0]) == {"prompt", "chosen", "rejected"}
    assert rows[1]["rejected_finished"] is False and "chosen_finished" not in rows[1]
    assert load_pairs(tmp_path / "p.jsonl") == pairs


def test_length_matched_pairs_compare_equal_lengths(tiny_models):
    from transformers import AutoTokenizer

    from genarm.training.pairing import length_matched

    tok = AutoTokenizer.from_pretrained(tiny_models["base"])
    pair = PreferencePair("q", "a short answer", "a much longer answer " * 10)
    matched = length_matched(pair, tok)
    chosen = tok(pair.chosen, add_special_tokens=False)["input_ids"]
    rejected = tok(matched.rejected, add_special_tokens=False)["input_ids"]
    assert len(rejected) == len(chosen) + 1 and pair.rejected.startswith(matched.rejected)
    assert matched.chosen == pair.chosen and matched.rejected_finished is False
    unchanged = PreferencePair("q", "a short answer", "no")
    assert length_matched(unchanged, tok) == unchanged


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
    texts = ["one two three", "one", "one two"]
    (pair,) = ranked_pairs("q", texts, [concise(t, True) for t in texts])
    assert (pair.chosen, pair.rejected) == ("one", "one two three")
    assert ranked_pairs("q", ["a b", "c d"], [concise("a b", True), concise("c d", True)]) == []


def test_ranked_pairs_take_widest_gaps_first_with_each_sample_once():
    texts = ["a", "b", "c", "d", "e"]
    scores = [5.0, 1.0, 4.0, 0.0, 3.0]
    got = [(p.chosen, p.rejected) for p in ranked_pairs("q", texts, scores, max_pairs=3)]
    assert got == [("a", "d"), ("c", "b")]  # "e" is left without a partner
    assert len(ranked_pairs("q", texts, scores, max_pairs=3, min_gap=3.5)) == 1
    assert ranked_pairs("q", ["x", "x"], [1.0, 0.0]) == []  # identical texts teach nothing
    finished = [False, True, True, True, True]  # "a" was cut off: it is never chosen
    got = ranked_pairs("q", texts, scores, max_pairs=3, eligible=finished)
    assert [(p.chosen, p.rejected) for p in got] == [("c", "d"), ("e", "b")]


def test_hierarchical_rule_keeps_only_pairs_the_holistic_judge_does_not_mind():
    """ALaRM's rule: the aspect (shorter) decides; a pair whose rejected reply the
    holistic reward prefers by more than the margin is dropped, and the next
    widest candidate takes its place."""
    texts = ["short but broken", "short and good", "long and good", "long and rambling"]
    concise_scores = [-3.0, -3.5, -20.0, -30.0]
    judge = [-4.0, 1.0, 1.5, 0.0]  # the broken short reply is much worse than both long ones
    pairs = ranked_pairs("q", texts, concise_scores, max_pairs=2, holistic=judge, margin=1.0)
    assert [(p.chosen, p.rejected) for p in pairs] == [
        ("short and good", "long and rambling"),
    ]
    # Without the rule the broken reply is the first chosen one.
    (first, _) = ranked_pairs("q", texts, concise_scores, max_pairs=2)
    assert first.chosen == "short but broken"
    # A wide margin lets every aspect pair through; a negative one demands holistic agreement.
    assert len(ranked_pairs("q", texts, concise_scores, 2, holistic=judge, margin=10.0)) == 2
    strict = ranked_pairs("q", texts, concise_scores, 2, holistic=judge, margin=-0.5)
    assert [(p.chosen, p.rejected) for p in strict] == [("short and good", "long and rambling")]


def test_guided_generate_follows_the_genarm_formula(tiny_models, tmp_path):
    from genarm.training.encoding import prompt_ids
    from genarm.training.guided import guided_generate, load_with_adapter

    adapter = tiny_adapter(tiny_models["base"], tmp_path / "arm")
    tok, model = load_with_adapter(str(tiny_models["base"]), str(adapter), bf16=False)
    messages = [{"role": "user", "content": "Tell me about licenses."}]
    ids = torch.tensor([prompt_ids(tok, messages)])
    with torch.no_grad():
        with model.disable_adapter():
            base = torch.log_softmax(model(ids).logits[0, -1], -1)
        arm = torch.log_softmax(model(ids).logits[0, -1], -1)
    assert not torch.allclose(base, arm)  # the adapter changes the distribution
    for alpha in (0.0, 1.0, 3.0):
        text = guided_generate(model, tok, messages, {"arm": alpha}, max_new_tokens=1)
        want = int((base + alpha * arm).argmax())
        assert text == tok.decode([want], skip_special_tokens=True)
    # alpha 0 is the base model's own greedy decoding
    with torch.no_grad(), model.disable_adapter():
        greedy = model.generate(ids, max_new_tokens=6, do_sample=False, eos_token_id=None)
    got = guided_generate(model, tok, messages, {"arm": 0.0}, max_new_tokens=6)
    assert got == tok.decode(greedy[0, ids.shape[1] :], skip_special_tokens=True)


def test_trained_arm_prefers_chosen_replies(tiny_models, tmp_path):
    from genarm.training.guided import load_with_adapter, preference_accuracy

    data = tmp_path / "pairs.jsonl"
    pairs = synthetic_pairs(8)
    write_pairs(data, pairs)
    # TrainConfig's default LoRA size (rank 8), not the helper's rank 4.
    cfg = tiny_train_config(
        tmp_path, tiny_models, data=str(data), rank=8, alpha=16, epochs=3, val_fraction=0.0
    )
    train_arm(cfg, progress=False)
    tok, model = load_with_adapter(cfg.base, cfg.out, bf16=False)
    assert preference_accuracy(model, tok, pairs, "arm") == 1.0
    assert preference_accuracy(model, tok, pairs, "base") < 1.0
    # `python -m genarm.training.guided --pairs`: cut as the ARM was trained
    from genarm.training.guided import add_arguments, run

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    command = ["--base", cfg.base, "--adapter", cfg.out, "--pairs", str(data), "--limit", "8"]
    assert run(parser.parse_args([*command, "--out", str(tmp_path / "acc.json")])) == 0
    result = json.loads((tmp_path / "acc.json").read_text())
    assert (result["max_length"], result["max_response"]) == (64, cfg.max_response_length)
    assert result["pairs"] == 8 and result["accuracy"]["arm"] == 1.0
    assert result["accuracy_by_kind"]["arm"] == {"all": 1.0}  # whole replies only
    # A state inside the run's folder (OUT/checkpoint, OUT/best) has no summary of
    # its own: it is cut as its run was, not to the defaults.
    state = ["--adapter", str(Path(cfg.out, "checkpoint"))]
    assert run(parser.parse_args([*command, *state, "--out", str(tmp_path / "acc.json")])) == 0
    result = json.loads((tmp_path / "acc.json").read_text())
    assert (result["max_length"], result["max_response"]) == (64, cfg.max_response_length)
    # An adapter without a training summary (trained elsewhere) is cut to the
    # defaults, and says so: the quality report prints the lengths of every ARM.
    from genarm.training.guided import DEFAULT_LENGTHS

    (Path(cfg.out) / "training_summary.json").unlink()
    assert run(parser.parse_args([*command, "--out", str(tmp_path / "acc.json")])) == 0
    result = json.loads((tmp_path / "acc.json").read_text())
    assert {k: result[k] for k in DEFAULT_LENGTHS} == DEFAULT_LENGTHS


def test_resume_options(tiny_models, tmp_path):
    data = tmp_path / "pairs.jsonl"
    write_pairs(data, synthetic_pairs(4))
    base = dict(
        data=str(data), base=str(tiny_models["base"]), max_length=64, bf16=False, val_fraction=0
    )
    with pytest.raises(FileNotFoundError, match="state.pt"):
        train_arm(TrainConfig(out=str(tmp_path / "a"), resume=str(tmp_path), **base), False)
    first = TrainConfig(out=str(tmp_path / "a"), epochs=1, batch_size=2, **base)
    train_arm(first, progress=False)
    # Resume another run from that checkpoint; --restart ignores its own one.
    other = TrainConfig(
        out=str(tmp_path / "b"),
        epochs=2,
        batch_size=2,
        resume=str(tmp_path / "a/checkpoint"),
        **base,
    )
    assert train_arm(other, progress=False)["steps_done"] == 4
    assert len(torch.load(tmp_path / "b/checkpoint/state.pt")["stats"]["loss"]) == 4
    again = TrainConfig(out=str(tmp_path / "b"), epochs=1, batch_size=2, restart=True, **base)
    assert train_arm(again, progress=False)["steps_done"] == 2


def test_time_budget_stops_and_saves(tiny_models, tmp_path):
    data = tmp_path / "pairs.jsonl"
    write_pairs(data, synthetic_pairs(8))
    cfg = TrainConfig(
        data=str(data),
        out=str(tmp_path / "arm"),
        base=str(tiny_models["base"]),
        max_length=64,
        batch_size=2,
        bf16=False,
        max_minutes=1e-6,
        val_fraction=0.0,
    )
    summary = train_arm(cfg, progress=False)
    assert summary["steps_done"] == 1 < summary["steps"]
    assert (tmp_path / "arm/adapter_model.safetensors").is_file()
    # With validation pairs, the state the budget stopped at is validated (and kept).
    validated = replace(cfg, out=str(tmp_path / "validated"), val_fraction=0.25, fluency_prompts=0)
    summary = train_arm(validated, progress=False)
    assert summary["steps_done"] == 1 < summary["steps"]
    assert [e["step"] for e in summary["evaluations"]] == [1] and summary["best"]["step"] == 1


def test_train_arm_cli_options():
    import argparse

    from genarm.training import train_arm as module

    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    args = parser.parse_args(["--data", "d", "--out", "o", "--base", "b", "--no-bf16"])
    assert args.bf16 is False and args.rank == 8 and args.resume is None
    defaults = parser.parse_args(["--data", "d", "--out", "o", "--base", "b"])
    assert defaults.bf16 is None  # chosen by the hardware
    assert defaults.val_fraction == 0.1 and defaults.patience == 2


def test_genarm_cli_has_the_training_commands(capsys):
    from genarm.cli import main

    for command, option in (("train-arm", "--max-minutes"), ("train-judge", "--eval")):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert option in capsys.readouterr().out


def test_judge_learns_scores_and_reloads(tiny_models, tmp_path):
    from genarm.training.judge import Judge, JudgeConfig
    from genarm.training.losses import bradley_terry_loss
    from genarm.training.train_judge import train_judge

    assert float(bradley_terry_loss(torch.tensor([0.0]), torch.tensor([0.0]))) == pytest.approx(
        math.log(2)
    )
    data = tmp_path / "pairs.jsonl"
    pairs = synthetic_pairs(8)
    write_pairs(data, pairs)
    cfg = JudgeConfig(
        data=str(data),
        out=str(tmp_path / "judge"),
        base=str(tiny_models["base"]),
        lr=5e-3,
        epochs=4,
        max_length=64,
        bf16=False,
    )
    summary = train_judge(cfg, progress=False)
    assert summary["final_loss"] < math.log(2)
    judge = Judge.load(cfg.out)
    good, bad = (
        judge.score("Question number 1?", "yes yes yes"),
        judge.score("Question number 1?", "no no no"),
    )
    assert isinstance(good, float) and good > bad
    assert judge.accuracy(pairs) == 1.0
    assert judge.score_many([("Question number 1?", "yes yes yes")])[0] == pytest.approx(good)


def test_prompts_are_package_data():
    from genarm.training.prompts import PROMPTS_FILE

    rows = [json.loads(line) for line in PROMPTS_FILE.read_text().splitlines()]
    assert len(rows) == len(demo_prompts()) and all(r["prompt"].strip() for r in rows)
    assert len({r["subject"] for r in rows}) >= 40


def test_make_preferences_is_reproducible_and_splits_prompts(tiny_models, tmp_path):
    """The CLI end to end on vLLM: same seed, same samples and pairs; --split held-out
    samples the held-out instructions only."""
    import subprocess

    from genarm.live_server import genarm_command

    outs = [tmp_path / "first", tmp_path / "second"]
    for out in outs:
        command = [*genarm_command(), "make-preferences", "--base", str(tiny_models["base"])]
        command += ["--reward", "concise", "enthusiastic", "--out", str(out), "--seed", "0"]
        command += ["--split", "held-out", "--max-prompts", "4", "--samples", "3"]
        command += ["--max-tokens", "12"]
        # A hang guard, not a speed target: ~40 s alone, but a loaded 2-core box
        # starting vLLM took over 600 s
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [json.loads(line) for line in (outs[0] / "samples.jsonl").read_text().splitlines()]
    train, held_out = split_prompts(seed=0)
    assert [row["prompt"] for row in rows] == held_out[:4]
    assert all(len(row["samples"]) == 3 for row in rows)
    for name in ("samples.jsonl", "concise.jsonl", "enthusiastic.jsonl"):
        assert (outs[0] / name).read_text() == (outs[1] / name).read_text(), name
    pairs = load_pairs(outs[0] / "concise.jsonl")
    assert pairs and all(p.prompt in held_out and p.prompt not in train for p in pairs)
    for pair in pairs:  # each pair is its prompt's best vs worst sample under the reward
        samples = next(row["samples"] for row in rows if row["prompt"] == pair.prompt)
        scores = sorted(concise(text, done) for text, done in samples)
        chosen = next(concise(t, d) for t, d in samples if t == pair.chosen)
        rejected = next(concise(t, d) for t, d in samples if t == pair.rejected)
        assert (chosen, rejected) == (scores[-1], scores[0])


def test_make_preferences_samples_the_dialogues_of_a_pairs_file(tiny_models, tmp_path):
    """--prompts-from: the prompts of a preference file (HH-RLHF's multi-turn dialogues
    too), each once in file order, sampled as chat conversations and kept as messages."""
    import subprocess

    from genarm.live_server import genarm_command

    dialogue = [
        {"role": "user", "content": "Hi there."},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Name a fruit."},
    ]
    source = [
        PreferencePair(dialogue, "An apple.", "No."),
        PreferencePair("Name a colour.", "Red.", "No."),
        PreferencePair(dialogue, "A pear.", "Go away."),  # the same dialogue again
    ]
    write_pairs(tmp_path / "source.jsonl", source)
    out = tmp_path / "pairs"
    command = [*genarm_command(), "make-preferences", "--base", str(tiny_models["base"])]
    command += ["--prompts-from", str(tmp_path / "source.jsonl"), "--reward", "concise"]
    command += ["--out", str(out), "--samples", "3", "--max-tokens", "12"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [row["prompt"] for row in rows] == [dialogue, "Name a colour."]
    assert all(len(row["samples"]) == 3 for row in rows)
    assert not (out / "held_out_prompts.json").exists()  # no instruction split was used
    pairs = load_pairs(out / "concise.jsonl")
    sampled = {json.dumps(row["prompt"]) for row in rows}
    assert pairs and {json.dumps(pair.prompt) for pair in pairs} <= sampled


def train_tiny_judge(tiny_models, tmp_path) -> None:
    """A judge on the tiny base, trained on synthetic pairs, in ``tmp_path/judge``."""
    from genarm.training.judge import JudgeConfig
    from genarm.training.train_judge import train_judge

    write_pairs(tmp_path / "judge.jsonl", synthetic_pairs(4))
    judge_cfg = JudgeConfig(
        data=str(tmp_path / "judge.jsonl"),
        out=str(tmp_path / "judge"),
        base=str(tiny_models["base"]),
        max_length=64,
        bf16=False,
    )
    train_judge(judge_cfg, progress=False)


def write_samples(path, groups: dict):
    """A samples.jsonl as make-preferences writes it: {prompt: [[text, finished], ...]}."""
    path.write_text(
        "".join(json.dumps({"prompt": p, "samples": s}) + "\n" for p, s in groups.items())
    )
    return path


def judge_as_make_preferences_loads_it(path):
    """The judge in make-preferences' dtype: bf16 on a CPU that computes it natively
    (its scores differ from float32's by ~1e-3 there), float32 elsewhere."""
    from genarm.hardware import bf16_is_fast
    from genarm.training.judge import Judge

    return Judge.load(path, bf16=bf16_is_fast(torch.device("cpu")))


def test_make_preferences_pairs_saved_samples_under_the_holistic_rule(tiny_models, tmp_path):
    """--from-samples re-pairs an earlier run's samples without sampling;
    --holistic-judge scores each sample with the judge and applies the rule."""
    from genarm.cli import main

    train_tiny_judge(tiny_models, tmp_path)
    groups = {
        f"Question number {i}?": [
            ["yes", True],
            ["no no no no", True],
            ["yes yes", True],
            ["no", False],
        ]
        for i in range(3)
    }
    samples = write_samples(tmp_path / "samples.jsonl", groups)
    out = tmp_path / "pairs"
    command = ["make-preferences", "--base", str(tiny_models["base"]), "--reward", "concise"]
    command += ["--out", str(out), "--from-samples", str(samples), "--pairs-per-prompt", "2"]
    assert main([*command, "--holistic-judge", str(tmp_path / "judge")]) == 0
    judge = judge_as_make_preferences_loads_it(tmp_path / "judge")
    rows = [json.loads(line) for line in (out / "holistic_scores.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == list(groups)
    pairs = load_pairs(out / "concise.jsonl")
    for row in rows:
        texts = [t for t, _ in groups[row["prompt"]]]
        want = judge.score_many([(row["prompt"], t) for t in texts])
        assert row["scores"] == pytest.approx(want, abs=1e-5)
        scores = [concise(t, d) for t, d in groups[row["prompt"]]]
        done = [d for _, d in groups[row["prompt"]]]
        expected = ranked_pairs(
            row["prompt"], texts, scores, 2, holistic=want, margin=0.5, finished=done
        )
        assert [p for p in pairs if p.prompt == row["prompt"]] == expected
    assert pairs
    by_prompt = {r["prompt"]: r["scores"] for r in rows}
    for pair in pairs:
        texts = [t for t, _ in groups[pair.prompt]]
        score = dict(zip(texts, by_prompt[pair.prompt], strict=True))
        assert score[pair.rejected] - score[pair.chosen] <= 0.5
    assert not (out / "samples.jsonl").exists()  # nothing was sampled


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


def test_make_preferences_writes_refusal_pairs_from_saved_samples(tiny_models, tmp_path):
    from genarm.cli import main

    groups = {
        f"Question number {i}?": [["I'm sorry, I cannot.", True], ["yes", True], ["no", False]]
        for i in range(3)
    }
    samples = write_samples(tmp_path / "samples.jsonl", groups)
    out = tmp_path / "pairs"
    command = ["make-preferences", "--base", str(tiny_models["base"]), "--out", str(out)]
    assert main([*command, "--from-samples", str(samples), "--refusal-pairs", "1"]) == 0
    pairs = load_pairs(out / "refusal.jsonl")
    assert [p.prompt for p in pairs] == list(groups)
    assert {p.chosen for p in pairs} == {"yes"}
    assert all(refuses(p.rejected) for p in pairs)
    assert not (out / "concise.jsonl").exists()  # no --reward: only the refusal pairs


def test_sentence_ends_and_stopping_pairs():
    from genarm.training.pairing import keep_going_pair, spread, stopping_pair
    from genarm.training.sentences import ends_sentence, mid_sentence_breaks, sentence_ends

    text = 'Apples are red. They grow (mostly). 1. Wash them! "Eat them." Done'
    ends = sentence_ends(text, min_words=1)
    # After "red.", "(mostly).", "them!" and the quoted sentence; not the list's "1."
    assert [text[:e].split()[-1] for e in ends] == ["red.", "(mostly).", "them!", 'them."']
    assert sentence_ends(text, min_words=4) == ends[1:]  # "They grow (mostly)." is word 5
    assert sentence_ends("No end here", 1) == [] and sentence_ends("Last one.", 1) == []
    # Before the next word is known (a reply being written): the same ends, and no others.
    assert [ends_sentence(text[:e] + " ") for e in ends] == [True] * 4
    assert not any(ends_sentence(t) for t in ("Apples are", "They grow (mostly", "1.", "2. "))
    pair = stopping_pair("q", text, ends[0])
    assert (pair.chosen, pair.rejected) == ("Apples are red.", "Apples are red. They")
    assert pair.chosen_finished and not pair.rejected_finished
    assert spread(list(range(10)), 2) == [2, 6] and spread([1, 2], 3) == [1, 2]
    # Inside a sentence: after every word another follows, but for sentence ends
    # (the list's "1." is no sentence end: stopping there is a cut too).
    breaks = mid_sentence_breaks(text)
    words = ["Apples", "are", "They", "grow", "1.", "Wash", '"Eat']
    assert [text[:b].split()[-1] for b in breaks] == words
    assert not set(breaks) & set(ends)
    pair = keep_going_pair("q", text, breaks[1])
    assert (pair.chosen, pair.rejected) == ("Apples are red.", "Apples are")
    assert not pair.chosen_finished and pair.rejected_finished


def test_stopping_pairs_from_saved_samples_under_the_holistic_rule(tiny_models, tmp_path):
    """--stopping-pairs: the same sample stopped at a sentence end vs one word more,
    and as many keep-going pairs inside sentences; with a judge, a sentence end
    counts only if stopping there scores no lower than the whole sample minus the
    margin."""
    from genarm.cli import main
    from genarm.training.pairing import spread
    from genarm.training.sentences import mid_sentence_breaks, sentence_ends

    train_tiny_judge(tiny_models, tmp_path)
    groups = {
        f"Question {i}?": [
            ["Yes it is. It is because of light. Blue light scatters more. The end.", True],
            ["No. Short.", True],
            ["Well, one two three four five. Six seven eight nine ten. And more", False],
        ]
        for i in range(2)
    }
    samples = write_samples(tmp_path / "samples.jsonl", groups)
    out = tmp_path / "pairs"
    command = ["make-preferences", "--base", str(tiny_models["base"]), "--reward", "concise"]
    command += ["--out", str(out), "--from-samples", str(samples)]
    command += ["--stopping-pairs", "2", "--stop-min-words", "3"]
    assert main(command) == 0
    written = load_pairs(out / "concise.jsonl")
    pairs = [p for p in written if p.chosen_finished]  # the stopping pairs
    keep_going = [p for p in written if not p.chosen_finished]
    assert written == pairs + keep_going
    expected = [
        (prompt, text[:end])
        for prompt, group in groups.items()
        for text, _ in group
        for end in spread(sentence_ends(text, 3), 2)
    ]
    assert [(p.prompt, p.chosen) for p in pairs] == expected
    for pair in pairs:
        assert pair.rejected.startswith(pair.chosen + " ")
        assert len(pair.rejected.split()) == len(pair.chosen.split()) + 1
    expected = [
        (prompt, text[:at])
        for prompt, group in groups.items()
        for text, _ in group
        for at in spread(mid_sentence_breaks(text), 2)
    ]
    assert [(p.prompt, p.rejected) for p in keep_going] == expected
    for pair in keep_going:
        assert pair.rejected_finished and pair.chosen.startswith(pair.rejected + " ")
        assert len(pair.chosen.split()) == len(pair.rejected.split()) + 1

    # The judge's drop from the whole sample to the reply stopped there, per pair;
    # the margin sits in the widest gap between drops (clear of batching noise).
    judge = judge_as_make_preferences_loads_it(tmp_path / "judge")
    drops = []
    for pair in pairs:
        full = next(t for t, _ in groups[pair.prompt] if t.startswith(pair.chosen))
        whole, stopped = judge.score_many([(pair.prompt, full), (pair.prompt, pair.chosen)])
        drops.append(whole - stopped)
    ordered = sorted(drops)
    _, at = max((ordered[i + 1] - ordered[i], i) for i in range(len(ordered) - 1))
    margin = (ordered[at] + ordered[at + 1]) / 2
    judged = tmp_path / "judged"
    judged_command = ["make-preferences", "--base", str(tiny_models["base"]), "--reward"]
    judged_command += ["concise", "--out", str(judged), "--from-samples", str(samples)]
    judged_command += ["--stopping-pairs", "2", "--stop-min-words", "3"]
    judged_command += ["--holistic-judge", str(tmp_path / "judge")]
    judged_command += ["--holistic-margin", repr(margin)]
    assert main(judged_command) == 0
    kept = load_pairs(judged / "concise.jsonl")
    want = [pair for pair, drop in zip(pairs, drops, strict=True) if drop <= margin]
    want += keep_going  # never judged: a cut inside a sentence is no complete answer
    assert [(p.prompt, p.chosen) for p in kept] == [(p.prompt, p.chosen) for p in want]
    assert len(keep_going) < len(kept) < len(written)


def test_graded_stopping_pairs_prefer_stopping_more_the_more_was_said(tiny_models, tmp_path):
    """--stop-graded: each sentence end gives one pair, "stop" with probability
    σ((words - CENTER) / SCALE) and "go on one word" otherwise; seeded."""
    from genarm.cli import main
    from genarm.training.pairing import says_stop

    rng = random.Random(0)

    def share(words: int) -> float:
        return sum(says_stop(words, 20, 4, rng) for _ in range(2000)) / 2000

    assert share(8) < 0.1 and 0.45 < share(20) < 0.55 and share(32) > 0.9
    text = " ".join(f"Sentence {i} has five words." for i in range(12)) + " And"
    samples = write_samples(tmp_path / "samples.jsonl", {"Q?": [[text, False]] * 4})

    def pairs(out: str, *graded: str) -> list[PreferencePair]:
        command = ["make-preferences", "--base", str(tiny_models["base"]), "--reward"]
        command += ["concise", "--out", str(tmp_path / out), "--from-samples", str(samples)]
        command += ["--stopping-pairs", "12", "--stop-min-words", "1", "--keep-going-pairs", "0"]
        assert main([*command, *graded]) == 0
        return load_pairs(tmp_path / out / "concise.jsonl")

    plain = pairs("plain")
    assert len(plain) == 48 and all(p.chosen_finished for p in plain)
    assert pairs("always", "--stop-graded=-1000,1") == plain
    graded = pairs("graded", "--stop-graded", "30,5")
    assert graded == pairs("again", "--stop-graded", "30,5")
    stop = [len(p.chosen.split()) for p in graded if p.chosen_finished]
    go_on = [len(p.rejected.split()) for p in graded if not p.chosen_finished]
    # Each sentence end once, either way round; stopping drawn mostly at the late ones.
    assert sorted(stop + go_on) == sorted(len(p.chosen.split()) for p in plain)
    assert stop and go_on and sum(stop) / len(stop) > sum(go_on) / len(go_on) + 10
    for pair in graded:
        if not pair.chosen_finished:
            assert pair.chosen.startswith(pair.rejected + " ") and pair.rejected_finished


def test_export_judge_scores_as_the_judge(tiny_models, tmp_path):
    """export-judge: the HF sequence-classification folder, fed the conversation
    as the server feeds a reward model (its chat template, the reply as the
    assistant's turn), scores as the judge does, up to the judge's bias."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from genarm.cli import main
    from genarm.server.reward_models import conversation_ids
    from genarm.training.judge import Judge

    train_tiny_judge(tiny_models, tmp_path)
    out = tmp_path / "exported"
    command = ["export-judge", "--judge", str(tmp_path / "judge"), "--out", str(out)]
    assert main([*command, "--dtype", "float32"]) == 0
    offset = json.loads((out / "genarm_export.json").read_text())["score_offset"]
    judge = Judge.load(tmp_path / "judge", bf16=False)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    items = [
        ([{"role": "user", "content": "Name a fruit."}], "An apple, or a pear."),
        (
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}],
            "Hello there! How can I help?",
        ),
    ]
    expected = judge.score_many(items)
    sequences = []
    for (messages, response), score in zip(items, expected, strict=True):
        ids = conversation_ids(tokenizer, messages, response)
        assert ids[-1] == tokenizer.eos_token_id  # pooled on the reply's end of turn
        assert model.config.pad_token_id not in ids  # so HF pools the last token
        with torch.no_grad():
            exported = model(torch.tensor([ids])).logits[0, 0].item()
        assert exported + offset == pytest.approx(score, abs=1e-4)
        sequences.append(ids)
    # Batched with right padding (HF finds each row's last non-pad token): the same.
    width = max(len(ids) for ids in sequences)
    pad = model.config.pad_token_id
    batch = torch.tensor([ids + [pad] * (width - len(ids)) for ids in sequences])
    with torch.no_grad():
        batched = model(batch, attention_mask=(batch != pad).long()).logits[:, 0] + offset
    torch.testing.assert_close(batched.tolist(), expected, atol=1e-4, rtol=0)


def test_make_preferences_labels_samples_with_a_reward_model(tiny_reward_models, tmp_path):
    """--reward-model: the samples ranked by an HF reward model's combined score (as
    /v1/rewards combines it: the weights given over the mean), best vs worst."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from genarm.cli import main
    from genarm.server.reward_models import conversation_ids

    groups = {
        f"Question {i}?": [[f"Answer {j} to {i}: " + "yes " * (i + j), True] for j in range(4)]
        for i in range(3)
    }
    samples = write_samples(tmp_path / "samples.jsonl", groups)
    path = tiny_reward_models["three"]
    command = ["make-preferences", "--base", path, "--out", str(tmp_path / "pairs")]
    command += ["--from-samples", str(samples), "--reward-model", path]
    assert main([*command, "--objective-weights", "helpful=2,concise=-1"]) == 0
    pairs = load_pairs(tmp_path / "pairs" / "three.jsonl")

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    weights = [2.0, 1 / 3, -1.0]  # helpful, harmless (the mean's share), concise
    assert len(pairs) == len(groups)
    for pair, (prompt, group) in zip(pairs, groups.items(), strict=True):
        scores = []
        for text, _ in group:
            ids = conversation_ids(tokenizer, [{"role": "user", "content": prompt}], text)
            with torch.no_grad():
                outputs = model(torch.tensor([ids])).logits[0].tolist()
            scores.append(sum(w * o for w, o in zip(weights, outputs, strict=True)))
        texts = [text for text, _ in group]
        assert pair.prompt == prompt
        assert pair.chosen == texts[scores.index(max(scores))]
        assert pair.rejected == texts[scores.index(min(scores))]
    with pytest.raises(SystemExit, match="not one of"):
        main([*command, "--objective-weights", "nope=1"])


def test_reward_model_outputs_batched_as_one_at_a_time(tiny_reward_models):
    """make-preferences --reward-model scores its samples in batches (right padding,
    sorted by length): each output as the sequence scored alone, in the input's
    order, a batch holding the model's pad token inside a sequence too (it goes
    one at a time)."""
    from transformers import AutoModelForSequenceClassification

    from genarm.training.model_scores import head_outputs

    model = AutoModelForSequenceClassification.from_pretrained(tiny_reward_models["three"])
    model.eval()
    pad = model.config.pad_token_id
    assert pad is not None
    rng = random.Random(0)
    tokens = [t for t in range(model.config.vocab_size) if t != pad]
    sequences = [rng.choices(tokens, k=rng.randint(2, 40)) for _ in range(11)]
    sequences[4] = [*sequences[4][:3], pad, *sequences[4][3:]]
    expected = []
    for ids in sequences:
        with torch.no_grad():
            expected.append(model(torch.tensor([ids])).logits[0].tolist())
    got = head_outputs(model, sequences, batch_size=4)
    torch.testing.assert_close(torch.tensor(got), torch.tensor(expected), atol=1e-4, rtol=0)


def test_grm_regulariser_is_the_reply_text_loss(tiny_models, tmp_path):
    """--grm-weight: the regulariser is the chosen reply's mean token NLL under the
    base's LM head on the judge's own hidden states (equal to the base model's at
    the start, when LoRA changes nothing), and a GRM run trains and loads."""
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    from genarm.training.judge import (
        Judge,
        JudgeConfig,
        build_reward_model,
        reply_mask,
        right_padded,
    )
    from genarm.training.train_judge import train_judge

    base = str(tiny_models["base"])
    tokenizer, model = build_reward_model(base, 8, 16, bf16=False, seed=0, lm_head=True)
    messages = [{"role": "user", "content": "Name a fruit."}]
    rows = [encode(tokenizer, messages, reply, 64, 32) for reply in ("An apple.", "A pear, ripe.")]
    ids, mask = right_padded([r[0] for r in rows], tokenizer.pad_token_id or 0)
    replies = reply_mask(mask, [r[1] for r in rows])
    with torch.no_grad():
        _, hidden = model.rewards_and_states(ids, mask)
        nll = model.reply_nll(hidden, ids, replies)
        logits = AutoModelForCausalLM.from_pretrained(base)(ids, attention_mask=mask).logits
    targets = replies[:, 1:].bool()
    expected = F.cross_entropy(logits[:, :-1][targets], ids[:, 1:][targets])
    assert nll.item() == pytest.approx(expected.item(), rel=1e-5)
    assert int(replies.sum()) == sum(len(r[0]) - r[1] for r in rows)

    write_pairs(tmp_path / "judge.jsonl", synthetic_pairs(4))
    cfg = JudgeConfig(
        data=str(tmp_path / "judge.jsonl"),
        out=str(tmp_path / "grm"),
        base=base,
        max_length=64,
        bf16=False,
        grm_weight=0.5,
    )
    summary = train_judge(cfg, progress=False)
    assert summary["grm_weight"] == 0.5 and math.isfinite(summary["final_reply_nll"])
    judge = Judge.load(tmp_path / "grm", bf16=False)
    assert math.isfinite(judge.score("Name a fruit.", "An apple."))


def test_stop_anchor_is_the_end_of_turn_raise_inside_sentences(tiny_models, tmp_path):
    """--stop-anchor: the added term is the mean, over reply positions after a token
    inside a sentence (not a reply's first), of max(0, log π_ARM(stop) - log π_base(stop)),
    computed here independently from two plain HF models; the tokenizer's table says a
    word is inside a sentence and a full stop is not; an anchored run trains and saves."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from genarm.training.losses import mid_sentence_tokens, pair_loss

    base_path = str(tiny_models["base"])
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    inside = mid_sentence_tokens(tokenizer)
    word, stop_mark = (tokenizer(t, add_special_tokens=False)["input_ids"] for t in ("cat", "."))
    assert inside[word].all() and not inside[stop_mark].any()
    assert not inside[tokenizer.eos_token_id] and not inside[tokenizer("\n")["input_ids"]].any()

    adapter = tiny_adapter(base_path, tmp_path / "adapter", seed=3)
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32).eval()
    arm = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32), adapter
    ).eval()
    batch = [(([5, 6, 7, 8, 9], 2), ([5, 6, 7, 10], 2)), (([11, 12, 13, 14], 1), ([11, 15], 1))]
    stop = tokenizer.eos_token_id
    held = torch.zeros(len(inside), dtype=torch.bool)
    held[[6, 7, 8, 12, 13]] = True  # the tokens after which a position is held
    with torch.no_grad():
        plain, _, _ = pair_loss(arm, batch, pad_id=0, beta=0.5)
        anchored, _, _ = pair_loss(arm, batch, 0, 0.5, stop_id=stop, stop_anchor=2.0, inside=held)
        nowhere = torch.zeros_like(held)
        free, _, _ = pair_loss(arm, batch, 0, 0.5, stop_id=stop, stop_anchor=2.0, inside=nowhere)
        raises = []
        for ids, prompt_len in [c for c, _ in batch] + [r for _, r in batch]:
            base_logps = base(torch.tensor([ids])).logits[0].log_softmax(-1)
            arm_logps = arm(torch.tensor([ids])).logits[0].log_softmax(-1)
            for t in range(prompt_len, len(ids) - 1):  # reply positions after the first
                if held[ids[t]]:
                    raises.append(max(0.0, float(arm_logps[t, stop] - base_logps[t, stop])))
    assert len(raises) == 5 and 0 < sum(r > 0 for r in raises) < 5  # both sides of the hinge
    expected = sum(raises) / len(raises)
    assert (anchored - plain).item() == pytest.approx(2.0 * expected, rel=1e-4)
    assert free.item() == pytest.approx(plain.item(), rel=1e-6)
    with pytest.raises(ValueError, match="stop_anchor needs"):
        pair_loss(arm, batch, 0, 0.5, stop_anchor=1.0)

    write_pairs(tmp_path / "train.jsonl", synthetic_pairs(8))
    cfg = tiny_train_config(tmp_path, tiny_models, stop_anchor=1.0, val_fraction=0.0)
    summary = train_arm(cfg, progress=False)
    assert summary["config"]["stop_anchor"] == 1.0 and math.isfinite(summary["final_loss"])
    assert (tmp_path / "arm" / "adapter_model.safetensors").is_file()


def test_kl_anchor_is_the_reply_tokens_kl_from_the_base(tiny_models, tmp_path):
    """--kl-anchor: the added term is the mean over reply tokens of KL(π_base ‖ π_ARM)
    (over the tokens other than the stop token when one is given), computed here
    independently from two plain HF models, over every token with ``kl_anchor_stop``;
    and an anchored run trains and saves."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from genarm.training.losses import pair_loss

    base_path = str(tiny_models["base"])
    adapter = tiny_adapter(base_path, tmp_path / "adapter")
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32).eval()
    arm = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32), adapter
    ).eval()
    batch = [(([5, 6, 7, 8, 9], 2), ([5, 6, 7, 10], 2)), (([11, 12, 13], 1), ([11, 14], 1))]
    with torch.no_grad():
        plain, chosen, rejected = pair_loss(arm, batch, pad_id=0, beta=0.5)
        anchored, _, _ = pair_loss(arm, batch, pad_id=0, beta=0.5, kl_anchor=2.0)
        stop = 3  # the anchor leaves out the stop token: both sides renormalised without it
        anchored_stop, _, _ = pair_loss(arm, batch, 0, 0.5, kl_anchor=2.0, stop_id=stop)
        held_stop, _, _ = pair_loss(  # --kl-anchor-stop: the stop token anchored too
            arm, batch, 0, 0.5, kl_anchor=2.0, stop_id=stop, kl_anchor_stop=True
        )
        kls, kls_stop = [], []
        for ids, prompt_len in [c for c, _ in batch] + [r for _, r in batch]:
            base_logits = base(torch.tensor([ids])).logits[0]
            arm_logits = arm(torch.tensor([ids])).logits[0]
            for t in range(prompt_len - 1, len(ids) - 1):  # positions predicting the reply
                p, q = base_logits[t].log_softmax(-1), arm_logits[t].log_softmax(-1)
                kls.append(float((p.exp() * (p - q)).sum()))
                keep = torch.arange(len(p)) != stop
                p, q = base_logits[t][keep].log_softmax(-1), arm_logits[t][keep].log_softmax(-1)
                kls_stop.append(float((p.exp() * (p - q)).sum()))
    assert plain.item() == pytest.approx(genarm_loss(chosen, rejected, 0.5).item(), rel=1e-6)
    expected_kl = sum(kls) / len(kls)
    assert expected_kl > 1e-4  # the random adapter does move the distribution
    assert (anchored - plain).item() == pytest.approx(2.0 * expected_kl, rel=1e-4)
    assert (held_stop - plain).item() == pytest.approx(2.0 * expected_kl, rel=1e-4)
    expected_kl_stop = sum(kls_stop) / len(kls_stop)
    assert abs(expected_kl_stop - expected_kl) > 1e-4  # leaving the stop token out matters
    assert (anchored_stop - plain).item() == pytest.approx(2.0 * expected_kl_stop, abs=2e-5)

    write_pairs(tmp_path / "train.jsonl", synthetic_pairs(8))
    cfg = tiny_train_config(
        tmp_path, tiny_models, kl_anchor=1.0, kl_anchor_stop=True, val_fraction=0.0
    )
    unanchored = tiny_train_config(tmp_path, tiny_models, kl_anchor_stop=True)
    with pytest.raises(ValueError, match="needs --kl-anchor"):  # the flag alone does nothing
        train_arm(unanchored, progress=False)
    assert not (tmp_path / "arm").exists()
    summary = train_arm(cfg, progress=False)
    assert summary["config"]["kl_anchor"] == 1.0 and summary["config"]["kl_anchor_stop"]
    assert math.isfinite(summary["final_loss"])
    assert (tmp_path / "arm" / "adapter_model.safetensors").is_file()

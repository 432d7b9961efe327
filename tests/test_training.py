"""Training an ARM (train-arm: encoding, losses, the loop, resuming) and a judge
(train-judge, export-judge), and checking an ARM (guided), on tiny random models."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from training_data import synthetic_pairs

from genarm.training.encoding import encode
from genarm.training.losses import genarm_loss
from genarm.training.preference_data import PreferencePair, write_pairs
from genarm.training.scoring import sequence_logps
from genarm.training.train_arm import TrainConfig, train_arm

from support import tiny_adapter, tiny_train_config

pytest_plugins = ["training_fixtures"]


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


@pytest.mark.engine
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


@pytest.mark.engine
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


@pytest.mark.engine
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


@pytest.mark.engine
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


@pytest.mark.engine
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


@pytest.mark.engine
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


@pytest.mark.engine
def test_export_judge_scores_as_the_judge(tiny_judge, tmp_path):
    """export-judge: the HF sequence-classification folder, fed the conversation
    as the server feeds a reward model (its chat template, the reply as the
    assistant's turn), scores as the judge does, up to the judge's bias."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from genarm.cli import main
    from genarm.server.reward_models import conversation_ids
    from genarm.training.judge import Judge

    out = tmp_path / "exported"
    command = ["export-judge", "--judge", str(tiny_judge), "--out", str(out)]
    assert main([*command, "--dtype", "float32"]) == 0
    offset = json.loads((out / "genarm_export.json").read_text())["score_offset"]
    judge = Judge.load(tiny_judge, bf16=False)
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


@pytest.mark.engine
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


@pytest.mark.engine
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


@pytest.mark.engine
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

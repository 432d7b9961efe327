"""train-arm's held-out split, early stopping and fluency guard, on tiny random models."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from genarm.training.preference_data import PreferencePair, write_pairs
from genarm.training.train_arm import train_arm
from genarm.training.validation import EarlyStopping, Evaluation, split_pairs

from support import tiny_adapter, tiny_train_config


def _pairs(prompts: int, per_prompt: int) -> list[PreferencePair]:
    return [
        PreferencePair(f"Question {i}?", f"yes {j}", f"no {j}")
        for i in range(prompts)
        for j in range(per_prompt)
    ]


def test_split_keeps_each_prompt_on_one_side_and_is_seeded():
    pairs = _pairs(20, 3)
    train, val = split_pairs(pairs, 0.2, seed=0)
    assert len(train) + len(val) == len(pairs)
    assert {p.prompt for p in train}.isdisjoint({p.prompt for p in val})
    assert len({p.prompt for p in val}) == 4 and len(val) == 12
    assert split_pairs(pairs, 0.2, seed=0) == (train, val)
    assert split_pairs(pairs, 0.2, seed=1)[1] != val
    assert [p for p in pairs if p in train] == train  # the data's order is kept
    assert split_pairs(pairs, 0.0, seed=0) == (pairs, [])
    assert len({p.prompt for p in split_pairs(pairs, 0.01, seed=0)[1]}) == 1  # never empty
    with pytest.raises(ValueError, match="fraction"):
        split_pairs(pairs, 1.0, seed=0)


def _evaluation(step: int, accuracy: float, loss: float = 0.5, eligible: bool = True):
    return Evaluation(step=step, epoch=step, accuracy=accuracy, loss=loss, eligible=eligible)


def test_early_stopping_keeps_the_best_and_waits_patience_evaluations():
    stopper = EarlyStopping(patience=2)
    assert stopper.update(_evaluation(1, 0.60))
    assert stopper.update(_evaluation(2, 0.70))
    assert not stopper.update(_evaluation(3, 0.65)) and not stopper.should_stop
    assert stopper.update(_evaluation(4, 0.70, loss=0.4))  # same accuracy, lower loss
    assert not stopper.update(_evaluation(5, 0.90, eligible=False))  # the fluency guard's veto
    assert not stopper.update(_evaluation(6, 0.50))
    assert stopper.should_stop and stopper.best.step == 4
    resumed = EarlyStopping.from_state(json.loads(json.dumps(stopper.state())), patience=3)
    assert resumed.best == stopper.best and not resumed.should_stop
    assert not EarlyStopping(patience=0, since_best=10).should_stop


def test_early_stopping_can_keep_the_lowest_loss_instead():
    # Accuracy flat within noise while the loss falls: the lowest loss is kept.
    stopper = EarlyStopping(patience=2, select_by="loss")
    assert stopper.update(_evaluation(50, 0.693, loss=0.663))
    assert stopper.update(_evaluation(100, 0.687, loss=0.644))
    assert stopper.update(_evaluation(150, 0.687, loss=0.639))
    assert not stopper.update(_evaluation(200, 0.75, loss=0.65))  # higher accuracy, worse loss
    assert not stopper.update(_evaluation(250, 0.60, loss=0.639))  # a tie: accuracy decides
    assert stopper.best.step == 150 and stopper.since_best == 2 and stopper.should_stop
    assert stopper.update(_evaluation(300, 0.70, loss=0.639))
    # The same evaluations under the default rule keep the highest accuracy.
    default = EarlyStopping(patience=0)
    for e in ((50, 0.693, 0.663), (100, 0.687, 0.644), (200, 0.75, 0.65)):
        default.update(_evaluation(*e))
    assert default.best.step == 200
    resumed = EarlyStopping.from_state(stopper.state(), patience=2, select_by="loss")
    assert resumed.best == stopper.best and resumed.select_by == "loss"
    with pytest.raises(ValueError, match="select_by"):
        EarlyStopping.from_state(None, patience=2, select_by="perplexity")


@pytest.mark.engine
def test_early_stopping_ships_the_best_validating_state(tiny_models, tmp_path):
    """Validation pairs that reverse the training preference get worse as training
    goes on: the run stops after `patience` worse evaluations and OUT holds the
    first epoch's state, not the last one."""
    from safetensors.torch import load_file

    from genarm.training.encoding import encode_pairs
    from genarm.training.guided import load_with_adapter
    from genarm.training.scoring import validation_margins
    from genarm.training.validation import share_won

    pairs = _pairs(8, 1)
    reversed_pairs = [PreferencePair(p.prompt, p.rejected, p.chosen) for p in pairs]
    write_pairs(tmp_path / "train.jsonl", pairs)
    write_pairs(tmp_path / "val.jsonl", reversed_pairs)
    cfg = tiny_train_config(tmp_path, tiny_models, epochs=6, val_data=str(tmp_path / "val.jsonl"))
    summary = train_arm(cfg, progress=False)
    losses = [e["loss"] for e in summary["evaluations"]]
    assert losses == sorted(losses)  # each epoch fits the reversed pairs worse
    assert summary["stopped_early"] and summary["steps_done"] == 6 < summary["steps"] == 12
    assert summary["best"]["step"] == 2 and len(summary["evaluations"]) == 3
    out = tmp_path / "arm"
    shipped = load_file(out / "adapter_model.safetensors")
    best = load_file(out / "best" / "adapter_model.safetensors")
    last = load_file(out / "checkpoint" / "adapter_model.safetensors")
    assert all(torch.equal(shipped[k], best[k]) for k in best)
    assert not all(torch.equal(shipped[k], last[k]) for k in last)
    # The shipped adapter scores the validation pairs as the run reported.
    tok, model = load_with_adapter(cfg.base, cfg.out, name="default", bf16=False)
    margins = validation_margins(
        model,
        encode_pairs(tok, reversed_pairs, cfg.max_length, cfg.max_response_length),
        0,
        cfg.batch_size,
        torch.autocast("cpu", enabled=False),
    )
    assert share_won(margins) == summary["best"]["accuracy"]
    loss = -torch.nn.functional.logsigmoid(cfg.beta * torch.tensor(margins)).mean()
    assert loss.item() == pytest.approx(summary["best"]["loss"], rel=1e-4)


@pytest.mark.engine
def test_validation_reports_accuracy_by_kind_of_pair(tiny_models, tmp_path):
    """Stopping and keep-going pairs mixed: each evaluation has the accuracy per kind,
    and the total is their pair-weighted mean (whole pairs alone have none)."""
    messages = [[{"role": "user", "content": f"Say {i}."}] for i in range(6)]
    stop = [PreferencePair(m, "It is.", "It is a", True, False) for m in messages[:4]]
    keep = [PreferencePair(m, "It is a", "It is", False, True) for m in messages[4:]]
    write_pairs(tmp_path / "val.jsonl", stop + keep)
    write_pairs(tmp_path / "train.jsonl", _pairs(4, 1))
    cfg = tiny_train_config(tmp_path, tiny_models, val_data=str(tmp_path / "val.jsonl"))
    evaluation = train_arm(cfg, progress=False)["evaluations"][0]
    by_kind = evaluation["by_kind"]
    assert set(by_kind) == {"stop", "keep-going"}
    mean = (4 * by_kind["stop"] + 2 * by_kind["keep-going"]) / 6
    assert evaluation["accuracy"] == pytest.approx(mean)
    assert (
        train_arm(
            tiny_train_config(tmp_path, tiny_models, val_fraction=0.5, restart=True), progress=False
        )["evaluations"][0]["by_kind"]
        is None
    )


@pytest.mark.engine
def test_fraction_split_trains_on_the_rest(tiny_models, tmp_path):
    write_pairs(tmp_path / "train.jsonl", _pairs(10, 2))
    summary = train_arm(tiny_train_config(tmp_path, tiny_models, val_fraction=0.2), progress=False)
    assert summary["validation_pairs"] == 4 and summary["pairs"] == 16
    assert [e["step"] for e in summary["evaluations"]] == [4]


@pytest.mark.engine
def test_fluency_guard_measures_base_perplexity_and_vetoes(tiny_models, tmp_path):
    from genarm.training.encoding import prompt_ids
    from genarm.training.fluency import base_nll, base_nlls, fluency_report, repetition_rate
    from genarm.training.guided import guided_generate_ids, load_with_adapter

    adapter = tiny_adapter(tiny_models["base"], tmp_path / "random-arm")
    tok, model = load_with_adapter(str(tiny_models["base"]), str(adapter), bf16=False)
    prompts = [[{"role": "user", "content": f"Tell me about item {i}."}] for i in range(2)]
    report = fluency_report(model, tok, prompts, "arm", (0.0, 2.0), max_new_tokens=8, seed=3)
    assert set(report) == {"0", "2"}
    for weight, row in ((0.0, report["0"]), (2.0, report["2"])):
        nll, tokens, replies = 0.0, 0, []
        for index, messages in enumerate(prompts):
            reply, _ = guided_generate_ids(model, tok, messages, {"arm": weight}, 8, 0.7, 3 + index)
            nll += base_nll(model, tok, messages, reply)
            tokens += len(reply)
            replies.append(reply)
        assert row["perplexity"] == pytest.approx(math.exp(nll / tokens), rel=1e-5)
        assert row["repeated_4grams"] == repetition_rate(replies)
        assert 0 <= row["finished"] <= 1
    # base_nll is the base model's own log-likelihood (adapters off).
    messages, reply = prompts[0], [5, 6, 7]
    ids = prompt_ids(tok, messages) + reply
    with torch.no_grad(), model.disable_adapter():
        logps = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
    start = len(ids) - len(reply)
    want = -sum(float(logps[t - 1, ids[t]]) for t in range(start, len(ids)))
    assert base_nll(model, tok, messages, reply) == pytest.approx(want, rel=1e-5)
    # Batched (sorted by length inside), each item's own value in the items' order.
    items = [(prompts[i % 2], list(range(5, 5 + n))) for i, n in enumerate((9, 2, 6, 1, 4))]
    one_by_one = [base_nll(model, tok, m, r) for m, r in items]
    assert base_nlls(model, tok, items, batch_size=2) == pytest.approx(one_by_one, rel=1e-5)

    # A limit no guided sample can meet: no state is kept as the best, OUT gets the last.
    write_pairs(tmp_path / "train.jsonl", _pairs(6, 1))
    cfg = tiny_train_config(
        tmp_path,
        tiny_models,
        epochs=2,
        val_fraction=0.34,
        fluency_prompts=2,
        fluency_max_tokens=6,
        max_perplexity_ratio=1e-9,
    )
    summary = train_arm(cfg, progress=False)
    assert summary["best"] is None and len(summary["evaluations"]) == 2
    assert not any(e["eligible"] for e in summary["evaluations"])
    assert set(summary["evaluations"][0]["fluency"]) == {"0", "1", "3"}
    assert (tmp_path / "arm" / "adapter_model.safetensors").is_file()


def test_repeated_ngrams_count_windows_seen_earlier_in_the_same_reply():
    from genarm.training.fluency import repeated_ngrams, repetition_rate

    assert repeated_ngrams([1, 2, 3, 4, 5], 4) == (0, 2)
    # "a b c a b c a": windows abc bca cab abc bca -> the last two repeat.
    assert repeated_ngrams([1, 2, 3, 1, 2, 3, 1], 3) == (2, 5)
    assert repeated_ngrams([7, 7, 7, 7, 7], 2) == (3, 4)
    assert repeated_ngrams([1, 2], 4) == (0, 0)
    # Pooled over replies, and a window never repeats across two replies.
    assert repetition_rate([[1, 2, 3, 1, 2, 3, 1], [1, 2, 3]], 3) == 2 / 6
    assert repetition_rate([[1], []], 4) == 0.0


def test_evaluations_follow_eval_every_and_the_last_step():
    from genarm.training.evaluation import is_eval_step

    # 346 steps per epoch, 1038 in all: with eval_every 116, no extra one at 346 or 692.
    every = [s for s in range(1, 1039) if is_eval_step(s, 346, 1038, 116)]
    assert every == [116, 232, 348, 464, 580, 696, 812, 928, 1038]
    assert [s for s in range(1, 11) if is_eval_step(s, 4, 10, None)] == [4, 8, 10]


@pytest.mark.engine
def test_refusal_guard_reports_each_weight_and_can_bar_a_state(tiny_models, tmp_path):
    from genarm.training.guided import guided_generate_ids, load_with_adapter
    from genarm.training.preference_data import as_messages
    from genarm.training.refusals import refusal_probes, refusal_report, refuses

    probes = refusal_probes()
    assert len(probes) == 8 and not any(refuses(p) for p in probes)
    adapter = tiny_adapter(tiny_models["base"], tmp_path / "random-arm")
    tok, model = load_with_adapter(str(tiny_models["base"]), str(adapter), bf16=False)
    # Refusal-shaped questions too: the count is over the decoded greedy answers.
    questions = [*probes[:2], "I'm sorry?"]
    report = refusal_report(model, tok, questions, "arm", (0.0, 2.0), max_new_tokens=6)
    assert set(report) == {"0", "2"}
    for weight in (0.0, 2.0):
        answers = [
            tok.decode(
                guided_generate_ids(model, tok, as_messages(q), {"arm": weight}, 6)[0],
                skip_special_tokens=True,
            )
            for q in questions
        ]
        assert report[f"{weight:g}"] == sum(map(refuses, answers)) / len(questions)

    # A limit no state can meet (a share is never below 0): none is kept as the best.
    write_pairs(tmp_path / "train.jsonl", _pairs(6, 1))
    cfg = tiny_train_config(
        tmp_path, tiny_models, epochs=2, val_fraction=0.34, refusal_probes=2, max_refusal_share=-1
    )
    summary = train_arm(cfg, progress=False)
    assert summary["best"] is None and len(summary["evaluations"]) == 2
    for evaluation in summary["evaluations"]:
        assert not evaluation["eligible"] and set(evaluation["refusals"]) == {"0", "1", "3"}
    # Report only by default: the same run keeps a state.
    cfg = tiny_train_config(
        tmp_path, tiny_models, epochs=2, val_fraction=0.34, refusal_probes=2, restart=True
    )
    assert train_arm(cfg, progress=False)["best"] is not None


@pytest.mark.engine
def test_init_adapter_starts_from_its_weights_and_shape(tiny_models, tmp_path):
    """--init-adapter: a run with lr 0 ships the starting adapter's weights unchanged,
    and its summary records the adapter's shape, not the CLI's. Without it the same
    run ships a fresh LoRA (B = 0)."""
    from safetensors.torch import load_file

    write_pairs(tmp_path / "train.jsonl", _pairs(4, 2))
    write_pairs(tmp_path / "val.jsonl", _pairs(3, 1))
    start = tiny_adapter(tiny_models["base"], tmp_path / "start")  # r=4 on q, v
    val = str(tmp_path / "val.jsonl")
    cfg = tiny_train_config(tmp_path, tiny_models, lr=0.0, rank=2, val_data=val)
    summary = train_arm(replace(cfg, init_adapter=str(start)), progress=False)
    assert summary["config"]["rank"] == 4
    assert summary["config"]["target_modules"] == ["q_proj", "v_proj"]
    shipped = load_file(tmp_path / "arm" / "adapter_model.safetensors")
    started = load_file(start / "adapter_model.safetensors")
    assert shipped.keys() == started.keys()
    assert all(torch.equal(shipped[k], started[k]) for k in started)
    fresh = train_arm(replace(cfg, out=str(tmp_path / "fresh")), progress=False)
    assert fresh["config"]["rank"] == 2
    fresh_b = [v for k, v in load_file(tmp_path / "fresh" / "adapter_model.safetensors").items()
               if "lora_B" in k]  # fmt: skip
    assert fresh_b and all(not b.any() for b in fresh_b)
    # The start's LoRA moves the scores: the two runs validate differently.
    assert summary["evaluations"][0]["loss"] != fresh["evaluations"][0]["loss"]
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        train_arm(replace(cfg, init_adapter=str(tmp_path)), progress=False)
    # Weights named for modules this base lacks: an error, not a silent fresh start.
    from safetensors.torch import save_file

    save_file({k.replace("layers", "blocks"): v for k, v in started.items()},
              start / "adapter_model.safetensors")  # fmt: skip
    with pytest.raises(ValueError, match="match no module"):
        train_arm(replace(cfg, init_adapter=str(start), restart=True), progress=False)


@pytest.mark.engine
def test_init_adapter_takes_a_regex_of_target_modules(tiny_models, tmp_path):
    """PEFT saves target modules given as a regex as that string: the run uses it as is."""
    from safetensors.torch import load_file

    tiny_adapter(
        tiny_models["base"], tmp_path / "start", rank=2, target_modules=r".*\.(k_proj|o_proj)"
    )
    write_pairs(tmp_path / "train.jsonl", _pairs(4, 1))
    cfg = tiny_train_config(tmp_path, tiny_models, lr=0.0, val_fraction=0.0)
    summary = train_arm(replace(cfg, init_adapter=str(tmp_path / "start")), progress=False)
    assert summary["config"]["target_modules"] == r".*\.(k_proj|o_proj)"
    shipped = load_file(tmp_path / "arm" / "adapter_model.safetensors")
    started = load_file(tmp_path / "start" / "adapter_model.safetensors")
    assert shipped.keys() == started.keys() and any("k_proj" in k for k in shipped)
    assert all(torch.equal(shipped[k], started[k]) for k in started)

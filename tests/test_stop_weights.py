"""`genarm.training.stop_weights`: from which weight a stopping ARM ends an answer at
each position, against the float64 fusion reference and tiny random models."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch

from genarm.arm_kernels import fuse_reference
from genarm.training.stop_weights import (
    ARM,
    StopPoint,
    first_stop,
    run,
    stop_interval,
    stop_table,
)

from support import tiny_adapter

EOS = 7


def _random_logits(trial: int, vocab: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """A base and an ARM row where end of turn is often near the top of both."""
    g = torch.Generator().manual_seed(trial)
    base, arm = torch.randn(vocab, generator=g) * 3, torch.randn(vocab, generator=g) * 3
    base[EOS] += float(torch.rand(1, generator=g)) * 6
    arm[EOS] += float(torch.rand(1, generator=g)) * 10
    return base, arm


def test_stop_interval_is_where_the_fused_argmax_is_end_of_turn():
    alphas = torch.linspace(0, 8, 1601)
    seen = set()
    for trial in range(400):
        base, arm = _random_logits(trial)
        interval = stop_interval(torch.log_softmax(base, -1), torch.log_softmax(arm, -1), EOS)
        rows = len(alphas)
        fused = fuse_reference(base.expand(rows, -1), [arm.expand(rows, -1)], alphas[:, None])
        ends = fused.argmax(-1) == EOS
        if interval is None:
            assert not ends.any(), trial
            seen.add("never")
            continue
        low, high = interval
        inside = (alphas >= low) & (alphas <= high)
        exact = ((alphas - low).abs() < 1e-9) | ((alphas - high).abs() < 1e-9)  # ties
        assert torch.equal(ends[~exact], inside[~exact]), (trial, interval)
        seen.add("from 0" if low == 0 else "from above 0")
        seen.add("bounded" if high < math.inf else "unbounded")
    # Every kind of answer came up, so each branch was checked against the reference.
    assert seen == {"never", "from 0", "from above 0", "bounded", "unbounded"}


def test_first_stop_takes_the_first_end_whose_interval_holds_the_weight():
    def end(words: int, low: float | None, high: float | None = None) -> StopPoint:
        return StopPoint(words, True, "", 0.0, 0.0, low, high)

    table = [end(4, 1.5), end(12, 0.5, 2.0), end(20, None), end(30, 0.2)]
    assert first_stop(table, 3.0).words == 4
    assert first_stop(table, 1.0).words == 12
    assert first_stop(table, 0.3).words == 30
    assert first_stop(table, 0.1) is None


def _model(tiny_models, tmp_path, adapter=tiny_adapter):
    from genarm.training.guided import load_with_adapter

    base = str(tiny_models["base"])
    return load_with_adapter(base, str(adapter(base, tmp_path / "arm")), name=ARM, bf16=False)


def _end_of_turn_adapter(base: str, path):
    """A random LoRA on the output layer whose end-of-turn row is made large: it moves
    end of turn's logit hard, up at some positions and down at others."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    lora = LoraConfig(r=4, target_modules=["lm_head"], init_lora_weights=False)
    model = get_peft_model(model, lora)
    with torch.no_grad():
        model.base_model.model.lm_head.lora_B["default"].weight[
            AutoTokenizer.from_pretrained(base).eos_token_id
        ] *= 300
    model.save_pretrained(path, save_embedding_layers=False)
    return path


def _alone(model, tokenizer, messages, reply: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The base's and the ARM's next-token log-probs after ``reply``, computed alone."""
    from genarm.training.encoding import prompt_ids

    ids = torch.tensor([prompt_ids(tokenizer, messages) + reply])
    with torch.no_grad():
        with model.disable_adapter():
            base = torch.log_softmax(model(ids).logits[0, -1], -1)
        return base, torch.log_softmax(model(ids).logits[0, -1], -1)


@pytest.mark.parametrize("adapter", [tiny_adapter, _end_of_turn_adapter])
def test_stop_table_reads_the_logits_after_each_position(tiny_models, tmp_path, adapter):
    tokenizer, model = _model(tiny_models, tmp_path, adapter)
    messages = [{"role": "user", "content": "Tell me about apples."}]
    text = "Apples are red. They grow (mostly). 1. Wash them"
    reply = tokenizer(text, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    # Each position computed alone (the prompt and the reply up to it), against the
    # table's one pass over the whole reply.
    alone = {t: _alone(model, tokenizer, messages, reply[:t]) for t in range(1, len(reply) + 1)}
    intervals = {t: stop_interval(*logprobs, eos) for t, logprobs in alone.items()}
    ends = [t for t in alone if tokenizer.decode(reply[:t]).endswith(("red.", "(mostly)."))]
    for max_weight in (0.0, 2.0, 1e6):
        table = stop_table(model, tokenizer, messages, reply, max_weight)
        stops = [t for t, i in intervals.items() if i is not None and i[0] <= max_weight]
        want = sorted(set(ends) | set(stops))
        assert [e.sentence_end for e in table] == [t in ends for t in want]
        for row, t in zip(table, want, strict=True):
            base, _ = alone[t]
            assert row.words == len(tokenizer.decode(reply[:t]).split())
            assert math.isclose(row.base_gap, float(base.max() - base[eos]), abs_tol=1e-4)
            got = None if row.stops_from is None else (row.stops_from, row.stops_until or math.inf)
            assert got == (intervals[t] and pytest.approx(intervals[t], rel=1e-4, abs=1e-6))
    # The sentence ends: "red." and "(mostly).", not the numbered list's "1."
    table = stop_table(model, tokenizer, messages, reply, 0.0)
    assert [r.text.split()[-1] for r in table if r.sentence_end] == ["red.", "(mostly)."]


def test_stop_weights_command_checks_each_weight_by_decoding(tiny_models, tmp_path):
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps(["Tell me about apples.", "What is a license?"]))
    out = tmp_path / "tables.json"
    tiny_adapter(str(tiny_models["base"]), tmp_path / "arm")
    args = argparse.Namespace(
        base=str(tiny_models["base"]),
        adapter=str(tmp_path / "arm"),
        prompts=str(prompts),
        alphas="0,3",
        max_new_tokens=12,
        out=str(out),
    )
    assert run(args) == 0
    results = json.loads(out.read_text())
    assert [r["prompt"] for r in results] == json.loads(prompts.read_text())
    for r in results:
        # Weight 0 is the base: it keeps to the base's answer, word for word.
        assert r["guided"]["0"] == {"words": r["words"], "left_after": None}
        assert set(r["guided"]) == {"0", "3"}

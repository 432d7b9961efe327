"""The research-style baseline (benchmarks/research_baseline.py) is exact: with
alpha = 0 its greedy tokens are HF ``generate``'s for the base, sequential and
left-padded batched; with weights, its KV-cached greedy equals the uncached
float64 reference's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from genarm.reference_decoder import GenARMReference

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.prompts import synthetic_prompts  # noqa: E402
from benchmarks.research_baseline import ResearchGenARM, run_baseline  # noqa: E402

STEPS = 16


@pytest.fixture(scope="module")
def research(tiny_models) -> ResearchGenARM:
    return ResearchGenARM(
        str(tiny_models["base"]),
        {"arm_a": str(tiny_models["arm_a"]), "arm_b": str(tiny_models["arm_b"])},
    )


@pytest.fixture(scope="module")
def prompt_ids(research) -> list[list[int]]:
    # Different lengths, so that the batch is really left-padded.
    texts = ["The license grants", "You may copy and distribute the Program", "Hi"]
    return [research.encode(t) for t in texts]


def _hf_greedy(model, tokenizer, prompts: list[list[int]]) -> list[list[int]]:
    width = max(len(p) for p in prompts)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=STEPS,
        min_new_tokens=STEPS,
        do_sample=False,
        pad_token_id=pad,
    )
    return out[:, width:].tolist()


def test_alpha_zero_greedy_equals_hf_generate(research, prompt_ids):
    zero = {"arm_a": 0.0, "arm_b": 0.0}
    for p in prompt_ids:  # one request at a time, as the research scripts run
        ours = research.generate([p], zero, STEPS, temperature=0, ignore_eos=True)
        assert ours[0].token_ids == _hf_greedy(research.base, research.tokenizer, [p])[0]
    ours = research.generate(prompt_ids, zero, STEPS, temperature=0, ignore_eos=True)
    expected = _hf_greedy(research.base, research.tokenizer, prompt_ids)
    assert [g.token_ids for g in ours] == expected


def test_guided_greedy_equals_reference(research, tiny_models, prompt_ids):
    reference = GenARMReference(
        str(tiny_models["base"]), [str(tiny_models["arm_a"]), str(tiny_models["arm_b"])]
    )
    weights = [{"arm_a": 1.5, "arm_b": -0.5}, {"arm_a": 0.0, "arm_b": 2.0}, {"arm_a": 3.0}]
    ours = research.generate(prompt_ids, weights, STEPS, temperature=0, ignore_eos=True)
    for gen, p, w in zip(ours, prompt_ids, weights, strict=True):
        expected = reference.greedy(p, [w.get("arm_a", 0.0), w.get("arm_b", 0.0)], STEPS)
        assert gen.token_ids == expected
    # The weights matter (else this test would not test the combination).
    base_only = research.generate(prompt_ids[:1], None, STEPS, temperature=0, ignore_eos=True)
    assert base_only[0].token_ids != ours[0].token_ids


def test_run_baseline_report(research):
    prompts = synthetic_prompts(5, 10, research.tokenizer, seed=0)
    for batch_size in (1, 2):
        result = run_baseline(
            research,
            prompts,
            {"arm_a": 1.0},
            output_len=6,
            batch_size=batch_size,
            disable_tqdm=True,
        )
        assert result["completed"] == 5 and result["failed"] == 0
        assert result["output_lens"] == [6] * 5
        assert result["total_output_tokens"] == 30
        assert result["input_lens"] == [10] * 5
        assert all(len(itl) == 5 for itl in result["itls"])
        assert result["output_throughput"] > 0 and result["p99_tpot_ms"] > 0

"""Seeded sampling when a prompt is prefilled over several steps (vLLM CPU runner).

vLLM 0.32 rewinds a seeded request's generator after each partial prefill step
with a CUDA-only call; on CPU that killed the engine. genarm.engine.cpu_seeded_prefill
sets the generator aside instead, which must keep a seed's text independent of
how the prompt was chunked.
"""

from __future__ import annotations

import pytest

from genarm.config import parse_config
from genarm.engine import create_llm
from genarm.tiny_models import tiny_config_dict

from support import shutdown_llm

pytestmark = pytest.mark.engine  # every test here starts a vLLM engine

BUDGET = 64  # tokens per step: the long prompts below need two or three steps


@pytest.fixture(scope="module")
def small_budget_llm(tiny_models):
    llm = create_llm(parse_config(tiny_config_dict(tiny_models, max_num_batched_tokens=BUDGET)))
    yield llm
    shutdown_llm(llm)


def test_seed_survives_chunked_prefill_and_ignores_chunk_boundaries(small_budget_llm):
    from vllm import SamplingParams

    long_prompt = " ".join(f"word{i}" for i in range(70))
    assert len(small_budget_llm.get_tokenizer()(long_prompt)["input_ids"]) > BUDGET
    guided = SamplingParams(
        max_tokens=12, temperature=1.0, seed=7, extra_args={"reward_weights": {"arm_a": 1.0}}
    )
    alone = small_budget_llm.generate([long_prompt], guided, use_tqdm=False)
    # Another seeded request ahead of it shifts where its prompt is cut into chunks.
    other = SamplingParams(max_tokens=12, temperature=1.0, seed=1)
    shifted = small_budget_llm.generate(
        ["filler " * 40, long_prompt], [other, guided], use_tqdm=False
    )
    assert list(shifted[1].outputs[0].token_ids) == list(alone[0].outputs[0].token_ids)
    # A different seed still samples differently: the seed is in use, not ignored.
    reseeded = SamplingParams(
        max_tokens=12, temperature=1.0, seed=8, extra_args={"reward_weights": {"arm_a": 1.0}}
    )
    again = small_budget_llm.generate([long_prompt], reseeded, use_tqdm=False)
    assert list(again[0].outputs[0].token_ids) != list(alone[0].outputs[0].token_ids)

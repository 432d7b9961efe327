"""The compiled engine (``enforce_eager: false``, as configs/demo.yaml serves) is as
exact as the eager one: vLLM compiles each sub-model of the composite (inductor on CPU)."""

from __future__ import annotations

import pytest
from test_engine import PROMPTS, WEIGHT_SETS, assert_matches_reference, sampling

from genarm.config import parse_config
from genarm.engine import create_llm
from genarm.reference import GenARMReference

from conftest import tiny_config_dict
from support import chat_prompt_ids, shutdown_llm


@pytest.mark.slow
def test_compiled_composite_matches_reference(tiny_models):
    cfg = parse_config(tiny_config_dict(tiny_models, enforce_eager=False))
    reference = GenARMReference(
        str(tiny_models["base"]), [str(tiny_models["arm_a"]), str(tiny_models["arm_b"])]
    )
    ids = chat_prompt_ids(tiny_models["base"], PROMPTS[0])
    llm = create_llm(cfg)
    try:
        outputs = llm.generate(
            [{"prompt_token_ids": ids}] * len(WEIGHT_SETS),
            [sampling({"arm_a": a, "arm_b": b}) for a, b in WEIGHT_SETS],
            use_tqdm=False,
        )
    finally:
        shutdown_llm(llm)
    for (a, b), out in zip(WEIGHT_SETS, outputs, strict=True):
        assert_matches_reference(reference, ids, (a, b), out.outputs[0])

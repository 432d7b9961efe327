"""The GenARM engine through the real vLLM engine, against the HF reference."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from genarm.config import parse_config
from genarm.engine import create_llm
from genarm.reference_decoder import GenARMReference
from genarm.tiny_models import tiny_config_dict

from support import chat_prompt_ids, shutdown_llm

pytestmark = pytest.mark.engine  # every test here starts a vLLM engine

PROMPTS = ["Tell me a short story about a dragon.", "What does the license allow?"]
MAX_TOKENS = 32
LOGPROB_POSITIONS = 8


def sampling(weights: dict | None, max_tokens: int = MAX_TOKENS, logprobs: int = 5, **kw):
    from vllm import SamplingParams

    extra = None if weights is None else {"reward_weights": weights}
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=0.0,
        ignore_eos=True,
        logprobs=logprobs,
        extra_args=extra,
        **kw,
    )


def assert_matches_reference(ref: GenARMReference, prompt_ids, weights, output) -> None:
    """Greedy tokens identical; logprobs of the first positions within 1e-4."""
    assert list(output.token_ids) == ref.greedy(prompt_ids, weights, MAX_TOKENS)
    context = list(prompt_ids)
    for pos in range(LOGPROB_POSITIONS):
        expected = ref.next_token_logprobs(context, weights)
        for token_id, logprob in output.logprobs[pos].items():
            assert logprob.logprob == pytest.approx(float(expected[token_id]), abs=1e-4)
        context.append(output.token_ids[pos])


@pytest.fixture(scope="module")
def two_arm_config(tiny_models):
    data = tiny_config_dict(tiny_models, arms=("arm_a", "arm_b"))
    data["arms"][1]["default_weight"] = 0.75  # a missing name takes this
    return parse_config(data)


@pytest.fixture(scope="module")
def two_arm_llm(two_arm_config):
    llm = create_llm(two_arm_config)
    yield llm
    shutdown_llm(llm)


@pytest.fixture(scope="module")
def two_arm_reference(tiny_models):
    return GenARMReference(
        str(tiny_models["base"]), [str(tiny_models["arm_a"]), str(tiny_models["arm_b"])]
    )


WEIGHT_SETS = [(0.0, 0.0), (1.0, 0.0), (0.5, 2.0), (-1.0, 1.5)]


def test_two_arms_of_different_shapes_match_reference(two_arm_llm, two_arm_reference, tiny_models):
    # All weight sets in one batch: guided and unguided rows side by side.
    requests, expected = [], []
    for prompt in PROMPTS:
        ids = chat_prompt_ids(tiny_models["base"], prompt)
        for a, b in WEIGHT_SETS:
            requests.append((ids, {"arm_a": a, "arm_b": b}))
            expected.append((ids, (a, b)))
    outputs = two_arm_llm.generate(
        [{"prompt_token_ids": ids} for ids, _ in requests],
        [sampling(w) for _, w in requests],
        use_tqdm=False,
    )
    for (ids, weights), out in zip(expected, outputs, strict=True):
        assert_matches_reference(two_arm_reference, ids, weights, out.outputs[0])


@pytest.mark.parametrize("penalty", [1.0, 1.5])
def test_repetition_penalty_sees_the_exact_guided_logprobs(
    two_arm_llm, two_arm_reference, tiny_models, penalty
):
    """Other rows may take the fusion up to a per-row constant; a repetition
    penalty scales positive and negative logits differently, so (V1 runs the
    processor before it) its rows must get exactly log_softmax(base) + Σ α
    log_softmax(arm), which the penalty then scales (prompt and output tokens)."""
    from genarm.arm_kernels import fuse_reference

    weights = (0.5, 2.0)

    def params(penalty: float, logprobs: int = 20):
        # 20 logprobs: deep enough to list penalised tokens too.
        requested = {"arm_a": weights[0], "arm_b": weights[1]}
        return sampling(requested, logprobs=logprobs, repetition_penalty=penalty)

    # A prompt that ends in the guided model's own favourite tokens, so that
    # the penalty has probability mass to move.
    ids = chat_prompt_ids(tiny_models["base"], PROMPTS[0])
    (warm,) = two_arm_llm.generate([{"prompt_token_ids": ids}], params(1.0, 0), use_tqdm=False)
    ids = ids + list(warm.outputs[0].token_ids[:16])
    plain, penalised = two_arm_llm.generate(
        [{"prompt_token_ids": ids}] * 2,
        [params(1.0), params(penalty)],  # batched beside an unpenalised row
        use_tqdm=False,
    )
    output = penalised.outputs[0]
    context = list(ids)
    alpha = torch.tensor([weights], dtype=torch.float64)
    for pos in range(LOGPROB_POSITIONS):
        base, *arms = (lp[None] for lp in two_arm_reference.model_logprobs(context))
        guided = fuse_reference(base, arms, alpha)[0]
        seen = torch.tensor(sorted(set(context)))
        guided[seen] = torch.where(guided[seen] > 0, guided[seen] / penalty, guided[seen] * penalty)
        expected = torch.log_softmax(guided, dim=-1)
        assert output.token_ids[pos] == int(expected.argmax()), f"position {pos}"
        for token_id, logprob in output.logprobs[pos].items():
            assert logprob.logprob == pytest.approx(float(expected[token_id]), abs=1e-4), pos
        context.append(output.token_ids[pos])
    if penalty != 1.0:  # the penalty did something these tokens can show
        assert list(output.token_ids) != list(plain.outputs[0].token_ids)


def test_weights_change_output_and_zero_is_base(two_arm_llm, tiny_models):
    ids = chat_prompt_ids(tiny_models["base"], PROMPTS[0])
    texts = {}
    for a, b in WEIGHT_SETS:
        out = two_arm_llm.generate(
            [{"prompt_token_ids": ids}], sampling({"arm_a": a, "arm_b": b}), use_tqdm=False
        )
        texts[(a, b)] = list(out[0].outputs[0].token_ids)
    assert len({tuple(t) for t in texts.values()}) == len(WEIGHT_SETS)
    base_alone = GenARMReference(str(tiny_models["base"]), [])
    assert texts[(0.0, 0.0)] == base_alone.greedy(ids, [], MAX_TOKENS)


def test_missing_weight_takes_default(two_arm_llm, tiny_models):
    ids = chat_prompt_ids(tiny_models["base"], PROMPTS[1])
    implicit, explicit = two_arm_llm.generate(
        [{"prompt_token_ids": ids}] * 2,
        [sampling({"arm_a": 0.0}), sampling({"arm_a": 0.0, "arm_b": 0.75})],
        use_tqdm=False,
    )
    assert implicit.outputs[0].token_ids == explicit.outputs[0].token_ids
    unguided = two_arm_llm.generate(
        [{"prompt_token_ids": ids}], sampling({"arm_a": 0.0, "arm_b": 0.0}), use_tqdm=False
    )
    assert unguided[0].outputs[0].token_ids != implicit.outputs[0].token_ids


@pytest.mark.parametrize(
    ("weights", "named"),
    [
        ({"nope": 1.0}, "nope"),
        ({"arm_a": math.nan}, "arm_a"),
        ({"arm_a": math.inf}, "arm_a"),
        ({"arm_b": -math.inf}, "arm_b"),
        ({"arm_a": 5.5}, "arm_a"),
        ({"arm_b": -6.0}, "arm_b"),
        ({"arm_a": "1.0"}, "arm_a"),
        ({"arm_a": True}, "arm_a"),
        ({"arm_a": None}, "arm_a"),
    ],
)
def test_bad_weights_are_refused_by_name(two_arm_llm, tiny_models, weights, named):
    from vllm.exceptions import VLLMValidationError

    ids = chat_prompt_ids(tiny_models["base"], PROMPTS[0])
    with pytest.raises(VLLMValidationError, match=repr(named)) as err:
        two_arm_llm.generate([{"prompt_token_ids": ids}], sampling(weights), use_tqdm=False)
    assert err.value.parameter == f"reward_weights.{named}"
    # The engine keeps serving.
    out = two_arm_llm.generate([{"prompt_token_ids": ids}], sampling({}, 4), use_tqdm=False)
    assert len(out[0].outputs[0].token_ids) == 4


def test_weights_must_be_a_mapping(two_arm_llm, tiny_models):
    ids = chat_prompt_ids(tiny_models["base"], PROMPTS[0])
    from vllm.exceptions import VLLMValidationError

    with pytest.raises(VLLMValidationError, match="must be an object"):
        two_arm_llm.generate([{"prompt_token_ids": ids}], sampling([1.0, 2.0]), use_tqdm=False)


def make_lora_adapter(base_dir, out_dir, seed: int = 7):
    """A random (non-zero) LoRA adapter on the tiny base, saved with peft."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj"])
    peft_model = get_peft_model(model, lora)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    peft_model.save_pretrained(out_dir)
    return peft_model.eval()


def test_one_lora_arm_matches_reference(tiny_models, tmp_path):
    from genarm.engine.build import arm_model_paths

    adapter = tmp_path / "adapter"
    peft_model = make_lora_adapter(tiny_models["base"], adapter)
    data = tiny_config_dict(tiny_models, arms=())
    data["arms"] = [{"name": "lora", "adapter": str(adapter), "default_weight": 1.0}]
    data["engine"]["cache_dir"] = str(tmp_path / "cache")
    cfg = parse_config(data)

    merged = Path(arm_model_paths(cfg)[0])
    mtime = (merged / "config.json").stat().st_mtime_ns
    assert Path(arm_model_paths(cfg)[0]) == merged  # cached: built once
    assert (merged / "config.json").stat().st_mtime_ns == mtime
    # The base's config verbatim: vLLM compiles the merged ARM as the base (one artifact).
    assert (merged / "config.json").read_bytes() == (
        tiny_models["base"] / "config.json"
    ).read_bytes()

    ids = chat_prompt_ids(tiny_models["base"], PROMPTS[0])
    # The merged checkpoint is the adapter applied to the base, nothing else.
    from transformers import AutoModelForCausalLM

    merged_model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32)
    with torch.no_grad():
        x = torch.tensor([ids])
        torch.testing.assert_close(
            merged_model(x).logits, peft_model(x).logits, atol=1e-4, rtol=1e-4
        )

    llm = create_llm(cfg)
    try:
        ref = GenARMReference(str(tiny_models["base"]), [str(merged)])
        for weight in (1.0, -2.0):
            out = llm.generate(
                [{"prompt_token_ids": ids}], sampling({"lora": weight}), use_tqdm=False
            )
            assert_matches_reference(ref, ids, (weight,), out[0].outputs[0])
    finally:
        shutdown_llm(llm)


def test_plain_base_without_arms_is_vllm_alone(tiny_models):
    cfg = parse_config(tiny_config_dict(tiny_models, arms=()))
    llm = create_llm(cfg)
    try:
        ids = chat_prompt_ids(tiny_models["base"], PROMPTS[0])
        out = llm.generate([{"prompt_token_ids": ids}], sampling(None), use_tqdm=False)
        ref = GenARMReference(str(tiny_models["base"]), [])
        assert list(out[0].outputs[0].token_ids) == ref.greedy(ids, [], MAX_TOKENS)
    finally:
        shutdown_llm(llm)


@pytest.mark.slow
def test_tensor_parallel_2_serves_the_composite(tiny_models):
    cfg = parse_config(tiny_config_dict(tiny_models, arms=("arm_a",), tensor_parallel_size=2))
    llm = create_llm(cfg)
    try:
        ids = chat_prompt_ids(tiny_models["base"], PROMPTS[0])
        ref = GenARMReference(str(tiny_models["base"]), [str(tiny_models["arm_a"])])
        for weight in (0.0, 1.5):
            out = llm.generate(
                [{"prompt_token_ids": ids}], sampling({"arm_a": weight}), use_tqdm=False
            )
            assert list(out[0].outputs[0].token_ids) == ref.greedy(ids, [weight], MAX_TOKENS)
    finally:
        shutdown_llm(llm)

"""The transformers decoder (genarm.reference_decoder) agrees with itself in every mode:
batched or not, with or without KV cache, float64 or float32 fusion, ARMs as
models or as PEFT adapters; and the vocabulary helper it shares with the engine."""

from __future__ import annotations

import pytest
import torch

from genarm.arm_kernels import fuse_reference
from genarm.reference_decoder import Adapter, GenARMReference
from genarm.vocab import align_vocab

from support import chat_prompt_ids

STEPS = 12
# arm_b's lm_head is padded 64 ids past the tokenizer (and the base).
WEIGHTS = [(1.5, -0.5), (0.0, 2.0), (3.0, 0.0)]


@pytest.fixture(scope="module")
def reference(tiny_models) -> GenARMReference:
    return GenARMReference(
        str(tiny_models["base"]), [str(tiny_models["arm_a"]), str(tiny_models["arm_b"])]
    )


@pytest.fixture(scope="module")
def prompts(tiny_models) -> list[list[int]]:
    # Different lengths, so that a batch is really left-padded.
    texts = ["Hi", "What does the license allow?", "Tell me a short story about a dragon."]
    return [chat_prompt_ids(tiny_models["base"], t) for t in texts]


def test_align_vocab_cuts_pads_and_keeps():
    logits = torch.arange(6.0).reshape(2, 3)
    assert align_vocab(logits, 3) is logits
    assert torch.equal(align_vocab(logits, 2), logits[:, :2])
    padded = align_vocab(logits, 5)
    assert torch.equal(padded[:, :3], logits) and torch.isneginf(padded[:, 3:]).all()


def test_fuse_step_is_the_kernels_reference(reference):
    """A narrower ARM is -inf-padded; with a negative weight its missing ids stay -inf."""
    torch.manual_seed(0)
    base, wide, narrow = torch.randn(2, 8), torch.randn(2, 10), torch.randn(2, 6)
    weights = torch.tensor([[1.0, -2.0], [0.0, 0.5]], dtype=torch.float64)
    got = reference.fuse_step(base, [wide, narrow], weights)
    want = fuse_reference(base, [wide[:, :8], align_vocab(narrow, 8)], weights)
    torch.testing.assert_close(got, torch.log_softmax(want, dim=-1), rtol=0, atol=1e-12)
    assert torch.isneginf(got[:, 6:]).all() and torch.isfinite(got[:, :6]).all()


def test_batched_with_and_without_cache_equals_the_oracle(tiny_models, reference, prompts):
    expected = [reference.greedy(p, w, STEPS) for p, w in zip(prompts, WEIGHTS, strict=True)]
    float32 = GenARMReference(
        str(tiny_models["base"]),
        [str(tiny_models["arm_a"]), str(tiny_models["arm_b"])],
        fusion_dtype=torch.float32,
    )
    for decoder in (reference, float32):
        for kv_cache in (False, True):
            got = decoder.decode(prompts, WEIGHTS, STEPS, kv_cache=kv_cache)
            assert [g.token_ids for g in got] == expected, (decoder.fusion_dtype, kv_cache)
    # Sampling draws the same tokens from the cached and the recomputed distributions.
    sampled = [
        [
            g.token_ids
            for g in reference.decode(
                prompts,
                WEIGHTS,
                STEPS,
                temperature=1.0,
                kv_cache=kv_cache,
                generator=torch.Generator().manual_seed(3),
            )
        ]
        for kv_cache in (False, True)
    ]
    assert sampled[0] == sampled[1] and sampled[0] != expected


def test_stop_ids_end_a_row(reference, prompts):
    free = reference.decode(prompts, WEIGHTS, STEPS)
    stop = free[1].token_ids[3]
    stopped = reference.decode(prompts, WEIGHTS, STEPS, stop_ids={stop})
    cut = free[1].token_ids.index(stop) + 1
    assert stopped[1].token_ids == free[1].token_ids[:cut]
    assert stopped[1].token_ids[-1] == stop and len(stopped[1].token_times) == cut


def test_peft_adapters_equal_the_merged_model(tiny_models, tmp_path, prompts):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_models["base"], dtype=torch.float32)
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(tmp_path / "arm")
    base = AutoModelForCausalLM.from_pretrained(tiny_models["base"], dtype=torch.float32)
    peft = PeftModel.from_pretrained(base, tmp_path / "arm", adapter_name="arm")
    adapters = GenARMReference(Adapter(peft), {"arm": Adapter(peft, "arm")})
    merged = GenARMReference(
        str(tiny_models["base"]),
        {"arm": {"adapter": str(tmp_path / "arm"), "adapter_base": str(tiny_models["base"])}},
    )
    for weight in (-1.0, 2.0):
        got = adapters.next_token_logprobs(prompts[1], {"arm": weight})
        want = merged.next_token_logprobs(prompts[1], {"arm": weight})
        torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
        assert adapters.greedy(prompts[1], {"arm": weight}, STEPS) == merged.greedy(
            prompts[1], {"arm": weight}, STEPS
        )
    base_alone = GenARMReference(str(tiny_models["base"]))
    assert adapters.greedy(prompts[1], {"arm": 0.0}, STEPS) == base_alone.greedy(
        prompts[1], None, STEPS
    )


def test_model_logprobs_combine_to_the_oracle(reference, prompts):
    """Each model's own log-probabilities (base width; arm_b's extra ids cut)."""
    base, arm_a, arm_b = reference.model_logprobs(prompts[0])
    assert base.shape == arm_a.shape == arm_b.shape and base.dtype == torch.float64
    for a, b in WEIGHTS:
        want = reference.next_token_logprobs(prompts[0], (a, b))
        got = torch.log_softmax(base + a * arm_a + b * arm_b, dim=-1)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)

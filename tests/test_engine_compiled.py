"""The compiled engine (``enforce_eager: false``) is as exact as the eager one, and its
compile cache is reused across starts without ever serving a stale graph.

Each start below runs on one fresh ``VLLM_CACHE_ROOT`` and is checked against the
transformers reference: the cold start (which compiles and saves one AOT artifact
per distinct sub-model), the warm restart (which must load them all: no artifact
rewritten), then one start that holds the same ARM folder with other weights of
the same shapes, another deployment (ARMs in another order) on the same cache, and
an ARM that shares the base's compiled graph.
"""

from __future__ import annotations

import shutil

import pytest
from test_engine import PROMPTS, WEIGHT_SETS, assert_matches_reference, sampling

from genarm.config import parse_config
from genarm.engine import create_llm
from genarm.reference_decoder import GenARMReference
from genarm.tiny_models import TINY_SHAPES, make_llama, tiny_config_dict

from support import _tokenizer, chat_prompt_ids, shutdown_llm

pytestmark = pytest.mark.engine  # every test here starts a vLLM engine


def _aot_artifacts(cache_root) -> dict[str, int]:
    """AOT cache key -> modification time of its saved artifact."""
    aot = cache_root / "torch_compile_cache" / "torch_aot_compile"
    return {p.parent.parent.name: p.stat().st_mtime_ns for p in aot.glob("*/rank_*/model")}


def _serve_and_check(models: dict, weights: list[dict[str, float]]) -> list[list[int]]:
    """Start the compiled engine with the ARMs named in ``weights`` (in that order),
    decode each weight set greedily, compare with the reference."""
    arms = tuple(weights[0])
    cfg = parse_config(tiny_config_dict(models, arms=arms, enforce_eager=False))
    ids = chat_prompt_ids(models["base"], PROMPTS[0])
    llm = create_llm(cfg)
    try:
        outputs = llm.generate(
            [{"prompt_token_ids": ids}] * len(weights),
            [sampling(w) for w in weights],
            use_tqdm=False,
        )
    finally:
        shutdown_llm(llm)
    reference = GenARMReference(str(models["base"]), [str(models[name]) for name in arms])
    for w, out in zip(weights, outputs, strict=True):
        assert_matches_reference(reference, ids, tuple(w[name] for name in arms), out.outputs[0])
    return [list(out.outputs[0].token_ids) for out in outputs]


@pytest.mark.slow
def test_compiled_starts_reuse_the_cache_and_never_a_stale_graph(
    tiny_models, tmp_path, monkeypatch
):
    cache = tmp_path / "vllm-cache"
    monkeypatch.setenv("VLLM_CACHE_ROOT", str(cache))
    # arm_a in a folder of its own, whose weights this test replaces later.
    arm_a = tmp_path / "arm_a"
    shutil.copytree(tiny_models["arm_a"], arm_a)
    models = {**tiny_models, "arm_a": arm_a}
    two_arms = [{"arm_a": a, "arm_b": b} for a, b in WEIGHT_SETS]

    cold = _serve_and_check(models, two_arms)
    saved = _aot_artifacts(cache)
    # base, arm_a and arm_b differ in shape: one artifact each, none overwritten by another.
    assert len(saved) == 3, saved

    warm = _serve_and_check(models, two_arms)
    assert warm == cold
    # Loaded, not compiled again: a failed load compiles and saves anew (a new mtime).
    assert _aot_artifacts(cache) == saved

    # One more start on the same cache, checked against the reference, holds three
    # changes at once: other weights of the same shapes in arm_a's folder; another
    # deployment, whose ARMs sit in other places in the composite (arm_b first); and an
    # ARM of the base's exact config (as a merged LoRA ARM is), which runs the base's
    # compiled graph with its own weights and its own KV cache.
    make_llama(arm_a, _tokenizer(str(arm_a)), TINY_SHAPES["arm_a"], seed=1234)
    same = make_llama(tmp_path / "arm_same", _tokenizer(str(arm_a)), TINY_SHAPES["base"], seed=77)
    assert (same / "config.json").read_bytes() == (tiny_models["base"] / "config.json").read_bytes()
    # arm_same at weight 0 contributes nothing: these rows ask what ``warm`` asked.
    three_arms = [{"arm_b": w["arm_b"], "arm_a": w["arm_a"], "arm_same": 0.0} for w in two_arms]
    three_arms.append({"arm_b": 0.5, "arm_a": 0.0, "arm_same": 1.5})
    changed = _serve_and_check({**models, "arm_same": same}, three_arms)
    # The outputs follow arm_a's new weights (the first rows ask what ``warm`` asked).
    moved = [i for i, w in enumerate(two_arms) if w["arm_a"]]
    assert [changed[i] for i in moved] != [warm[i] for i in moved]
    assert _aot_artifacts(cache) == saved

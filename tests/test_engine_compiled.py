"""The compiled engine (``enforce_eager: false``) is as exact as the eager one, and its
compile cache is reused across starts without ever serving a stale graph.

Each start below runs on one fresh ``VLLM_CACHE_ROOT`` and is checked against the
transformers reference: the cold start (which compiles and saves one AOT artifact
per distinct sub-model), the warm restart (which must load them all: no artifact
rewritten), the same ARM folder with other weights of the same shapes, another
deployment (ARMs in another order) on the same cache, and an ARM that shares the
base's compiled graph.
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


def _serve_and_check(models: dict, arms: tuple[str, ...]) -> list[list[int]]:
    """Start the compiled engine, decode WEIGHT_SETS greedily, compare with the reference."""
    cfg = parse_config(tiny_config_dict(models, arms=arms, enforce_eager=False))
    ids = chat_prompt_ids(models["base"], PROMPTS[0])
    weights = [dict(zip(arms, ws, strict=True)) for ws in WEIGHT_SETS]
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

    cold = _serve_and_check(models, ("arm_a", "arm_b"))
    saved = _aot_artifacts(cache)
    # base, arm_a and arm_b differ in shape: one artifact each, none overwritten by another.
    assert len(saved) == 3, saved

    warm = _serve_and_check(models, ("arm_a", "arm_b"))
    assert warm == cold
    # Loaded, not compiled again: a failed load compiles and saves anew (a new mtime).
    assert _aot_artifacts(cache) == saved

    # Other weights, same shapes, same folder: the outputs follow the new weights.
    make_llama(arm_a, _tokenizer(str(arm_a)), TINY_SHAPES["arm_a"], seed=1234)
    changed = _serve_and_check(models, ("arm_a", "arm_b"))
    assert changed != warm

    # Another deployment on the same cache: the ARMs swap their places in the composite.
    _serve_and_check(models, ("arm_b", "arm_a"))
    assert _aot_artifacts(cache) == saved

    # An ARM of the base's exact config (as a merged LoRA ARM is) runs the base's
    # compiled graph with its own weights and its own KV cache.
    same = make_llama(tmp_path / "arm_same", _tokenizer(str(arm_a)), TINY_SHAPES["base"], seed=77)
    assert (same / "config.json").read_bytes() == (tiny_models["base"] / "config.json").read_bytes()
    _serve_and_check({**models, "arm_same": same}, ("arm_same", "arm_b"))
    assert _aot_artifacts(cache) == saved

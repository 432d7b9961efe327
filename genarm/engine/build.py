"""Build the vLLM engine for a deployment config.

Without ARMs this is plain vLLM serving the base model. With ARMs, the base
folder is served as the composite ``GenARMForCausalLM`` (switched on through
``hf_overrides``, which also tells it which ARM checkpoints to load). The GenARM
logits processor, bound to the deployment's ARM specs, is installed either way.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genarm.config import DeploymentConfig
from genarm.engine.vllm_contract import check_platform_support, check_vllm_version
from genarm.hardware import cpu_has_native_bf16
from genarm.reward_weights import arm_specs

if TYPE_CHECKING:
    from genarm.engine.logits_processor import Runner

logger = logging.getLogger(__name__)

# vLLM's CPU worker plus the seeded-prefill fix; imported by vLLM in the worker only.
CPU_WORKER_CLS = "genarm.engine.worker.GenARMCPUWorker"


def arm_model_paths(cfg: DeploymentConfig) -> list[str]:
    """A plain checkpoint folder per ARM; LoRA adapters are merged (and cached) first."""
    from genarm.engine.lora import merged_adapter_path

    paths = []
    for arm in cfg.arms:
        if arm.model is not None:
            paths.append(arm.model)
        else:
            base = arm.adapter_base or cfg.base.model
            paths.append(str(merged_adapter_path(arm.adapter, base, cfg.engine.cache_dir)))
    return paths


def _base_architectures(model_path: str) -> list[str]:
    config_file = Path(model_path) / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"base model folder has no config.json: {model_path}")
    return list(json.loads(config_file.read_text()).get("architectures") or [])


def warn_if_bf16_is_emulated(cfg: DeploymentConfig) -> None:
    """bfloat16 on a CPU without bf16 instructions runs emulated: say what it costs."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    if cfg.engine.dtype == "bfloat16" and cpu_has_native_bf16() is False:
        logger.warning(
            "dtype bfloat16 on a CPU without bfloat16 instructions (no avx512_bf16/amx_bf16): "
            "vLLM emulates it. On such a CPU float32 decoded the demo base 2.8x faster at "
            "batch 16 (README, 'bfloat16 on CPU'); set engine.dtype: float32 "
            "if memory allows"
        )


def choose_model_runner(
    platform_is_cpu: bool, requested: str | None, v2_takes_custom_processors: bool
) -> Runner:
    """The vLLM model runner to serve with; each has its own processor interface.

    CPU: V1, the CPU build's only runner. CUDA: what VLLM_USE_V2_MODEL_RUNNER
    asks for, else V2 (vLLM 0.32's CUDA default) when the installed vLLM takes
    custom logits processors there, else V1.
    """
    if platform_is_cpu:
        return "v1"
    if requested is not None and requested.strip() != "":
        return "v2" if requested.strip().lower() in ("1", "true") else "v1"
    return "v2" if v2_takes_custom_processors else "v1"


def _v2_takes_custom_processors() -> bool:
    try:
        from vllm.v1.worker.gpu.sample.logits_processor import LogitsProcessor  # noqa: F401
    except ImportError:
        return False
    return True


def model_runner() -> Runner:
    """``choose_model_runner`` for this machine and environment."""
    from vllm.platforms import current_platform

    return choose_model_runner(
        current_platform.is_cpu(),
        os.environ.get("VLLM_USE_V2_MODEL_RUNNER"),
        _v2_takes_custom_processors(),
    )


def configure_environment(cfg: DeploymentConfig) -> None:
    """vLLM settings that are environment variables; read when the engine starts."""
    # Said explicitly, so that vLLM runs the runner whose processor we install.
    runner = model_runner()
    logger.info("vLLM model runner: %s (README, 'CUDA')", runner.upper())
    os.environ["VLLM_USE_V2_MODEL_RUNNER"] = "1" if runner == "v2" else "0"
    # By default vLLM's CPU worker holds one core back; on a 2-core laptop that halves speed.
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    tp = cfg.engine.tensor_parallel_size
    if tp > 1 and "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
        cores = os.cpu_count() or tp
        per = max(1, cores // tp)
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "|".join(
            f"{r * per}-{r * per + per - 1}" if per > 1 else str(r) for r in range(tp)
        )


def engine_kwargs(cfg: DeploymentConfig) -> dict[str, Any]:
    """Keyword arguments for vLLM's EngineArgs / LLM; checks tokenizers on the way."""
    from genarm.engine.composite import ARCHITECTURE
    from genarm.engine.deployment_processor import processor_for
    from genarm.engine.tokenizer_check import check_shared_tokenizer

    e = cfg.engine
    kwargs: dict[str, Any] = dict(
        model=cfg.base.model,
        tokenizer=cfg.base.tokenizer or cfg.base.model,
        served_model_name=cfg.server.served_model_name,
        quantization=cfg.base.quantization,
        dtype=e.dtype,
        max_model_len=e.max_model_len,
        tensor_parallel_size=e.tensor_parallel_size,
        pipeline_parallel_size=e.pipeline_parallel_size,
        distributed_executor_backend=e.distributed_executor_backend,
        nnodes=e.nnodes,
        node_rank=e.node_rank,
        master_addr=e.master_addr,
        master_port=e.master_port,
        max_num_seqs=e.max_num_seqs,
        max_num_batched_tokens=e.max_num_batched_tokens,
        enforce_eager=e.enforce_eager,
        enable_prefix_caching=e.enable_prefix_caching,
        gpu_memory_utilization=e.gpu_memory_utilization,
        # An explicit KV-cache size: vLLM's CPU default asks for more memory than a laptop has.
        kv_cache_memory_bytes=int(e.kv_cache_gib * 2**30) if e.kv_cache_gib else None,
        seed=e.seed,
        # Logprobs of the distribution tokens are drawn from, i.e. after guidance.
        logprobs_mode="processed_logprobs",
        max_logprobs=20,
    )
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        kwargs["worker_cls"] = CPU_WORKER_CLS
    # Installed without ARMs too: it is what refuses weights for ARMs a server lacks.
    kwargs["logits_processors"] = [processor_for(arm_specs(cfg), model_runner())]
    if not cfg.arms:
        return kwargs
    paths = arm_model_paths(cfg)
    for arm, path in zip(cfg.arms, paths, strict=True):
        check_shared_tokenizer(cfg.base.tokenizer or cfg.base.model, path, arm.name)
    # The composite model's share of the config: which checkpoints to load, in order.
    kwargs["hf_overrides"] = {
        "architectures": [ARCHITECTURE],
        "genarm_base_architectures": _base_architectures(cfg.base.model),
        "genarm_arms": [
            {"name": arm.name, "path": path} for arm, path in zip(cfg.arms, paths, strict=True)
        ],
    }
    return kwargs


def _prepare(cfg: DeploymentConfig) -> dict[str, Any]:
    check_vllm_version()
    check_platform_support(cfg)
    configure_environment(cfg)
    warn_if_bf16_is_emulated(cfg)
    kwargs = engine_kwargs(cfg)
    names = ", ".join(a.name for a in cfg.arms) or "none (plain vLLM)"
    logger.info("Starting vLLM engine: base %s, ARMs: %s", cfg.base.model, names)
    return kwargs


def create_llm(cfg: DeploymentConfig, **overrides: Any):
    """vLLM's offline ``LLM`` for a deployment (tests, benchmarks, batch jobs)."""
    from vllm import LLM

    kwargs = _prepare(cfg)
    kwargs.update(overrides)
    return LLM(**kwargs)


def create_async_engine(cfg: DeploymentConfig, **overrides: Any):
    """vLLM's ``AsyncLLM`` for a deployment (the server). Blocks while it loads."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.v1.engine.async_llm import AsyncLLM

    kwargs = _prepare(cfg)
    kwargs.update(overrides)
    return AsyncLLM.from_engine_args(AsyncEngineArgs(**kwargs))

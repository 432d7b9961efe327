"""vLLM plugin entry point (``vllm.general_plugins`` in pyproject.toml).

vLLM calls ``register`` in every process it starts (front end, engine core,
workers), so the composite architecture is known everywhere without relying on
an import side effect. It also installs the fix for vLLM's AOT-artifact reload
(``compile_cache.install_aot_reload_fix``: one attribute on a torch class, no
import of vLLM's model runner). The CPU runner's seeded-prefill fix is applied
by the worker class instead (``genarm.engine.worker``), in the one process
that runs the model.
"""

from __future__ import annotations


def register() -> None:
    from vllm import ModelRegistry

    from genarm.engine.compile_cache import install_aot_reload_fix
    from genarm.engine.composite import ARCHITECTURE

    if ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(ARCHITECTURE, "genarm.engine.composite:GenARMForCausalLM")
    install_aot_reload_fix()

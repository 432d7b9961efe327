"""The GenARM engine on vLLM: base + ARMs in lock-step inside one vLLM engine.

This package is the product's vLLM adapter: no other package imports vLLM.
``vllm_contract.py`` names the vLLM versions it supports (checked at start-up)
and the vLLM internals it relies on.
"""

from genarm.engine.build import create_async_engine, create_llm, engine_kwargs

__all__ = ["create_async_engine", "create_llm", "engine_kwargs"]

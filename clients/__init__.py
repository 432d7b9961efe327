"""Clients for a GenARM server: a Python client over the openai SDK, and `genarm chat`."""

from genarm.clients.client import (
    Arm,
    AsyncGenARMClient,
    GenARMClient,
    api_base,
    arms_of,
    rerank_of,
    reward_weights_of,
)

__all__ = [
    "Arm",
    "AsyncGenARMClient",
    "GenARMClient",
    "api_base",
    "arms_of",
    "rerank_of",
    "reward_weights_of",
]

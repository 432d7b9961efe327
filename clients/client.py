"""A thin GenARM layer over the official ``openai`` SDK.

Everything goes through the SDK's own client (``.openai``): this module only
adds the ``reward_weights`` request field (via ``extra_body``; best-of-N's
``rerank={...}`` too, as a keyword of ``chat``/``complete``), reads the ARM
list that ``/v1/models`` carries as extra data on each model object, and reads
the ``reward_weights`` echoed by responses and stream chunks. Server errors are
therefore the SDK's exceptions (``openai.BadRequestError``,
``openai.AuthenticationError``, ...), with the server's message.

Imports only the SDK and ``genarm.reward_weights`` (no torch, no vLLM), so the
chat CLI starts fast.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

import openai

from genarm.reward_weights import ArmSpec

DEFAULT_URL = "http://127.0.0.1:8000"
API_KEY_ENV = "GENARM_API_KEY"
# The SDK insists on some key; a server without keys ignores it.
NO_KEY = "no-key"


# One ARM type everywhere: the server's own, as /v1/models lists it.
Arm = ArmSpec


def api_base(url: str) -> str:
    """The SDK's base URL (``.../v1``) from a server root or an API base."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"


def arms_of(model: Any) -> list[Arm]:
    """The ARMs of an SDK ``Model`` object (kept by the SDK as extra data)."""
    extra = getattr(model, "model_extra", None) or {}
    return [Arm.from_dict(item) for item in extra.get("arms") or []]


def rerank_of(response: Any) -> dict[str, Any] | None:
    """A best-of-N response's ``rerank``: every candidate with its scores."""
    return (getattr(response, "model_extra", None) or {}).get("rerank")


def reward_weights_of(response: Any) -> dict[str, float] | None:
    """The weights a response or stream chunk says the server used."""
    extra = getattr(response, "model_extra", None) or {}
    weights = extra.get("reward_weights")
    return {k: float(v) for k, v in weights.items()} if weights is not None else None


def _with_weights(
    kwargs: dict[str, Any], reward_weights: Mapping[str, float] | None
) -> dict[str, Any]:
    """Put the weights into ``extra_body``, keeping any extra_body the caller set."""
    if reward_weights is None:
        return kwargs
    extra_body = dict(kwargs.pop("extra_body", None) or {})
    extra_body["reward_weights"] = {k: float(v) for k, v in reward_weights.items()}
    return {**kwargs, "extra_body": extra_body}


def _sdk_kwargs(url: str, api_key: str | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    return {"base_url": api_base(url), "api_key": key or NO_KEY, **kwargs}


class _Common:
    """What the sync and async clients share (no I/O here)."""

    _model: str | None

    def _kwargs(
        self,
        model: str | None,
        reward_weights: Mapping[str, float] | None,
        kwargs: dict[str, Any],
    ) -> dict[str, Any]:
        rerank = kwargs.pop("rerank", None)
        kwargs = _with_weights({"model": model or self._model, **kwargs}, reward_weights)
        if rerank is None:
            return kwargs
        # Best-of-N (README, "Server API"): {"n": N, "reward_model": ..., ...}.
        extra_body = dict(kwargs.pop("extra_body", None) or {})
        extra_body["rerank"] = dict(rerank)
        return {**kwargs, "extra_body": extra_body}


class GenARMClient(_Common):
    """Synchronous client. ``client.openai`` is the underlying ``openai.OpenAI``.

    ``model=None`` uses the server's (first) model, looked up once.
    Extra keyword arguments go to ``openai.OpenAI`` (``timeout``, ``max_retries``...).
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        model: str | None = None,
        **openai_kwargs: Any,
    ) -> None:
        self.openai = openai.OpenAI(**_sdk_kwargs(url, api_key, openai_kwargs))
        self._model = model

    @property
    def model(self) -> str:
        if self._model is None:
            self._model = self.models()[0].id
        return self._model

    def models(self) -> list[Any]:
        return list(self.openai.models.list().data)

    def arms(self, model: str | None = None) -> list[Arm]:
        """The ARMs (name, description, default/min/max weight) of ``model``."""
        wanted = model or self._model
        for entry in self.models():
            if wanted is None or entry.id == wanted:
                return arms_of(entry)
        raise ValueError(f"model {wanted!r} is not served at {self.openai.base_url}")

    def chat(
        self,
        messages: Iterable[Mapping[str, Any]],
        reward_weights: Mapping[str, float] | None = None,
        model: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """``chat.completions.create`` with weights; ``stream=True`` returns the SDK's stream."""
        return self.openai.chat.completions.create(
            **self._kwargs(model or self.model, reward_weights, {"messages": [*messages], **kwargs})
        )

    def chat_stream(
        self,
        messages: Iterable[Mapping[str, Any]],
        reward_weights: Mapping[str, float] | None = None,
        model: str | None = None,
        **kwargs: Any,
    ) -> Iterator[str]:
        """The answer's text, piece by piece as the server streams it."""
        with self.chat(messages, reward_weights, model, stream=True, **kwargs) as stream:
            for chunk in stream:
                for choice in chunk.choices:
                    if choice.delta.content:
                        yield choice.delta.content

    def complete(
        self,
        prompt: Any,
        reward_weights: Mapping[str, float] | None = None,
        model: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """``completions.create`` with weights."""
        return self.openai.completions.create(
            **self._kwargs(model or self.model, reward_weights, {"prompt": prompt, **kwargs})
        )

    def close(self) -> None:
        self.openai.close()

    def __enter__(self) -> GenARMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncGenARMClient(_Common):
    """Asynchronous client over ``openai.AsyncOpenAI`` (``client.openai``)."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        model: str | None = None,
        **openai_kwargs: Any,
    ) -> None:
        self.openai = openai.AsyncOpenAI(**_sdk_kwargs(url, api_key, openai_kwargs))
        self._model = model

    async def model(self) -> str:
        if self._model is None:
            self._model = (await self.models())[0].id
        return self._model

    async def models(self) -> list[Any]:
        return list((await self.openai.models.list()).data)

    async def arms(self, model: str | None = None) -> list[Arm]:
        wanted = model or self._model
        for entry in await self.models():
            if wanted is None or entry.id == wanted:
                return arms_of(entry)
        raise ValueError(f"model {wanted!r} is not served at {self.openai.base_url}")

    async def chat(
        self,
        messages: Iterable[Mapping[str, Any]],
        reward_weights: Mapping[str, float] | None = None,
        model: str | None = None,
        **kwargs: Any,
    ) -> Any:
        model = model or await self.model()
        return await self.openai.chat.completions.create(
            **self._kwargs(model, reward_weights, {"messages": [*messages], **kwargs})
        )

    async def chat_stream(
        self,
        messages: Iterable[Mapping[str, Any]],
        reward_weights: Mapping[str, float] | None = None,
        model: str | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[str]:
        stream = await self.chat(messages, reward_weights, model, stream=True, **kwargs)
        async with stream:
            async for chunk in stream:
                for choice in chunk.choices:
                    if choice.delta.content:
                        yield choice.delta.content

    async def complete(
        self,
        prompt: Any,
        reward_weights: Mapping[str, float] | None = None,
        model: str | None = None,
        **kwargs: Any,
    ) -> Any:
        model = model or await self.model()
        return await self.openai.completions.create(
            **self._kwargs(model, reward_weights, {"prompt": prompt, **kwargs})
        )

    async def close(self) -> None:
        await self.openai.close()

    async def __aenter__(self) -> AsyncGenARMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

"""Requests into engine jobs: chat templating, the ``max_tokens`` policy and the
sampling parameters, with every refusal an OpenAI-shaped ``APIError``.

No FastAPI here: a job is prepared from a validated body and the engine handle
(in the handle's tokenizer thread, since templating and tokenizing take CPU),
and run by ``generation.py``. Reward weights are forwarded as the client sent
them; the engine admits them (``genarm.reward_weights``).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from genarm.engine.frontend import sampling_params
from genarm.server.engine_handle import EngineHandle, engine_error_to_api
from genarm.server.errors import APIError
from genarm.server.protocol import (
    MAX_TEMPERATURE,
    ChatCompletionRequest,
    CompletionRequest,
    SamplingFields,
)
from genarm.server.rerank import RerankPlan, plan_rerank
from genarm.server.reward_models import RewardModels

logger = logging.getLogger(__name__)


@dataclass
class Job:
    """One validated request, ready for the engine."""

    kind: Literal["chat", "text"]
    prompts: list[list[int]]
    params: Any  # vllm.SamplingParams
    requested_weights: dict | None  # as the client sent them
    num_logprobs: int | None
    stream: bool
    include_usage: bool
    continuous_usage: bool = False  # usage so far in every chunk (vLLM's extension)
    rerank: RerankPlan | None = None  # best-of-N: params.n candidates per prompt
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def num_sequences(self) -> int:
        return self.params.n * len(self.prompts)


def chat_job(
    engine: EngineHandle, body: ChatCompletionRequest, reward_models: RewardModels | None = None
) -> Job:
    _check_common(engine, body)
    messages = [{"role": m.role, "content": m.text()} for m in body.messages]
    try:
        text = engine.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )
    except Exception as err:  # jinja's TemplateError and the template's raise_exception()
        raise APIError(
            400, f"the model's chat template refused these messages: {err}", param="messages"
        ) from None
    engine.check_prompt_chars(len(text), "messages")
    ids = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
    if body.max_tokens is not None and body.max_completion_tokens is not None:
        raise APIError(
            400,
            "set 'max_tokens' or 'max_completion_tokens', not both",
            param="max_completion_tokens",
        )
    requested = body.max_completion_tokens or body.max_tokens
    max_tokens = _max_tokens(engine, requested, len(ids), "messages")
    num_logprobs = None
    if body.logprobs:
        num_logprobs = body.top_logprobs or 0
    elif body.top_logprobs is not None:
        raise APIError(400, "'top_logprobs' needs 'logprobs': true", param="top_logprobs")
    rerank = _rerank_plan(reward_models, body, [messages])
    params = _sampling_params(engine, body, max_tokens, num_logprobs, rerank)
    return _job("chat", body, [ids], params, num_logprobs, rerank)


def completion_job(
    engine: EngineHandle, body: CompletionRequest, reward_models: RewardModels | None = None
) -> Job:
    _check_common(engine, body)
    prompts = _completion_prompts(engine, body.prompt)
    max_tokens = min(_max_tokens(engine, body.max_tokens, len(p), "prompt") for p in prompts)
    if body.max_tokens is None:
        max_tokens = min(max_tokens, 16)  # OpenAI's default for completions
    # A reward model reads a conversation: a completion's prompt is the user's turn.
    conversations = [[{"role": "user", "content": engine.tokenizer.decode(p)}] for p in prompts]
    rerank = _rerank_plan(reward_models, body, conversations)
    params = _sampling_params(engine, body, max_tokens, body.logprobs, rerank)
    return _job("text", body, prompts, params, body.logprobs, rerank)


def _rerank_plan(
    reward_models: RewardModels | None, body: SamplingFields, conversations: list[list[dict]]
) -> RerankPlan | None:
    if body.rerank is None:
        return None
    if reward_models is None or not reward_models.models:
        raise APIError(400, "this server has no reward models to rerank with", "rerank")
    return plan_rerank(reward_models, body.rerank, body.n, body.temperature, conversations)


def _job(kind, body: SamplingFields, prompts, params, num_logprobs, rerank=None) -> Job:
    options = body.stream_options
    include_usage = bool(options and options.include_usage)
    continuous = include_usage and bool(options and options.continuous_usage_stats)
    return Job(
        kind,
        prompts,
        params,
        body.reward_weights,
        num_logprobs,
        body.stream,
        include_usage,
        continuous_usage=continuous,
        rerank=rerank,
    )


def _check_common(engine: EngineHandle, body: SamplingFields) -> None:
    unavailable = engine.unavailable()
    if unavailable is not None:
        raise unavailable
    if body.model is not None and body.model != engine.model_id:
        raise APIError(
            404,
            f"model {body.model!r} not found; this server serves {engine.model_id!r}",
            param="model",
            code="model_not_found",
        )
    unsupported = body.unsupported_field()
    if unsupported:
        raise APIError(
            400,
            f"'{unsupported}' is not supported by this server",
            param=unsupported,
            code="unsupported_parameter",
        )
    if body.unknown_fields():
        logger.info("ignoring unknown request fields: %s", ", ".join(body.unknown_fields()))
    if body.stream_options is not None and not body.stream:
        raise APIError(400, "'stream_options' needs 'stream': true", param="stream_options")
    if body.n > 1 and body.temperature == 0:
        # Greedy choices would all be the same text; vLLM refuses it too.
        raise APIError(400, "'n' > 1 needs a temperature above 0", param="n")
    _check_temperature(body.temperature, engine.weights_if_valid(body.reward_weights))


def _check_temperature(temperature: float, weights: dict[str, float] | None) -> None:
    """vLLM's cap of 2, refused with the research mapping (README, "Temperature"): the
    research code's temperature T with weights a is T x (1 + sum(a)) here."""
    if temperature <= MAX_TEMPERATURE:
        return
    scale = 1.0 + sum(weights.values()) if weights is not None else 0.0
    hint = ""
    if scale > 0:
        hint = (
            f"; with this request's reward weights (1 + sum = {scale:g}) that covers research "
            f"temperatures up to {MAX_TEMPERATURE / scale:.4g}"
        )
    raise APIError(
        400,
        f"temperature must be at most {MAX_TEMPERATURE:g}, got {temperature:g}. The research "
        "code's (model_arithmetic's) temperature T with reward weights a is "
        f"temperature = T x (1 + sum(a)) here{hint}",
        param="temperature",
    )


def _max_tokens(engine: EngineHandle, requested: int | None, prompt_len: int, param: str) -> int:
    limit = engine.cfg.engine.max_model_len
    if prompt_len >= limit:
        raise APIError(
            400,
            f"the prompt has {prompt_len} tokens; this model's context is {limit} tokens",
            param=param,
            code="context_length_exceeded",
        )
    if requested is None:
        return limit - prompt_len
    if prompt_len + requested > limit:
        raise APIError(
            400,
            f"prompt ({prompt_len} tokens) plus max_tokens ({requested}) exceeds the "
            f"context of {limit} tokens",
            param="max_tokens",
            code="context_length_exceeded",
        )
    return requested


def _sampling_params(
    engine: EngineHandle,
    body: SamplingFields,
    max_tokens: int,
    num_logprobs,
    rerank: RerankPlan | None = None,
):
    if body.min_tokens > max_tokens:
        raise APIError(400, "'min_tokens' is larger than max_tokens", param="min_tokens")
    try:
        return sampling_params(
            reward_weights=body.reward_weights,
            n=rerank.candidates if rerank else body.n,
            temperature=body.temperature,
            top_p=body.top_p,
            # top_k at or past the vocabulary is no limit at all (and must not overflow).
            top_k=body.top_k if body.top_k and 0 < body.top_k < engine.vocab_size else 0,
            min_p=body.min_p,
            seed=body.seed,
            stop=body.stop,
            presence_penalty=body.presence_penalty,
            frequency_penalty=body.frequency_penalty,
            repetition_penalty=body.repetition_penalty,
            max_tokens=max_tokens,
            min_tokens=body.min_tokens,
            ignore_eos=body.ignore_eos,
            logprobs=num_logprobs,
        )
    except Exception as err:  # vLLM's own checks of the values: still the client's error
        api_error = engine_error_to_api(err)
        if api_error is None:
            raise
        raise api_error from None


def _completion_prompts(engine: EngineHandle, prompt) -> list[list[int]]:
    if isinstance(prompt, str):
        prompt = [prompt]
    if not prompt:
        raise APIError(400, "'prompt' is empty", param="prompt")
    if isinstance(prompt[0], int):
        prompt = [prompt]
    vocab = engine.vocab_size
    prompts = []
    for item in prompt:
        if isinstance(item, str):
            engine.check_prompt_chars(len(item), "prompt")
            ids = engine.tokenizer(item)["input_ids"]
        else:
            ids = list(item)
        if not ids:
            raise APIError(400, "a prompt has no tokens", param="prompt")
        if any(not 0 <= t < vocab for t in ids):
            raise APIError(400, f"token ids must be in [0, {vocab})", param="prompt")
        prompts.append(ids)
    return prompts

"""The OpenAI routes: /v1/models, /v1/chat/completions, /v1/completions."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from genarm.server.auth import require_api_key
from genarm.server.engine_client import EngineClient, cancel_on_disconnect, engine_error_to_api
from genarm.server.errors import APIError, error_body
from genarm.server.json_safe import SafeJSONResponse, finite_or_floor, json_bytes
from genarm.server.metrics import RequestTimer
from genarm.server.openapi_docs import COMPLETION_RESPONSES, MODELS_RESPONSES
from genarm.server.protocol import (
    MAX_TEMPERATURE,
    ChatCompletionRequest,
    CompletionRequest,
    SamplingFields,
)

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])


def client_of(request: Request) -> EngineClient:
    return request.app.state.engine_client


@router.api_route("/models", methods=["GET", "HEAD"], responses=MODELS_RESPONSES)
async def list_models(request: Request) -> dict:
    client = client_of(request)
    return {
        "object": "list",
        "data": [
            {
                "id": client.model_id,
                "object": "model",
                "created": client.created,
                "owned_by": "genarm",
                "max_model_len": client.cfg.engine.max_model_len,
                "arms": [spec.to_dict() for spec in client.specs],
            }
        ],
    }


@dataclass
class Job:
    """One validated request, ready for the engine."""

    kind: str  # "chat" or "text"
    prompts: list[list[int]]
    params: object  # vllm.SamplingParams
    weights: dict[str, float]
    num_logprobs: int | None
    stream: bool
    include_usage: bool
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))


def _check_common(client: EngineClient, body: SamplingFields) -> dict[str, float]:
    unavailable = client.unavailable()
    if unavailable is not None:
        raise unavailable
    if body.model is not None and body.model != client.model_id:
        raise APIError(
            404,
            f"model {body.model!r} not found; this server serves {client.model_id!r}",
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
    weights = client.resolve_weights(body.reward_weights)
    _check_temperature(body.temperature, weights)
    return weights


def _check_temperature(temperature: float, weights: dict[str, float]) -> None:
    """vLLM's cap of 2, refused with the research mapping (README, "Temperature"): the
    research code's temperature T with weights a is T x (1 + sum(a)) here."""
    if temperature <= MAX_TEMPERATURE:
        return
    scale = 1.0 + sum(weights.values())
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


def _max_tokens(client: EngineClient, requested: int | None, prompt_len: int, param: str) -> int:
    limit = client.cfg.engine.max_model_len
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


def _sampling_params(body: SamplingFields, max_tokens: int, weights, num_logprobs, vocab_size):
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    if body.min_tokens > max_tokens:
        raise APIError(400, "'min_tokens' is larger than max_tokens", param="min_tokens")
    try:
        return SamplingParams(
            n=body.n,
            temperature=body.temperature,
            top_p=body.top_p,
            # top_k at or past the vocabulary is no limit at all (and must not overflow).
            top_k=body.top_k if body.top_k and 0 < body.top_k < vocab_size else 0,
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
            extra_args={"reward_weights": weights} if weights else None,
            # Deltas for every request: the server sees each token as it comes (time
            # to first token), and a non-streamed response is their concatenation.
            output_kind=RequestOutputKind.DELTA,
        )
    except Exception as err:  # vLLM's own checks of the values: still the client's error
        api_error = engine_error_to_api(err)
        if api_error is None:
            raise
        raise api_error from None


def _chat_job(client: EngineClient, body: ChatCompletionRequest) -> Job:
    weights = _check_common(client, body)
    messages = [{"role": m.role, "content": m.text()} for m in body.messages]
    try:
        text = client.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )
    except Exception as err:  # jinja's TemplateError and the template's raise_exception()
        raise APIError(
            400, f"the model's chat template refused these messages: {err}", param="messages"
        ) from None
    client.check_prompt_chars(len(text), "messages")
    ids = client.tokenizer(text, add_special_tokens=False)["input_ids"]
    if body.max_tokens is not None and body.max_completion_tokens is not None:
        raise APIError(
            400,
            "set 'max_tokens' or 'max_completion_tokens', not both",
            param="max_completion_tokens",
        )
    requested = body.max_completion_tokens or body.max_tokens
    max_tokens = _max_tokens(client, requested, len(ids), "messages")
    num_logprobs = None
    if body.logprobs:
        num_logprobs = body.top_logprobs or 0
    elif body.top_logprobs is not None:
        raise APIError(400, "'top_logprobs' needs 'logprobs': true", param="top_logprobs")
    params = _sampling_params(body, max_tokens, weights, num_logprobs, len(client.tokenizer))
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return Job("chat", [ids], params, weights, num_logprobs, body.stream, include_usage)


def _completion_prompts(client: EngineClient, prompt) -> list[list[int]]:
    if isinstance(prompt, str):
        prompt = [prompt]
    if not prompt:
        raise APIError(400, "'prompt' is empty", param="prompt")
    if isinstance(prompt[0], int):
        prompt = [prompt]
    vocab = len(client.tokenizer)
    prompts = []
    for item in prompt:
        if isinstance(item, str):
            client.check_prompt_chars(len(item), "prompt")
            ids = client.tokenizer(item)["input_ids"]
        else:
            ids = list(item)
        if not ids:
            raise APIError(400, "a prompt has no tokens", param="prompt")
        if any(not 0 <= t < vocab for t in ids):
            raise APIError(400, f"token ids must be in [0, {vocab})", param="prompt")
        prompts.append(ids)
    return prompts


def _completion_job(client: EngineClient, body: CompletionRequest) -> Job:
    weights = _check_common(client, body)
    prompts = _completion_prompts(client, body.prompt)
    max_tokens = min(_max_tokens(client, body.max_tokens, len(p), "prompt") for p in prompts)
    if body.max_tokens is None:
        max_tokens = min(max_tokens, 16)  # OpenAI's default for completions
    params = _sampling_params(body, max_tokens, weights, body.logprobs, len(client.tokenizer))
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return Job("text", prompts, params, weights, body.logprobs, body.stream, include_usage)


# --- response formatting -------------------------------------------------------


def _token_text(client: EngineClient, token_id: int, logprob) -> str:
    if logprob.decoded_token is not None:
        return logprob.decoded_token
    return client.tokenizer.decode([token_id])


def _chat_logprobs(client: EngineClient, token_ids, logprobs, top: int) -> dict:
    content = []
    for token_id, position in zip(token_ids, logprobs, strict=False):
        chosen = position[token_id]
        best = sorted(position.items(), key=lambda kv: kv[1].rank or 0)[:top]
        entry = {
            "token": _token_text(client, token_id, chosen),
            "logprob": finite_or_floor(chosen.logprob),
            "bytes": list(_token_text(client, token_id, chosen).encode()),
            "top_logprobs": [
                {
                    "token": _token_text(client, t, lp),
                    "logprob": finite_or_floor(lp.logprob),
                    "bytes": list(_token_text(client, t, lp).encode()),
                }
                for t, lp in best
                if lp.rank is not None and lp.rank <= top
            ],
        }
        content.append(entry)
    return {"content": content}


def _text_logprobs(client: EngineClient, token_ids, logprobs, top: int, offset: int) -> dict:
    tokens, token_logprobs, tops, offsets = [], [], [], []
    for token_id, position in zip(token_ids, logprobs, strict=False):
        chosen = position[token_id]
        text = _token_text(client, token_id, chosen)
        tokens.append(text)
        token_logprobs.append(finite_or_floor(chosen.logprob))
        ranked = sorted(position.items(), key=lambda kv: kv[1].rank or 0)
        tops.append(
            {
                _token_text(client, t, lp): finite_or_floor(lp.logprob)
                for t, lp in ranked
                if lp.rank is not None and lp.rank <= top
            }
        )
        offsets.append(offset)
        offset += len(text)
    return {
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": tops,
        "text_offset": offsets,
    }


def _logprobs(client: EngineClient, job: Job, token_ids, logprobs, offset: int = 0):
    if job.num_logprobs is None or logprobs is None:
        return None
    if job.kind == "chat":
        return _chat_logprobs(client, token_ids, logprobs, job.num_logprobs)
    return _text_logprobs(client, token_ids, logprobs, job.num_logprobs, offset)


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _envelope(client: EngineClient, job: Job, obj: str) -> dict:
    prefix = "chatcmpl" if job.kind == "chat" else "cmpl"
    return {
        "id": f"{prefix}-{job.id}",
        "object": obj,
        "created": job.created,
        "model": client.model_id,
        "reward_weights": job.weights,
    }


def _record_weights(client: EngineClient, job: Job) -> None:
    for name, weight in job.weights.items():
        client.metrics.reward_weight.labels(arm=name).observe(weight)


def _finish_reason(reason: str | None) -> str | None:
    # OpenAI knows 'stop' and 'length'; an engine-side abort ends the text like a stop.
    return "stop" if reason == "abort" else reason


async def _merged(client: EngineClient, job: Job) -> AsyncIterator[tuple[int, object]]:
    """(prompt index, delta RequestOutput) of all the job's prompts, run concurrently."""
    from vllm.utils.async_utils import merge_async_iterators

    streams = [client.generate(ids, job.params) for ids in job.prompts]
    async with aclosing(merge_async_iterators(*streams)) as merged:
        async for p_index, output in merged:
            yield p_index, output


@dataclass
class _Choice:
    """A choice's deltas, concatenated."""

    text: list[str] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    logprobs: list | None = None
    finish_reason: str | None = None


async def _collect(client: EngineClient, job: Job) -> dict:
    """Non-streamed: run every prompt, then build one response."""
    timer = RequestTimer(client.metrics, sum(len(p) for p in job.prompts))
    choices: dict[int, _Choice] = {}
    try:
        async with aclosing(_merged(client, job)) as outputs:
            async for p_index, output in outputs:
                for completion in output.outputs:
                    index = p_index * job.params.n + completion.index
                    timer.tokens((p_index, completion.index), len(completion.token_ids))
                    choice = choices.setdefault(index, _Choice())
                    choice.text.append(completion.text)
                    choice.token_ids.extend(completion.token_ids)
                    if completion.logprobs is not None:
                        if choice.logprobs is None:
                            choice.logprobs = []
                        choice.logprobs.extend(completion.logprobs)
                    choice.finish_reason = completion.finish_reason
    finally:
        timer.finish()
    body = _envelope(client, job, "chat.completion" if job.kind == "chat" else "text_completion")
    body["choices"] = []
    for index, choice in sorted(choices.items()):
        text = "".join(choice.text)
        entry = {
            "index": index,
            "logprobs": _logprobs(client, job, choice.token_ids, choice.logprobs),
            "finish_reason": _finish_reason(choice.finish_reason),
        }
        if job.kind == "chat":
            entry["message"] = {"role": "assistant", "content": text}
        else:
            entry["text"] = text
        body["choices"].append(entry)
    body["usage"] = _usage(timer.prompt_tokens, timer.completion_tokens)
    return body


def _sse(data: dict | str) -> bytes:
    return b"data: " + (data.encode() if isinstance(data, str) else json_bytes(data)) + b"\n\n"


async def _stream(client: EngineClient, job: Job) -> AsyncIterator[bytes]:
    obj = "chat.completion.chunk" if job.kind == "chat" else "text_completion"
    timer = RequestTimer(client.metrics, sum(len(p) for p in job.prompts))
    offsets: dict[int, int] = {}
    sent_role: set[int] = set()
    yielded = False
    try:
        async with aclosing(_merged(client, job)) as outputs:
            async for p_index, output in outputs:
                for completion in output.outputs:
                    index = p_index * job.params.n + completion.index
                    timer.tokens((p_index, completion.index), len(completion.token_ids))
                    chunk = _envelope(client, job, obj)
                    offset = offsets.get(index, 0)
                    choice = {
                        "index": index,
                        "logprobs": _logprobs(
                            client, job, completion.token_ids, completion.logprobs, offset
                        ),
                        "finish_reason": _finish_reason(completion.finish_reason),
                    }
                    if job.kind == "chat":
                        delta = {"content": completion.text}
                        if index not in sent_role:
                            delta["role"] = "assistant"
                            sent_role.add(index)
                        choice["delta"] = delta
                    else:
                        choice["text"] = completion.text
                    offsets[index] = offset + len(completion.text)
                    chunk["choices"] = [choice]
                    if job.include_usage:
                        chunk["usage"] = None
                    yielded = True
                    yield _sse(chunk)
        if job.include_usage:
            chunk = _envelope(client, job, obj)
            chunk["choices"] = []
            chunk["usage"] = _usage(timer.prompt_tokens, timer.completion_tokens)
            yield _sse(chunk)
        yield _sse("[DONE]")
    except Exception as err:
        if not yielded:
            raise  # still before the 200: _respond turns it into an HTTP error
        # Headers are gone once streaming started: report in-band, as OpenAI does,
        # then end the stream as a stream ends.
        if not isinstance(err, APIError):
            logger.exception("unexpected error while streaming")
            err = APIError(500, f"internal server error: {type(err).__name__}")
        yield _sse(error_body(err.status, err.message, err.param, err.code))
        yield _sse("[DONE]")
    finally:
        timer.finish()


async def _primed(first: bytes, rest: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    try:
        yield first
        async for item in rest:
            yield item
    finally:
        await rest.aclose()


class _ClosingStreamingResponse(StreamingResponse):
    """Closes its body when the response ends for any reason, so that a client who
    disconnects while a chunk is being sent still has its engine request aborted
    now rather than whenever the generator is garbage-collected."""

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()


async def _respond(request: Request, job: Job):
    client = client_of(request)
    client.check_capacity(job.params.n * len(job.prompts), "n" if job.params.n > 1 else "prompt")
    _record_weights(client, job)
    if not job.stream:
        return SafeJSONResponse(await cancel_on_disconnect(request, _collect(client, job)))
    # Wait for the first chunk before answering 200, so that an engine refusal
    # is still a proper HTTP error rather than an in-band one.
    stream = _stream(client, job)
    first = await stream.__anext__()
    return _ClosingStreamingResponse(_primed(first, stream), media_type="text/event-stream")


# Preparing a job tokenizes: off the event loop, so other clients' streams flow on.


@router.post("/chat/completions", responses=COMPLETION_RESPONSES)
async def chat_completions(body: ChatCompletionRequest, request: Request):
    client = client_of(request)
    return await _respond(request, await client.run_off_loop(_chat_job, client, body))


@router.post("/completions", responses=COMPLETION_RESPONSES)
async def completions(body: CompletionRequest, request: Request):
    client = client_of(request)
    return await _respond(request, await client.run_off_loop(_completion_job, client, body))

"""Running a job on the engine and writing what it produced: one JSON response,
or a stream of server-sent events. No FastAPI here (``routes.py`` answers).

Both paths read the same merged deltas of the job's prompts and build the
response models of ``protocol.py``; one formatter writes logprobs for both APIs.
The response's ``reward_weights`` is the engine-admitted weights, read once the
engine has accepted the request (``EngineHandle.weights_echo``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field

from genarm.engine.frontend import merge_streams
from genarm.server.engine_handle import EngineHandle
from genarm.server.errors import APIError, error_body
from genarm.server.json_safe import finite_or_floor, json_bytes
from genarm.server.metrics import RequestTimer
from genarm.server.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionResponse,
    ChatDelta,
    ChatLogprobs,
    CompletionChunk,
    CompletionResponse,
    TextChoice,
    TextLogprobs,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from genarm.server.rerank import Candidate
from genarm.server.rerank import choose as rerank_choose
from genarm.server.serving import Job

logger = logging.getLogger(__name__)


async def collect(engine: EngineHandle, job: Job) -> dict:
    """Non-streamed: run every prompt, then build one response (as a JSON-able dict)."""
    choices, rerank, timer = await _collected(engine, job)
    envelope = _envelope(engine, job)
    if rerank is not None:
        envelope["rerank"] = rerank
    usage = _usage(timer)
    if job.kind == "chat":
        chat = [
            ChatChoice(
                index=index,
                message=AssistantMessage(role="assistant", content="".join(c.text)),
                logprobs=_chat_logprobs(engine, job, c.token_ids, c.logprobs),
                finish_reason=_finish_reason(c.finish_reason),
            )
            for index, c in sorted(choices.items())
        ]
        body = ChatCompletionResponse(
            object="chat.completion", choices=chat, usage=usage, **envelope
        )
    else:
        text = [
            TextChoice(
                index=index,
                text="".join(c.text),
                logprobs=_text_logprobs(engine, job, c.token_ids, c.logprobs, 0),
                finish_reason=_finish_reason(c.finish_reason),
            )
            for index, c in sorted(choices.items())
        ]
        body = CompletionResponse(object="text_completion", choices=text, usage=usage, **envelope)
    return body.model_dump(exclude_unset=True)


async def _collected(engine: EngineHandle, job: Job):
    """(the choices, best-of-N's ``rerank`` or None, the finished timer) of a whole job."""
    timer = RequestTimer(engine.metrics, sum(len(p) for p in job.prompts))
    try:
        choices = await _run(engine, job, timer)
    finally:
        timer.finish()
    choices, rerank = await _reranked(job, choices)
    return choices, rerank, timer


async def _run(engine: EngineHandle, job: Job, timer: RequestTimer) -> dict[int, _Choice]:
    """Every choice of the job, its deltas concatenated."""
    choices: dict[int, _Choice] = {}
    async with aclosing(_deltas(engine, job, timer)) as deltas:
        async for index, completion in deltas:
            choices.setdefault(index, _Choice()).add(completion)
    return choices


async def _reranked(job: Job, choices: dict[int, _Choice]):
    """Best-of-N: the chosen candidates as the choices (0, 1, ...) and the response's
    ``rerank``; without ``rerank``, the choices as they are and None."""
    if job.rerank is None:
        return choices, None
    candidates = [
        Candidate(index, "".join(c.text), _finish_reason(c.finish_reason), len(c.token_ids))
        for index, c in sorted(choices.items())
    ]
    chosen, result = await rerank_choose(job.rerank, candidates)
    return {new: choices[old] for new, old in enumerate(chosen)}, result


async def stream(engine: EngineHandle, job: Job) -> AsyncIterator[bytes]:
    """Server-sent events: a chunk per delta, usage if asked, then ``[DONE]``. An error
    before the first chunk propagates (the route answers it with an HTTP status); one
    after it is sent in-band, as OpenAI does, and the stream ends as streams end.
    With ``rerank`` nothing can be sent before the choice: each chosen answer comes
    whole in one chunk once it is chosen, the last chunk carries ``rerank``."""
    if job.rerank is not None:
        async for event in _reranked_stream(engine, job):
            yield event
        return
    timer = RequestTimer(engine.metrics, sum(len(p) for p in job.prompts))
    offsets: dict[int, int] = {}  # per choice: characters sent (completions' text_offset)
    envelope: dict | None = None
    sent = False
    try:
        async with aclosing(_deltas(engine, job, timer)) as deltas:
            async for index, completion in deltas:
                envelope = envelope or _envelope(engine, job)
                first = index not in offsets
                offset = offsets.get(index, 0)
                offsets[index] = offset + len(completion.text)
                choice = _chunk_choice(engine, job, index, completion, offset, first)
                usage = {"usage": None} if job.include_usage else {}
                if job.continuous_usage:
                    usage = {"usage": _usage(timer)}
                yield _sse(_chunk(job, envelope, [choice], **usage))
                sent = True
        if job.include_usage:
            envelope = envelope or _envelope(engine, job)
            yield _sse(_chunk(job, envelope, [], usage=_usage(timer)))
        yield SSE_DONE
    except Exception as err:
        if not sent:
            raise  # nothing sent yet: still an HTTP error
        if not isinstance(err, APIError):
            logger.exception("unexpected error while streaming")
            err = APIError(500, f"internal server error: {type(err).__name__}")
        yield b"data: " + json_bytes(error_body(err.status, err.message, err.param, err.code))
        yield b"\n\n" + SSE_DONE
    finally:
        timer.finish()


SSE_DONE = b"data: [DONE]\n\n"


async def _reranked_stream(engine: EngineHandle, job: Job) -> AsyncIterator[bytes]:
    choices, rerank, timer = await _collected(engine, job)
    envelope = _envelope(engine, job)
    usage = {"usage": None} if job.include_usage else {}
    for index, choice in sorted(choices.items()):
        whole = choice.as_completion()
        chunk_choice = _chunk_choice(engine, job, index, whole, 0, True)
        yield _sse(_chunk(job, envelope, [chunk_choice], **usage))
    if job.include_usage:
        usage = {"usage": _usage(timer)}
    yield _sse(_chunk(job, envelope, [], rerank=rerank, **usage))
    yield SSE_DONE


def _sse(model) -> bytes:
    return b"data: " + json_bytes(model.model_dump(exclude_unset=True)) + b"\n\n"


async def _deltas(engine: EngineHandle, job: Job, timer: RequestTimer) -> AsyncIterator:
    """(choice index, completion delta) of all the job's prompts, run concurrently."""
    streams = [engine.generate(ids, job.params) for ids in job.prompts]
    async with aclosing(merge_streams(*streams)) as merged:
        async for p_index, output in merged:
            for completion in output.outputs:
                timer.tokens((p_index, completion.index), len(completion.token_ids))
                yield p_index * job.params.n + completion.index, completion


def _envelope(engine: EngineHandle, job: Job) -> dict:
    """The fields every response and chunk of a job shares. Built once the engine has
    admitted the job: its weights are then the echo, and count in the metrics."""
    weights = engine.weights_echo(job.requested_weights)
    for name, weight in weights.items():
        engine.metrics.reward_weight.labels(arm=name).observe(weight)
    prefix = "chatcmpl" if job.kind == "chat" else "cmpl"
    return {
        "id": f"{prefix}-{job.id}",
        "created": job.created,
        "model": engine.model_id,
        "reward_weights": weights,
    }


def _chunk_choice(engine, job: Job, index: int, completion, offset: int, first: bool):
    reason = _finish_reason(completion.finish_reason)
    if job.kind == "chat":
        # The role comes with a choice's first delta only, as OpenAI sends it.
        role = {"role": "assistant"} if first else {}
        return ChatChunkChoice(
            index=index,
            delta=ChatDelta(content=completion.text, **role),
            logprobs=_chat_logprobs(engine, job, completion.token_ids, completion.logprobs),
            finish_reason=reason,
        )
    return TextChoice(
        index=index,
        text=completion.text,
        logprobs=_text_logprobs(engine, job, completion.token_ids, completion.logprobs, offset),
        finish_reason=reason,
    )


def _chunk(job: Job, envelope: dict, choices: list, **usage):
    if job.kind == "chat":
        return ChatCompletionChunk(
            object="chat.completion.chunk", choices=choices, **envelope, **usage
        )
    return CompletionChunk(object="text_completion", choices=choices, **envelope, **usage)


@dataclass
class _Choice:
    """A choice's deltas, concatenated (non-streamed responses)."""

    text: list[str] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    logprobs: list | None = None
    finish_reason: str | None = None

    def as_completion(self) -> _WholeCompletion:
        """The whole choice in the shape of one engine delta (a stream's one chunk)."""
        return _WholeCompletion(
            "".join(self.text), self.token_ids, self.logprobs, self.finish_reason
        )

    def add(self, completion) -> None:
        self.text.append(completion.text)
        self.token_ids.extend(completion.token_ids)
        if completion.logprobs is not None:
            self.logprobs = (self.logprobs or []) + list(completion.logprobs)
        self.finish_reason = completion.finish_reason


@dataclass
class _WholeCompletion:
    text: str
    token_ids: list[int]
    logprobs: list | None
    finish_reason: str | None


def _usage(timer: RequestTimer) -> Usage:
    prompt, completion = timer.prompt_tokens, timer.completion_tokens
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


def _finish_reason(reason: str | None) -> str | None:
    # OpenAI knows 'stop' and 'length'; an engine-side abort ends the text like a stop.
    return "stop" if reason == "abort" else reason


# --- logprobs: one formatter, two shapes --------------------------------------------


def _token_logprobs(engine: EngineHandle, token_ids, logprobs, top: int) -> list[TokenLogprob]:
    """Per generated token: its text, logprob and bytes, and the ``top`` best."""
    entries = []
    for token_id, position in zip(token_ids, logprobs, strict=False):
        ranked = sorted(position.items(), key=lambda kv: kv[1].rank or 0)
        best = [_top(engine, t, lp) for t, lp in ranked if lp.rank is not None and lp.rank <= top]
        chosen = _top(engine, token_id, position[token_id])
        entries.append(TokenLogprob(**dict(chosen), top_logprobs=best))
    return entries


def _top(engine: EngineHandle, token_id: int, logprob) -> TopLogprob:
    # The raw bytes, not the text's: a token that is part of a character has text
    # "" or U+FFFD, and OpenAI's `bytes` exists to carry what it really is.
    return TopLogprob(
        token=engine.token_bytes.name(token_id, logprob.decoded_token),
        logprob=finite_or_floor(logprob.logprob),
        bytes=list(engine.token_bytes.raw(token_id)),
    )


def _chat_logprobs(engine: EngineHandle, job: Job, token_ids, logprobs) -> ChatLogprobs | None:
    if job.num_logprobs is None or logprobs is None:
        return None
    return ChatLogprobs(content=_token_logprobs(engine, token_ids, logprobs, job.num_logprobs))


def _text_logprobs(engine, job: Job, token_ids, logprobs, offset: int) -> TextLogprobs | None:
    """The completions API's shape of the same entries; offsets count characters."""
    if job.num_logprobs is None or logprobs is None:
        return None
    entries = _token_logprobs(engine, token_ids, logprobs, job.num_logprobs)
    offsets = []
    for token_id, position in zip(token_ids, logprobs, strict=False):
        offsets.append(offset)
        # The text this token added: a token inside a character adds none (vLLM's
        # decoded text is "" there), the one completing it the whole character.
        decoded = position[token_id].decoded_token
        offset += len(decoded if decoded is not None else engine.tokenizer.decode([token_id]))
    return TextLogprobs(
        tokens=[e.token for e in entries],
        token_logprobs=[e.logprob for e in entries],
        top_logprobs=[{t.token: t.logprob for t in e.top_logprobs} for e in entries],
        text_offset=offsets,
    )

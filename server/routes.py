"""The OpenAI routes: /v1/models, /v1/chat/completions, /v1/completions, and
/v1/rewards (scores from the deployment's reward models).

Routing only: a validated body becomes a job (``serving.py``, in the engine
handle's tokenizer thread), the job runs (``generation.py``), and the answer is
JSON or an event stream. Errors are ``APIError``s, answered by ``errors.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from genarm.server import generation
from genarm.server.auth import require_api_key
from genarm.server.engine_handle import EngineHandle
from genarm.server.errors import APIError
from genarm.server.json_safe import SafeJSONResponse
from genarm.server.openapi_docs import completion_responses, models_responses, rewards_responses
from genarm.server.protocol import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionChunk,
    CompletionRequest,
    CompletionResponse,
    ModelCard,
    ModelList,
)
from genarm.server.reward_models import RewardModels
from genarm.server.reward_protocol import RewardRequest, RewardResponse
from genarm.server.serving import Job, chat_job, completion_job

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])


def engine_of(request: Request) -> EngineHandle:
    return request.app.state.engine


@router.api_route("/models", methods=["GET", "HEAD"], responses=models_responses())
async def list_models(request: Request) -> ModelList:
    engine = engine_of(request)
    card = ModelCard(
        id=engine.model_id,
        object="model",
        created=engine.created,
        owned_by="genarm",
        max_model_len=engine.cfg.engine.max_model_len,
        arms=engine.specs,
    )
    rewards: RewardModels = request.app.state.reward_models
    return ModelList(object="list", data=[card, *rewards.cards()])


@router.post(
    "/chat/completions",
    responses=completion_responses(ChatCompletionResponse, ChatCompletionChunk),
)
async def chat_completions(body: ChatCompletionRequest, request: Request):
    engine = engine_of(request)
    rewards = request.app.state.reward_models
    return await _respond(request, await engine.run_off_loop(chat_job, engine, body, rewards))


@router.post(
    "/completions",
    responses=completion_responses(CompletionResponse, CompletionChunk),
)
async def completions(body: CompletionRequest, request: Request):
    engine = engine_of(request)
    rewards = request.app.state.reward_models
    job = await engine.run_off_loop(completion_job, engine, body, rewards)
    return await _respond(request, job)


@router.post("/rewards", responses=rewards_responses())
async def rewards(body: RewardRequest, request: Request) -> RewardResponse:
    reward_models: RewardModels = request.app.state.reward_models
    return await _cancel_on_disconnect(request, reward_models.score(body))


async def _respond(request: Request, job: Job):
    engine = engine_of(request)
    param = "rerank.n" if job.rerank else "n" if job.params.n > 1 else "prompt"
    engine.check_capacity(job.num_sequences, param)
    if not job.stream:
        return SafeJSONResponse(
            await _cancel_on_disconnect(request, generation.collect(engine, job))
        )
    # Wait for the first event before answering 200, so that an engine refusal
    # is still a proper HTTP error rather than an in-band one.
    events = generation.stream(engine, job)
    # Best-of-N sends nothing until every candidate is scored: a client that leaves
    # meanwhile must still free its requests.
    first = await _cancel_on_disconnect(request, events.__anext__())
    return _ClosingStreamingResponse(_primed(first, events), media_type="text/event-stream")


async def _cancel_on_disconnect(request: Request, coro):
    """Run ``coro``; cancel it (and so abort its engine request) if the client leaves."""
    task = asyncio.ensure_future(coro)
    while True:
        done, _ = await asyncio.wait({task}, timeout=0.25)
        if done:
            return task.result()
        if await request.is_disconnected():
            task.cancel()
            raise APIError(499, "client disconnected")


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

"""The deployment's reward models in the server: loading, admission and scoring.

Each reward model (``reward_models`` in the config) is a vLLM pooling engine of
its own (``genarm.engine.reward_engine``). An item is scored as the reward
model reads it: the conversation and the response as the assistant's turn,
through the reward model's own chat template; the head's raw outputs are the
per-objective scores, and the combined score is ``Σ_o w_o · score_o`` with the
request's ``objective_weights`` over the reward model's defaults.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from genarm.config import DeploymentConfig, RewardModelConfig
from genarm.engine import start_phases
from genarm.server.errors import APIError
from genarm.server.metrics import ServerMetrics
from genarm.server.protocol import RewardModelCard
from genarm.server.reward_protocol import (
    RewardRequest,
    RewardResponse,
    RewardScore,
    RewardUsage,
)

logger = logging.getLogger(__name__)


@dataclass
class ServedRewardModel:
    cfg: RewardModelConfig
    objectives: list[str]
    default_weights: dict[str, float]
    tokenizer: Any
    llm: Any  # vLLM's AsyncLLM (pooling runner)
    metrics: ServerMetrics | None = None

    def count(self, items: int, tokens: int) -> None:
        """Reward-model work done (the server's metrics; none outside a server)."""
        if self.metrics is not None:
            self.metrics.reward_items.labels(reward_model=self.cfg.name).inc(items)
            self.metrics.reward_tokens.labels(reward_model=self.cfg.name).inc(tokens)

    def card(self, created: int) -> RewardModelCard:
        return RewardModelCard(
            id=self.cfg.name,
            object="model",
            created=created,
            owned_by="genarm",
            max_model_len=self.cfg.max_model_len,
            type="reward_model",
            objectives=self.objectives,
            objective_weights=self.default_weights,
            max_batch=self.cfg.max_batch,
            description=self.cfg.description,
        )


class RewardModels:
    """Every reward model of one deployment; ``load`` blocks (run it in a thread)."""

    def __init__(self, cfg: DeploymentConfig, metrics: ServerMetrics | None = None) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.models: dict[str, ServedRewardModel] = {}
        self.created = int(time.time())
        self._loaded = not cfg.reward_models
        # Called once if a reward model's engine dies: the server then exits to be
        # restarted, as when the generating engine dies.
        self.on_engine_dead: Callable[[], None] | None = None
        self._dead_reported = False

    @property
    def ready(self) -> bool:
        return self._loaded and not self.dead

    @property
    def dead(self) -> bool:
        return any(model.llm.errored for model in self.models.values())

    def load(self) -> None:
        from transformers import AutoTokenizer

        from genarm.engine.reward_engine import (
            create_reward_engine,
            objective_weights,
            reward_model_objectives,
        )

        for rm in self.cfg.reward_models:
            start_phases.record("reward models", f"{rm.name}: {rm.model}")
            objectives = reward_model_objectives(rm)
            tokenizer = AutoTokenizer.from_pretrained(rm.model)
            if not getattr(tokenizer, "chat_template", None):
                raise RuntimeError(
                    f"reward model {rm.name!r} ({rm.model}): its tokenizer has no chat "
                    "template, which is how it reads a conversation and a response"
                )
            self.models[rm.name] = ServedRewardModel(
                rm,
                objectives,
                objective_weights(rm, objectives),
                tokenizer,
                create_reward_engine(rm, self.cfg.engine),
                self.metrics,
            )
        self._loaded = True

    def shutdown(self) -> None:
        for model in self.models.values():
            model.llm.shutdown()

    def cards(self) -> list[RewardModelCard]:
        return [model.card(self.created) for model in self.models.values()]

    def resolve(self, body: RewardRequest) -> tuple[ServedRewardModel, dict[str, float]]:
        """The reward model and the weights a request asks for (400s naming the field)."""
        model, weights = self.choose(body.model, body.objective_weights)
        if len(body.items) > model.cfg.max_batch:
            raise APIError(
                400,
                f"{len(body.items)} items; reward model {model.cfg.name!r} scores at most "
                f"{model.cfg.max_batch} per request",
                "items",
            )
        return model, weights

    def choose(
        self,
        name: str | None,
        requested: dict[str, float] | None,
        model_param: str = "model",
        weights_param: str = "objective_weights",
    ) -> tuple[ServedRewardModel, dict[str, float]]:
        """A reward model by name (the only one if None) and its weights with the
        ``requested`` ones over its defaults; 400s name the request's fields."""
        self._check_available()
        if name is None:
            if len(self.models) != 1:
                names = ", ".join(self.models) or "none: the config has no reward_models"
                raise APIError(
                    400,
                    f"say which reward model scores: '{model_param}' is one of {names}",
                    model_param,
                )
            model = next(iter(self.models.values()))
        elif name in self.models:
            model = self.models[name]
        else:
            names = ", ".join(self.models) or "none: the config has no reward_models"
            raise APIError(
                400, f"unknown reward model {name!r}; this server has {names}", model_param
            )
        weights = dict(model.default_weights)
        for objective, weight in (requested or {}).items():
            if objective not in weights:
                raise APIError(
                    400,
                    f"reward model {model.cfg.name!r} has no objective {objective!r}; its "
                    f"objectives are {', '.join(model.objectives)}",
                    f"{weights_param}.{objective}",
                )
            weights[objective] = float(weight)
        return model, weights

    def _check_available(self) -> None:
        if not self._loaded:
            raise APIError(503, "the reward models are still loading", headers={"Retry-After": "5"})
        if self.dead:
            self.report_dead()
            raise APIError(503, "a reward model's engine has stopped", code="engine_dead")

    def report_dead(self) -> None:
        if not self._dead_reported:
            self._dead_reported = True
            logger.error("A reward model's vLLM engine has stopped; shutting the server down")
            if self.on_engine_dead is not None:
                self.on_engine_dead()

    async def score(self, body: RewardRequest) -> RewardResponse:
        model, weights = self.resolve(body)
        items = [
            ([{"role": m.role, "content": m.text()} for m in item.messages], item.response)
            for item in body.items
        ]
        scored, tokens = await score_items(model, weights, items, lambda i: f"items.{i}")
        data = [
            RewardScore(index=index, scores=scores, score=combined)
            for index, (scores, combined) in enumerate(scored)
        ]
        return RewardResponse(
            object="list",
            model=model.cfg.name,
            objective_weights=weights,
            data=data,
            usage=RewardUsage(prompt_tokens=tokens, total_tokens=tokens),
        )


async def score_items(
    model: ServedRewardModel,
    weights: dict[str, float],
    items: list[tuple[list[dict], str]],
    param_of: Callable[[int], str],
) -> tuple[list[tuple[dict[str, float], float]], int]:
    """(per item: the objectives' scores and their weighted sum; tokens read) for
    (messages, response) items; an item past the model's context is a 400 naming
    ``param_of(its index)``."""
    prompts = await asyncio.to_thread(_tokenize_items, model, items, param_of)
    outputs = await asyncio.gather(*(_score_one(model, ids) for ids in prompts))
    scored = []
    for raw in outputs:
        scores = dict(zip(model.objectives, raw, strict=True))
        scored.append((scores, sum(weights[name] * value for name, value in scores.items())))
    tokens = sum(len(ids) for ids in prompts)
    model.count(len(prompts), tokens)
    return scored, tokens


def conversation_ids(tokenizer, messages: list[dict], response: str) -> list[int]:
    """Token ids of ``messages`` + the response as the assistant's turn (the RM's template)."""
    conversation = [*messages, {"role": "assistant", "content": response}]
    ids = tokenizer.apply_chat_template(conversation, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def _tokenize_items(model: ServedRewardModel, items, param_of) -> list[list[int]]:
    prompts = []
    for index, (messages, response) in enumerate(items):
        ids = conversation_ids(model.tokenizer, messages, response)
        if len(ids) > model.cfg.max_model_len:
            raise APIError(
                400,
                f"item {index} is {len(ids)} tokens; reward model {model.cfg.name!r} reads "
                f"at most {model.cfg.max_model_len}",
                param_of(index),
                code="context_length_exceeded",
            )
        prompts.append(ids)
    return prompts


async def _score_one(model: ServedRewardModel, prompt_ids: list[int]) -> list[float]:
    """The head's raw outputs for one item; the engine request is aborted if cancelled."""
    from genarm.engine.reward_engine import raw_scores_params
    from genarm.server.engine_handle import engine_error_to_api

    request_id = f"genarm-rm-{uuid.uuid4().hex}"
    final = None
    try:
        async for output in model.llm.encode(
            {"prompt_token_ids": prompt_ids}, raw_scores_params(), request_id=request_id
        ):
            final = output
    except Exception as err:
        if model.llm.errored:
            raise APIError(503, "a reward model's engine has stopped", code="engine_dead") from None
        api_error = engine_error_to_api(err)
        if api_error is None:
            raise
        raise api_error from None
    finally:
        if final is None or not final.finished:
            await model.llm.abort(request_id)
    return [float(v) for v in final.outputs.data.flatten().tolist()]

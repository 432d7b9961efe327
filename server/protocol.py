"""The OpenAI API's bodies as this server speaks them: requests, validated at the
edge, and responses, built by the serving layer (``generation.py``) and so
documented in ``/openapi.json`` with the GenARM fields (``reward_weights``,
``arms``).

Unknown fields are accepted and logged (as vLLM does); fields of the OpenAI API
that this server does not implement are refused with a 400 that says so,
rather than silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

from genarm.reward_weights import ArmSpec
from genarm.server.json_safe import UnpairedSurrogateError, first_unpaired_surrogate

# OpenAI features that change what the caller gets; ignoring them would mislead.
UNSUPPORTED_FIELDS = (
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "parallel_tool_calls",
    "response_format",
    "logit_bias",
    "audio",
    "modalities",
    "prediction",
    "best_of",
    "suffix",
    "echo",
    "web_search_options",
)

MAX_N = 16
MAX_TOP_LOGPROBS = 20
# vLLM's server bound (torch.long); larger seeds crash its request serialization.
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1
# Token counts and top_k travel to the engine as int32 tensors.
MAX_INT32 = 2**31 - 1
# OpenAI's and vLLM's temperature cap. The research code's temperature T with reward
# weights a is T * (1 + sum(a)) here (README, "Temperature"); a request above the cap
# is refused with that mapping, by the serving layer, which knows the weights.
MAX_TEMPERATURE = 2.0

# A finite JSON number (integer or not), but neither a bool nor a numeric string.
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: StrictBool = False
    # vLLM's extension (guidellm sends it): with include_usage, every chunk also
    # carries the usage so far.
    continuous_usage_stats: StrictBool = False


class RerankOptions(BaseModel):
    """Best-of-N: sample ``n`` candidates, score them with a reward model, keep the best."""

    model_config = ConfigDict(extra="forbid")
    reward_model: str | None = Field(
        default=None, description="a reward model's name (GET /v1/models); optional with one"
    )
    n: StrictInt = Field(ge=2, le=MAX_N, description="candidates sampled per prompt")
    objective_weights: dict[str, Number] | None = Field(
        default=None, description="as in /v1/rewards; left-out objectives keep their default"
    )


class SamplingFields(BaseModel):
    """Fields shared by chat and completions."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    max_tokens: StrictInt | None = Field(default=None, ge=1, le=MAX_INT32)
    temperature: Number = Field(
        default=1.0,
        ge=0.0,
        description=(
            f"at most {MAX_TEMPERATURE:g}; the research code's temperature T with reward "
            "weights a is T x (1 + sum(a)) here"
        ),
    )
    top_p: Number = Field(default=1.0, gt=0.0, le=1.0)
    top_k: StrictInt | None = Field(
        default=None, ge=-1, le=MAX_INT32, description="extension; -1/0: off"
    )
    min_p: Number = Field(default=0.0, ge=0.0, le=1.0)
    n: StrictInt = Field(default=1, ge=1, le=MAX_N)
    stop: str | list[str] | None = None
    seed: StrictInt | None = Field(default=None, ge=SEED_MIN, le=SEED_MAX)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    presence_penalty: Number = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: Number = Field(default=0.0, ge=-2.0, le=2.0)
    repetition_penalty: Number = Field(default=1.0, gt=0.0, le=2.0)
    user: str | None = None
    # Extensions as in vLLM's server, for benchmarks with fixed output lengths.
    ignore_eos: StrictBool = False
    min_tokens: StrictInt = Field(default=0, ge=0, le=MAX_INT32)
    # GenARM: forwarded as sent; the engine admits it by the rules of
    # genarm.reward_weights (a 400 naming the ARM otherwise).
    reward_weights: dict[str, Any] | None = Field(
        default=None,
        description="GenARM: ARM name -> weight (alpha); ARMs left out get their default. "
        "GET /v1/models lists the ARMs with their defaults and bounds.",
    )
    rerank: RerankOptions | None = Field(
        default=None,
        description="GenARM: best-of-N. Samples rerank.n guided candidates per prompt, "
        "scores them with a reward model and returns the best `n` (default 1), every "
        "candidate's score in the response's `rerank`; a stream sends the chosen answers "
        "once they are chosen.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_surrogates_and_nulls_unset(cls, data: Any) -> Any:
        surrogate = first_unpaired_surrogate(data)
        if surrogate is not None:
            raise UnpairedSurrogateError(surrogate)
        # Clients send explicit nulls for options they leave unset; OpenAI accepts them.
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, stop: str | list[str] | None) -> str | list[str] | None:
        if stop == "" or (isinstance(stop, list) and "" in stop):
            raise ValueError("a stop string must not be empty")
        return stop

    def unknown_fields(self) -> list[str]:
        return sorted((self.model_extra or {}).keys())

    def unsupported_field(self) -> str | None:
        for name in UNSUPPORTED_FIELDS:
            value = (self.model_extra or {}).get(name)
            if value not in (None, False, [], {}) and not (name == "best_of" and value == 1):
                return name
        return None


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatCompletionRequest(SamplingFields):
    # Examples in /openapi.json: documentation, and requests a schema fuzzer sends first.
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8},
                {
                    "messages": [{"role": "user", "content": "Say hello."}],
                    "max_tokens": 8,
                    "stream": True,
                    "logprobs": True,
                    "top_logprobs": 2,
                },
            ]
        }
    )

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1, le=MAX_INT32)
    logprobs: StrictBool = False
    top_logprobs: StrictInt | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)


class CompletionRequest(SamplingFields):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"prompt": "Once upon a time", "max_tokens": 8, "logprobs": 2},
                {"prompt": ["Hello", "Goodbye"], "max_tokens": 8, "n": 2, "stream": True},
            ]
        }
    )

    prompt: str | list[str] | list[StrictInt] | list[list[StrictInt]]
    logprobs: StrictInt | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)


# --- responses (documented in /openapi.json) -------------------------------------


class ErrorDetail(BaseModel):
    message: str
    type: str = Field(description="e.g. invalid_request_error, authentication_error")
    param: str | None = Field(default=None, description="the offending field, dotted")
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error shape; also sent in-band as a stream's last event before [DONE]."""

    error: ErrorDetail


class HealthStatus(BaseModel):
    status: Literal["ok", "loading", "draining", "failed"]
    error: str | None = None
    phase: str | None = Field(
        None,
        description="While loading: the start's current phase (tokenizer, engine processes, "
        "worker set-up, loading weights, compiling, KV cache, warm-up)",
    )
    phase_seconds: float | None = Field(None, description="While loading: time in that phase")
    detail: str | None = Field(None, description="While loading: what the phase is working on")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    max_model_len: int
    arms: list[ArmSpec] = Field(description="GenARM: the ARMs a request may weight")


class RewardModelCard(BaseModel):
    """A reward model in GET /v1/models (it scores; it does not generate)."""

    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    max_model_len: int
    type: Literal["reward_model"]
    objectives: list[str]
    objective_weights: dict[str, float] = Field(description="the combined score's defaults")
    max_batch: int = Field(description="items per /v1/rewards request")
    description: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard | RewardModelCard] = Field(
        description="the generating model first, then the reward models (/v1/rewards)"
    )


# Response bodies are dumped with exclude_unset: a field left unset is absent (e.g.
# a chunk's usage unless asked for), so fields that must always appear have no default.


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    content: list[TokenLogprob]


class TextLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None
    finish_reason: str | None


class TextChoice(BaseModel):
    index: int
    text: str
    logprobs: TextLogprobs | None
    finish_reason: str | None


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = Field(default=None, description="first chunk only")
    content: str


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    logprobs: ChatLogprobs | None
    finish_reason: str | None


class RerankCandidate(BaseModel):
    prompt_index: int
    text: str
    score: float = Field(description="the reward model's combined score")
    scores: dict[str, float] = Field(description="per objective")
    finish_reason: str | None
    completion_tokens: int
    choice_index: int | None = Field(description="its index in `choices`; null: not chosen")


class RerankResult(BaseModel):
    reward_model: str
    objective_weights: dict[str, float]
    candidates: list[RerankCandidate] = Field(description="every candidate, best first per prompt")


class GenARMResponse(BaseModel):
    """OpenAI's fields in OpenAI's order, with the GenARM echo; subclasses name the object."""

    id: str
    object: str
    created: int
    model: str
    reward_weights: dict[str, float] = Field(
        description="GenARM: the weight each ARM guided this answer with"
    )


class ChatCompletionResponse(GenARMResponse):
    object: Literal["chat.completion"]
    choices: list[ChatChoice]
    usage: Usage
    rerank: RerankResult | None = Field(default=None, description="with a `rerank` request")


class CompletionResponse(GenARMResponse):
    object: Literal["text_completion"]
    choices: list[TextChoice]
    usage: Usage
    rerank: RerankResult | None = Field(default=None, description="with a `rerank` request")


class ChatCompletionChunk(GenARMResponse):
    """One event of a chat stream (``data: {...}``); the stream ends with ``data: [DONE]``."""

    object: Literal["chat.completion.chunk"]
    choices: list[ChatChunkChoice]
    usage: Usage | None = Field(default=None, description="with stream_options.include_usage")
    rerank: RerankResult | None = Field(default=None, description="last chunk, with `rerank`")


class CompletionChunk(GenARMResponse):
    """One event of a completion stream; the stream ends with ``data: [DONE]``."""

    object: Literal["text_completion"]
    choices: list[TextChoice]
    usage: Usage | None = Field(default=None, description="with stream_options.include_usage")
    rerank: RerankResult | None = Field(default=None, description="last chunk, with `rerank`")

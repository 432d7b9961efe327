"""Request bodies of the OpenAI API, validated at the edge.

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

from genarm.server.json_safe import has_unpaired_surrogate

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


def first_unpaired_surrogate(value: Any, path: tuple = ()) -> tuple | None:
    """Path of the first string (key or value) holding an unpaired UTF-16 surrogate.

    JSON may escape one (``"\\ud800"``); no tokenizer or UTF-8 writer takes it.
    """
    if isinstance(value, str):
        return path if has_unpaired_surrogate(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and has_unpaired_surrogate(key):
                return (*path, "<key>")
            found = first_unpaired_surrogate(item, (*path, key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = first_unpaired_surrogate(item, (*path, index))
            if found is not None:
                return found
    return None


class UnpairedSurrogateError(Exception):
    """A request string with an unpaired surrogate; ``param`` is its field path.

    Not a ValueError on purpose: pydantic passes it through unchanged, so the
    error handler can answer a 400 that names the field.
    """

    def __init__(self, path: tuple) -> None:
        self.param = ".".join(str(p) for p in path) or None
        where = f"'{self.param}'" if self.param else "the request body"
        super().__init__(
            f"{where} contains an unpaired UTF-16 surrogate (an invalid \\uD800-\\uDFFF "
            "escape); send valid Unicode text"
        )


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: StrictBool = False


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
    # GenARM: ARM name -> weight. Checked against the served ARMs by the engine's rules.
    reward_weights: dict[str, Any] | None = None

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
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1, le=MAX_INT32)
    logprobs: StrictBool = False
    top_logprobs: StrictInt | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)


class CompletionRequest(SamplingFields):
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

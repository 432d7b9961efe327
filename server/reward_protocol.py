"""``POST /v1/rewards``: scoring (conversation, response) items with a reward model.

The RM-side twin of the completion routes' bodies: a batch of items, optional
``objective_weights`` (the twin of ``reward_weights``), and per item the score
of every objective and their weighted sum.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from genarm.server.json_safe import UnpairedSurrogateError, first_unpaired_surrogate
from genarm.server.protocol import ChatMessage, Number

# However large a reward model's max_batch, one request's items stay bounded here.
MAX_ITEMS = 1024


class RewardItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    messages: list[ChatMessage] = Field(
        min_length=1, description="the conversation the response answers"
    )
    response: str = Field(min_length=1, description="the assistant's reply to score")

    @field_validator("response")
    @classmethod
    def _not_blank(cls, response: str) -> str:
        if not response.strip():
            raise ValueError("the response to score must not be blank")
        return response


class RewardRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "messages": [{"role": "user", "content": "Name a fruit."}],
                            "response": "An apple.",
                        }
                    ]
                }
            ]
        },
    )

    model: str | None = Field(
        default=None,
        description="the reward model's name (GET /v1/models); optional with only one",
    )
    items: list[RewardItem] = Field(min_length=1, max_length=MAX_ITEMS)
    objective_weights: dict[str, Number] | None = Field(
        default=None,
        description="objective -> weight in the combined score; objectives left out keep "
        "the reward model's default weight (GET /v1/models)",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_surrogates(cls, data: Any) -> Any:
        surrogate = first_unpaired_surrogate(data)
        if surrogate is not None:
            raise UnpairedSurrogateError(surrogate)
        return data


class RewardScore(BaseModel):
    index: int = Field(description="the item's position in the request")
    scores: dict[str, float] = Field(description="objective -> the head's raw output")
    score: float = Field(description="the combined score: sum of weight x objective score")


class RewardUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class RewardResponse(BaseModel):
    object: Literal["list"]
    model: str
    objective_weights: dict[str, float] = Field(description="the weights the scores combine by")
    data: list[RewardScore]
    usage: RewardUsage

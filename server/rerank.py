"""Best-of-N (``rerank`` on chat and completions): the plan a request makes, and
the choice among the candidates once they are sampled.

The engine samples ``rerank.n`` guided candidates per prompt (the request's
``reward_weights`` apply to each), a reward model scores every candidate as the
answer to the prompt's conversation, and the best ``n`` per prompt become the
response's choices, best first. The response's ``rerank`` lists every
candidate with its scores, so a client sees what it chose from; ``usage``
counts every candidate's tokens, the cost of the choice.
"""

from __future__ import annotations

from dataclasses import dataclass

from genarm.server.errors import APIError
from genarm.server.protocol import RerankCandidate, RerankOptions, RerankResult
from genarm.server.reward_models import RewardModels, ServedRewardModel, score_items


@dataclass
class RerankPlan:
    model: ServedRewardModel
    weights: dict[str, float]
    candidates: int  # sampled per prompt
    keep: int  # returned per prompt (the request's n)
    conversations: list[list[dict]]  # per prompt: the messages a candidate answers


@dataclass
class Candidate:
    index: int  # prompt index x candidates + its index among the prompt's candidates
    text: str
    finish_reason: str | None
    completion_tokens: int


def plan_rerank(
    reward_models: RewardModels,
    options: RerankOptions,
    keep: int,
    temperature: float,
    conversations: list[list[dict]],
) -> RerankPlan:
    """A request's best-of-N, checked before anything is sampled (400s name the field)."""
    model, weights = reward_models.choose(
        options.reward_model,
        options.objective_weights,
        model_param="rerank.reward_model",
        weights_param="rerank.objective_weights",
    )
    if keep > options.n:
        raise APIError(
            400, f"'n' ({keep}) is more than the {options.n} candidates sampled", "rerank.n"
        )
    if temperature == 0:
        raise APIError(
            400,
            "best-of-N needs a temperature above 0 (greedy candidates are one text)",
            "rerank.n",
        )
    return RerankPlan(model, weights, options.n, keep, conversations)


async def choose(plan: RerankPlan, candidates: list[Candidate]) -> tuple[list[int], RerankResult]:
    """(the chosen candidates' indices in choice order, the response's ``rerank``)."""
    items = [(plan.conversations[c.index // plan.candidates], c.text) for c in candidates]
    scored, _ = await score_items(plan.model, plan.weights, items, lambda _: "rerank.reward_model")
    by_prompt: dict[int, list[tuple[float, Candidate, dict]]] = {}
    for candidate, (scores, combined) in zip(candidates, scored, strict=True):
        prompt = candidate.index // plan.candidates
        by_prompt.setdefault(prompt, []).append((combined, candidate, scores))
    chosen: list[int] = []
    listed: list[RerankCandidate] = []
    for prompt in sorted(by_prompt):
        # Best first; ties keep the sampling order (a stable sort on the score alone).
        ranked = sorted(by_prompt[prompt], key=lambda entry: -entry[0])
        for rank, (combined, candidate, scores) in enumerate(ranked):
            kept = rank < plan.keep
            if kept:
                chosen.append(candidate.index)
            listed.append(
                RerankCandidate(
                    prompt_index=prompt,
                    text=candidate.text,
                    score=combined,
                    scores=scores,
                    finish_reason=candidate.finish_reason,
                    completion_tokens=candidate.completion_tokens,
                    choice_index=prompt * plan.keep + rank if kept else None,
                )
            )
    result = RerankResult(
        reward_model=plan.model.cfg.name, objective_weights=plan.weights, candidates=listed
    )
    return chosen, result

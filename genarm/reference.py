"""The GenARM oracle: plain transformers, no vLLM, float64 combination.

    log π(y | x) = log_softmax( log p_base(y|x) + Σ_i α_i log p_arm_i(y|x) )

Every fast path (the vLLM engine, the server's logprobs, the fusion kernels)
is tested against this. It recomputes the whole sequence at each step: slow
on purpose, with nothing cached that could hide a bug.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class GenARMReference:
    """A base model and ARMs loaded with transformers, combined per GenARM."""

    def __init__(self, base_path: str, arm_paths: Sequence[str], dtype=torch.float32) -> None:
        from transformers import AutoModelForCausalLM

        def load(path: str):
            return AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()

        self.base = load(base_path)
        self.arms = [load(p) for p in arm_paths]

    @torch.no_grad()
    def _logprobs(self, model, token_ids: Sequence[int], width: int) -> torch.Tensor:
        logits = model(torch.tensor([list(token_ids)])).logits[0, -1].double()
        logprobs = torch.log_softmax(logits, dim=-1)
        if logprobs.shape[0] >= width:
            return logprobs[:width]
        # An ARM with a narrower lm_head cannot score the extra ids.
        pad = logprobs.new_full((width - logprobs.shape[0],), -torch.inf)
        return torch.cat([logprobs, pad])

    @torch.no_grad()
    def next_token_logprobs(
        self, token_ids: Sequence[int], weights: Sequence[float]
    ) -> torch.Tensor:
        """float64 log-distribution of the next token after ``token_ids``."""
        if len(weights) != len(self.arms):
            raise ValueError(f"need {len(self.arms)} weights, got {len(weights)}")
        base = self._logprobs(self.base, token_ids, self.base.config.vocab_size)
        total = base.clone()
        for weight, arm in zip(weights, self.arms, strict=True):
            if weight != 0:
                total += weight * self._logprobs(arm, token_ids, base.shape[0])
        return torch.log_softmax(total, dim=-1)

    def greedy(
        self,
        prompt_ids: Sequence[int],
        weights: Sequence[float],
        max_new_tokens: int,
        stop_ids: Sequence[int] = (),
    ) -> list[int]:
        """Greedy decoding of the guided distribution; stops after a stop id."""
        ids = list(prompt_ids)
        out: list[int] = []
        for _ in range(max_new_tokens):
            token = int(torch.argmax(self.next_token_logprobs(ids, weights)))
            ids.append(token)
            out.append(token)
            if token in stop_ids:
                break
        return out

"""The GenARM logits processor (vLLM's V1 logits-processor interface).

Per row it replaces the base logits with
``log_softmax(base) + Σ_k α_k · log_softmax(arm_k)`` using that request's
reward weights; temperature, penalties, top-p/k and logprobs then apply to the
guided distribution as vLLM does to any logits. Rows whose weights are all zero
are left untouched (the base model's own distribution, no fusion work).

The fusion itself is ``genarm.arm_kernels.fuse``, independent of the runner:
a Model Runner V2 adapter would only translate its batch-state API to this.
"""

from __future__ import annotations

import json
import os

import torch
from vllm.exceptions import VLLMValidationError
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

from genarm.arm_kernels import fuse
from genarm.engine.arm_logits_stash import arm_logits_stash
from genarm.engine.weights import (
    EXTRA_ARGS_KEY,
    ArmSpec,
    RewardWeightError,
    resolve_reward_weights,
)

# The front-end process validates requests before the engine sees them; it has
# no engine config at hand (validate_params is a classmethod), so the builder
# publishes the ARM specs here. Spawned engine processes inherit it.
ARM_SPECS_ENV = "GENARM_ARM_SPECS"


def publish_arm_specs(specs: list[ArmSpec]) -> None:
    os.environ[ARM_SPECS_ENV] = json.dumps([s.to_dict() for s in specs])


def published_arm_specs() -> list[ArmSpec]:
    raw = os.environ.get(ARM_SPECS_ENV)
    return [ArmSpec.from_dict(d) for d in json.loads(raw)] if raw else []


def _requested_weights(params) -> object:
    return (params.extra_args or {}).get(EXTRA_ARGS_KEY)


class GenARMLogitsProcessor(LogitsProcessor):
    """Fuses base and ARM log-probabilities with per-request reward weights."""

    @classmethod
    def validate_params(cls, sampling_params) -> None:
        # vLLM's own validation error keeps the parameter name up to the server's 400.
        try:
            resolve_reward_weights(published_arm_specs(), _requested_weights(sampling_params))
        except RewardWeightError as err:
            raise VLLMValidationError(str(err), parameter=err.param) from err

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool) -> None:
        hf_config = vllm_config.model_config.hf_config
        self.specs = [ArmSpec.from_dict(d) for d in getattr(hf_config, "genarm_arms", None) or []]
        self.device = device
        self.row_weights: dict[int, tuple[float, ...]] = {}
        self._weights: torch.Tensor | None = None  # [B, K], rebuilt when the batch changes
        self._guided_rows: torch.Tensor | None = None

    def is_argmax_invariant(self) -> bool:
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None:
            return
        for index in batch_update.removed:
            self.row_weights.pop(index, None)
        for index, params, _prompt_ids, _output_ids in batch_update.added:
            weights = resolve_reward_weights(self.specs, _requested_weights(params))
            self.row_weights[index] = tuple(weights.values())
        for src, dst, direction in batch_update.moved:
            src_w, dst_w = self.row_weights.pop(src, None), self.row_weights.pop(dst, None)
            if src_w is not None:
                self.row_weights[dst] = src_w
            if direction == MoveDirectionality.SWAP and dst_w is not None:
                self.row_weights[src] = dst_w
        self._weights = None

    def _batch_weights(self, num_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, K] weights and the indices of rows with any nonzero weight."""
        if self._weights is None or self._weights.shape[0] != num_rows:
            zero = (0.0,) * len(self.specs)
            rows = [self.row_weights.get(i, zero) for i in range(num_rows)]
            weights = torch.tensor(rows, dtype=torch.float32).reshape(num_rows, len(self.specs))
            guided = weights.ne(0).any(dim=1).nonzero().flatten()
            self._weights = weights.to(self.device, non_blocking=True)
            self._guided_rows = guided.to(self.device, non_blocking=True)
        return self._weights, self._guided_rows

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.specs:
            return logits
        num_rows = logits.shape[0]
        arm_logits = arm_logits_stash.take(num_rows)
        weights, guided = self._batch_weights(num_rows)
        if guided.numel() == 0:
            return logits
        if guided.numel() == num_rows:
            return fuse(logits, arm_logits, weights)
        fused = fuse(logits[guided], [arm[guided] for arm in arm_logits], weights[guided])
        logits[guided] = fused.to(logits.dtype)
        return logits

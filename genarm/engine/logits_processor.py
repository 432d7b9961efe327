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

import copyreg
from collections.abc import Sequence

import torch
from vllm.exceptions import VLLMValidationError
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

from genarm.arm_kernels import fuse
from genarm.engine.arm_logits_stash import arm_logits_stash
from genarm.reward_weights import (
    ArmSpec,
    RewardWeightError,
    admitted_weights,
    requested_weights,
    resolve_reward_weights,
)


class _DeploymentBound(type(LogitsProcessor)):
    """Metaclass of the processor classes ``processor_for`` makes: one per ARM set."""


def processor_for(specs: Sequence[ArmSpec]) -> type[GenARMLogitsProcessor]:
    """The processor class for a deployment serving ``specs``.

    The specs ride on the class because vLLM gives ``validate_params`` (a
    classmethod, run in the front-end process at admission) nothing else; the
    same class is what vLLM ships to its engine processes, so both sides see
    one ARM list, with no process-global state (two deployments in one process
    keep theirs apart).
    """
    return _DeploymentBound(
        "GenARMLogitsProcessor", (GenARMLogitsProcessor,), {"specs": tuple(specs)}
    )


# vLLM's CPU build spawns its engine processes and pickles the config, this class
# with it: pickle would look a made class up by name and fail, so it is rebuilt
# from its specs instead.
copyreg.pickle(_DeploymentBound, lambda cls: (processor_for, (cls.specs,)))


class GenARMLogitsProcessor(LogitsProcessor):
    """Fuses base and ARM log-probabilities with per-request reward weights.

    Use ``processor_for(specs)``; this class itself serves no ARMs.
    """

    specs: tuple[ArmSpec, ...] = ()

    @classmethod
    def validate_params(cls, sampling_params) -> None:
        # The one check of a request's weights. vLLM's own validation error keeps
        # the parameter's name up to the server's 400.
        try:
            resolve_reward_weights(cls.specs, requested_weights(sampling_params))
        except RewardWeightError as err:
            raise VLLMValidationError(str(err), parameter=err.param) from err

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool) -> None:
        self.device = device
        # Batch row -> weights, for the rows this processor guides (any weight nonzero).
        self.row_weights: dict[int, tuple[float, ...]] = {}
        self._weights: torch.Tensor | None = None  # [B, K], rebuilt when the batch changes
        self._guided_rows: torch.Tensor | None = None

    def is_argmax_invariant(self) -> bool:
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if process_dict_updates(self.row_weights, batch_update, self._guided_weights):
            self._weights = None

    def _guided_weights(self, params, _prompt_ids, _output_ids) -> tuple[float, ...] | None:
        """A new row's weights (already admitted by validate_params), None if unguided."""
        weights = admitted_weights(self.specs, requested_weights(params))
        return weights if any(weights) else None

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

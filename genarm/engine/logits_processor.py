"""The GenARM logits processor (vLLM's V1 logits-processor interface), and what
it shares with the Model Runner V2 one (``logits_processor_v2``).

Per row it replaces the base logits with
``log_softmax(base) + Σ_k α_k · log_softmax(arm_k)`` using that request's
reward weights, up to a per-row constant where nothing after it can tell (see
``genarm.arm_kernels``); temperature, penalties, top-p/k and logprobs then
apply to the guided distribution as vLLM does to any logits. Rows whose
weights are all zero keep the base logits unchanged (the base model's own
distribution).

In V1, custom processors run before vLLM's penalties: a repetition penalty,
which scales positive and negative logits differently, sees the exact guided
log-probabilities, so its rows ask the fusion for the exact form.

The fusion itself is ``genarm.arm_kernels.fuse``, independent of the runner:
each runner's processor only translates its batch-state API to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from vllm.exceptions import VLLMValidationError
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

from genarm.arm_kernels import can_fuse_in_place, fuse
from genarm.engine.arm_logits_stash import arm_logits_stash
from genarm.reward_weights import (
    ArmSpec,
    RewardWeightError,
    admitted_weights,
    requested_weights,
    resolve_reward_weights,
)

__all__ = ["GenARMLogitsProcessor", "Runner"]


Runner = Literal["v1", "v2"]


def validate_reward_weights(specs: Sequence[ArmSpec], sampling_params: Any) -> None:
    """The one check of a request's weights, at admission (both runners).

    vLLM's own validation error keeps the parameter's name up to the server's 400.
    """
    try:
        resolve_reward_weights(specs, requested_weights(sampling_params))
    except RewardWeightError as err:
        raise VLLMValidationError(str(err), parameter=err.param) from err


def row_guidance(
    specs: Sequence[ArmSpec], params: Any, *, penalty_needs_exact: bool, all_exact: bool
) -> tuple[tuple[float, ...], bool] | None:
    """A new row's (weights, exact), None if unguided. The weights were admitted
    by ``validate_reward_weights``: a read that cannot fail in the worker.

    Exact: every guided row when ``all_exact`` (``exposes_raw_logits``), else a
    row with a repetition penalty where the runner applies it after the processor.
    """
    weights = admitted_weights(specs, requested_weights(params))
    if not any(weights):
        return None
    penalised = penalty_needs_exact and params.repetition_penalty != 1.0
    return weights, all_exact or penalised


def exposes_raw_logits(vllm_config: Any) -> bool:
    """True when the engine returns the processed logits themselves as logprobs:
    then every guided row needs the exact form (the build sets processed_logprobs)."""
    return getattr(vllm_config.model_config, "logprobs_mode", None) == "processed_logits"


class FusionOutput:
    """Where a step's fusion writes: the logits themselves where the kernel
    allows it (CUDA), else one float32 buffer grown on demand and reused every
    step (a fresh 100 MB tensor per step would cost a write pass in page faults)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._buffer: torch.Tensor | None = None

    def for_logits(self, logits: torch.Tensor) -> torch.Tensor:
        if can_fuse_in_place(logits):
            return logits
        num_rows, vocab = logits.shape
        buffer = self._buffer
        if buffer is None or buffer.shape[0] < num_rows or buffer.shape[1] != vocab:
            buffer = torch.empty((num_rows, vocab), dtype=torch.float32, device=self.device)
            self._buffer = buffer
        return buffer[:num_rows]


class GenARMLogitsProcessor(LogitsProcessor):
    """Fuses base and ARM log-probabilities with per-request reward weights (V1).

    Use ``deployment_processor.processor_for(specs)``; this class itself serves no ARMs.
    """

    specs: tuple[ArmSpec, ...] = ()
    runner: Runner = "v1"

    @classmethod
    def validate_params(cls, sampling_params) -> None:
        validate_reward_weights(cls.specs, sampling_params)

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool) -> None:
        self.device = device
        self.all_exact = exposes_raw_logits(vllm_config)
        # Batch row -> (weights, exact), for the rows this processor guides.
        self.row_state: dict[int, tuple[tuple[float, ...], bool]] = {}
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None  # rebuilt on change
        self._output = FusionOutput(device)

    def is_argmax_invariant(self) -> bool:
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if process_dict_updates(self.row_state, batch_update, self._row_guidance):
            self._batch = None

    def _row_guidance(self, params, _prompt_ids, _output_ids):
        return row_guidance(self.specs, params, penalty_needs_exact=True, all_exact=self.all_exact)

    def _batch_state(self, num_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, K] weights on the device and the host [B] mask of exact rows."""
        if self._batch is None or self._batch[0].shape[0] != num_rows:
            unguided = ((0.0,) * len(self.specs), False)
            rows = [self.row_state.get(i, unguided) for i in range(num_rows)]
            weights = torch.tensor([w for w, _ in rows], dtype=torch.float32)
            weights = weights.reshape(num_rows, len(self.specs))
            exact = torch.tensor([e for _, e in rows], dtype=torch.bool)
            self._batch = weights.to(self.device, non_blocking=True), exact
        return self._batch

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.specs:
            return logits
        num_rows = logits.shape[0]
        arm_logits = arm_logits_stash.take(num_rows)
        if not self.row_state:
            return logits
        weights, exact = self._batch_state(num_rows)
        # Unguided rows ride along with zero weights, not exact: base + 0 is
        # the base logits unchanged, and no gather or scatter of rows is needed.
        out = self._output.for_logits(logits)
        return fuse(logits, arm_logits, weights, out=out, exact=exact)

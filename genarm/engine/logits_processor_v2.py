"""The GenARM logits processor for vLLM's Model Runner V2 (the CUDA default in 0.32).

V2 keeps per-request state in slots (``add_request(slot, params)``; a slot is
reused by the next request, with no removal call) and hands ``apply`` the
step's logits rows plus a row -> slot mapping. This adapter keeps each slot's
weights in one device tensor and gathers them per step; the fusion is the
same ``genarm.arm_kernels.fuse`` as V1's.

V2 runs custom processors *after* its logit bias, penalties and bad words, and
before temperature, min-p, top-k/p and logprobs, all unchanged by a per-row
constant; so every row can take the one-pass form, unless the engine returns
processed logits as logprobs. A repetition penalty thus acts on the base
model's logits before guidance here, on the guided log-probabilities under V1
(vLLM fixes each runner's order; README, "CUDA").
"""

from __future__ import annotations

import numpy as np
import torch
from vllm.v1.worker.gpu.sample.logits_processor import (
    LogitsContext,
    LogitsProcessor,
    LogitsProcRequestState,
)

from genarm.arm_kernels import fuse
from genarm.engine.arm_logits_stash import arm_logits_stash
from genarm.engine.logits_processor import (
    FusionOutput,
    Runner,
    exposes_raw_logits,
    row_guidance,
    validate_reward_weights,
)
from genarm.reward_weights import ArmSpec


class GenARMLogitsProcessorV2(LogitsProcessor):
    """Fuses base and ARM log-probabilities with per-request reward weights (V2).

    Use ``deployment_processor.processor_for(specs, "v2")``; this class itself serves no ARMs.
    """

    specs: tuple[ArmSpec, ...] = ()
    runner: Runner = "v2"

    @classmethod
    def validate_params(cls, sampling_params) -> None:
        validate_reward_weights(cls.specs, sampling_params)

    def __init__(self, vllm_config, req_states: LogitsProcRequestState) -> None:
        self.all_exact = exposes_raw_logits(vllm_config)
        slots, num_arms = req_states.max_num_reqs, len(self.specs)
        # Slot -> weights (zeros: unguided), on the host where add_request writes,
        # copied to the device once per step that changed them.
        self._host_weights = torch.zeros((slots, num_arms), dtype=torch.float32)
        self._weights = torch.zeros(
            (slots, num_arms), dtype=torch.float32, device=req_states.device
        )
        self._guided = np.zeros(slots, dtype=bool)
        self._exact = np.zeros(slots, dtype=bool)
        self._stale = False
        self._output = FusionOutput(req_states.device)

    def add_request(self, req_idx: int, sampling_params) -> bool:
        # A reused slot: every field is overwritten, guided or not.
        guidance = row_guidance(
            self.specs, sampling_params, penalty_needs_exact=False, all_exact=self.all_exact
        )
        weights, exact = guidance or ((0.0,) * len(self.specs), False)
        self._host_weights[req_idx] = torch.tensor(weights, dtype=torch.float32)
        self._guided[req_idx] = guidance is not None
        self._exact[req_idx] = exact
        self._stale = True
        return guidance is not None

    def apply_staged_writes(self) -> None:
        if self._stale:
            self._weights.copy_(self._host_weights, non_blocking=True)
            self._stale = False

    def apply(self, logits: torch.Tensor, ctx: LogitsContext) -> torch.Tensor:
        num_rows = logits.shape[0]
        if not self.specs:
            return logits
        arm_logits = arm_logits_stash.take(num_rows)
        # One row per request (the stash refused anything else): the host
        # mapping says, without a device sync, whether any row is guided.
        slots = ctx.idx_mapping_np[:num_rows]
        if not self._guided[slots].any():
            return logits
        weights = self._weights[ctx.expanded_idx_mapping.long()]
        exact = torch.from_numpy(self._exact[slots])
        out = self._output.for_logits(logits)
        return fuse(logits, arm_logits, weights, out=out, exact=exact)

"""Hands the ARM logits from the composite model to the logits processor.

Both run in the same worker process, in the same step, over the same rows
(vLLM calls ``compute_logits`` on the rows to sample, then the sampler's logits
processors on those logits). vLLM gives the processor only the base logits, so
the ARM logits travel through this per-process slot. ``take`` checks the row
count so that a mismatch (e.g. an unsupported runner feature) fails loudly
instead of silently mixing rows.
"""

from __future__ import annotations

import torch


class ArmLogitsStash:
    def __init__(self) -> None:
        self._logits: list[torch.Tensor | None] | None = None

    def put(self, arm_logits: list[torch.Tensor | None]) -> None:
        self._logits = arm_logits

    def take(self, num_rows: int) -> list[torch.Tensor]:
        logits, self._logits = self._logits, None
        if logits is None:
            raise RuntimeError(
                "GenARM: no ARM logits for this step; the model runner did not call "
                "compute_logits on the composite model before sampling"
            )
        for arm in logits:
            if arm is None or arm.shape[0] != num_rows:
                got = None if arm is None else arm.shape[0]
                raise RuntimeError(
                    f"GenARM: ARM logits have {got} rows but the sampler has {num_rows}; "
                    "speculative decoding and similar runner features are not supported"
                )
        return logits  # type: ignore[return-value]


arm_logits_stash = ArmLogitsStash()

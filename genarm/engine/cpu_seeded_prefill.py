"""Seeded requests whose prompt is prefilled in several steps, on vLLM's CPU runner.

When a prompt does not fit in one step's token budget, vLLM prefills it in
chunks and samples a throw-away token at the end of each partial chunk. For a
seeded request it then rewinds the request's generator with
``gen.set_offset(gen.get_offset() - 4)`` (``GPUModelRunner._bookkeeping_sync``
in vLLM 0.32), which relies on CUDA's Philox generator. A CPU generator has no
offset: the call raises and the engine dies, taking every request with it. Any
seeded request with a prompt longer than the step's budget (or sharing a step
with others that fill it) triggers it.

``install`` makes the CPU runner set those requests' generators aside while it
samples (their throw-away token comes from the global generator, and vLLM then
finds no generator to rewind) and puts them back untouched: the rewind's
effect, so a seed gives the same text however the prompt was chunked. CUDA
keeps vLLM's own rewind.
"""

from __future__ import annotations

import functools

import numpy as np

_MARK = "_genarm_parks_discarded_generators"


def install() -> None:
    """Patch ``CPUModelRunner.sample_tokens`` (idempotent)."""
    from vllm.v1.worker.cpu_model_runner import CPUModelRunner

    original = CPUModelRunner.sample_tokens
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def sample_tokens(self, *args, **kwargs):
        generators = self.input_batch.generators
        num_reqs = self.input_batch.num_reqs
        discarded = np.flatnonzero(self.discard_request_mask.np[:num_reqs])
        parked = {int(i): generators.pop(int(i)) for i in discarded if int(i) in generators}
        try:
            return original(self, *args, **kwargs)
        finally:
            generators.update(parked)

    setattr(sample_tokens, _MARK, True)
    CPUModelRunner.sample_tokens = sample_tokens

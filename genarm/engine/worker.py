"""vLLM's CPU worker, plus what must happen in the process that runs the model.

vLLM resolves ``parallel_config.worker_cls`` (a qualified name) only in the
worker process: ``WorkerWrapperBase.init_worker`` imports and instantiates it
there. This subclass:

- applies the seeded-prefill fix (``cpu_seeded_prefill``) before
  ``CPUWorker.init_device`` builds the ``CPUModelRunner`` it wraps, so the API
  server and the engine-core process never import the runner for it (about
  5 s each on a 2-core machine when the plugin did);
- warms up (and so compiles) with a short batch rather than a full one, see
  ``WARMUP_TOKENS``;
- records the start's phases (``start_phases``) around the worker's own steps:
  weights, compilation (with how many graphs came from the cache), KV cache,
  warm-up.

``worker_cls`` is not part of vLLM's compile-cache key.
"""

from __future__ import annotations

import logging

from vllm.compilation.counter import compilation_counter
from vllm.v1.worker.cpu_worker import CPUWorker

from genarm.engine import cpu_seeded_prefill, start_phases

# Tokens of the warm-up pass that compiles (or loads) the graphs. vLLM's is a full
# max_num_batched_tokens batch: about 11 s per SmolLM2-135M-sized sub-model on two
# cores at 2,048 tokens, paid at every start. The compiled graph is traced once with a
# dynamic token dimension, so a short pass compiles the same graph; the full one is
# kept where the KV cache is sized from the memory in use after it.
WARMUP_TOKENS = 128

# Under vLLM's logger: the worker process has vLLM's log handlers, not the server's.
logger = logging.getLogger("vllm.genarm.worker")


class GenARMCPUWorker(CPUWorker):
    """``CPUWorker`` whose runner parks discarded chunks' generators, and which
    tells the front end how far its start has come."""

    def init_device(self) -> None:
        self._phase("worker set-up")
        cpu_seeded_prefill.install()
        super().init_device()

    def _phase(self, name: str, detail: str = "") -> None:
        if self.rank == 0:
            start_phases.record(name, detail, log=logger)

    def load_model(self, *args, **kwargs) -> None:
        self._phase("loading weights")
        super().load_model(*args, **kwargs)

    def determine_available_memory(self) -> int:
        # On CPU this is where vLLM compiles (or loads the compiled graphs).
        if not self._should_warm_up_model():
            return super().determine_available_memory()
        self._phase("compiling")
        before = compilation_counter.clone()
        runner = self.model_runner
        full = runner.max_num_tokens
        if self.cache_config.kv_cache_memory_bytes is not None:
            runner.max_num_tokens = min(full, WARMUP_TOKENS)
        try:
            available = super().determine_available_memory()
        finally:
            runner.max_num_tokens = full
        loaded = compilation_counter.num_aot_artifacts_loaded - before.num_aot_artifacts_loaded
        compiled = compilation_counter.num_aot_compiles - before.num_aot_compiles
        if self.rank == 0:
            start_phases.outcome(
                f"{loaded} graphs loaded from the cache, {compiled} compiled", log=logger
            )
        return available

    def initialize_from_config(self, *args, **kwargs) -> None:
        self._phase("KV cache")
        super().initialize_from_config(*args, **kwargs)

    def compile_or_warm_up_model(self):
        self._phase("warm-up")
        return super().compile_or_warm_up_model()

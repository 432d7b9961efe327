"""The server's handle on the vLLM engine: loading, admission and clean aborts.

Every request goes through ``generate``: it refuses work when the waiting queue
is over its bound (503 + Retry-After), turns the engine's validation errors
into 400s, keeps the running/waiting gauges, and aborts the engine request
whenever the caller stops listening (a closed stream, a cancelled task).

If the engine dies (its process crashed or was killed), requests get a 503 and
``on_engine_dead`` runs once (``report_dead``: from the first request that finds it
dead, or from the app's watchdog): the server then exits non-zero so that whatever
supervises it restarts it, as vLLM's own server does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from genarm.config import DeploymentConfig
from genarm.engine import start_phases
from genarm.engine.frontend import engine_refusal
from genarm.reward_weights import (
    ArmSpec,
    RewardWeightError,
    admitted_weights,
    arm_specs,
    resolve_reward_weights,
)
from genarm.server.errors import APIError
from genarm.server.metrics import ServerMetrics
from genarm.server.token_bytes import TokenBytes

logger = logging.getLogger(__name__)
T = TypeVar("T")


class EngineHandle:
    def __init__(self, cfg: DeploymentConfig, metrics: ServerMetrics) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.specs: list[ArmSpec] = arm_specs(cfg)
        self.model_id = cfg.server.served_model_name or _folder_name(cfg.base.model)
        self.created = int(time.time())
        self.llm = None  # vLLM's AsyncLLM, once loaded
        self.tokenizer = None
        self.token_bytes: TokenBytes | None = None  # logprob entries' bytes and names
        self.max_token_chars = 1
        self.vocab_size = 0  # the tokenizer's, counted once (len() of an HF tokenizer is slow)
        self.load_error: str | None = None
        self._phases_file: str | None = None  # see genarm.engine.start_phases
        self.on_engine_dead: Callable[[], None] | None = None
        self._dead_reported = False
        self._sequences = 0  # sequences (n per request) submitted and not finished
        self._running: set[str] = set()  # engine request ids in flight
        self._idle = asyncio.Event()
        self._idle.set()
        self.draining = False  # a graceful stop has begun: no new work
        self._aborting = False  # the drain's grace period is over: ending the rest
        # Tokenizing a large prompt takes seconds of CPU: one thread, off the event
        # loop, so that other clients' streams keep flowing (one thread: HF
        # tokenizers are not safe to call from several threads at once).
        self._cpu_pool = ThreadPoolExecutor(1, thread_name_prefix="genarm-tokenize")

    @property
    def dead(self) -> bool:
        """The engine was running and has stopped (crashed or killed)."""
        return self.llm is not None and self.llm.errored

    @property
    def ready(self) -> bool:
        return self.llm is not None and not self.dead

    def unavailable(self) -> APIError | None:
        """The 503 to answer while the engine cannot take requests, else None."""
        if self.draining:
            return APIError(
                503,
                "the server is shutting down; retry on another replica or after the restart",
                code="server_shutting_down",
                headers={"Retry-After": "5"},
            )
        if self.dead:
            self.report_dead()
            return APIError(
                503,
                "the engine has stopped; the server is shutting down to be restarted",
                code="engine_dead",
            )
        if self.llm is None:
            return APIError(503, "the model is still loading", headers={"Retry-After": "5"})
        return None

    def report_dead(self) -> None:
        if self._dead_reported:
            return
        self._dead_reported = True
        logger.error("The vLLM engine has stopped; shutting the server down")
        if self.on_engine_dead is not None:
            self.on_engine_dead()

    def load(self) -> None:
        """Blocking: tokenizer, then the engine (run it in a thread)."""
        from transformers import AutoTokenizer

        from genarm.engine import create_async_engine

        started = time.time()
        # The worker process appends its phases here (inherited environment).
        fd, self._phases_file = tempfile.mkstemp(prefix="genarm-start-", suffix=".jsonl")
        os.close(fd)
        os.environ[start_phases.ENV] = self._phases_file
        start_phases.record("tokenizer", self.cfg.base.tokenizer or self.cfg.base.model)
        tokenizer = AutoTokenizer.from_pretrained(self.cfg.base.tokenizer or self.cfg.base.model)
        if not getattr(tokenizer, "chat_template", None):
            raise RuntimeError(
                f"the base model's tokenizer ({self.cfg.base.model}) has no chat template; "
                "add a chat_template.jinja to that folder "
                "(or chat_template in tokenizer_config.json)"
            )
        self.tokenizer = tokenizer
        self.token_bytes = TokenBytes(tokenizer)
        self.vocab_size = len(tokenizer)
        self.max_token_chars = longest_token_chars(tokenizer)
        start_phases.record("engine processes", f"base + {len(self.specs)} ARMs")
        self.llm = create_async_engine(self.cfg)
        ended = time.time()
        logger.info(
            "Engine ready in %.1f s: %s",
            ended - started,
            start_phases.summary(start_phases.read(self._phases_file), ended),
        )

    def start_phase(self) -> start_phases.Phase | None:
        """Where a start still loading is: the last phase recorded, if any."""
        if self._phases_file is None:
            return None
        phases = start_phases.read(self._phases_file)
        return phases[-1] if phases else None

    def shutdown(self) -> None:
        self._cpu_pool.shutdown(wait=False, cancel_futures=True)
        if self.llm is not None:
            self.llm.shutdown()
        if self._phases_file is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._phases_file)

    async def run_off_loop(self, func: Callable[..., T], *args) -> T:
        """``func(*args)`` in the tokenizer thread (CPU-bound request preparation)."""
        return await asyncio.get_running_loop().run_in_executor(self._cpu_pool, func, *args)

    @property
    def in_flight(self) -> int:
        """Engine requests submitted and not finished."""
        return len(self._running)

    def begin_drain(self) -> None:
        """Refuse new requests from now on (503 + Retry-After); running ones go on."""
        self.draining = True

    async def wait_idle(self, timeout: float | None) -> bool:
        """Wait until no engine request is in flight; False if ``timeout`` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def abort_all(self) -> int:
        """End every request in flight; each gets a 503 (in-band for streams)."""
        self._aborting = True
        ids = list(self._running)
        if ids and self.llm is not None and not self.dead:
            await self.llm.abort(ids)
        return len(ids)

    def check_prompt_chars(self, num_chars: int, param: str) -> None:
        """400 before tokenizing a text too long for the context at any tokenization.

        No token of this tokenizer spells more than ``max_token_chars`` characters,
        so a longer text has more tokens than the context holds; the factor of 4
        leaves room for normalizers that fold several characters into one.
        """
        limit = self.cfg.engine.max_model_len
        if num_chars > 4 * limit * self.max_token_chars:
            raise APIError(
                400,
                f"the prompt has {num_chars} characters, more than this model's context "
                f"of {limit} tokens can hold",
                param=param,
                code="context_length_exceeded",
            )

    def weights_echo(self, requested: dict | None) -> dict[str, float]:
        """The weights a request admitted by the engine runs with, one per ARM (the
        response's ``reward_weights``): read, not checked again."""
        weights = admitted_weights(self.specs, requested)
        return dict(zip((s.name for s in self.specs), weights, strict=True))

    def weights_if_valid(self, requested: dict | None) -> dict[str, float] | None:
        """The weights a request would run with, None if the engine will refuse them
        (for messages about other fields that depend on them)."""
        try:
            return resolve_reward_weights(self.specs, requested)
        except RewardWeightError:
            return None

    def _update_gauges(self) -> None:
        running = min(self._sequences, self.cfg.engine.max_num_seqs)
        self.metrics.running.set(running)
        self.metrics.waiting.set(self._sequences - running)

    def check_capacity(self, num_sequences: int, param: str) -> None:
        """400 for a request that could never be admitted, even on an idle server;
        503 with Retry-After when the waiting queue would pass its bound."""
        most = self.cfg.engine.max_num_seqs + self.cfg.server.max_waiting_requests
        if num_sequences > most:
            raise APIError(
                400,
                f"this request needs {num_sequences} sequences (prompts x n); this server "
                f"holds at most {most} at once (max_num_seqs + max_waiting_requests)",
                param=param,
                code="too_many_sequences",
            )
        waiting = max(0, self._sequences + num_sequences - self.cfg.engine.max_num_seqs)
        if waiting > self.cfg.server.max_waiting_requests:
            raise APIError(
                503,
                "the server is at capacity (waiting queue full); retry shortly",
                code="server_overloaded",
                headers={"Retry-After": "1"},
            )

    async def generate(self, prompt_ids: list[int], params) -> AsyncIterator:
        """Yield vLLM RequestOutputs for one prompt; always leaves the engine clean.

        Admission (``check_capacity``) is the caller's job, once per HTTP request.
        """
        error = self.unavailable()
        if error is not None:
            raise error
        request_id = f"genarm-{uuid.uuid4().hex}"
        self._sequences += params.n
        self._running.add(request_id)
        self._idle.clear()
        self._update_gauges()
        finished = False
        try:
            stream = self.llm.generate(
                {"prompt_token_ids": prompt_ids}, params, request_id=request_id
            )
            async for output in stream:
                finished = output.finished
                if self._aborting and _was_aborted(output):
                    raise APIError(
                        503,
                        "the server shut down before this request finished; retry it",
                        code="server_shutting_down",
                        headers={"Retry-After": "5"},
                    )
                yield output
        except APIError:
            raise
        except Exception as err:
            api_error = self.unavailable() or engine_error_to_api(err)
            if api_error is None:
                raise
            raise api_error from None
        finally:
            if not finished and not self.dead:
                # Client gone or error: free the engine's slot and KV blocks now. vLLM's
                # generate() aborts too when cancelled or closed; a second abort is a no-op.
                await self.llm.abort(request_id)
            self._sequences -= params.n
            self._running.discard(request_id)
            if not self._running:
                self._idle.set()
            self._update_gauges()


def _was_aborted(output) -> bool:
    return output.finished and any(c.finish_reason == "abort" for c in output.outputs)


def engine_error_to_api(err: Exception) -> APIError | None:
    """The client's share of the engine's errors, as the HTTP error to answer."""
    refusal = engine_refusal(err)
    if refusal is None:
        return None
    headers = None if refusal.retry_after is None else {"Retry-After": str(refusal.retry_after)}
    return APIError(refusal.status, refusal.message, param=refusal.param, headers=headers)


def longest_token_chars(tokenizer) -> int:
    """Characters in the longest string one token of ``tokenizer`` decodes to."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return max(1, *(len(t) for t in texts))


def _folder_name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1] or path

"""A graceful stop: SIGTERM (or Ctrl-C) drains the server before it exits.

1. New requests get 503 + Retry-After and ``/health`` says ``draining`` (503),
   so a load balancer stops routing here; requests in flight go on.
2. When they have all finished, or ``server.shutdown_grace_seconds`` has
   passed, or a second signal arrives, the rest are aborted: a stream gets an
   OpenAI-shaped error event and ``[DONE]``, a non-streamed request a 503.
3. Then uvicorn's own shutdown runs (responses finish writing, the engine
   processes stop) and the process exits 0.

uvicorn re-raises the signal after its shutdown (so the process dies of it,
status 143); this server handles the signal itself instead, as the stop was
orderly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import FrameType

import uvicorn

from genarm.server.engine_handle import EngineHandle

logger = logging.getLogger(__name__)

# After the aborts, how long the aborted requests may take to write their errors.
ABORT_SETTLE_SECONDS = 10.0


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, engine: EngineHandle, grace_seconds: float) -> None:
        super().__init__(config)
        self.engine = engine
        self.grace_seconds = grace_seconds
        self.drain_seconds: float | None = None  # how long the last drain took
        self._loop: asyncio.AbstractEventLoop | None = None
        self._signalled = False
        self._stop_now: asyncio.Event | None = None
        # The drain task, kept referenced: asyncio holds only weak references to tasks.
        self._drain_task: asyncio.Task | None = None

    async def serve(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_now = asyncio.Event()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler, run in the event loop's thread between two bytecodes:
        # hand the work to the loop.
        if self._loop is None or self.engine.llm is None or self.should_exit:
            self.should_exit = True  # nothing to drain (not serving yet, or stopping)
            return
        if self._signalled:
            logger.warning("Second signal: ending the requests in flight now")
            self._loop.call_soon_threadsafe(self._stop_now.set)
            return
        self._signalled = True
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        self._drain_task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        started = time.monotonic()
        self.engine.begin_drain()
        logger.info(
            "Draining: %d requests in flight, up to %.0f s (a second signal ends them now)",
            self.engine.in_flight,
            self.grace_seconds,
        )
        idle = asyncio.ensure_future(self.engine.wait_idle(None))
        stop_now = asyncio.ensure_future(self._stop_now.wait())
        await asyncio.wait(
            {idle, stop_now}, timeout=self.grace_seconds, return_when=asyncio.FIRST_COMPLETED
        )
        stop_now.cancel()
        if not idle.done():
            aborted = await self.engine.abort_all()
            logger.warning("Ended %d requests still running at the stop", aborted)
            await self.engine.wait_idle(ABORT_SETTLE_SECONDS)
        idle.cancel()
        self.drain_seconds = time.monotonic() - started
        logger.info("Drained in %.2f s; shutting down", self.drain_seconds)
        self.should_exit = True

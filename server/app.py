"""The FastAPI application: health, metrics, the OpenAI routes, and the
engine's lifetime (loaded in the background so /health can say 503 meanwhile)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from genarm.config import DeploymentConfig
from genarm.server import routes, web
from genarm.server.auth import configured_keys
from genarm.server.engine_handle import EngineHandle
from genarm.server.errors import install_error_handlers
from genarm.server.metrics import ServerMetrics
from genarm.server.middleware import BodyLimitMiddleware, RequestMetricsMiddleware
from genarm.server.openapi_docs import HEALTH_RESPONSES, METRICS_RESPONSES, install_openapi
from genarm.server.reward_models import RewardModels

logger = logging.getLogger(__name__)


def create_app(cfg: DeploymentConfig, on_fatal: Callable[[], None] | None = None) -> FastAPI:
    """The app for one deployment. ``on_fatal`` is called if the engine cannot start or dies."""
    metrics = ServerMetrics()
    engine = EngineHandle(cfg, metrics)
    engine.on_engine_dead = on_fatal
    reward_models = RewardModels(cfg, metrics)
    reward_models.on_engine_dead = on_fatal

    async def load_engine() -> None:
        try:
            await asyncio.to_thread(engine.load)
            # After the generating engine: it sizes itself first on a shared device.
            await asyncio.to_thread(reward_models.load)
        except Exception as err:  # a start-up error: report it and stop the server
            engine.load_error = f"{type(err).__name__}: {err}"
            logger.error("The engine failed to start: %s", engine.load_error)
            if on_fatal is not None:
                on_fatal()

    async def watch_engines(every: float) -> None:
        # An engine can die with no request running (the OOM killer, say); only a
        # request would notice, and behind a load balancer that routes to ready
        # replicas none comes: the replica would sit failed. vLLM's own server
        # looks every few seconds (its watchdog_loop); so does this one.
        while True:
            await asyncio.sleep(every)
            if engine.dead:
                engine.report_dead()
            if reward_models.dead:
                reward_models.report_dead()

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        loader = asyncio.create_task(load_engine())
        every = cfg.server.engine_watchdog_seconds
        watchdog = asyncio.create_task(watch_engines(every)) if every > 0 else None
        yield
        loader.cancel()
        if watchdog is not None:
            watchdog.cancel()
        engine.shutdown()
        reward_models.shutdown()

    app = FastAPI(title="genarm-serve", version="0.1.0", lifespan=lifespan)
    app.state.engine = engine
    app.state.reward_models = reward_models
    app.state.metrics = metrics
    app.state.api_keys = configured_keys(cfg.server.api_keys)
    install_error_handlers(app)
    install_openapi(app)
    app.include_router(routes.router)
    app.include_router(web.router)
    # The last added is the outermost: count every response, 413s included.
    app.add_middleware(BodyLimitMiddleware, max_bytes=cfg.server.max_body_bytes)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)

    @app.api_route("/health", methods=["GET", "HEAD"], responses=HEALTH_RESPONSES)
    async def health() -> JSONResponse:
        if engine.draining:
            # Before "ok": a load balancer stops routing here while requests drain.
            return JSONResponse({"status": "draining"}, 503, headers={"Retry-After": "5"})
        if engine.ready and reward_models.ready:
            return JSONResponse({"status": "ok"})
        if engine.load_error:
            return JSONResponse({"status": "failed", "error": engine.load_error}, 503)
        if engine.dead:
            return JSONResponse({"status": "failed", "error": "the engine has stopped"}, 503)
        if reward_models.dead:
            error = "a reward model's engine has stopped"
            return JSONResponse({"status": "failed", "error": error}, 503)
        return JSONResponse(loading_status(engine), 503, headers={"Retry-After": "5"})

    @app.api_route(
        "/metrics",
        methods=["GET", "HEAD"],
        response_class=PlainTextResponse,
        responses=METRICS_RESPONSES,
    )
    async def prometheus_metrics() -> PlainTextResponse:
        # Ours, then vLLM's own engine metrics (vllm:*), which live in the default registry.
        body = generate_latest(metrics.registry) + generate_latest(REGISTRY)
        return PlainTextResponse(body, media_type=CONTENT_TYPE_LATEST)

    return app


def loading_status(engine: EngineHandle) -> dict:
    """/health's body while the engine starts: which phase, for how long so far."""
    body: dict = {"status": "loading"}
    phase = engine.start_phase()
    if phase is not None:
        body["phase"] = phase.name
        body["phase_seconds"] = round(max(0.0, time.time() - phase.started), 1)
        if phase.detail:
            body["detail"] = phase.detail
    return body

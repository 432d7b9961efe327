"""Shared fixtures: tiny random models (built once per session) and configs over them."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from genarm.config import DeploymentConfig, parse_config
from genarm.live_server import LiveServer
from genarm.tiny_models import TINY_SHAPES, make_model_set, tiny_config_dict


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test on the shared server needs its engine: `make test-fast` leaves them out
    (tests that start engines of their own carry the mark themselves)."""
    for item in items:
        if "tiny_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.engine)


def pytest_collection_finish(session: pytest.Session) -> None:
    """When the image recipe's test is to run, start its install (minutes of pip on one
    core) now, so that it proceeds beside the tests that run before it."""
    if session.config.option.collectonly:
        return
    if any(item.name == "test_cpu_image_recipe_serves_the_demo" for item in session.items):
        from test_image_recipe import RECIPE_INSTALL, RecipeInstall

        session.config.stash[RECIPE_INSTALL] = RecipeInstall()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """An install whose test never ran (a failure stopped the run first) is discarded."""
    recipe = sys.modules.get("test_image_recipe")
    install = recipe and session.config.stash.get(recipe.RECIPE_INSTALL, None)
    if install is not None:
        install.discard()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """{"base", "arm_a", "arm_b"} -> model folder, all sharing one tokenizer."""
    return make_model_set(tmp_path_factory.mktemp("tiny_models"), TINY_SHAPES)


@pytest.fixture(scope="session")
def tiny_reward_models(tiny_models, tmp_path_factory) -> dict[str, str]:
    """{"one", "three"} -> a random sequence-classification folder with 1 (unnamed)
    or 3 (helpful, harmless, concise) outputs, on the tiny models' tokenizer."""
    from transformers import AutoTokenizer

    from genarm.tiny_models import make_reward_model

    root = tmp_path_factory.mktemp("reward_models")
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["base"])
    aspects = ["helpful", "harmless", "concise"]
    return {
        "one": str(make_reward_model(root / "one", tokenizer, ["score"], seed=11)),
        "three": str(make_reward_model(root / "three", tokenizer, aspects, seed=12)),
    }


@pytest.fixture(scope="session")
def tiny_config(tiny_models) -> DeploymentConfig:
    """Base + arm_a + arm_b, default weights 0."""
    return parse_config(tiny_config_dict(tiny_models))


# The one `genarm serve` that every test which only talks HTTP to a server shares.
TINY_SERVER_API_KEY = "test-key-123"
TINY_SERVER_AUTH = {"Authorization": f"Bearer {TINY_SERVER_API_KEY}"}
# Room for the web page's long answer that Stop interrupts (1,500 tokens).
TINY_SERVER_CONTEXT = 2048


@pytest.fixture(scope="session")
def tiny_server(tiny_models, tiny_reward_models, tmp_path_factory) -> Iterator[LiveServer]:
    """Base + both ARMs, both reward models, an API key: one server for the whole run.

    Tests that kill, drain or reconfigure a server start their own. Counters on a
    shared server accumulate, so tests read them as differences. The first /health
    and chat request are sent while the engine still loads
    (``tiny_server.while_loading``: the only moment anyone can see that state).
    """
    config = tiny_config_dict(tiny_models, max_model_len=TINY_SERVER_CONTEXT)
    config["reward_models"] = [
        {"name": "judge", "model": tiny_reward_models["one"], "max_batch": 4, "max_model_len": 64},
        {
            "name": "aspects",
            "model": tiny_reward_models["three"],
            "objective_weights": {"helpful": 1.0, "harmless": 0.5},
            "description": "three tiny random heads",
        },
    ]
    config["server"] = {"api_keys": [TINY_SERVER_API_KEY], "max_body_bytes": 65536}
    live = LiveServer(config, workdir=tmp_path_factory.mktemp("tiny-server"))
    try:
        live.start(wait=False)
        live.while_loading = request_while_loading(live)
        live.wait_healthy()
        yield live
    finally:
        live.stop()


def request_while_loading(live: LiveServer) -> tuple[httpx.Response, httpx.Response] | None:
    """/health and a chat request as soon as the HTTP server answers, engine still loading."""
    deadline = time.monotonic() + 120
    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    while time.monotonic() < deadline and live.process.poll() is None:
        try:
            health = httpx.get(f"{live.url}/health", timeout=5)
        except httpx.HTTPError:
            time.sleep(0.1)
            continue
        return health, httpx.post(
            f"{live.base_url}/chat/completions", json=chat, headers=TINY_SERVER_AUTH
        )
    return None

"""`genarm serve --config FILE [--host H] [--port P]`."""

from __future__ import annotations

import argparse
import logging
import sys

from genarm.config import ConfigError, load_config
from genarm.engine.vllm_contract import (
    UnsupportedOnPlatformError,
    UnsupportedVLLMError,
    check_platform_support,
    check_vllm_version,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="deployment YAML file")
    parser.add_argument("--host", help="override server.host")
    parser.add_argument("--port", type=int, help="override server.port")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from genarm.server.app import create_app
    from genarm.server.http_limits import bounded_protocol
    from genarm.server.shutdown import GracefulServer

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        cfg = load_config(args.config)
        check_vllm_version()  # at once, not minutes later when the engine loads
        check_platform_support(cfg)
    except (ConfigError, UnsupportedVLLMError, UnsupportedOnPlatformError) as err:
        print(f"genarm serve: {err}", file=sys.stderr)
        return 2
    server_cfg = cfg.server.model_copy(
        update={k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    )
    cfg = cfg.model_copy(update={"server": server_cfg})
    failed = []

    def stop_on_failure() -> None:  # the engine failed to start, or died
        failed.append(True)
        server.should_exit = True

    app = create_app(cfg, on_fatal=stop_on_failure)
    config = uvicorn.Config(
        app,
        host=cfg.server.host,
        port=cfg.server.port,
        log_level=args.log_level,
        http=bounded_protocol(cfg.server.max_header_bytes),
        # After the drain (server/shutdown.py): time for the last responses to be written.
        timeout_graceful_shutdown=5,
    )
    server = GracefulServer(
        config, app.state.engine, grace_seconds=cfg.server.shutdown_grace_seconds
    )
    logging.getLogger(__name__).info(
        "genarm-serve on http://%s:%d (model loading; /health says when ready)",
        cfg.server.host,
        cfg.server.port,
    )
    server.run()
    return 1 if failed else 0

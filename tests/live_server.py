"""A real `genarm serve` process on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """Start with ``with LiveServer(config_dict) as server:``; ``server.url`` is its root."""

    def __init__(
        self,
        config: dict,
        env: dict[str, str] | None = None,
        startup_timeout: float = 240.0,
        workdir: str | Path | None = None,
    ) -> None:
        self.config = config
        self.env = env or {}
        self.startup_timeout = startup_timeout
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="genarm-server-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log_path = self.workdir / "server.log"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def start(self) -> LiveServer:
        config_path = self.workdir / "config.yaml"
        config_path.write_text(yaml.safe_dump(self.config))
        command = [sys.executable, "-m", "genarm.cli", "serve", "--config", str(config_path)]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
        )
        self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"server not healthy after {self.startup_timeout} s:\n{self.log()}")

    def log(self, tail: int = 6000) -> str:
        return self.log_path.read_text()[-tail:] if self.log_path.exists() else ""

    def metric(self, name: str) -> float | None:
        """Sum of a Prometheus metric's samples (all label sets) from /metrics."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        values = [
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith((name + " ", name + "{"))
        ]
        return sum(values) if values else None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

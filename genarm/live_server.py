"""A real `genarm serve` process on a free loopback port, for tests and benchmarks.

    with LiveServer(config_dict_or_yaml_path, env={"GENARM_API_KEYS": "k"}) as server:
        httpx.get(f"{server.url}/health")          # server.base_url is .../v1

The server runs in its own process group, so that stopping it also ends the
vLLM engine processes it started, even if it has to be killed.
"""

from __future__ import annotations

import os
import signal
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


def genarm_command() -> list[str]:
    """The installed console script next to this interpreter, else the module."""
    script = Path(sys.executable).with_name("genarm")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "genarm.cli"]


class LiveServer:
    """``with LiveServer(config) as server:`` starts it and waits for /health == 200.

    ``config`` is a deployment config dict (written to ``workdir/config.yaml``) or
    the path of a YAML file. ``env`` adds environment variables for the server.
    ``genarm``: the command that runs genarm (default: this interpreter's);
    ``cwd`` and ``host``: where it runs and the address it binds.
    """

    def __init__(
        self,
        config: dict | str | os.PathLike,
        env: dict[str, str] | None = None,
        startup_timeout: float = 240.0,
        workdir: str | Path | None = None,
        genarm: list[str] | None = None,
        cwd: str | Path | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.config = config
        self.env = env or {}
        self.genarm = genarm or genarm_command()
        self.cwd = cwd
        self.host = host
        self.startup_timeout = startup_timeout
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="genarm-server-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log_path = self.workdir / "server.log"
        # Every /health status seen while waiting, in order (503 while loading, then 200).
        self.health_statuses: list[int] = []

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def start(self, wait: bool = True) -> LiveServer:
        """Start the process; with ``wait``, return once /health says 200."""
        if isinstance(self.config, dict):
            config_path = self.workdir / "config.yaml"
            config_path.write_text(yaml.safe_dump(self.config))
        else:
            config_path = Path(self.config)
        command = [*self.genarm, "serve", "--config", str(config_path)]
        command += ["--host", self.host, "--port", str(self.port)]
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            cwd=self.cwd,
            start_new_session=True,
        )
        if wait:
            try:
                self.wait_healthy()
            except BaseException:
                self.stop()
                raise
        return self

    def wait_healthy(self, timeout: float | None = None) -> None:
        """Poll /health until 200; raise with the server's log if it exits or times out."""
        deadline = time.monotonic() + (timeout or self.startup_timeout)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                status = httpx.get(f"{self.url}/health", timeout=5).status_code
            except httpx.HTTPError:
                status = None
            if status is not None:
                self.health_statuses.append(status)
                if status == 200:
                    return
            time.sleep(0.25)
        raise TimeoutError(
            f"server not healthy after {timeout or self.startup_timeout} s:\n{self.log()}"
        )

    def wait_exit(self, timeout: float = 120.0) -> int:
        """Wait for the process to end by itself (e.g. a start-up error); its exit code."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"server still running after {timeout} s:\n{self.log()}") from None

    def log(self, tail: int | None = 6000) -> str:
        """The server's output so far: its last ``tail`` characters, or all of it."""
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text()
        return text if tail is None else text[-tail:]

    def metric(self, name: str, **labels: str) -> float | None:
        """Sum of a Prometheus metric's samples from /metrics: those with all of
        ``labels``, or every label set."""
        return _metric_sum(httpx.get(f"{self.url}/metrics", timeout=10).text, name, labels)

    async def ametric(self, client: httpx.AsyncClient, name: str) -> float | None:
        """``metric`` without blocking the caller's event loop, where the test's own
        requests run: a blocking call there would stall them on a busy machine."""
        response = await client.get(f"{self.url}/metrics", timeout=10)
        return _metric_sum(response.text, name)

    def stop(self) -> None:
        """SIGTERM (graceful: the engine shuts down), then SIGKILL what is left of its group."""
        process = self.process
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            try:  # engine processes left behind by a killed server
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _metric_sum(text: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    """Sum of a metric's samples in Prometheus text (those carrying every one of
    ``labels``, else all label sets), None if absent."""
    wanted = [f'{key}="{value}"' for key, value in (labels or {}).items()]
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((name + " ", name + "{")) and all(w in line for w in wanted)
    ]
    return sum(values) if values else None

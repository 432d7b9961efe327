"""The container images: their recipe, run the way the image runs it.

No container engine runs on the machines this project is built and tested on
(the docker client is there, the daemon is not), so the CPU image is tested
through its recipe: the files the Dockerfile copies, its install script
(``deploy/image/install.sh``) in a fresh virtualenv, ``genarm prepare-demo``
and the entrypoint with the default command, under a temporary HOME, then the
image's HEALTHCHECK command and a chat with the demo's ARMs. Four things differ
from a real build, and only these: pip reuses this machine's download cache
(the wheels are the same files); torch's CPU wheel comes from this machine's pip
configuration instead of PyTorch's CPU index (TORCH_INDEX_URL unset); pip writes
no bytecode (PIP_NO_COMPILE: the same files installed, minutes less work); and the
entrypoint is given the demo config in eager mode as its command, as `docker run
IMAGE --config ...` would, rather than the default compiled one, whose first start
compiles for minutes (the compiled engine has its own test, test_engine_compiled).
The Dockerfiles' own instructions (user, volume, health check, entrypoint, the
default command) are checked by reading them.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from genarm.live_server import LiveServer, free_port

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = ["Dockerfile", "Dockerfile.cuda"]


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    text = (ROOT / dockerfile).read_text().replace("\\\n", " ")
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def copied_paths(dockerfile: str) -> list[str]:
    """The sources of the Dockerfile's COPY instructions."""
    return [
        source
        for word, rest in instructions(dockerfile)
        if word == "COPY"
        for source in shlex.split(rest)[:-1]
    ]


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_runs_the_recipe_as_a_user_with_a_health_check(dockerfile):
    steps = instructions(dockerfile)
    words = [word for word, _ in steps]
    runs = [rest for word, rest in steps if word == "RUN"]
    target = "cuda" if dockerfile.endswith("cuda") else "cpu"
    assert any(f"sh deploy/image/install.sh {target}" in run for run in runs)
    # Non-root before anything it runs as the server, and the demo prepared by that user.
    user = words.index("USER")
    assert steps[user][1] == "genarm"
    assert words.index("ENTRYPOINT") > user
    prepare = next(i for i, (w, rest) in enumerate(steps) if w == "RUN" and "prepare-demo" in rest)
    assert prepare > user
    assert '"/home/genarm/.cache"' in dict(steps)["VOLUME"]
    assert "deploy/image/healthcheck.py" in dict(steps)["HEALTHCHECK"]
    entrypoint = dict(steps)["ENTRYPOINT"]
    assert '"serve"' in entrypoint and '"0.0.0.0"' in entrypoint and '"8000"' in entrypoint
    assert dict(steps)["CMD"] == '["--config", "configs/demo.yaml"]'
    # Every package folder pyproject installs is copied into the image.
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = set(package_dir["package-dir"].values())
    assert folders | {"pyproject.toml", "configs", "deploy/image"} <= set(copied_paths(dockerfile))


def test_healthcheck_fails_when_nothing_answers():
    env = {**os.environ, "GENARM_HEALTH_URL": f"http://127.0.0.1:{free_port()}/health"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "deploy/image/healthcheck.py")], env=env, timeout=60
    )
    assert result.returncode == 1


def recipe_env(venv: Path, home: Path) -> dict[str, str]:
    """This process's environment as a fresh shell in the venv would see it."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PIP_CACHE_DIR"] = str(Path("~/.cache/pip").expanduser())  # before HOME moves
    env["PIP_NO_COMPILE"] = "1"
    env.update(HOME=str(home), VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}:/usr/bin:/bin")
    env.pop("GENARM_CACHE", None)
    return env


def run_step(command: list[str], cwd: Path, env: dict[str, str], timeout: float) -> None:
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, (
        f"{command} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )


class RecipeInstall:
    """The CPU image's files copied as its COPY lines say, and its install script
    running in a fresh virtualenv under a temporary HOME, in the background.

    Minutes of pip on one core: started at collection when this module's slow test is
    to run (conftest), it proceeds beside the tests that come before it.
    """

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="genarm-image-recipe-"))
        self.app, self.home, self.venv = self.root / "app", self.root / "home", self.root / "venv"
        self.home.mkdir()
        for source in copied_paths("Dockerfile"):  # COPY ... ./ into WORKDIR /app
            src, dst = ROOT / source, self.app / source
            if src.is_dir():
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
        subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True, timeout=300)
        self.env = recipe_env(self.venv, self.home)
        self.log_path = self.root / "install.log"
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                ["sh", "deploy/image/install.sh", "cpu"],
                cwd=self.app,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait(self, timeout: float) -> None:
        """Until the install script ends; it must succeed."""
        code = self.process.wait(timeout=timeout)
        assert code == 0, f"install.sh failed ({code}):\n{self.log_path.read_text()[-3000:]}"

    def discard(self) -> None:
        """Stop it if it still runs and delete everything: the venv and HOME hold ~4 GB
        (torch, vLLM, the demo's models) on a disk that CI shares (a full disk failed
        CI's own set-up once)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


# Where conftest keeps the install it started at collection.
RECIPE_INSTALL = pytest.StashKey[RecipeInstall]()


@pytest.fixture
def recipe_install(request) -> Iterator[RecipeInstall]:
    """The install conftest started at collection, or (this test alone) one started now."""
    install = request.config.stash.get(RECIPE_INSTALL, None) or RecipeInstall()
    request.config.stash[RECIPE_INSTALL] = install
    yield install
    install.discard()


@pytest.mark.slow
@pytest.mark.engine
@pytest.mark.timeout(2700)  # a pip install of torch + vLLM, then the demo's start
def test_cpu_image_recipe_serves_the_demo(recipe_install):
    app, venv, env = recipe_install.app, recipe_install.venv, recipe_install.env
    recipe_install.wait(timeout=2400)
    run_step([str(venv / "bin/genarm"), "prepare-demo"], app, env, timeout=1200)
    assert (recipe_install.home / ".cache/genarm/smollm2-135m-instruct/config.json").is_file()

    # ENTRYPOINT with the demo config in eager mode as its command, on a free port
    # instead of the image's 8000.
    demo = yaml.safe_load((app / "configs/demo.yaml").read_text())
    demo["engine"]["enforce_eager"] = True
    (app / "configs/demo-eager.yaml").write_text(yaml.safe_dump(demo))
    server = LiveServer(
        app / "configs/demo-eager.yaml",
        env=env,
        startup_timeout=1800,
        workdir=recipe_install.root / "server",
        genarm=[str(venv / "bin/genarm")],
        cwd=app,
        host="0.0.0.0",
    )
    healthcheck = [str(venv / "bin/python"), str(app / "deploy/image/healthcheck.py")]
    health_env = {**env, "GENARM_HEALTH_URL": f"{server.url}/health"}
    with server:
        assert subprocess.run(healthcheck, env=health_env, timeout=60).returncode == 0
        models = httpx.get(f"{server.base_url}/models", timeout=30).json()
        assert [arm["name"] for arm in models["data"][0]["arms"]] == ["harmless", "concise"]
        response = httpx.post(
            f"{server.base_url}/chat/completions",
            json={
                "messages": [{"role": "user", "content": "Name a fruit."}],
                "max_tokens": 16,
                "temperature": 0,
                "reward_weights": {"concise": 1.0, "harmless": 0.5},
            },
            timeout=300,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["reward_weights"] == {"harmless": 0.5, "concise": 1.0}
        assert body["choices"][0]["message"]["content"].strip()
    assert subprocess.run(healthcheck, env=health_env, timeout=60).returncode == 1

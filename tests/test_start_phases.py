"""The start's phases, told from the worker process to the front end through a file;
and what the plugin (run in every vLLM process) does and does not load."""

from __future__ import annotations

import subprocess
import sys

from genarm.engine import start_phases


def test_phases_and_outcomes_read_back_in_order(tmp_path, monkeypatch):
    path = tmp_path / "phases.jsonl"
    monkeypatch.setenv(start_phases.ENV, str(path))
    start_phases.record("loading weights")
    start_phases.record("compiling", "base + 2 ARMs")
    start_phases.outcome("3 graphs loaded from the cache, 0 compiled")
    start_phases.record("KV cache")
    with open(path, "a") as f:
        f.write('{"name": "warm-u')  # a line the worker is still writing
    phases = start_phases.read(path)
    assert [p.name for p in phases] == ["loading weights", "compiling", "KV cache"]
    assert phases[1].detail == "base + 2 ARMs; 3 graphs loaded from the cache, 0 compiled"
    assert phases[0].started <= phases[1].started <= phases[2].started

    text = start_phases.summary(phases, ended=phases[2].started + 1.0)
    assert text.startswith("loading weights ")
    assert "compiling " in text and "(base + 2 ARMs; 3 graphs loaded" in text
    assert text.endswith("KV cache 1.0 s")


def test_without_a_file_phases_are_only_logged(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv(start_phases.ENV, raising=False)
    with caplog.at_level("INFO", logger=start_phases.__name__):
        start_phases.record("loading weights")
    assert "Start phase: loading weights" in caplog.text
    assert start_phases.read(tmp_path / "missing.jsonl") == []


def test_plugin_leaves_the_model_runner_to_the_worker():
    """vLLM runs the plugin in the API and engine-core processes too: it must not
    import the CPU model runner there (the seeded-prefill fix is the worker's)."""
    code = (
        "import sys\n"
        "from genarm.engine.plugin import register\n"
        "register()\n"
        "from vllm import ModelRegistry\n"
        "assert 'GenARMForCausalLM' in ModelRegistry.get_supported_archs()\n"
        "print('runner imported:', 'vllm.v1.worker.cpu_model_runner' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "runner imported: False" in out.stdout, out.stdout + out.stderr

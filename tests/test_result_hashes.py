"""Results name model and adapter folders by a hash of their files, not only their
path: a retrained ARM saved over configs/arms/harmless must not read as the same ARM.
Reports written before hashes were recorded (bare paths) still render."""

from __future__ import annotations

import argparse
import datetime as dt
import shutil

import pytest

from benchmarks.best_of_n import markdown as best_of_n_markdown
from benchmarks.best_of_n import model_files
from benchmarks.compare import model_set_files
from benchmarks.compare_report import summary_markdown
from benchmarks.model_sets import ModelSet
from benchmarks.quality_answers import load_answers, save_answers
from benchmarks.quality_report import arm_files, everyday_report_markdown, markdown
from benchmarks.quality_scoring import everyday_summary
from benchmarks.reports import folder_markdown, folder_record, folder_sha256


@pytest.fixture
def adapter(tmp_path):
    folder = tmp_path / "adapter"
    (folder / "sub").mkdir(parents=True)
    (folder / "adapter_config.json").write_text('{"r": 8}')
    (folder / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 64)
    (folder / "sub" / "notes.txt").write_text("trained once")
    return folder


def test_hash_is_stable_and_names_the_files_not_the_place(adapter, tmp_path):
    first = folder_sha256(adapter)
    assert len(first) == 64 and folder_sha256(adapter) == first
    copy = shutil.copytree(adapter, tmp_path / "elsewhere" / "copy")
    assert folder_sha256(copy) == first  # same files in another folder: the same ARM
    (adapter / "sub" / "notes.txt").touch()  # a new mtime is not a new ARM
    assert folder_sha256(adapter) == first


@pytest.mark.parametrize(
    "change",
    [
        lambda f: (f / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 63),
        lambda f: (f / "adapter_config.json").write_text('{"r": 16}'),
        lambda f: (f / "training_summary.json").write_text("{}"),
        lambda f: (f / "extra").mkdir() or (f / "extra" / "empty").write_bytes(b""),
        lambda f: (f / "sub" / "notes.txt").rename(f / "sub" / "renamed.txt"),
        lambda f: (f / "sub" / "notes.txt").rename(f / "notes.txt"),
        lambda f: (f / "sub" / "notes.txt").unlink(),
    ],
    ids=["content", "config", "file-added", "empty-file-added", "renamed", "moved", "removed"],
)
def test_hash_changes_with_any_file(adapter, change):
    before = folder_sha256(adapter)
    change(adapter)
    assert folder_sha256(adapter) != before


def test_record_and_markdown_of_a_folder_old_and_new(adapter):
    record = folder_record(adapter, shown="configs/arms/x")
    assert record == {"path": "configs/arms/x", "sha256": folder_sha256(adapter)}
    assert folder_markdown(record) == f"`configs/arms/x` (sha256 `{record['sha256'][:12]}`)"
    assert folder_markdown("configs/arms/x") == "`configs/arms/x`"  # a result of before
    hub = folder_record("HuggingFaceTB/not-a-local-folder")
    assert hub["sha256"] is None and folder_markdown(hub) == "`HuggingFaceTB/not-a-local-folder`"


def _lora_set(adapter, base) -> ModelSet:
    arms = {
        name: {"model": None, "adapter": str(adapter), "adapter_base": str(base)}
        for name in ("harmless", "concise")
    }
    return ModelSet("demo", str(base), arms)


def test_quality_reports_carry_each_arms_hash(adapter, tmp_path):
    base = shutil.copytree(adapter, tmp_path / "base")  # any folder serves as a base here
    arms = arm_files(_lora_set(adapter, base))
    short = folder_sha256(adapter)[:12]
    assert arms["harmless"] == {"path": str(adapter), "sha256": folder_sha256(adapter)}
    rows = [[{"text": f"answer {s}"}] for s in range(5)]
    report = {
        "created": "now",
        "command": "python -m benchmarks.quality --everyday-only",
        "dtype": None,
        "arms": arms,
        "everyday_max_tokens": 48,
        "everyday": everyday_summary(rows, ["Q?"]),
    }
    text = everyday_report_markdown(report)
    assert f"concise = `{adapter}` (sha256 `{short}`)" in text
    accuracy = {
        arm: {"pairs": 1, "max_length": 8, "max_response": 4, "base": 0.5, "arm": 0.5}
        for arm in arms
    }
    report = {
        **report,
        "command": "python -m benchmarks.quality",
        "prompts": {"harmless": 1, "concise": 1},
        "temperature": 0.7,
        "max_tokens": 8,
        "judge": folder_record(base),
        "grid": [],
        "accuracy": {**accuracy, "judge": {"pairs": 1, "accuracy": 1.0}},
    }
    text = markdown(report)
    assert f"harmless = `{adapter}` (sha256 `{short}`)" in text
    assert f"Judge: `{base}` (sha256 `{folder_sha256(base)[:12]}`)." in text
    assert "Judge:" not in markdown({**report, "judge": str(base)})  # a result of before


def test_a_rescore_names_the_arms_that_answered(adapter, tmp_path):
    """The ARMs' hashes go into the answers file when they answer, and come back with
    the other settings for --from-answers, whatever the folders hold by then."""
    args = argparse.Namespace(
        answers_dir=str(tmp_path),
        temperature=0.7,
        max_tokens=8,
        dtype=None,
        everyday_max_tokens=8,
        everyday_questions=["Q?"],
        candidates={},
        arm_files=arm_files(_lora_set(adapter, adapter)),
    )
    path = save_answers(args, "q", {}, [], {}, [])
    (adapter / "adapter_config.json").write_text('{"r": 32}')  # retrained since
    fresh = argparse.Namespace()
    load_answers(path, fresh)
    assert fresh.arm_files == args.arm_files
    assert fresh.arm_files["harmless"]["sha256"] != folder_sha256(adapter)


def test_compare_records_every_folder_with_its_hash(adapter, tmp_path):
    base = shutil.copytree(adapter, tmp_path / "base")
    (base / "config.json").write_text("{}")
    models = _lora_set(adapter, base)
    models.arms["concise"] = {"model": str(base)}  # a plain-model ARM beside the LoRA one
    recorded = model_set_files(models)
    assert recorded["base"] == {"path": str(base), "sha256": folder_sha256(base)}
    assert recorded["arms"]["harmless"]["adapter"]["sha256"] == folder_sha256(adapter)
    assert recorded["arms"]["harmless"]["model"] is None
    assert recorded["arms"]["harmless"]["adapter_base"] == recorded["base"]
    assert recorded["arms"]["concise"] == {"model": recorded["base"]}
    report = {
        "models": "demo",
        "quick": True,
        "input_len": 16,
        "output_len": 16,
        "temperature": 1.0,
        "prompts_per_concurrency": {1: 2},
        "weights": {"genarm_1arm": {}, "genarm_2arm": {}, "research": {}},
        "ceilings_from_flops": {"1arm_vs_plain": 0.5, "2arm_vs_plain": 0.3},
        "machine": {"cpu": "test", "usable_cpus": 2, "torch": "x", "load_average": [0.0]},
        "model_set": recorded,
    }
    started = dt.datetime(2026, 1, 1)
    text = summary_markdown(report, {}, started, "| table |")
    base_short, adapter_short = folder_sha256(base)[:12], folder_sha256(adapter)[:12]
    assert f"Models: base `{base}` (sha256 `{base_short}`)" in text
    assert f"harmless `{adapter}` (sha256 `{adapter_short}`)" in text
    assert f"concise `{base}` (sha256 `{base_short}`)" in text
    old = {**report, "model_set": {"base": str(base), "arms": models.arms, "dtype": "float32"}}
    assert "Models:" not in summary_markdown(old, {}, started, "| table |")


def test_best_of_n_names_its_judges_and_arm_by_hash(adapter, tmp_path):
    evaluator = shutil.copytree(adapter, tmp_path / "evaluator")
    (evaluator / "reward_head.safetensors").write_bytes(b"\1")
    args = argparse.Namespace(selector=str(adapter), evaluator=str(evaluator))
    files = model_files(args, arm=False)  # no demo models needed for a summary
    assert set(files) == {"selector", "evaluator"}
    assert files["selector"]["sha256"] != files["evaluator"]["sha256"]
    report = {
        "created": "now",
        "command": "python -m benchmarks.best_of_n",
        "prompts": 1,
        "candidates": 2,
        "temperature": 0.7,
        "max_tokens": 8,
        **files,
        "arm": {"path": "configs/arms/harmless", "sha256": "ab" * 32},
        "generation_seconds": None,
        "rows": [],
    }
    text = best_of_n_markdown(report)
    assert f"selector `{adapter}` (sha256 `{files['selector']['sha256'][:12]}`)" in text
    assert f"evaluator `{evaluator}` (sha256 `{files['evaluator']['sha256'][:12]}`)" in text
    assert "ARM adapter: harmless = `configs/arms/harmless` (sha256 `abababababab`)" in text

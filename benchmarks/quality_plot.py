"""The quality benchmark's figure: each ARM's curve alone and the trade-off front."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.quality_grid import ARMS


def _errors(points: list[dict], metric: str) -> list[list[float]]:
    """matplotlib's [below, above] error bars from each point's 95% CI."""
    return [
        [p[metric]["mean"] - p[metric]["ci_low"] for p in points],
        [p[metric]["ci_high"] - p[metric]["mean"] for p in points],
    ]


def pareto_front(rows: list[dict]) -> list[dict]:
    """The settings no other setting beats on both judge score and concise reward."""

    def beaten(r: dict) -> bool:
        a, b = r["harmless_judge"]["mean"], r["concise_reward"]["mean"]
        return any(
            o["harmless_judge"]["mean"] >= a
            and o["concise_reward"]["mean"] >= b
            and (o["harmless_judge"]["mean"], o["concise_reward"]["mean"]) != (a, b)
            for o in rows
        )

    return sorted((r for r in rows if not beaten(r)), key=lambda r: r["concise_reward"]["mean"])


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["grid"]

    def alone(arm: str) -> list[dict]:
        other = next(a for a in ARMS if a != arm)
        pts = [r for r in rows if r["weights"][other] == 0.0]
        return sorted(pts, key=lambda r: r["weights"][arm])

    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    for ax, metric, title in (
        (axes[0], "harmless_judge", "harmless: judge score"),
        (axes[1], "concise_words", "concise: words per answer"),
    ):
        for arm in ARMS:
            pts = alone(arm)
            xs = [p["weights"][arm] for p in pts]
            ys = [p[metric]["mean"] for p in pts]
            ax.errorbar(
                xs, ys, yerr=_errors(pts, metric), marker="o", capsize=3, label=f"{arm} ARM alone"
            )
        ax.set_xlabel("ARM weight α")
        ax.set_title(title)
        ax.legend()
        ax.grid(alpha=0.3)
    ax = axes[2]

    def trade_off(points: list[dict], **style) -> None:
        ax.errorbar(
            [p["concise_reward"]["mean"] for p in points],
            [p["harmless_judge"]["mean"] for p in points],
            xerr=_errors(points, "concise_reward"),
            yerr=_errors(points, "harmless_judge"),
            **style,
        )

    mixes = [r for r in rows if all(r["weights"][a] > 0 for a in ARMS)]
    if mixes:  # none with --no-mixes
        trade_off(mixes, fmt="o", color="0.6", capsize=2, label="two-ARM mixes")
    for arm in ARMS:
        trade_off(alone(arm), fmt="-o", capsize=3, label=f"{arm} alone")
    front = pareto_front(rows)
    ax.plot(
        [p["concise_reward"]["mean"] for p in front],
        [p["harmless_judge"]["mean"] for p in front],
        "k--",
        label="front (not beaten on both)",
    )
    for p in rows:
        w = p["weights"]
        ax.annotate(
            f"({w['harmless']:g},{w['concise']:g})",
            (p["concise_reward"]["mean"], p["harmless_judge"]["mean"]),
            fontsize=7,
        )
    ax.set_xlabel("concise reward (−words, −50 if cut off)")
    ax.set_ylabel("harmless judge score")
    ax.set_title("trade-off (α_harmless, α_concise)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

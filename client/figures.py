"""The report's plots, as matplotlib Figures (Agg, no pyplot state): validity, accuracy and novelty per cycle, the
generation modes side by side.

    for name, fig in figures(search_id, report.cycles, candidates).items(): tracker.log_figures(...)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from client.records import CandidateResult, modes_of

if TYPE_CHECKING:
    from client.report import CycleSummary


def _boxes(ax: Any, candidates: list[CandidateResult], value: Callable[[CandidateResult], float], ylabel: str) -> None:
    """Box plots with the points of `value` over the valid candidates, per cycle, the modes side by side."""
    modes, cycles = modes_of(candidates), sorted({c.cycle for c in candidates})
    width = 0.8 / len(modes)
    for i, mode in enumerate(modes):
        data = [(cycle, [value(c) for c in candidates if c.mode == mode and c.cycle == cycle and c.valid])
                for cycle in cycles]
        data = [(cycle, values) for cycle, values in data if values]
        if data:
            positions = [cycle + (i - (len(modes) - 1) / 2) * width for cycle, _ in data]
            boxes = ax.boxplot([v for _, v in data], positions=positions, widths=width * 0.9, patch_artist=True,
                               manage_ticks=False, showfliers=False, medianprops={"color": "black"})
            for box in boxes["boxes"]:
                box.set(facecolor=f"C{i}", alpha=0.5)
            for x, (_, values) in zip(positions, data, strict=True):
                ax.scatter([x] * len(values), values, s=14, color=f"C{i}", edgecolors="black", zorder=3)
            ax.plot([], [], color=f"C{i}", linewidth=8, label=mode)
    ax.set(xlabel="cycle", ylabel=ylabel, xticks=cycles)
    ax.legend()


def _validity(ax: Any, cycles: list[CycleSummary]) -> None:
    for i, mode in enumerate(dict.fromkeys(c.mode for c in cycles)):
        rows = [c for c in cycles if c.mode == mode]
        ax.plot([c.cycle for c in rows], [c.valid_rate for c in rows], marker="o", color=f"C{i}", label=mode)
    ax.set(xlabel="cycle", ylabel="valid rate", ylim=(0, 1.05), xticks=sorted({c.cycle for c in cycles}))
    ax.legend()


def figures(search_id: str, cycles: list[CycleSummary], candidates: list[CandidateResult]) -> dict[str, Any]:
    """validity_per_cycle.png, accuracy_per_cycle.png and novelty_per_cycle.png as matplotlib Figures (Agg, no
    pyplot state)."""
    from matplotlib.figure import Figure

    plots: dict[str, Callable[[Any], None]] = {
        "validity_per_cycle.png": lambda ax: _validity(ax, cycles),
        "accuracy_per_cycle.png": lambda ax: _boxes(ax, candidates, lambda c: c.accuracy, "one-epoch accuracy"),
        "novelty_per_cycle.png": lambda ax: _boxes(ax, candidates, lambda c: c.novelty_jaccard,
                                                   "max Jaccard to known models"),
    }
    out = {}
    for name, draw in plots.items():
        fig = Figure(figsize=(6, 4), layout="tight")
        ax = fig.add_subplot()
        draw(ax)
        ax.set_title(f"{search_id}: {name.removesuffix('.png').replace('_', ' ')}")
        out[name] = fig
    return out

"""Study figures: recall against the budget k and against the IoU threshold, per-category recall
bars, score histograms, training curves.

Every function takes plain data (recalls as fractions, scores as floats), writes one PNG (parent
folders created) and returns its path. Recalls are drawn in percent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

DPI = 120
HISTOGRAM_BINS = 40


def plot_recall_vs_k(
    path: str | Path, curves: Mapping[str, Mapping[int, float | None]], *, title: str = ""
) -> Path:
    """AR@k against k (log axis), one line per run; ``curves``: run -> {k: recall or None}.

    Budgets with no recall (``None``, no ground truth) are left out of their line.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    budgets = sorted({k for points in curves.values() for k in points})
    for name, points in curves.items():
        ks = [k for k in sorted(points) if points[k] is not None]
        ax.plot(ks, [100.0 * points[k] for k in ks], marker="o", label=name)
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(budgets, [str(k) for k in budgets])
    ax.set_xlabel("proposals per image k")
    ax.set_ylabel("novel-class AR@k (%)")
    return _finish(fig, ax, path, title or "Novel-class average recall against the budget")


def plot_recall_vs_iou(
    path: str | Path,
    thresholds: Sequence[float],
    curves: Mapping[str, Sequence[float]],
    *,
    k: int,
    title: str = "",
) -> Path:
    """Recall at ``k`` proposals against the IoU threshold, one line per run.

    ``curves``: run -> one recall per threshold (NaN where there is no ground truth).
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, recalls in curves.items():
        ax.plot(thresholds, [100.0 * r for r in recalls], marker="o", label=name)
    ax.set_xticks(list(thresholds), [f"{t:.2f}" for t in thresholds])
    ax.set_xlabel("IoU threshold")
    ax.set_ylabel(f"novel-class recall@{k} (%)")
    return _finish(fig, ax, path, title or f"Novel-class recall at {k} proposals against IoU")


def plot_per_category(
    path: str | Path, rows: Sequence[Mapping[str, Any]], *, budget: int = 100, title: str = ""
) -> Path:
    """Horizontal bars of each category's AR@``budget``, recall at IoU 0.5 as a lighter bar
    behind it, best category on top; ``rows`` as :func:`owp.evaluation.proposals.
    per_category_recall` returns them. Categories without ground truth are left out."""
    ar_key, r50_key = f"AR@{budget}", f"R50@{budget}"
    shown = sorted((r for r in rows if r[ar_key] is not None), key=lambda r: r[ar_key])
    fig, ax = plt.subplots(figsize=(6.4, 1.2 + 0.24 * max(len(shown), 1)))
    positions = np.arange(len(shown))
    labels = [f"{r['name']} ({r['count']})" for r in shown]
    ax.barh(positions, [100.0 * r[r50_key] for r in shown], color="tab:blue", alpha=0.3,
            label=f"recall@{budget}, IoU 0.5")  # fmt: skip
    ax.barh(positions, [100.0 * r[ar_key] for r in shown], height=0.5, color="tab:blue",
            label=f"AR@{budget}, IoU 0.50:0.95")  # fmt: skip
    ax.set_yticks(positions, labels, fontsize="small")
    ax.set_ylim(-0.7, len(shown) - 0.3)
    ax.set_xlim(0.0, 100.0)
    ax.set_xlabel("recall (%)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize="small", loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2)
    ax.set_title(title or "Recall per novel category (objects in brackets)", pad=28)
    return save_figure(fig, path)


def plot_training_curves(path: str | Path, rows: Sequence[Mapping[str, float]]) -> Path:
    """Losses (log axis) against the step, and the learning rate on a second axis; ``rows`` are
    a run's ``metrics.csv`` rows as floats (``step``, ``lr`` and one column per loss)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    steps = [row["step"] for row in rows]
    names = [k for k in (rows[0] if rows else {}) if k not in ("step", "lr")]
    for name in names:
        ax.plot(steps, [row[name] for row in rows], label=name, linewidth=1.2)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if rows and "lr" in rows[0]:
        lr_axis = ax.twinx()
        lr_axis.plot(steps, [row["lr"] for row in rows], color="black", linestyle=":", label="lr")
        lr_axis.set_ylabel("learning rate (dotted)")
    return _finish(fig, ax, path, "Training losses")


def plot_score_histograms(
    path: str | Path,
    panels: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    *,
    iou: float = 0.5,
) -> Path:
    """One subplot per run: densities of the scores of proposals on novel objects and on nothing.

    ``panels``: ``(title, scores of proposals matching a novel object, scores of proposals
    matching no object)`` per run; scores lie in 0..1. An empty list draws no histogram.
    """
    columns = min(len(panels), 4) or 1
    rows = max(math.ceil(len(panels) / columns), 1)
    fig, axes = plt.subplots(
        rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False, layout="constrained"
    )
    bins = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    for ax, (title, novel, background) in zip(axes.flat, panels, strict=False):
        for scores, label, colour in (
            (background, f"no object (IoU < {iou:g}), n={len(background)}", "tab:gray"),
            (novel, f"novel object (IoU >= {iou:g}), n={len(novel)}", "tab:orange"),
        ):
            if len(scores):
                ax.hist(scores, bins=bins, density=True, alpha=0.6, color=colour, label=label)
            else:
                ax.plot([], [], color=colour, label=label)
        ax.set_title(title, fontsize="medium")
        ax.set_xlim(0.0, 1.0)
        ax.set_xlabel("proposal score")
        ax.set_ylabel("density")
        ax.legend(fontsize="x-small")
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle("Scores of proposals on novel objects and on background")
    return save_figure(fig, path)


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG to ``path`` (parent folders created) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _finish(fig: Figure, ax, path: str | Path, title: str) -> Path:
    """Grid, legend (when lines have labels) and title, then save."""
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    ax.set_title(title)
    return save_figure(fig, path)

"""The log-log ROC plot of every attack of a run.

Legend: T targets, N samples, G grid points on the FPR axis.

Figures are built with ``matplotlib.figure.Figure`` and saved through the Agg
canvas, so the report never touches pyplot's global backend or state. Curves
take their family's hue and a shade and dash within it (``families.styles``);
the legend, grouped under family headings, sits right of the axes so that it
never covers the low-FPR corner.
"""

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from seqmia_jax.evaluation.metrics import roc_curve
from seqmia_jax.report.families import family_of, in_family_order, styles

NUM_GRID_POINTS = 2000


def roc_on_grid(
    scores_TxN: np.ndarray, labels_TxN: np.ndarray, num_points: int = NUM_GRID_POINTS
) -> tuple[np.ndarray, np.ndarray]:
    """The pooled ROC at G log-spaced FPRs from 1/num_negatives to 1.

    TPR at f is the largest TPR whose FPR is at most f (the metrics'
    definition), so plotting (fpr_G, tpr_G) as a post-step curve draws the exact
    staircase at the grid resolution with a bounded number of points.
    """
    fpr, tpr, _ = roc_curve(scores_TxN, labels_TxN)
    num_neg = int((~np.asarray(labels_TxN, dtype=bool)).sum())
    fpr_G = np.unique(np.r_[np.geomspace(1.0 / num_neg, 1.0, num_points), 1.0])
    # fpr is non-decreasing and tpr too, so the last point at or below f has the largest TPR.
    index_G = np.searchsorted(fpr, fpr_G * (1 + 1e-12), side="right") - 1
    return fpr_G, tpr[index_G]


def plot_roc(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    labels: Mapping[str, str],
    num_negatives: int,
    num_positives: int,
    path: Path,
    title: str = "",
) -> Figure:
    """Save a log-log ROC plot of ``curves`` (spec -> (fpr_G, tpr_G)) with a chance line."""
    fig = Figure(figsize=(11.0, 6.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.08, 0.1, 0.5, 0.8))
    low = 1.0 / num_negatives
    chance_G = np.geomspace(low, 1.0, 50)
    ax.plot(chance_G, chance_G, color="0.6", linestyle="--", linewidth=1, label="chance")
    order = in_family_order(list(curves))
    style = styles(order)
    handles, family = [ax.lines[0]], None
    for spec in order:
        if family_of(spec).label != family:  # a legend heading: an empty, invisible entry
            family = family_of(spec).label
            handles.append(ax.plot([], [], linestyle="none", label=f"{family}:")[0])
        fpr_G, tpr_G = curves[spec]
        tpr_G = np.where(tpr_G > 0, tpr_G, np.nan)  # log axes cannot show TPR = 0
        (line,) = ax.plot(
            fpr_G, tpr_G, drawstyle="steps-post", linewidth=1.5, label=labels[spec], **style[spec]
        )
        handles.append(line)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(low, 1.0)
    ax.set_ylim(min(low, 1.0 / num_positives), 1.05)
    ax.set_xlabel(f"False positive rate ({num_negatives} negatives)")
    ax.set_ylabel(f"True positive rate ({num_positives} members)")
    ax.grid(True, which="major", alpha=0.3)
    unresolved = any("†" in label for label in labels.values())
    legend = ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        fontsize=7.5,
        frameon=False,
        title="† unresolved: fewer than 1/FPR negatives" if unresolved else None,
        title_fontsize=7.5,
    )
    for text in legend.get_texts():
        if text.get_text().endswith(":"):
            text.set_fontweight("bold")
    if title:
        ax.set_title(title, fontsize=10)
    fig.savefig(path)
    return fig


def legend_label(spec: str, entry: dict, fpr_key: str = "0.001") -> str:
    """``spec (AUC 0.812, TPR@1e-3 0.0421)`` from a results.json attack entry."""
    point = entry.get("tpr_at_fpr", {}).get(fpr_key)
    auc = entry.get("auc")
    text = f"{spec} (AUC {'–' if auc is None else f'{auc:.3f}'}"
    if point is not None:
        tpr = point.get("tpr")
        mark = "" if point.get("resolved", True) else "†"
        text += f", TPR@{float(fpr_key):.0e} {'–' if tpr is None else f'{tpr:.4f}'}{mark}"
    return text + ")"

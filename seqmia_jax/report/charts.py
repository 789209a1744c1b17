"""The report's two summary charts: TPR with 95% CIs per attack, and per-sample AUCs.

Legend: T targets, N samples, A attacks, P panels, E histogram bin edges.

``plot_tpr_intervals`` draws one row per attack (grouped by family, coloured
as in the ROC plot) with its pooled TPR at FPR 1e-3 and, when the run
resolves it, 1e-4: a dot at the estimate, a whisker over the bootstrap 95%
CI. An unresolved value (fewer than 1/FPR negatives) is a hollow grey
marker. The TPR axis is logarithmic; a TPR of 0 sits at the axis floor, one
half of the TPR resolution 1/num_positives, marked with a left triangle.

``plot_sample_auc`` is the histogram of the per-sample AUCs of one attack
beside its exact expectation under no membership signal (``samples``).
"""

import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from seqmia_jax.report.families import family_of, in_family_order, styles
from seqmia_jax.report.headline import fpr_text
from seqmia_jax.report.samples import u_null_counts

CHART_FPRS = ("0.001", "0.0001")  # 1e-3 always; 1e-4 where resolved


def chart_fprs(attacks: dict) -> tuple[list[str], list[str]]:
    """(FPR keys drawn, FPR keys left out because unresolved) of ``CHART_FPRS``."""
    points = next(iter(attacks.values()))["tpr_at_fpr"]
    keys = [k for k in CHART_FPRS if k in points]
    drawn = [k for i, k in enumerate(keys) if i == 0 or points[k].get("resolved")]
    return drawn or sorted(points, key=float)[-1:], [k for k in keys if k not in drawn]


def _lower_limit(attacks: dict, key: str, floor: float) -> float:
    """The TPR axis starts just below the smallest value drawn (the floor if any is 0)."""
    values = [attacks[s]["tpr_at_fpr"][key].get("tpr") for s in attacks]
    values += [(attacks[s]["tpr_at_fpr"][key].get("ci") or [None])[0] for s in attacks]
    values = [v for v in values if v is not None and math.isfinite(v)]
    smallest = min(values, default=floor)
    return 0.8 * floor if smallest <= 0 else 0.5 * min(smallest, float(key))


def _family_breaks(order: list[str], rows_A: np.ndarray) -> list[float]:
    """Rows between which the family changes (a separator goes half-way)."""
    return [
        (rows_A[i] + rows_A[i + 1]) / 2
        for i in range(len(order) - 1)
        if family_of(order[i]) != family_of(order[i + 1])
    ]


def plot_tpr_intervals(attacks: dict, num_positives: int, path: Path, title: str = "") -> None:
    """Save the dot-and-whisker chart of every attack's TPR (see module docstring)."""
    order = in_family_order(list(attacks))
    style = styles(order)
    drawn, left_out = chart_fprs(attacks)
    floor = 0.5 / num_positives
    fig = Figure(figsize=(5.0 + 3.2 * len(drawn), 0.32 * len(order) + 1.6), dpi=120)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(drawn), sharey=True, squeeze=False)[0]
    rows_A = np.arange(len(order))[::-1]  # the first attack on top
    for ax, key in zip(axes, drawn):
        for row, spec in zip(rows_A, order):
            point = attacks[spec]["tpr_at_fpr"][key]
            tpr = point.get("tpr")
            ci = point.get("ci") or [None, None]
            colour = style[spec]["color"] if point.get("resolved") else "0.55"
            if None not in ci:
                lo, hi = max(ci[0], floor), max(ci[1], floor)
                ax.plot([lo, hi], [row, row], color=colour, linewidth=2.0, solid_capstyle="butt")
            if tpr is None or not math.isfinite(tpr):
                continue
            zero = tpr <= 0
            ax.plot(
                max(tpr, floor),
                row,
                marker="<" if zero else "o",
                markersize=6,
                color=colour,
                markerfacecolor=colour if point.get("resolved") else "white",
                linestyle="none",
            )
        ax.axvline(float(key), color="0.6", linestyle=":", linewidth=1)  # chance: TPR = FPR
        ax.set_xscale("log")
        ax.set_xlim(_lower_limit(attacks, key, floor), 1.0)
        for row in _family_breaks(order, rows_A):
            ax.axhline(row, color="0.85", linewidth=0.8)
        negatives = attacks[order[0]]["tpr_at_fpr"][key].get("num_negatives")
        resolved = attacks[order[0]]["tpr_at_fpr"][key].get("resolved")
        ax.set_title(
            f"TPR at FPR {fpr_text(key)}" + ("" if resolved else " (unresolved)"), fontsize=9
        )
        ax.set_xlabel(f"TPR, 95% CI ({negatives} negatives; dotted: chance)", fontsize=8)
        ax.grid(True, axis="x", which="major", alpha=0.3)
        ax.tick_params(labelsize=8)
    axes[0].set_yticks(rows_A, order, fontsize=8)
    for label, spec in zip(axes[0].get_yticklabels(), order):
        label.set_color(style[spec]["color"])
    axes[0].set_ylim(-0.7, len(order) - 0.3)
    notes = [
        "◁: TPR 0, drawn at the axis floor",
        "hollow grey: unresolved (fewer than 1/FPR negatives)",
    ]
    notes += [f"FPR {fpr_text(k)} not shown: unresolved" for k in left_out]
    fig.text(0.01, 0.01, ";  ".join(notes), fontsize=7, color="0.35")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path)


def null_auc_mass(sizes: list[tuple[int, int]], edges_E: np.ndarray) -> np.ndarray:
    """Expected per-bin counts of per-sample AUCs under no signal, one sample per (m, k) pair."""
    mass = np.zeros(len(edges_E) - 1)
    for (m, k), count in zip(*np.unique(np.array(sizes), axis=0, return_counts=True)):
        m, k = int(m), int(k)
        counts = u_null_counts(m, k)
        pmf = np.array([float(c) for c in counts]) / math.comb(m + k, m)
        mass += count * np.histogram(np.arange(m * k + 1) / (m * k), edges_E, weights=pmf)[0]
    return mass


def _auc_edges(sizes: set[tuple[int, int]], num_bins: int) -> np.ndarray:
    """Bin edges: with one (m, k), whole groups of AUC's lattice u / (m k), else uniform.

    Uniform bins over a lattice hold 3 or 4 lattice points by turns, which
    draws a saw-tooth that is not in the data.
    """
    if len(sizes) != 1:
        return np.linspace(0.0, 1.0, num_bins + 1)
    ((m, k),) = sizes
    group = -(-(m * k + 1) // num_bins)
    return (np.arange(0, m * k + 1 + group, group) - 0.5) / (m * k)


def plot_sample_auc(
    auc_N: np.ndarray,
    sizes_N: list[tuple[int, int]],
    num_exposed: int,
    spec: str,
    path: Path,
    num_bins: int = 20,
) -> None:
    """Save the histogram of per-sample AUCs under ``spec`` against the no-signal expectation."""
    valid = ~np.isnan(auc_N)
    edges_E = _auc_edges({s for s, v in zip(sizes_N, valid) if v}, num_bins)
    observed = np.histogram(auc_N[valid], edges_E)[0]
    expected = null_auc_mass([s for s, v in zip(sizes_N, valid) if v], edges_E)
    fig = Figure(figsize=(7.0, 3.6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colour = styles([spec])[spec]["color"]
    ax.bar(
        edges_E[:-1],
        observed,
        width=np.diff(edges_E),
        align="edge",
        color=colour,
        alpha=0.75,
        label=f"observed ({int(valid.sum())} samples)",
    )
    ax.stairs(expected, edges_E, color="black", linewidth=1.4, label="expected under no signal")
    ax.set_xlabel(f"per-sample AUC under {spec} (member vs non-member targets)", fontsize=8)
    ax.set_ylabel("samples", fontsize=8)
    ax.set_xlim(min(0.0, edges_E[0]), max(1.0, edges_E[-1]))
    ax.tick_params(labelsize=8)
    ax.legend(
        loc="upper left",
        fontsize=8,
        frameon=False,
        title=f"individually exposed (BH 5% FDR): {num_exposed}",
        title_fontsize=8,
    )
    ax.set_title(
        f"Per-sample AUC under {spec} ({family_of(spec).label}): how strongly each sample is "
        "exposed",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path)

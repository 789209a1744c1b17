"""The report's exposure and extraction part: a table, per-sample columns and a histogram.

Legend: S shadow models, N samples, K samples with an exposure.

Reads ``results.json``'s ``exposure`` and ``extraction`` sections
(``seqmia_jax.evaluation.memorization``) and the score stage's arrays. Secret
exposure here is Carlini et al.'s rank measure, not the report's "individually
exposed samples" of membership inference.
"""

import html
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from seqmia_jax.evaluation.memorization import load_measures
from seqmia_jax.report.table import fmt

HEADER = ["measure", "IN [95% CI]", "OUT [95% CI]", "IN − OUT [95% CI]", "pairs IN / OUT"]


def _cell(entry: dict, digits: int) -> str:
    lo, hi = entry.get("ci") or (None, None)
    text = fmt(entry["value"], digits)
    return text if lo is None else f"{text} [{fmt(lo, digits)}, {fmt(hi, digits)}]"


def rows(results: dict) -> list[list[str]]:
    """Table rows (plain text): one per measure, IN, OUT, their difference and the pair counts."""
    out = []

    def row(name, block, digits):
        pairs = f"{block['in']['num']} / {block['out']['num']}"
        sides = [_cell(block[k], digits) for k in ("in", "out", "difference")]
        out.append([name, *sides, pairs])

    exposure = results.get("exposure")
    if exposure:
        method = "exact" if exposure["method"] == "exact rank" else "estimated"
        row(
            f"secret exposure, bits of {exposure['max_bits']:.2f} ({method}, "
            f"{exposure['num_samples']} samples)",
            exposure["mean_bits"],
            2,
        )
        row("secret ranked first among all candidates", exposure["ranked_first"], 3)
    extraction = results.get("extraction", {})
    if "secret" in extraction:
        secret = extraction["secret"]
        row("secret extracted exactly (greedy)", secret["exact_rate"], 3)
        row(f"secret symbols reproduced (of {secret['num_tokens']})", secret["mean_matched"], 2)
    if "text" in extraction:
        text = extraction["text"]
        row(
            f"next {text['num_tokens']} tokens after {text['prefix']} extracted exactly",
            text["exact_rate"],
            3,
        )
        row(f"tokens reproduced (of {text['num_tokens']})", text["mean_matched"], 2)
    return out


NOTE = (
    "IN models trained on the sample's secret; OUT models on the same text with other "
    "secrets, so IN − OUT is what training on the secret did (counterfactual). Intervals: "
    "bootstrap over samples."
)


def markdown(results: dict) -> str:
    """results.md's exposure and extraction section ("" without one)."""
    table = rows(results)
    if not table:
        return ""
    lines = ["", "## Secrets: exposure and extraction", ""]
    lines += ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in table]
    return "\n".join([*lines, "", NOTE, "", "![exposure](exposure.png)", ""]) + "\n"


def html_section(results: dict, png: str) -> str:
    """index.html's exposure and extraction section ("" without one)."""
    table = rows(results)
    if not table:
        return ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in table
    )
    return (
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        f'<p class="note">{html.escape(NOTE)}</p>{png}'
    )


def _side_means(values_SxN: np.ndarray, keep_SxN: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values_SxN = np.asarray(values_SxN, np.float64)
    with np.errstate(invalid="ignore"):
        on_in = np.where(keep_SxN, values_SxN, 0).sum(0) / keep_SxN.sum(0)
        on_out = np.where(~keep_SxN, values_SxN, 0).sum(0) / (~keep_SxN).sum(0)
    return on_in, on_out


def sample_columns(workdir: str | Path, results: dict, keep_SxN: np.ndarray) -> dict:
    """samples.csv's extra columns: per sample, mean exposure and extraction rate, IN and OUT."""
    arrays = load_measures(workdir)
    keep_SxN = np.asarray(keep_SxN, bool)
    num_samples = keep_SxN.shape[1]
    columns = {}
    if "exposure" in arrays:
        exposure_SxK = arrays["exposure"]
        num = exposure_SxK.shape[1]
        for side, values in zip(("in", "out"), _side_means(exposure_SxK, keep_SxN[:, :num])):
            column = np.full(num_samples, np.nan)
            column[:num] = values
            columns[f"exposure_{side}"] = column
    extraction = results.get("extraction", {})
    for kind in ("secret", "text"):
        if f"{kind}_extracted" in arrays and kind in extraction:
            exact_SxN = arrays[f"{kind}_extracted"] == extraction[kind]["num_tokens"]
            rates = _side_means(exact_SxN, keep_SxN)
            columns.update({f"{kind}_extracted_{s}": v for s, v in zip(("in", "out"), rates)})
    return columns


def plot_exposure(workdir: str | Path, results: dict, keep_SxN: np.ndarray, path: Path) -> bool:
    """A histogram of exposure for IN and OUT (model, sample) pairs; False if none was measured."""
    arrays = load_measures(workdir)
    if "exposure" not in arrays or "exposure" not in results:
        return False
    exposure_SxK = arrays["exposure"]
    keep_SxK = np.asarray(keep_SxN, bool)[:, : exposure_SxK.shape[1]]
    top = results["exposure"]["max_bits"]
    bins = np.linspace(min(0.0, float(exposure_SxK.min())), top + 1e-9, 28)
    fig = Figure(figsize=(6.4, 3.6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.hist(exposure_SxK[~keep_SxK], bins=bins, alpha=0.6, label="OUT (other secrets)")
    ax.hist(exposure_SxK[keep_SxK], bins=bins, alpha=0.6, label="IN (trained on it)")
    ax.axvline(top, color="k", lw=0.8, ls=":")
    ax.set_xlabel(f"exposure (bits; {top:.2f} = the secret ranks first)")
    ax.set_ylabel("(model, sample) pairs")
    ax.set_title(f"Secret exposure, {exposure_SxK.shape[1]} samples x {len(exposure_SxK)} models")
    ax.legend(loc="upper center")
    fig.tight_layout()
    fig.savefig(path)
    return True

"""How many samples are individually exposed, and how strongly: a summary against the null.

Legend: N samples, T targets.

Each number is paired with what no membership signal predicts, from the
exact Mann-Whitney null of every sample's own (members, non-members) sizes
(``samples.u_null_counts``), so a reader can tell leakage from chance.
"""

import math

import numpy as np
from scipy import stats

from seqmia_jax.report.samples import FDR, benjamini_hochberg, u_null_counts

STRONG_AUC = 0.9  # "strongly exposed" threshold reported next to its null expectation


def null_tail(m_N: np.ndarray, k_N: np.ndarray, auc: float) -> float:
    """Expected number of samples with per-sample AUC >= ``auc`` under no signal."""
    total = 0.0
    for (m, k), count in zip(*np.unique(np.stack([m_N, k_N], 1), axis=0, return_counts=True)):
        m, k = int(m), int(k)
        counts = u_null_counts(m, k)
        first = math.ceil(auc * m * k - 1e-9)
        total += count * float(sum(counts[first:])) / math.comb(m + k, m)
    return total


def exposure_summary(
    columns: dict[str, np.ndarray], labels_TxN: np.ndarray, cf_mem_N: np.ndarray | None = None
) -> dict:
    """JSON-ready summary of one attack's per-sample columns (``samples.vulnerability``)."""
    auc_N, p_N = columns["auc"], columns["pvalue"]
    labels_TxN = np.asarray(labels_TxN, dtype=bool)
    valid = ~np.isnan(auc_N)
    m_N, k_N = labels_TxN.sum(0)[valid], (~labels_TxN).sum(0)[valid]
    exposed_N = benjamini_hochberg(p_N, FDR)
    out = {
        "num_samples": int(valid.sum()),
        "exposed": int(exposed_N.sum()),
        "fdr": FDR,
        "exposed_samples": np.flatnonzero(exposed_N).tolist(),
        "member_targets": [int(m_N.min()), int(m_N.max())] if valid.any() else None,
        "nonmember_targets": [int(k_N.min()), int(k_N.max())] if valid.any() else None,
        "min_pvalue": min(
            (1 / math.comb(int(m + k), int(m)) for m, k in zip(m_N, k_N)), default=None
        ),
        "perfect": int((auc_N[valid] == 1.0).sum()),
        "perfect_null": null_tail(m_N, k_N, 1.0),
        "strong_auc": STRONG_AUC,
        "strong": int((auc_N[valid] >= STRONG_AUC).sum()),
        "strong_null": null_tail(m_N, k_N, STRONG_AUC),
        "auc_median": float(np.median(auc_N[valid])) if valid.any() else None,
        "auc_q90": float(np.quantile(auc_N[valid], 0.9)) if valid.any() else None,
        "cf_mem_spearman": None,
    }
    if cf_mem_N is not None:
        both = valid & ~np.isnan(cf_mem_N)
        if both.sum() > 2 and np.ptp(auc_N[both]) > 0 and np.ptp(cf_mem_N[both]) > 0:
            out["cf_mem_spearman"] = float(stats.spearmanr(auc_N[both], cf_mem_N[both])[0])
    return out


def _range(pair: list[int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}–{pair[1]}"


def exposure_sentences(summary: dict, spec: str) -> list[str]:
    """The summary in words (plain report text, spec in backticks)."""
    if not summary["num_samples"]:
        return [f"Under `{spec}`, no sample is a member of some targets and not of others."]
    sentences = [
        (
            f"Under `{spec}`, {summary['exposed']} of {summary['num_samples']} samples are "
            f"individually exposed: their own membership test passes Benjamini-Hochberg at a "
            f"{100 * summary['fdr']:.0f}% false-discovery rate. Each sample is a member of "
            f"{_range(summary['member_targets'])} targets and a non-member of "
            f"{_range(summary['nonmember_targets'])}, so its smallest possible p-value is "
            f"{summary['min_pvalue']:.2g}."
        ),
        (
            f"{summary['perfect']} samples separate perfectly (AUC 1: every member score above "
            f"every non-member score), where no signal predicts {summary['perfect_null']:.2g}; "
            f"{summary['strong']} reach AUC ≥ {summary['strong_auc']} against "
            f"{summary['strong_null']:.3g} predicted. The median per-sample AUC is "
            f"{summary['auc_median']:.3f} (90th percentile {summary['auc_q90']:.3f})."
        ),
    ]
    if summary["cf_mem_spearman"] is not None:
        sentences.append(
            "Per-sample AUC and counterfactual memorization (mean OUT minus mean IN loss) "
            f"have Spearman correlation {summary['cf_mem_spearman']:.2f}."
        )
    return sentences

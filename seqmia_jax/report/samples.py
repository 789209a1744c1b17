"""Per-sample vulnerability: each sample's own membership test, and ``results/samples.csv``.

Legend: S shadow models, N samples, L positions, T targets, A attacks.

Every sample is a member of about half of the T targets and a non-member of
the rest, so an attack gives each sample its own small ROC: its T scores,
labelled by ``keep[t, n]``. Its AUC is the Mann-Whitney U of the m member
scores against the k non-member scores, divided by m k (ties count one half).
Under no membership signal the scores of one sample are exchangeable across
its targets, so U follows the exact Mann-Whitney null and the one-sided
p-value P(U_null >= U) is exact (ties count against the sample: U is rounded
down). With m = k = 8 the smallest possible p is 1 / C(16, 8) = 1 / 12870.

A sample is *individually exposed* under an attack when its p-value passes the
Benjamini-Hochberg procedure at a 5% false-discovery rate over the N samples:
of the samples so named, at most 5% are expected to be false discoveries.

Schema of ``samples.csv`` (UTF-8, one row per sample in index order, a header
row; spec-named columns hold the attack spec verbatim, so a spec with a comma
is quoted). Read columns by name: later issues append columns (exposure,
extraction, per-sample epsilon) after these; ``SAMPLE_COLUMNS`` and
``ATTACK_COLUMNS`` describe each one.

  sample, in_count, in_targets, out_targets, cf_mem_loss, snippet,
  then for each attack spec, in results.json order:
  auc[spec], pvalue[spec], tpr0[spec], rank_in[spec]

Empty cells are undefined values (a sample with no member target has no AUC).
"""

import csv
import functools
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy import stats

from seqmia_jax.attacks.lira import sequence_mean

SAMPLE_COLUMNS: dict[str, str] = {
    "sample": "index of the sample in the audit pool (row of tokens_NxL and of membership.npy)",
    "in_count": "number of the S models trained on the sample",
    "in_targets": "targets whose training set held the sample (members in its own test)",
    "out_targets": "targets whose training set did not hold it (non-members in its test)",
    "cf_mem_loss": "counterfactual memorization (Zhang et al. 2021) on the loss: mean over the "
    "OUT models minus mean over the IN models of the sample's mean per-token loss",
    "snippet": "the decoded text window (newline as ⏎, tab as →); empty for images",
}
ATTACK_COLUMNS: dict[str, str] = {
    "auc": "the sample's own AUC: its member-target scores against its non-member-target "
    "scores (0.5 = no signal, 1 = every member score above every non-member score)",
    "pvalue": "exact one-sided Mann-Whitney p-value of that AUC under no membership signal",
    "tpr0": "TPR at FPR 0 across the targets: share of member targets scoring above every "
    "non-member target",
    "rank_in": "mean rank of the sample's score among all N samples of a target, over the "
    "targets it is a member of (1 = the highest score)",
}
FDR = 0.05  # false-discovery rate of "individually exposed"


def header(specs: Sequence[str], extra: Sequence[str] = ()) -> list[str]:
    """The column names of samples.csv for attacks ``specs`` and appended ``extra`` columns."""
    per_attack = [f"{metric}[{spec}]" for spec in specs for metric in ATTACK_COLUMNS]
    return [*SAMPLE_COLUMNS, *per_attack, *extra]


def per_sample_auc(scores_TxN: np.ndarray, labels_TxN: np.ndarray) -> np.ndarray:
    """auc_N: each sample's AUC over the targets (NaN without members or non-members)."""
    u_N, m_N, k_N = _u_statistic(scores_TxN, labels_TxN)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((m_N > 0) & (k_N > 0), u_N / (m_N * k_N), np.nan)


def _u_statistic(scores_TxN, labels_TxN) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U_N, m_N, k_N): Mann-Whitney U of the members, from mid-ranks, and the side sizes."""
    labels_TxN = np.asarray(labels_TxN, dtype=bool)
    ranks_TxN = stats.rankdata(np.asarray(scores_TxN, dtype=np.float64), axis=0)
    m_N, k_N = labels_TxN.sum(0), (~labels_TxN).sum(0)
    u_N = np.where(labels_TxN, ranks_TxN, 0.0).sum(0) - m_N * (m_N + 1) / 2.0
    return u_N, m_N, k_N


@functools.cache
def u_null_counts(m: int, k: int) -> np.ndarray:
    """Exact counts of U = 0 .. m k over the C(m + k, m) equally likely labellings (int objects).

    They are the coefficients of the Gaussian binomial [m + k, m]_q
    = prod_{i=1..m} (1 - q^(k+i)) / (1 - q^i), built in exact integers since
    C(64, 32) already exceeds float64's exact range.
    """
    counts = np.zeros(m * k + 1, dtype=object)
    counts[0] = 1
    for i in range(1, m + 1):
        counts[k + i :] = counts[k + i :] - counts[: -(k + i)]  # times (1 - q^(k+i))
        for r in range(i):  # divided by (1 - q^i): a cumulative sum with stride i
            counts[r::i] = np.cumsum(counts[r::i])
    return counts


def per_sample_pvalue(scores_TxN: np.ndarray, labels_TxN: np.ndarray) -> np.ndarray:
    """p_N: exact one-sided P(U_null >= U) of each sample (NaN without both sides)."""
    u_N, m_N, k_N = _u_statistic(scores_TxN, labels_TxN)
    p_N = np.full(u_N.shape, np.nan)
    for m, k in {(int(m), int(k)) for m, k in zip(m_N, k_N) if m > 0 and k > 0}:
        counts = u_null_counts(m, k)
        tail = np.cumsum(counts[::-1])[::-1]  # tail[u] = #labellings with U >= u
        total = math.comb(m + k, m)
        where = (m_N == m) & (k_N == k)
        p_N[where] = [float(tail[math.floor(u + 1e-9)] / total) for u in u_N[where]]
    return p_N


def per_sample_tpr0(scores_TxN: np.ndarray, labels_TxN: np.ndarray) -> np.ndarray:
    """tpr0_N: share of a sample's member targets scoring above all its non-member targets."""
    labels_TxN = np.asarray(labels_TxN, dtype=bool)
    top_out_N = np.where(labels_TxN, -np.inf, scores_TxN).max(0)
    above_N = (labels_TxN & (scores_TxN > top_out_N)).sum(0)
    m_N, k_N = labels_TxN.sum(0), (~labels_TxN).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((m_N > 0) & (k_N > 0), above_N / m_N, np.nan)


def mean_rank_in(scores_TxN: np.ndarray, labels_TxN: np.ndarray) -> np.ndarray:
    """rank_N: mean over member targets of the sample's rank among N (1 = highest, ties averaged)."""
    labels_TxN = np.asarray(labels_TxN, dtype=bool)
    ranks_TxN = stats.rankdata(-np.asarray(scores_TxN, dtype=np.float64), axis=1)
    m_N = labels_TxN.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(m_N > 0, np.where(labels_TxN, ranks_TxN, 0.0).sum(0) / m_N, np.nan)


def counterfactual_memorization(
    loss_SxNxL: np.ndarray, keep_SxN: np.ndarray, mask_NxL: np.ndarray | None = None
) -> np.ndarray:
    """cf_N: mean OUT-model loss minus mean IN-model loss of each sample (its mean over positions).

    Zhang et al. (2021) define counterfactual memorization on accuracy; on the
    loss it is positive when training on the sample lowers its loss. Uses all
    S models (no target is held out: this describes the data, not an attack).
    """
    keep_SxN = np.asarray(keep_SxN, dtype=bool)
    loss_SxN = sequence_mean(loss_SxNxL, mask_NxL)
    m_N, k_N = keep_SxN.sum(0), (~keep_SxN).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_in_N = np.where(keep_SxN, loss_SxN, 0.0).sum(0) / m_N
        mean_out_N = np.where(keep_SxN, 0.0, loss_SxN).sum(0) / k_N
    return np.where((m_N > 0) & (k_N > 0), mean_out_N - mean_in_N, np.nan)


def benjamini_hochberg(p_N: np.ndarray, rate: float = FDR) -> np.ndarray:
    """Bool N: the discoveries of the Benjamini-Hochberg step-up procedure (NaN p: never)."""
    p_N = np.asarray(p_N, dtype=np.float64)
    valid = np.flatnonzero(~np.isnan(p_N))
    order = valid[np.argsort(p_N[valid], kind="stable")]
    passed = p_N[order] <= rate * np.arange(1, len(order) + 1) / max(len(order), 1)
    out = np.zeros(p_N.shape, dtype=bool)
    if passed.any():
        out[order[: np.flatnonzero(passed)[-1] + 1]] = True
    return out


def vulnerability(scores_TxN: np.ndarray, labels_TxN: np.ndarray) -> dict[str, np.ndarray]:
    """The per-attack columns of one attack: metric name (``ATTACK_COLUMNS``) -> values N."""
    return {
        "auc": per_sample_auc(scores_TxN, labels_TxN),
        "pvalue": per_sample_pvalue(scores_TxN, labels_TxN),
        "tpr0": per_sample_tpr0(scores_TxN, labels_TxN),
        "rank_in": mean_rank_in(scores_TxN, labels_TxN),
    }


def snippet(text: str) -> str:
    """A one-line rendering of a text window: newline as ⏎, tab as →, other controls as symbols."""
    shown = text.replace("\n", "⏎").replace("\t", "→")
    return "".join(chr(0x2400 + ord(c)) if ord(c) < 0x20 else c for c in shown)


def sample_columns(
    *,
    keep_SxN: np.ndarray,
    labels_TxN: np.ndarray,
    cf_mem_N: np.ndarray,
    snippets: Sequence[str],
    per_attack: Mapping[str, Mapping[str, np.ndarray]],
    extra: Mapping[str, Sequence] | None = None,
) -> dict[str, Sequence]:
    """Every column of samples.csv, in file order (``header(per_attack, extra)``)."""
    labels_TxN = np.asarray(labels_TxN, dtype=bool)
    columns: dict[str, Sequence] = {
        "sample": np.arange(keep_SxN.shape[1]),
        "in_count": np.asarray(keep_SxN, dtype=bool).sum(0),
        "in_targets": labels_TxN.sum(0),
        "out_targets": (~labels_TxN).sum(0),
        "cf_mem_loss": cf_mem_N,
        "snippet": list(snippets),
    }
    for spec, values in per_attack.items():
        columns.update({f"{metric}[{spec}]": values[metric] for metric in ATTACK_COLUMNS})
    columns.update(extra or {})
    return columns


def _cell(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    return "" if not math.isfinite(value) else format(value, ".6g")


def write_samples_csv(path: str | os.PathLike, columns: Mapping[str, Sequence]) -> None:
    """Write ``columns`` (name -> N values) as samples.csv; floats to 6 significant digits."""
    lengths = {len(values) for values in columns.values()}
    if len(lengths) != 1:
        raise ValueError(f"samples.csv columns differ in length: {sorted(lengths)}")
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(columns))
        for row in zip(*columns.values()):
            writer.writerow([_cell(value) for value in row])

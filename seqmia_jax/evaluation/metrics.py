"""ROC metrics for membership inference, with bootstrap confidence intervals.

Legend: T targets, N samples, M = T * N pooled (target, sample) pairs,
B bootstrap replicates, G distinct score values.

Scores of all targets are pooled into one ROC: the labels are
``keep_SxN[targets]`` (T x N, True = member) and the scores T x N, higher =
more likely a member. All functions are pure numpy.

TPR at FPR f is the largest TPR among the ROC points whose FPR is at most f
(the curve starts at (0, 0), so it is always defined). A point is *resolved*
only if there are at least 1 / f negatives: below that, the first false
positive already exceeds f and the number says nothing about FPR f.

Bootstrap: percentile 95% intervals from ``num_bootstrap`` replicates. The
scores are sorted once; a replicate is a vector of integer resampling weights
over the sorted points, so each replicate costs O(M) (a weighted cumulative
sum per distinct score) and never re-sorts. Two resampling units:
- ``"sample"`` (default): resample the N audit samples with replacement; a
  drawn sample brings its scores under every target. The scores of one sample
  are correlated across targets (a vulnerable sample is vulnerable for all of
  them), so this is the honest unit when T > 1.
- ``"pair"``: resample the M (target, sample) pairs independently.
With one target both are the same.
"""

from collections.abc import Sequence

import numpy as np

DEFAULT_FPRS: tuple[float, ...] = (1e-2, 1e-3, 1e-4)
_CHUNK_ELEMENTS = 1 << 22  # replicates are processed in blocks of about this many weights


def fpr_key(fpr: float) -> str:
    """The JSON key of an FPR level: 1e-3 -> "0.001"."""
    return format(fpr, "g")


def is_resolved(num_negatives: int, fpr: float) -> bool:
    """True if ``num_negatives`` >= 1 / fpr (tolerating float rounding of 1 / fpr)."""
    return num_negatives * fpr >= 1.0 - 1e-9


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores_M = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels_M = np.asarray(labels).reshape(-1)
    if scores_M.shape != labels_M.shape:
        raise ValueError(f"scores ({scores_M.size}) and labels ({labels_M.size}) differ in size")
    if np.isnan(scores_M).any():
        raise ValueError(f"{int(np.isnan(scores_M).sum())} scores are NaN")
    labels_M = labels_M.astype(bool)
    num_pos = int(labels_M.sum())
    if num_pos == 0 or num_pos == labels_M.size:
        raise ValueError("an ROC needs both members and non-members")
    return scores_M, labels_M


def roc_curve(scores, labels, order=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC at every distinct score, like ``sklearn.metrics.roc_curve(drop_intermediate=False)``.

    ``order``: the flattened scores' descending stable argsort, if already known.

    Returns:
      (fpr, tpr, thresholds), each of length G + 1; the first point is (0, 0)
      at threshold +inf, and tied scores form one point.
    """
    scores_M, labels_M = _check(scores, labels)
    order_M = np.argsort(-scores_M, kind="stable") if order is None else order
    sorted_M = scores_M[order_M]
    last_G = np.flatnonzero(np.r_[sorted_M[1:] != sorted_M[:-1], True])
    tp_G = np.cumsum(labels_M[order_M])[last_G]
    fp_G = (last_G + 1) - tp_G
    fpr = np.r_[0.0, fp_G / fp_G[-1]]
    tpr = np.r_[0.0, tp_G / tp_G[-1]]
    return fpr, tpr, np.r_[np.inf, sorted_M[last_G]]


def auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under an ROC curve by the trapezoidal rule."""
    return float(np.trapezoid(tpr, fpr))


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, max_fpr: float) -> float:
    """The largest TPR whose FPR is at most ``max_fpr``."""
    return float(np.max(tpr[fpr <= max_fpr]))


class _SortedScores:
    """Scores sorted once (descending), split into members (P) and non-members (Q).

    For every non-member it keeps how many members score strictly higher and
    how many score at least as high, so that weighted replicates need only
    cumulative sums and gathers, never a sort.
    """

    def __init__(self, scores_M: np.ndarray, labels_M: np.ndarray):
        order_M = np.argsort(-scores_M, kind="stable")
        self.order_M = order_M
        sorted_labels_M = labels_M[order_M]
        self.pos_P = order_M[sorted_labels_M]  # original indices, by descending score
        self.neg_Q = order_M[~sorted_labels_M]
        neg_desc_P = -scores_M[self.pos_P]  # ascending
        neg_desc_Q = -scores_M[self.neg_Q]
        self.above_Q = np.searchsorted(neg_desc_P, neg_desc_Q, side="left")
        self.at_or_above_Q = np.searchsorted(neg_desc_P, neg_desc_Q, side="right")
        self.has_ties = bool(np.any(self.above_Q != self.at_or_above_Q))

    def curves(
        self, pos_weights_BxP: np.ndarray, neg_weights_BxQ: np.ndarray, fprs: Sequence[float]
    ) -> np.ndarray:
        """AUC and TPR@fprs of B weighted replicates: a B x (1 + len(fprs)) array.

        Weights are resampling counts of the members (in ``pos_P`` order) and
        non-members (``neg_Q`` order). A replicate without members or without
        non-members gives NaN.
        """
        # Integer counts keep the sums exact; only the final ratios are floats.
        size = pos_weights_BxP.shape[0]
        tp_Bx1P = np.zeros((size, pos_weights_BxP.shape[1] + 1), dtype=pos_weights_BxP.dtype)
        np.cumsum(pos_weights_BxP, axis=1, dtype=tp_Bx1P.dtype, out=tp_Bx1P[:, 1:])
        fp_BxQ = np.cumsum(neg_weights_BxQ, axis=1, dtype=neg_weights_BxQ.dtype)
        num_pos_B = tp_Bx1P[:, -1].astype(np.float64)
        num_neg_B = fp_BxQ[:, -1].astype(np.float64)
        result = np.full((size, 1 + len(fprs)), np.nan)
        # Each non-member beats the members above it and ties half of those at
        # its score (the trapezoidal rule over tie blocks, as sklearn).
        tp_above_BxQ = np.take(tp_Bx1P, self.above_Q, axis=1)
        if self.has_ties:
            tp_above_BxQ += np.take(tp_Bx1P, self.at_or_above_Q, axis=1)
        else:
            tp_above_BxQ *= 2
        twice_wins_B = np.einsum("bq,bq->b", neg_weights_BxQ, tp_above_BxQ, dtype=np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):
            result[:, 0] = 0.5 * twice_wins_B / (num_pos_B * num_neg_B)
        for b in range(size):
            if num_pos_B[b] == 0 or num_neg_B[b] == 0:
                result[b] = np.nan
                continue
            fpr_Q = fp_BxQ[b] / num_neg_B[b]
            for k, f in enumerate(fprs):
                # The first non-member that pushes FPR above f excludes its whole
                # tie block; the best point keeps only members strictly above it.
                first = np.searchsorted(fpr_Q, f, side="right")
                above = self.above_Q[first] if first < fp_BxQ.shape[1] else -1
                result[b, 1 + k] = tp_Bx1P[b, above] / num_pos_B[b]
        return result


def bootstrap(
    scores_TxN: np.ndarray,
    labels_TxN: np.ndarray,
    *,
    fprs: Sequence[float] = DEFAULT_FPRS,
    num_bootstrap: int = 200,
    seed: int = 0,
    unit: str = "sample",
    presorted: "_SortedScores | None" = None,
) -> np.ndarray:
    """Bootstrap replicates of AUC and TPR@fprs: a B x (1 + len(fprs)) array (NaN rows possible).

    Args:
      scores_TxN, labels_TxN: pooled scores and membership labels; a 1-D
        array is one target.
      unit: ``"sample"`` resamples audit samples (columns), ``"pair"`` the
        (target, sample) pairs; see the module docstring.
    """
    scores_TxN = np.atleast_2d(np.asarray(scores_TxN, dtype=np.float64))
    labels_TxN = np.atleast_2d(labels_TxN)
    scores_M, labels_M = _check(scores_TxN, labels_TxN)
    num_samples = scores_TxN.shape[1]
    if unit not in ("sample", "pair"):
        raise ValueError(f"bootstrap unit must be 'sample' or 'pair', got {unit!r}")
    rng = np.random.default_rng(seed)
    sorted_scores = _SortedScores(scores_M, labels_M) if presorted is None else presorted
    num_pairs = scores_M.size
    num_pos = sorted_scores.pos_P.size
    sample_of_pos_P = (sorted_scores.pos_P % num_samples).astype(np.intp)  # pair m = t * N + n
    sample_of_neg_Q = (sorted_scores.neg_Q % num_samples).astype(np.intp)
    block = max(1, _CHUNK_ELEMENTS // num_pairs)
    results = []
    for start in range(0, num_bootstrap, block):
        size = min(block, num_bootstrap - start)
        if unit == "pair":
            # Draws are exchangeable, so draw the counts directly in sorted order.
            counts_BxM = _row_bincount(
                rng.integers(0, num_pairs, size=(size, num_pairs), dtype=np.int32), num_pairs
            )
            pos_BxP, neg_BxQ = counts_BxM[:, :num_pos], counts_BxM[:, num_pos:]
        else:
            counts_BxN = _row_bincount(
                rng.integers(0, num_samples, size=(size, num_samples), dtype=np.int32), num_samples
            )
            pos_BxP = np.take(counts_BxN, sample_of_pos_P, axis=1)
            neg_BxQ = np.take(counts_BxN, sample_of_neg_Q, axis=1)
        results.append(sorted_scores.curves(pos_BxP, neg_BxQ, fprs))
    return np.concatenate(results, axis=0)


def _row_bincount(draws_BxK: np.ndarray, num_bins: int) -> np.ndarray:
    """Per-row bincount of indices in [0, num_bins)."""
    size = draws_BxK.shape[0]
    offsets = (np.arange(size, dtype=np.int64) * num_bins)[:, None]
    counts = np.bincount((draws_BxK + offsets).ravel(), minlength=size * num_bins)
    return counts.astype(np.int32).reshape(size, num_bins)


def _interval(values_B: np.ndarray) -> list[float]:
    values_B = values_B[~np.isnan(values_B)]
    if values_B.size == 0:
        return [float("nan"), float("nan")]
    lo, hi = np.percentile(values_B, [2.5, 97.5])
    return [float(lo), float(hi)]


def _spread(values_T: np.ndarray) -> dict[str, float]:
    values_T = values_T[~np.isnan(values_T)]
    if values_T.size == 0:
        return {k: float("nan") for k in ("mean", "std", "min", "max")}
    return {
        "mean": float(values_T.mean()),
        "std": float(values_T.std()),
        "min": float(values_T.min()),
        "max": float(values_T.max()),
    }


def per_target_metrics(
    scores_TxN: np.ndarray, labels_TxN: np.ndarray, fprs: Sequence[float] = (1e-3,)
) -> np.ndarray:
    """AUC and TPR@fprs of each target's own ROC: a T x (1 + len(fprs)) array."""
    rows = []
    for scores_N, labels_N in zip(np.atleast_2d(scores_TxN), np.atleast_2d(labels_TxN)):
        scores_N, labels_N = np.asarray(scores_N, dtype=np.float64), labels_N.astype(bool)
        sorted_scores = _SortedScores(scores_N, labels_N)
        ones_1xP = np.ones((1, sorted_scores.pos_P.size), dtype=np.int32)
        ones_1xQ = np.ones((1, sorted_scores.neg_Q.size), dtype=np.int32)
        rows.append(sorted_scores.curves(ones_1xP, ones_1xQ, fprs)[0])
    return np.stack(rows)


def evaluate(
    scores_TxN: np.ndarray,
    labels_TxN: np.ndarray,
    *,
    fprs: Sequence[float] = DEFAULT_FPRS,
    num_bootstrap: int = 200,
    seed: int = 0,
    unit: str = "sample",
    spread_fpr: float = 1e-3,
) -> dict:
    """Pooled ROC metrics with bootstrap CIs and the per-target spread, as a JSON-ready dict.

    Returns:
      {"auc", "auc_ci", "num_positives", "num_negatives",
       "tpr_at_fpr": {"0.01": {"tpr", "ci", "num_negatives", "false_positives",
       "resolved"}, ...}, "per_target": {"auc": {mean, std, min, max},
       "tpr@0.001": {...}}}. CIs are [NaN, NaN] when ``num_bootstrap`` is 0.
    """
    scores_TxN = np.atleast_2d(np.asarray(scores_TxN, dtype=np.float64))
    labels_TxN = np.atleast_2d(np.asarray(labels_TxN, dtype=bool))
    scores_M, labels_M = _check(scores_TxN, labels_TxN)
    sorted_scores = _SortedScores(scores_M, labels_M)  # one sort for the ROC and the bootstrap
    fpr, tpr, _ = roc_curve(scores_M, labels_M, sorted_scores.order_M)
    num_neg = int((~labels_M).sum())
    if num_bootstrap > 0:
        reps_BxK = bootstrap(
            scores_TxN,
            labels_TxN,
            fprs=fprs,
            num_bootstrap=num_bootstrap,
            seed=seed,
            unit=unit,
            presorted=sorted_scores,
        )
    else:
        reps_BxK = np.full((1, 1 + len(fprs)), np.nan)
    result = {
        "auc": auc(fpr, tpr),
        "auc_ci": _interval(reps_BxK[:, 0]),
        "num_positives": int(labels_M.sum()),
        "num_negatives": num_neg,
        "tpr_at_fpr": {},
    }
    for k, f in enumerate(fprs):
        within = fpr <= f
        result["tpr_at_fpr"][fpr_key(f)] = {
            "tpr": float(tpr[within].max()),
            "ci": _interval(reps_BxK[:, 1 + k]),
            "num_negatives": num_neg,
            "false_positives": int(np.rint(fpr[within].max() * num_neg)),
            "resolved": is_resolved(num_neg, f),
        }
    per_target_TxK = per_target_metrics(scores_TxN, labels_TxN, (spread_fpr,))
    result["per_target"] = {
        "auc": _spread(per_target_TxK[:, 0]),
        f"tpr@{fpr_key(spread_fpr)}": _spread(per_target_TxK[:, 1]),
    }
    return result

"""Prototype behind docs/study.md, hypothesis 'estimators': per-token shifts with
empirical-Bayes (James-Stein) shrinkage towards the sample's mean shift, or towards
a global shift profile fitted on the OUT level, scored with a shared (pooled)
per-position variance. A numpy re-implementation, naive leave-one-out over the
first 16 targets with the same equal-count rule as the library.

    python -m experiments.study.eb_shift_prototype runs/kjv_gpt logit

The loss statistic is negated first, as members' logit is higher; the scores are
likelihood ratios with fitted signed shifts, so they do not depend on that sign.
"""

import sys

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

NAMES = ("mean_fixed", "eb_fixed", "raw_fixed", "eb_persample_scale", "eb0.5", "eb1_glob")


def tpr_at(s, y, f):
    """The largest TPR whose FPR is at most ``f``."""
    fpr, tpr, _ = roc_curve(y.ravel(), s.ravel())
    return tpr[fpr <= f].max()


def eb_shift_scores(
    X: np.ndarray, keep: np.ndarray, num_targets: int = 16, seed: int = 0
) -> tuple[dict[str, np.ndarray], np.ndarray, float]:
    """Leave-one-out scores of every estimator for the first ``num_targets`` models.

    ``X`` is the statistic S x N x L (float64, higher for members), ``keep`` the
    membership S x N. Returns (scores T x N per estimator, labels T x N, the
    first target's shrinkage factor lambda).
    """
    S, N, L = X.shape
    rng = np.random.default_rng(seed)
    scores = {k: [] for k in NAMES}
    labels = []
    first_lam = None
    T = min(S, num_targets)
    for t in range(T):
        others = np.array([s for s in range(S) if s != t])
        Xo, ko = X[others], keep[others]
        # equalize: drop one random shadow from the larger side, per sample
        w_in = ko.astype(float)
        w_out = 1 - w_in
        k_in, k_out = w_in.sum(0), w_out.sum(0)
        for n in range(N):
            if k_in[n] > k_out[n]:
                cand = np.flatnonzero(ko[:, n])
                w_in[rng.choice(cand), n] = 0
            elif k_out[n] > k_in[n]:
                cand = np.flatnonzero(~ko[:, n])
                w_out[rng.choice(cand), n] = 0
        k_in, k_out = w_in.sum(0), w_out.sum(0)
        mi = np.einsum("sn,snl->nl", w_in, Xo) / k_in[:, None]
        mo = np.einsum("sn,snl->nl", w_out, Xo) / k_out[:, None]
        ri = (Xo - mi) * w_in[..., None]
        ro = (Xo - mo) * w_out[..., None]
        # per sample per token, tied
        v_nl = ((ri**2).sum(0) + (ro**2).sum(0)) / (k_in + k_out - 2)[:, None]
        v_l = v_nl.mean(0)  # global per position
        v_n = v_nl.mean(1)  # per sample
        d = mi - mo
        noise = v_nl * (1 / k_in + 1 / k_out)[:, None]
        dbar = d.mean(1, keepdims=True)
        within = ((d - dbar) ** 2).mean()
        lam = max(0.0, 1 - noise.mean() / within)
        x = X[t]

        def llr(dh, v, x=x, mo=mo):
            return (dh * (x - mo - dh / 2) / v).sum(1)

        vpred = v_l[None] * (1 + 1 / k_out[:, None])
        scores["mean_fixed"].append(llr(np.broadcast_to(dbar, d.shape), vpred))
        scores["raw_fixed"].append(llr(d, vpred))
        scores["eb_fixed"].append(llr(dbar + lam * (d - dbar), vpred))
        scores["eb0.5"].append(llr(dbar + 0.5 * (d - dbar), vpred))
        vs = v_l[None] * (v_n / v_n.mean())[:, None] * (1 + 1 / k_out[:, None])
        scores["eb_persample_scale"].append(llr(dbar + lam * (d - dbar), vs))
        # global shift profile: the shift as a linear function of the OUT level, fitted on
        # all samples
        A = np.stack([np.ones(N * L), mo.ravel()], 1)
        coef = np.linalg.lstsq(A, d.ravel(), rcond=None)[0]
        dg = (A @ coef).reshape(N, L)
        scores["eb1_glob"].append(llr(dg + lam * (d - dg), vpred))
        labels.append(keep[t])
        if t == 0:
            first_lam = lam
    return {k: np.array(v) for k, v in scores.items()}, np.array(labels), first_lam


def summary_lines(scores: dict[str, np.ndarray], y: np.ndarray) -> list[str]:
    """One line per estimator: AUC and TPR at FPR 1e-2 and 1e-3, pooled over targets."""
    return [
        f"{k:22s} auc {roc_auc_score(y.ravel(), s.ravel()):.3f} "
        f"tpr@1e-2 {tpr_at(s, y, 1e-2):.3f} tpr@1e-3 {tpr_at(s, y, 1e-3):.3f}"
        for k, s in scores.items()
    ]


def main(argv: list[str]) -> None:
    wd = argv[0]
    stat = argv[1] if len(argv) > 1 else "logit"
    X = np.load(f"{wd}/stats/{stat}.npy").astype(np.float64)  # S N L
    if stat == "loss":
        X = -X
    keep = np.load(f"{wd}/membership.npy")
    scores, y, lam = eb_shift_scores(X, keep)
    print("lambda", lam)
    for line in summary_lines(scores, y):
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])

"""Prototype behind docs/study.md, hypothesis 'estimators': per-token shifts with
empirical-Bayes (James-Stein) shrinkage towards the sample's mean shift, or towards
a global shift profile fitted on the OUT level, scored with a shared (pooled)
per-position variance. A numpy re-implementation, naive leave-one-out over the
first 16 targets with the same equal-count rule as the library.

    python docs/scripts/eb_shift_prototype.py runs/kjv_gpt logit
"""

import sys

import numpy as np
from sklearn.metrics import roc_curve

wd = sys.argv[1]
stat = sys.argv[2] if len(sys.argv) > 2 else "logit"
X = np.load(f"{wd}/stats/{stat}.npy").astype(np.float64)  # S N L
if stat == "loss":
    X = -X
keep = np.load(f"{wd}/membership.npy")
S, N, L = X.shape
rng = np.random.default_rng(0)


def tpr_at(s, y, f):
    fpr, tpr, _ = roc_curve(y.ravel(), s.ravel())
    return tpr[fpr <= f].max()


scores = {
    k: []
    for k in ["mean_fixed", "eb_fixed", "raw_fixed", "eb_persample_scale", "eb0.5", "eb1_glob"]
}
labels = []
T = min(S, 16)
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
    v_nl = ((ri**2).sum(0) + (ro**2).sum(0)) / (k_in + k_out - 2)[
        :, None
    ]  # per sample per token, tied
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
    # global shift profile: d_glob(l-level) — shift as a linear function of OUT level, fitted on all samples
    A = np.stack([np.ones(N * L), mo.ravel()], 1)
    coef = np.linalg.lstsq(A, d.ravel(), rcond=None)[0]
    dg = (A @ coef).reshape(N, L)
    scores["eb1_glob"].append(llr(dg + lam * (d - dg), vpred))
    labels.append(keep[t])
    if t == 0:
        print("lambda", lam)
y = np.array(labels)
for k, v in scores.items():
    s = np.array(v)
    from sklearn.metrics import roc_auc_score

    print(
        f"{k:22s} auc {roc_auc_score(y.ravel(), s.ravel()):.3f} tpr@1e-2 {tpr_at(s, y, 1e-2):.3f} tpr@1e-3 {tpr_at(s, y, 1e-3):.3f}"
    )

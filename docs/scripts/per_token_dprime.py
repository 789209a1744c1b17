"""Prototype behind docs/study.md H6b: realized d' of per-token matched filters.

For every model t as the target, per-token weights are fitted on the other
S - 1 models (IN - OUT shift over a variance) and the target's centred
statistic is projected on them; the per-sample d' of that projection
(members against non-members, over all t) measures how much membership
signal each weighting keeps, before any LiRA calibration:

- ``mean``: equal weights (LiRA on the sequence mean);
- ``profile``: the shift and variance of the token's difficulty bin (16 bins,
  the ``profile`` attack);
- ``raw``: each token's own shift over the bin variance;
- ``raw_v``: each token's own shift over its own variance;
- ``eb``: per-bin James-Stein shrinkage of the shifts towards the bin shift;
- ``eb_token``: per-token normal-prior shrinkage (prior from the bin), over
  the mean of the token's and the bin's variance.

    python docs/scripts/per_token_dprime.py runs/kjv_gpt logit [K]

K keeps the first K/2 complementary pairs (default: all models).
"""

import sys

import numpy as np

from seqmia_jax import membership

BINS = 16


def main(workdir: str, stat: str, num_models: int | None) -> None:
    x_all = np.load(f"{workdir}/stats/{stat}.npy").astype(np.float64)
    keep = np.load(f"{workdir}/membership.npy")
    if num_models:
        chosen = membership.complementary_pairs(keep)[: num_models // 2].ravel()
        x_all, keep = x_all[chosen], keep[chosen]
    num_models, num_samples, _ = x_all.shape
    names = ("mean", "profile", "raw", "raw_v", "eb", "eb_token")
    proj = {k: np.zeros((num_models, num_samples)) for k in names}
    for t in range(num_models):
        others = np.arange(num_models) != t
        x, on = x_all[others], keep[others][..., None]
        k_in, k_out = on.sum(0) * 1.0, (~on).sum(0) * 1.0
        mean_in, mean_out = (x * on).sum(0) / k_in, (x * ~on).sum(0) / k_out
        var = 0.5 * (
            ((x - mean_in) ** 2 * on).sum(0) / (k_in - 1)
            + ((x - mean_out) ** 2 * ~on).sum(0) / (k_out - 1)
        )
        shift = mean_in - mean_out
        level = (x.sum(0)) / (k_in + k_out)
        edges = np.quantile(level, np.linspace(0, 1, BINS + 1)[1:-1])
        b = np.searchsorted(edges, level, side="right")

        def per_bin(v, b=b):
            return (np.bincount(b.ravel(), v.ravel(), BINS) / np.bincount(b.ravel(), None, BINS))[b]

        shift_g, var_g = per_bin(shift), per_bin(var)
        noise = var * (1 / k_in + 1 / k_out)
        spread_g = np.maximum(per_bin((shift - shift_g) ** 2) - per_bin(noise), 1e-12)
        lam_g = np.clip(spread_g / (spread_g + per_bin(noise)), 0, 1)
        post = shift_g + spread_g / (spread_g + noise) * (shift - shift_g)
        weights = {
            "mean": np.ones_like(shift),
            "profile": shift_g / var_g,
            "raw": shift / var_g,
            "raw_v": shift / var,
            "eb": (shift_g + lam_g * (shift - shift_g)) / var_g,
            "eb_token": post / (0.5 * (var + var_g)),
        }
        centred = x_all[t] - level
        for k, w in weights.items():
            proj[k][t] = (w * centred).mean(1)
    print(f"{workdir} {stat}: {num_models} models, {num_samples} samples")
    for k in names:
        a, on = proj[k], keep
        m_in, m_out = (a * on).sum(0) / on.sum(0), (a * ~on).sum(0) / (~on).sum(0)
        var = 0.5 * (
            ((a - m_in) ** 2 * on).sum(0) / (on.sum(0) - 1)
            + ((a - m_out) ** 2 * ~on).sum(0) / ((~on).sum(0) - 1)
        )
        dprime = np.abs(m_in - m_out) / np.sqrt(var)
        print(
            f"  {k:9s} median d' {np.median(dprime):.2f}  10% quantile {np.quantile(dprime, 0.1):.2f}"
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None)

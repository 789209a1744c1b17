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

    python -m experiments.study.per_token_dprime runs/kjv_gpt logit [K]

K keeps the first K/2 complementary pairs (default: all models).
"""

import sys

import numpy as np

from seqmia_jax import membership

BINS = 16


NAMES = ("mean", "profile", "raw", "raw_v", "eb", "eb_token")


def projections(x_all: np.ndarray, keep: np.ndarray) -> dict[str, np.ndarray]:
    """Each weighting's projection of every target's centred statistic, S x N per name.

    ``x_all`` is the statistic S x N x L (float64), ``keep`` the membership S x N.
    """
    num_models, num_samples, _ = x_all.shape
    proj = {k: np.zeros((num_models, num_samples)) for k in NAMES}
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
    return proj


def dprime(proj_SxN: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Per-sample d' of a projection: |IN mean - OUT mean| over the pooled std, over models."""
    a, on = proj_SxN, keep
    m_in, m_out = (a * on).sum(0) / on.sum(0), (a * ~on).sum(0) / (~on).sum(0)
    var = 0.5 * (
        ((a - m_in) ** 2 * on).sum(0) / (on.sum(0) - 1)
        + ((a - m_out) ** 2 * ~on).sum(0) / ((~on).sum(0) - 1)
    )
    return np.abs(m_in - m_out) / np.sqrt(var)


def main(workdir: str, stat: str, num_models: int | None) -> None:
    x_all = np.load(f"{workdir}/stats/{stat}.npy").astype(np.float64)
    keep = np.load(f"{workdir}/membership.npy")
    if num_models:
        chosen = membership.complementary_pairs(keep)[: num_models // 2].ravel()
        x_all, keep = x_all[chosen], keep[chosen]
    num_models, num_samples, _ = x_all.shape
    proj = projections(x_all, keep)
    print(f"{workdir} {stat}: {num_models} models, {num_samples} samples")
    for k in NAMES:
        d = dprime(proj[k], keep)
        print(f"  {k:9s} median d' {np.median(d):.2f}  10% quantile {np.quantile(d, 0.1):.2f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None)

"""What the covariance ceiling reports at a given shadow count when the truth is known.

    python -m experiments.study.ceiling_power [S ...]

Synthetic Gaussian statistics shaped like the default audit (N = 1,000,
L = 64): each sample's correlation is AR(1) with rho = 0.4 with every
position's sign flipped at random per sample (per-sample correlations of
about the measured RMS that pooling averages to 0), and the IN - OUT shift
is either along the low-variance direction (true full / diag 2.33 in d'^2)
or the same shift on independent positions (true full / diag 1). Per shadow
count, the true and the estimated full / diag at FPR 1e-3 and 1e-4, raw /
posterior, the median shrinkage intensity, and where S - 4 > L + 3 the
unshrunk unbiased full / diag: how much of a real
per-sample gain the shrunk estimator keeps at that S (docs/ceiling.md).
"""

import sys

import numpy as np

from seqmia_jax import analysis, membership

NUM_SAMPLES, LENGTH, RHO, SHIFT = 1000, 64, 0.4, 0.25


def _ar1(length: int, rho: float) -> np.ndarray:
    lags = np.abs(np.arange(length)[:, None] - np.arange(length)[None, :])
    return rho**lags


def case(num_models: int, correlated: bool, seed: int = 0):
    """Statistics, membership and the true per-sample full and diagonal d'^2."""
    rng = np.random.default_rng(seed)
    keep = membership.make_membership(num_models, NUM_SAMPLES, seed=seed)
    signs_NxL = np.where(rng.random((NUM_SAMPLES, LENGTH)) < 0.5, 1.0, -1.0)
    ar = _ar1(LENGTH, RHO) if correlated else np.eye(LENGTH)
    alternating = (-1.0) ** np.arange(LENGTH)
    drop_NxL = SHIFT * signs_NxL * alternating  # along the low-variance direction
    chol_NxLxL = signs_NxL[:, :, None] * np.linalg.cholesky(ar)
    noise = rng.normal(size=(num_models, NUM_SAMPLES, LENGTH))
    x = np.einsum("nlm,snm->snl", chol_NxLxL, noise) + rng.normal(size=(NUM_SAMPLES, LENGTH))
    x += keep[..., None] * drop_NxL
    full = SHIFT**2 * alternating @ np.linalg.solve(ar, alternating)
    return x, keep, np.full(NUM_SAMPLES, full), np.full(NUM_SAMPLES, SHIFT**2 * LENGTH)


def rows(shadow_counts: list[int]) -> list[str]:
    lines = [
        (
            "| S | correlated | FPR | true full / diag | estimated full / diag | shrinkage "
            "| unbiased full / diag |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for num_models in shadow_counts:
        for correlated in (True, False):
            x, keep, full, diag = case(num_models, correlated)
            report = analysis.covariance_ceiling(x, keep)
            for fpr in (1e-3, 1e-4):
                true_full = analysis.population_tpr(full if correlated else diag, fpr)
                true = true_full / analysis.population_tpr(diag, fpr)
                tpr = report[f"tpr_at_{fpr:g}"]
                got, unbiased = (
                    " / ".join(f"{tpr[f'{k}{p}']:.2f}" for p in ("", "_posterior"))
                    if k in tpr
                    else "-"
                    for k in ("full_over_diag", "full_unbiased_over_diag_unbiased")
                )
                lines.append(
                    f"| {num_models} | {correlated} | {fpr:g} | {true:.2f} | {got} "
                    f"| {report['full_shrinkage_median']:.2f} | {unbiased} |"
                )
    return lines


if __name__ == "__main__":
    print("\n".join(rows([int(a) for a in sys.argv[1:]] or [16, 32, 64, 128])))

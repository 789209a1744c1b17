"""Ceilings: the best TPR at low FPR a test with exact parameters could reach.

Legend: S shadow models, N samples, L positions, K shadows on one side.

Each ceiling compares a model class of per-token tests against the best test
on the sequence mean, under a Gaussian model, before any attack is fitted:

- ``per_token_ceiling``: independent positions, d'^2 = sum d^2 / v, from
  split-half products so noise adds no bias;
- ``covariance_ceiling``: tests that model the covariance of the positions
  (d'^2 = d^T C^-1 d): each sample's own covariance shrunk toward its
  diagonal, and one correlation pooled over samples, cross-fitted, with a
  label-permutation null and a decorrelated control (docs/ceiling.md);
- ``correlation_excess``: per-sample correlations of the OUT residuals
  against a null with each position's shadows permuted independently.

``seqmia_jax.analysis`` reports them in ``diagnose``.
"""

from collections.abc import Mapping

import numpy as np
from scipy import optimize, special

from seqmia_jax import membership
from seqmia_jax.attacks.common import SideMoments, side_moments

Moments = Mapping[str, SideMoments]  # side ("in", "out") -> moments over all its shadows


def _noise(m: Moments) -> np.ndarray:
    """Estimation noise of the per-token IN - OUT shift: var_in / k_in + var_out / k_out."""
    return m["in"].var_NxL / m["in"].k_N[:, None] + m["out"].var_NxL / m["out"].k_N[:, None]


def _shift(m: Moments) -> np.ndarray:
    return m["in"].mu_NxL - m["out"].mu_NxL


def population_tpr(dprime2_N: np.ndarray, fpr: float) -> float:
    """TPR at ``fpr`` of the Neyman-Pearson test over a population of Gaussian shift tests.

    Sample n's score is N(0, 1) out of training and N(d_n, 1) in it, with
    ``dprime2_N = d_n^2`` known; the best test thresholds the log likelihood
    ratio d_n z - d_n^2 / 2 at one level for all samples (LiRA with exact
    parameters). Samples with d_n = 0 never fire.
    """
    d_N = np.sqrt(np.asarray(dprime2_N, np.float64))
    d_N = d_N[d_N > 0]
    if d_N.size == 0:
        return 0.0
    scale = len(dprime2_N)

    def rate(tau, shift):  # share of all samples whose log LR exceeds tau
        return special.ndtr(-(tau / d_N + shift * d_N)).sum() / scale

    if d_N.size / scale <= fpr:  # every sample with a shift can fire
        return d_N.size / scale
    lo, hi = -1.0, 1.0
    while rate(hi, 0.5) > fpr:
        hi *= 2.0
    while rate(lo, 0.5) < fpr:
        lo *= 2.0
    tau = optimize.brentq(lambda t: rate(t, 0.5) - fpr, lo, hi, xtol=1e-12)
    return float(rate(tau, -0.5))


def _half_shifts(x_SxNxL, keep_SxN) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-token IN - OUT mean shifts, the mean of both sides' variances, the shifts' noise."""
    m = side_moments(x_SxNxL, keep_SxN)
    return _shift(m), 0.5 * (m["in"].var_NxL + m["out"].var_NxL), _noise(m)


def _dprime2(half_a, half_b) -> tuple[np.ndarray, np.ndarray]:
    """Unbiased per-sample sum_l d^2 / v from two independent halves, and its noise variance."""
    (d_a, v_a, n_a), (d_b, v_b, n_b) = half_a, half_b
    v = 0.5 * (v_a + v_b)
    estimate_N = (d_a * d_b / v).sum(1)
    noise_N = np.maximum((d_a**2 * n_b + d_b**2 * n_a - n_a * n_b) / v**2, 0.0).sum(1)
    return estimate_N, noise_N


def _shrink(estimate_N: np.ndarray, noise_N: np.ndarray) -> np.ndarray:
    """Normal-prior posterior means of the true values (under-dispersed: lowers the tails)."""
    mu = estimate_N.mean()
    tau2 = max(float(estimate_N.var() - noise_N.mean()), 0.0)
    return np.maximum(mu + tau2 / (tau2 + noise_N + 1e-300) * (estimate_N - mu), 0.0)


def per_token_ceiling(
    stats_SxNxL: np.ndarray, keep_SxN: np.ndarray, fprs: tuple[float, ...] = (1e-3, 1e-2)
) -> dict:
    """How much could a per-token attack with known parameters beat one on the sequence mean?

    Under independent Gaussian positions with known per-token shifts d[n, l]
    and variances v[n, l], the best per-token test of sample n has d'^2 =
    sum_l d^2 / v; the best test on the sequence mean has d'^2 =
    (sum_l d)^2 / var(sum_l x), its variance measured with the correlations
    included. Both are estimated without the upward bias of squared noisy
    shifts: the models are split into two halves of whole complementary
    pairs, and d^2 is the product of the two halves' independent estimates.
    ``population_tpr`` turns the per-sample d'^2 into the TPR of the best
    test at each FPR. Exact parameters make it a ceiling for both under that
    model, and the ratio says how much any per-token weighting could add
    over LiRA on the mean (a model, not a hard bound: real tails differ).

    The per-sample estimates are noisy (L noisy terms for the per-token d'^2,
    one for the mean's), and noise spreads them, which raises the TPR at low
    FPR. So each TPR is given twice: from the raw estimates (``mean``,
    ``per_token``) and from their normal-prior posterior means
    (``*_shrunk``: under-dispersed). Where memorization is weak both stay
    too high with few models; use 128 or more there (docs/study.md, H13).
    """
    try:
        pairs_Px2 = membership.complementary_pairs(keep_SxN)
    except ValueError as err:
        return {"skipped": f"needs complementary model pairs ({err})"}
    if len(pairs_Px2) < 4:
        return {"skipped": f"needs at least 4 complementary pairs; got {len(pairs_Px2)}"}
    halves = (pairs_Px2[0::2].ravel(), pairs_Px2[1::2].ravel())
    x = np.asarray(stats_SxNxL, np.float64)
    sum_x = x.sum(-1, keepdims=True)
    estimates = {
        "per_token": _dprime2(*(_half_shifts(x[h], keep_SxN[h]) for h in halves)),
        "mean": _dprime2(*(_half_shifts(sum_x[h], keep_SxN[h]) for h in halves)),
    }
    d2 = {}
    for name, (estimate_N, noise_N) in estimates.items():
        d2[name] = np.maximum(estimate_N, 0.0)
        d2[f"{name}_shrunk"] = _shrink(estimate_N, noise_N)
    report = {
        f"median_dprime_{k}": float(np.sqrt(max(np.median(estimates[k][0]), 0.0)))
        for k in estimates
    }
    for fpr in fprs:
        tpr = {k: population_tpr(v, fpr) for k, v in d2.items()}
        for suffix in ("", "_shrunk"):
            mean = tpr[f"mean{suffix}"]
            tpr[f"ratio{suffix}"] = tpr[f"per_token{suffix}"] / mean if mean > 0 else float("inf")
        report[f"tpr_at_{fpr:g}"] = tpr
    return report


def _pair_halves(keep_SxN: np.ndarray) -> tuple[np.ndarray, np.ndarray] | str:
    """Two disjoint halves of whole complementary pairs (each sample balanced in each), or why not."""
    try:
        pairs_Px2 = membership.complementary_pairs(keep_SxN)
    except ValueError as err:
        return f"needs complementary model pairs ({err})"
    if len(pairs_Px2) < 4:
        return f"needs at least 4 complementary pairs; got {len(pairs_Px2)}"
    return pairs_Px2[0::2].ravel(), pairs_Px2[1::2].ravel()


def _sample_subset(
    num_samples: int, length: int, max_samples: int | None, default: int
) -> np.ndarray:
    """Evenly spaced samples: ``max_samples``, or by default as many as keep N L^2 near default 64^2."""
    if max_samples is None:  # the per-sample L x L work grows as L^2
        max_samples = max(100, min(default, default * 64**2 // length**2))
    return np.linspace(0, num_samples - 1, min(max_samples, num_samples)).astype(int)


def shrink_to_diagonal(corr_XxLxL: np.ndarray, df: float) -> tuple[np.ndarray, np.ndarray]:
    """Correlation matrices shrunk toward the identity, with an analytic intensity per matrix.

    R_shrunk = (1 - lam) R + lam I, lam = sum_{i != j} var(r_ij) / sum_{i != j} r_ij^2
    (Schaefer and Strimmer's target "D", the Ledoit-Wolf intensity for shrinking a
    covariance toward its diagonal), with the Gaussian var(r_ij) = (1 - rho_ij^2)^2 / df
    of a correlation on ``df`` degrees of freedom. rho_ij^2 is estimated by r_ij^2 - 1/df
    (E r^2 = rho^2 + 1/df near rho = 0); the plug-in r_ij^2 would understate var(r_ij)
    and leave lam near 1 - 2/df for independent positions, where this gives about 1.
    Returns the shrunk matrices and lam per matrix.
    """
    length = corr_XxLxL.shape[-1]
    r2 = corr_XxLxL**2
    d2 = np.einsum("...ll->...l", r2)  # sums over i != j: all entries minus the diagonal
    rho2 = r2 - 1.0 / df  # unclipped: clipping at 0 would bias it up under independence
    noise = ((1.0 - rho2) ** 2).sum((-2, -1)) - ((1.0 - d2 + 1.0 / df) ** 2).sum(-1)
    off_r2 = r2.sum((-2, -1)) - d2.sum(-1)
    lam_X = np.clip(noise / df / np.maximum(off_r2, 1e-300), 0.0, 1.0)
    eye = np.eye(length)
    return (1.0 - lam_X[..., None, None]) * corr_XxLxL + lam_X[..., None, None] * eye, lam_X


def _split_moments(x_SxNxL, keep_SxN, halves):
    """Per half the IN - OUT shift and its noise factor 1/k_in + 1/k_out; the within-group residuals.

    Residuals are taken from the four (half, side) means, so they have S - 4
    degrees of freedom and, for Gaussian data, are independent of every mean:
    a covariance estimated from them is independent of both halves' shifts.
    """
    shifts, factors, resid = [], [], []
    for h in halves:
        x, on = x_SxNxL[h], keep_SxN[h][..., None]
        k_in = on.sum(0)
        mu_in = (x * on).sum(0) / k_in
        mu_out = (x * ~on).sum(0) / (len(h) - k_in)
        shifts.append(mu_in - mu_out)
        factors.append((1.0 / k_in + 1.0 / (len(h) - k_in))[:, 0])
        resid.append(x - np.where(on, mu_in, mu_out))
    return shifts, factors, np.concatenate(resid), len(x_SxNxL) - 2 * len(halves)


def _gram(z_SxXxL: np.ndarray) -> np.ndarray:
    """X x L x L sums over S of outer products (batched BLAS; einsum would loop in C)."""
    return np.matmul(z_SxXxL.transpose(1, 2, 0), z_SxXxL.transpose(1, 0, 2))


def _quadratic(z_a, z_b, factor_a, factor_b, solve):
    """Cross-fitted z_a^T R^-1 z_b and its noise variance, given ``solve(Z) = R^-1 Z``.

    ``solve`` takes both halves at once, stacked on a last axis of 2. With
    W = C^-1 fixed, var(d_a^T W d_b) = c_b d^T W d + c_a d^T W d + c_a c_b L;
    the unbiased plug-in replaces d^T W d by d_a^T W d_a - c_a L (and likewise for b).
    """
    y = solve(np.stack([z_a, z_b], -1))
    y_a, y_b = y[..., 0], y[..., 1]
    estimate = (z_a * y_b).sum(-1)
    length = z_a.shape[-1]
    noise = factor_b * (z_a * y_a).sum(-1) + factor_a * (z_b * y_b).sum(-1)
    return estimate, np.maximum(noise - factor_a * factor_b * length, 0.0)


def _covariance_estimates(x_SxNxL, keep_SxN, halves, chunk) -> tuple[dict, dict]:
    """Per-sample cross-fitted d'^2 estimates and their noise, for the mean, diag, pooled and full."""
    (d_a, d_b), (c_a, c_b), resid_SxNxL, df = _split_moments(x_SxNxL, keep_SxN, halves)
    var_NxL = np.maximum((resid_SxNxL**2).sum(0) / df, 1e-300)
    sd_NxL = np.sqrt(var_NxL)
    z_res = resid_SxNxL / sd_NxL
    z_a, z_b = d_a / sd_NxL, d_b / sd_NxL
    num_samples = var_NxL.shape[0]
    est, noise = {}, {}
    # The mean's test: d'^2 = (1^T d)^2 / 1^T C 1, C with its correlations.
    var_sum = (resid_SxNxL.sum(-1) ** 2).sum(0) / df
    est["mean"], noise["mean"] = _quadratic(
        d_a.sum(-1, keepdims=True) / np.sqrt(var_sum)[:, None],
        d_b.sum(-1, keepdims=True) / np.sqrt(var_sum)[:, None],
        c_a,
        c_b,
        lambda z: z,
    )
    # Diagonal (independent positions): per_token_ceiling's estimate, term by term.
    est["diag"] = (z_a * z_b).sum(-1)
    ca, cb = c_a[:, None], c_b[:, None]
    noise["diag"] = np.maximum(cb * z_a**2 + ca * z_b**2 - ca * cb, 0.0).sum(-1)
    # Pooled: one correlation over samples (N (S - 4) degrees of freedom), per-sample variances.
    flat = z_res.reshape(-1, z_res.shape[-1])
    pooled = flat.T @ flat / (df * num_samples)
    pooled_shrunk, lam_pooled = shrink_to_diagonal(pooled, df * num_samples)
    pooled_inv = np.linalg.inv(pooled_shrunk)
    est["pooled"], noise["pooled"] = _quadratic(z_a, z_b, c_a, c_b, lambda z: pooled_inv @ z)
    # Full: each sample's own correlation (S - 4 degrees of freedom), shrunk toward I.
    # Where S - 4 > L + 3 also unshrunk, scaled to be unbiased: for Gaussian data
    # E[C_hat^-1] = df / (df - L - 1) C^-1 (inverse Wishart), E[1 / v_hat] = df / (df - 2) / v.
    length = z_a.shape[-1]
    unbiased = df > length + 3
    names = ("full", "full_unbiased") if unbiased else ("full",)
    for name in names:
        est[name], noise[name] = np.empty(num_samples), np.empty(num_samples)
    lam_N = np.empty(num_samples)
    scale = (df - length - 1) / df
    for lo in range(0, num_samples, chunk):
        sl = slice(lo, lo + chunk)
        corr = _gram(z_res[:, sl]) / df
        shrunk, lam_N[sl] = shrink_to_diagonal(corr, df)
        cases = [("full", shrunk, 1.0)] + ([("full_unbiased", corr, scale)] if unbiased else [])
        for name, r, k in cases:
            est[name][sl], noise[name][sl] = _quadratic(
                z_a[sl],
                z_b[sl],
                c_a[sl],
                c_b[sl],
                lambda z, r=r, k=k: k * np.linalg.solve(r, z),
            )
    if unbiased:
        k = (df - 2) / df
        est["diag_unbiased"], noise["diag_unbiased"] = k * est["diag"], k**2 * noise["diag"]
    info = {
        "degrees_of_freedom": int(df),
        "pooled_shrinkage": float(lam_pooled),
        "full_shrinkage_median": float(np.median(lam_N)),
        "full_shrinkage_min": float(lam_N.min()),
    }
    return {k: (est[k], noise[k]) for k in est}, info


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


_RATIOS = (
    ("full", "diag"),
    ("pooled", "diag"),
    ("full_unbiased", "diag_unbiased"),
    ("diag", "mean"),
    ("pooled", "mean"),
    ("full", "mean"),
)


def _tpr_table(estimates: dict, fprs: tuple[float, ...]) -> dict:
    """Median d' and, at each FPR, the population TPR of each model class, raw and posterior."""
    d2 = {}
    for name, (estimate_N, noise_N) in estimates.items():
        d2[name] = np.maximum(estimate_N, 0.0)
        d2[f"{name}_posterior"] = _shrink(estimate_N, noise_N)
    report = {
        "median_dprime": {
            k: float(np.sqrt(max(np.median(e), 0.0))) for k, (e, _) in estimates.items()
        },
        "mean_dprime2": {k: float(e.mean()) for k, (e, _) in estimates.items()},
        "mean_dprime2_se": {
            k: float(e.std(ddof=1) / np.sqrt(len(e))) for k, (e, _) in estimates.items()
        },
    }
    for fpr in fprs:
        tpr = {k: population_tpr(v, fpr) for k, v in d2.items()}
        for suffix in ("", "_posterior"):
            for num, den in (r for r in _RATIOS if r[0] in estimates):
                tpr[f"{num}_over_{den}{suffix}"] = _ratio(tpr[num + suffix], tpr[den + suffix])
        report[f"tpr_at_{fpr:g}"] = tpr
    return report


def _permute_labels(rng, keep_SxN, halves) -> np.ndarray:
    """IN/OUT labels drawn afresh per sample within each half (still balanced): no true shift."""
    keep = keep_SxN.copy()
    for h in halves:
        ranks = np.argsort(np.argsort(rng.random((len(h), keep.shape[1])), 0), 0)
        keep[h] = ranks < len(h) // 2
    return keep


def _decorrelate(rng, x_SxNxL, keep_SxN, halves):
    """Each (half, side) group's shadows permuted independently per position.

    Every group mean (so both halves' shifts) and every marginal stays; the
    dependence between positions goes. Models come back ordered OUT then IN
    within each half, and the membership with them.
    """
    xs, keeps, new_halves, start = [], [], [], 0
    for h in halves:
        x, on = x_SxNxL[h], keep_SxN[h]
        keys = on[..., None] * 2.0 + rng.random(x.shape)  # OUT rows sort first, shuffled
        xs.append(np.take_along_axis(x, np.argsort(keys, 0), 0))
        keeps.append(np.arange(len(h))[:, None] >= (len(h) - on.sum(0))[None])
        new_halves.append(np.arange(start, start + len(h)))
        start += len(h)
    return np.concatenate(xs), np.concatenate(keeps), tuple(new_halves)


def covariance_ceiling(
    stats_SxNxL: np.ndarray,
    keep_SxN: np.ndarray,
    fprs: tuple[float, ...] = (1e-3, 1e-4),
    max_samples: int | None = None,
    seed: int = 0,
) -> dict:
    """The ceiling of ``per_token_ceiling`` for tests that model the covariance of the positions.

    With exact parameters, sample n's best Gaussian test has d'^2 = d^T C^-1 d
    (d the IN - OUT shift, C the L x L covariance of one side). Four model
    classes, each cross-fitted: the shift is estimated on two disjoint halves
    of whole complementary pairs and d'^2 = d_a^T W d_b, whose expectation
    carries no noise term because the halves are independent; W comes from the
    within-(half, side) residuals, which for Gaussian data are independent of
    both halves' means, so E[d_a^T W d_b] = d^T E[W] d.

    - ``mean``: the sequence mean's test, (1^T d)^2 / 1^T C 1;
    - ``diag``: independent positions, sum_l d^2 / v (= ``per_token_ceiling``);
    - ``pooled``: one correlation matrix pooled over samples, per-sample
      variances, shrunk toward I with ``shrink_to_diagonal`` (barely: N (S - 4)
      degrees of freedom);
    - ``full``: each sample's own correlation (S - 4 degrees of freedom, far
      fewer than L), shrunk toward I per sample.

    E[W] is not C^-1: inverting a noisy covariance inflates d'^2 and shrinkage
    deflates the part along correlated directions. Two controls measure it:
    ``null_labels`` (IN/OUT labels permuted within each sample and half: true
    shift 0, so any TPR there is noise) and ``decorrelated`` (each group's
    shadows permuted independently per position: the same shifts and
    variances, no correlation, so full / diag and pooled / diag there are the
    estimators' bias alone). TPRs follow ``per_token_ceiling``: raw clipped
    estimates and normal-prior posterior means (``*_posterior``, the
    ``*_shrunk`` there). At most ``max_samples`` samples, evenly spaced (by
    default 2,000 at L <= 64 and 2,000 (64 / L)^2 above, at least 100).
    """
    halves = _pair_halves(np.asarray(keep_SxN, bool))
    if isinstance(halves, str):
        return {"skipped": halves}
    num_samples, length = stats_SxNxL.shape[1:]
    idx = _sample_subset(num_samples, length, max_samples, 2000)
    x = np.asarray(stats_SxNxL[:, idx], np.float64)
    keep = np.asarray(keep_SxN, bool)[:, idx]
    chunk = max(1, 2**22 // length**2)
    rng = np.random.default_rng(seed)
    estimates, info = _covariance_estimates(x, keep, halves, chunk)
    report = {
        "num_samples": len(idx),
        "of_samples": num_samples,
        "subsampled": len(idx) < num_samples,
        **info,
    }
    report.update(_tpr_table(estimates, fprs))
    null, _ = _covariance_estimates(x, _permute_labels(rng, keep, halves), halves, chunk)
    report["null_labels"] = _tpr_table(null, fprs)
    decorrelated, _ = _covariance_estimates(*_decorrelate(rng, x, keep, halves), chunk)
    report["decorrelated"] = _tpr_table(decorrelated, fprs)
    return report


def _out_correlations(x_SxNxL, out_SxN, chunk) -> tuple[np.ndarray, np.ndarray]:
    """Per sample the mean squared off-diagonal OUT correlation; the correlation pooled over samples."""
    num_samples, length = x_SxNxL.shape[1:]
    off = ~np.eye(length, dtype=bool)
    r2_N, pooled = np.empty(num_samples), np.zeros((length, length))
    for lo in range(0, num_samples, chunk):
        x, w = x_SxNxL[:, lo : lo + chunk], out_SxN[:, lo : lo + chunk, None]
        k = w.sum(0)
        r = (x - (x * w).sum(0) / k) * w
        cov = _gram(r)
        sd = np.sqrt(np.maximum(np.einsum("nll->nl", cov), 1e-300))
        corr = cov / sd[:, :, None] / sd[:, None, :]
        r2_N[lo : lo + chunk] = (corr[:, off] ** 2).mean(-1)
        pooled += corr.sum(0)
    return r2_N, pooled / num_samples


def correlation_excess(
    stats_SxNxL: np.ndarray,
    keep_SxN: np.ndarray,
    max_samples: int | None = None,
    num_permutations: int = 4,
    seed: int = 0,
) -> dict:
    """Per-sample correlations of the OUT residuals against a null without dependence.

    For each sample, r_ij is the correlation of positions i and j over its OUT
    shadows (their mean removed), and r2 its mean square over pairs i != j.
    The null permutes each position's OUT values across the sample's OUT
    shadows independently: every marginal and the OUT mean stay, every
    dependence between positions goes (exact for exchangeable shadows, no
    Gaussian assumption; r2 there is about 1 / (K_out - 1)). The excess is
    the mean over samples of r2 - null r2, in standard errors of that mean
    (samples taken as independent). For small correlations rho the excess
    is about mean(rho^2) (1 - 2 / (K_out - 1)), since E r^2 = rho^2 + (1 -
    rho^2)^2 / (K_out - 1) roughly. ``pooled_*`` do the same for the
    correlation averaged over samples, what ``correlation_out`` sees:
    ``share_surviving_pooling`` is its excess over the per-sample excess.
    At most ``max_samples`` samples (by default 1,000 at L <= 64, fewer above).
    """
    keep = np.asarray(keep_SxN, bool)
    idx = _sample_subset(keep.shape[1], stats_SxNxL.shape[-1], max_samples, 1000)
    idx = idx[(~keep[:, idx]).sum(0) >= 4]
    if idx.size < 2:
        return {"skipped": "needs samples with at least 4 OUT shadows"}
    x = np.asarray(stats_SxNxL[:, idx], np.float64)
    out = ~keep[:, idx]
    chunk = max(1, 2**22 // x.shape[-1] ** 2)
    r2_N, pooled = _out_correlations(x, out, chunk)
    rng = np.random.default_rng(seed)
    k_out = out.sum(0)
    first_k = np.arange(len(x))[:, None] < k_out[None]  # OUT rows sorted first below
    null_r2_N, null_pooled_r2 = np.zeros(len(idx)), 0.0
    off = ~np.eye(x.shape[-1], dtype=bool)
    for _ in range(num_permutations):
        keys = np.where(out[..., None], 0.0, 2.0) + rng.random(x.shape)
        r2, p = _out_correlations(np.take_along_axis(x, np.argsort(keys, 0), 0), first_k, chunk)
        null_r2_N += r2 / num_permutations
        null_pooled_r2 += (p[off] ** 2).mean() / num_permutations
    excess_N = r2_N - null_r2_N
    excess, se = float(excess_N.mean()), float(excess_N.std(ddof=1) / np.sqrt(len(idx)))
    pooled_excess = float((pooled[off] ** 2).mean() - null_pooled_r2)
    return {
        "num_samples": len(idx),
        "of_samples": keep.shape[1],
        "subsampled": bool(len(idx) < keep.shape[1]),
        "num_permutations": num_permutations,
        "rms_corr": float(np.sqrt(r2_N.mean())),
        "null_rms_corr": float(np.sqrt(null_r2_N.mean())),
        "excess_r2": excess,
        "excess_rms_corr": float(np.sqrt(max(excess, 0.0))),
        "excess_se": se,
        "excess_in_se": excess / se if se > 0 else None,
        "pooled_excess_r2": pooled_excess,
        "share_surviving_pooling": pooled_excess / excess if excess > 0 else None,
    }

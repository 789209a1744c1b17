"""Diagnostics that explain when sequence-aware attacks can beat univariate LiRA.

Legend: S shadow models, N samples, L positions, K shadows on one side.

All measures read cached statistics only (``stats/<statistic>.npy`` and
``membership.npy``) and use every model, so they describe the data, not one
target's fit:

- ``correlation``: structure of the OUT residuals (per-sample OUT means
  removed), pooled over samples: mean off-diagonal correlation, lag-1
  correlation, top eigenvalue of the L x L correlation, and the same for IN.
- ``shift_snr``: per-token IN-OUT mean shifts d[n, l] against their estimation
  noise var_in/k_in + var_out/k_out. ``signal_var = var(d) - mean(noise)`` is
  the spread of true per-token shifts; the empirical-Bayes weight
  ``signal_var / var(d)`` says how much of an estimated per-token shift is real.
- ``shift_profile``: the mean shift against the OUT level, in deciles, and its
  correlation with it (shifts that follow a global profile can be shared
  across samples instead of estimated per sample).
- ``in_mixture``: skewness and kurtosis of each side's residuals of the
  sequence mean; an "all or nothing" membership effect makes IN a mixture.
- ``ceiling`` (this and the next two are computed in ``seqmia_jax.ceiling``):
  the best TPR at low FPR that a per-token weighting with known
  parameters could reach, against the same for the sequence mean
  (``per_token_ceiling``): how much sequence-awareness could add under a
  Gaussian model with independent positions, before any attack is fitted.
- ``covariance_ceiling``: the same ceiling for tests that model the
  covariance of the positions (d'^2 = d^T C^-1 d): a per-sample full
  covariance (shrunk toward its diagonal) and one correlation pooled over
  samples, with a label-permutation null and a decorrelated control that
  show how much of each is estimation bias (docs/ceiling.md).
- ``correlation_excess``: per-sample correlations of the OUT residuals
  against a null with each position's shadows permuted independently, which
  pooling by position index cannot see.
- ``cross_sample``: for text, how much of a sample's OUT variance is explained
  by how many of its n-grams a shadow saw in *other* IN samples.

Every per-side mean and variance comes from ``attacks.common.side_moments``
(all shadows of a side, ddof=1), the helper the attacks share.
"""

import numpy as np

from seqmia_jax.attacks.common import side_moments
from seqmia_jax.ceiling import (  # noqa: F401  (re-exported: analysis.per_token_ceiling, ...)
    Moments,
    _noise,
    _shift,
    correlation_excess,
    covariance_ceiling,
    per_token_ceiling,
    population_tpr,
    shrink_to_diagonal,
)


def _pooled_correlation(
    stats_SxNxL, keep_SxN, mean_NxL, side: bool, max_samples: int
) -> np.ndarray:
    idx = np.linspace(0, stats_SxNxL.shape[1] - 1, min(max_samples, stats_SxNxL.shape[1])).astype(
        int
    )
    x = np.asarray(stats_SxNxL[:, idx], np.float64) - mean_NxL[idx]
    w = (keep_SxN[:, idx] == side)[..., None]
    r = (x * w).reshape(-1, x.shape[-1])[w.reshape(-1)]
    cov = r.T @ r / len(r)
    sd = np.sqrt(np.diag(cov))
    return cov / np.outer(sd, sd)


def correlation_summary(corr_LxL: np.ndarray) -> dict:
    seq_len = corr_LxL.shape[0]
    off = corr_LxL[~np.eye(seq_len, dtype=bool)]
    return {
        "mean_offdiag": float(off.mean()),
        "mean_abs_offdiag": float(np.abs(off).mean()),
        "lag1": float(np.mean(np.diag(corr_LxL, 1))),
        "top_eigenvalue": float(np.linalg.eigvalsh(corr_LxL)[-1]),
        "seq_len": seq_len,
    }


def shift_snr(m: Moments) -> dict:
    d, noise = _shift(m), _noise(m)
    # Spread of shifts across tokens within a sample (the sample's mean shift removed):
    # that is what per-token modelling must estimate beyond univariate LiRA.
    d_within = d - d.mean(1, keepdims=True)
    total = float(d_within.var())
    noise_within = float(noise.mean() * (1 - 1 / d.shape[1]))
    signal = total - noise_within
    return {
        "mean_shift": float(d.mean()),
        "per_sample_mean_shift_sd": float(d.mean(1).std()),
        "within_sample_shift_var": total,
        "within_sample_noise_var": noise_within,
        "within_sample_signal_var": signal,
        "eb_weight": float(max(signal, 0.0) / total) if total > 0 else 0.0,
    }


def shift_profile(m: Moments, bins: int = 10) -> dict:
    d = _shift(m).ravel()
    level = m["out"].mu_NxL.ravel()
    sd_out = np.sqrt(m["out"].var_NxL).ravel()
    edges = np.quantile(level, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, level, side="right") - 1, 0, bins - 1)
    rows = [
        {
            "out_level": float(level[which == b].mean()),
            "mean_shift": float(d[which == b].mean()),
            "out_sd": float(sd_out[which == b].mean()),
            "shift_over_sd": float((d[which == b] / np.maximum(sd_out[which == b], 1e-12)).mean()),
        }
        for b in range(bins)
    ]
    return {"corr_shift_level": float(np.corrcoef(d, level)[0, 1]), "deciles": rows}


def ngram_overlap_NxN(tokens_NxL: np.ndarray, n: int = 8):
    """Sparse N x N counts of shared n-grams between distinct samples (scipy.sparse CSR)."""
    import scipy.sparse as sp

    num_samples = tokens_NxL.shape[0]
    # Bytes stay one byte each (as before); subword ids need four.
    dtype = np.uint8 if tokens_NxL.max(initial=0) < 256 else np.dtype("<i4")
    grams = np.lib.stride_tricks.sliding_window_view(tokens_NxL.astype(dtype), n, axis=1)
    width = n * np.dtype(dtype).itemsize
    keys = np.ascontiguousarray(grams).view(np.dtype((np.void, width))).reshape(num_samples, -1)
    _, gram_id = np.unique(keys.ravel(), return_inverse=True)
    rows = np.repeat(np.arange(num_samples), keys.shape[1])
    incidence = sp.csr_matrix(
        (np.ones(len(rows), np.float64), (rows, gram_id.ravel())),
        shape=(num_samples, gram_id.max() + 1),
    )
    incidence.data[:] = 1.0  # a gram counted once per sample
    incidence.sum_duplicates()
    incidence.data[:] = 1.0
    shared = (incidence @ incidence.T).tocsr()
    shared.setdiag(0)
    shared.eliminate_zeros()
    return shared


def cross_sample_leakage(
    stats_SxNxL: np.ndarray, keep_SxN: np.ndarray, tokens_NxL: np.ndarray, n: int = 8
) -> dict:
    """Share of a sample's OUT-shadow variance explained by n-grams seen in other IN samples.

    Covariate c[s, n] = sum over other samples m of shared_grams(n, m) * keep[s, m].
    Within each sample, over its OUT shadows, the mean statistic is regressed on
    c (both centred per sample); the pooled R^2 is reported.
    """
    shared = ngram_overlap_NxN(tokens_NxL, n)
    c_SxN = np.asarray((shared @ keep_SxN.T.astype(np.float64)).T)
    a_SxN = np.asarray(stats_SxNxL, np.float64).mean(-1)
    out = ~keep_SxN
    a_c = np.where(out, a_SxN - side_moments(a_SxN[..., None], keep_SxN)["out"].mu_NxL[:, 0], 0.0)
    c_c = np.where(out, c_SxN - side_moments(c_SxN[..., None], keep_SxN)["out"].mu_NxL[:, 0], 0.0)
    sxy, sxx, syy = (a_c * c_c).sum(), (c_c**2).sum(), (a_c**2).sum()
    has_overlap = (shared.sum(1).A1 > 0).mean()
    return {
        "ngram": n,
        "fraction_samples_sharing": float(has_overlap),
        "mean_shared_grams_per_in_shadow": float(c_SxN.mean()),
        "pooled_corr": float(sxy / np.sqrt(sxx * syy)) if sxx > 0 else 0.0,
        "r2_out_variance": float(sxy**2 / (sxx * syy)) if sxx > 0 else 0.0,
    }


def in_mixture(stats_SxNxL: np.ndarray, keep_SxN: np.ndarray) -> dict:
    """Is membership "all or nothing"? Shape of each side's residuals of the sequence mean.

    If some IN models memorized a sample and others did not, the IN values of
    a sample form a two-component mixture: their residuals (standardized
    within the sample and side) are skewed and heavier-tailed than the OUT
    residuals, which share the same shadow count. Equal moments on both sides
    leave nothing for a mixture model of IN to capture.
    """
    a_SxN = np.asarray(stats_SxNxL, np.float64).mean(-1)
    m = side_moments(a_SxN[..., None], keep_SxN)
    report = {}
    for name, on in (("in", keep_SxN), ("out", ~keep_SxN)):
        mean, sd = m[name].mu_NxL[:, 0], np.sqrt(m[name].var_NxL[:, 0])
        z = ((a_SxN - mean) / np.maximum(sd, 1e-12))[on]
        report[name] = {
            "skewness": float(np.mean(z**3)),
            "excess_kurtosis": float(np.mean(z**4) - 3.0),
            "beyond_2_sd": float(np.mean(np.abs(z) > 2.0)),
        }
    return report


def loo_out_z(stats_SxNxL: np.ndarray, keep_SxN: np.ndarray) -> np.ndarray:
    """Each model's z-score at each of its OUT samples against the sample's other OUT shadows.

    (x_s - mean) / (sd sqrt(1 + 1/k)) over the k other OUT shadows, ddof=1:
    Student-t with k - 1 degrees of freedom when the statistic is Gaussian.
    S x N x L float64, NaN where the model is IN.
    """
    x = np.asarray(stats_SxNxL, np.float64)
    out_SxN = ~np.asarray(keep_SxN, bool)
    k_N = out_SxN.sum(0) - 1.0  # the other OUT shadows
    if np.any(k_N < 2):
        raise ValueError("loo_out_z needs at least 3 OUT shadows per sample")
    on_SxNx1 = out_SxN[:, :, None]
    total_NxL = np.sum(np.where(on_SxNx1, x, 0.0), 0)
    k = k_N[None, :, None]
    # shifted by the OUT mean first, against cancellation in the sums of squares
    xc = x - (total_NxL / (k_N + 1.0)[:, None])[None]
    square_NxL = np.sum(np.where(on_SxNx1, xc * xc, 0.0), 0)
    mean = -xc / k  # the others' mean of xc: their total is -xc, since all OUT sum to 0
    var = (square_NxL[None] - xc * xc - k * mean**2) / (k - 1.0)
    z = (xc - mean) / np.sqrt(np.maximum(var, 1e-300) * (1.0 + 1.0 / k))
    return np.where(on_SxNx1, z, np.nan)


def out_tails(stats_SxNxL: np.ndarray, keep_SxN: np.ndarray, where_NxL: np.ndarray) -> dict:
    """How heavy the OUT shadows' per-token tails are at the positions ``where_NxL`` marks.

    The noise terms a per-token attack ranks: ``loo_out_z`` at those
    positions. Returned: the fractions beyond 3 and 5 in absolute value, and
    what the Student t of a Gaussian statistic gives (its k: the median OUT
    count minus one).
    """
    return _tails(stats_SxNxL, keep_SxN, [where_NxL])[0]


def _tails(stats_SxNxL, keep_SxN, wheres: list) -> list[dict]:
    """``out_tails`` of each mask in ``wheres``, from one ``loo_out_z``."""
    import scipy.stats

    out_N = (~np.asarray(keep_SxN, bool)).sum(0)
    if np.min(out_N) < 3:
        return [{"skipped": "needs at least 3 OUT shadows per sample"} for _ in wheres]
    z_SxNxL = loo_out_z(stats_SxNxL, keep_SxN)
    dof = float(np.median(out_N)) - 2.0
    rates = []
    for where_NxL in wheres:
        z = z_SxNxL[~np.isnan(z_SxNxL) & np.asarray(where_NxL, bool)[None]]
        rates.append(
            {
                "num_terms": int(z.size),
                "t_dof": dof,
                "beyond_3": float(np.mean(np.abs(z) > 3.0)),
                "beyond_3_t": float(2.0 * scipy.stats.t.sf(3.0, dof)),
                "beyond_5": float(np.mean(np.abs(z) > 5.0)),
                "beyond_5_t": float(2.0 * scipy.stats.t.sf(5.0, dof)),
            }
        )
    return rates


def secret_positions(stats_SxNxL: np.ndarray, keep_SxN: np.ndarray, secret_NxL: np.ndarray) -> dict:
    """Where the signal sits with secrets: the shift SNR at secret and at carrier positions.

    ``secret_NxL`` (stats/secret_mask.npy) marks m positions per sample. The
    per-token ceiling is also computed on the secret positions alone, as an
    attack that knew where the secret is could (none may: the mask is a
    diagnostic, not a membership feature).
    """
    secret_NxL = np.asarray(secret_NxL, bool)
    m = side_moments(stats_SxNxL, keep_SxN)
    snr_NxL = _shift(m) / np.sqrt(np.maximum(0.5 * (m["in"].var_NxL + m["out"].var_NxL), 1e-300))
    per_sample = secret_NxL.sum(1)
    if not np.all(per_sample == per_sample[0]):
        raise ValueError("secret_mask.npy must mark the same number of positions in every sample")
    x = np.asarray(stats_SxNxL, np.float64)
    secret_only = x[:, secret_NxL].reshape(x.shape[0], x.shape[1], int(per_sample[0]))
    tails = _tails(x, keep_SxN, [secret_NxL, ~secret_NxL])
    return {
        "num_secret_positions": int(per_sample[0]),
        "mean_shift_over_sd_secret": float(snr_NxL[secret_NxL].mean()),
        "mean_shift_over_sd_carrier": float(snr_NxL[~secret_NxL].mean()),
        "ceiling_secret_positions_only": per_token_ceiling(
            secret_only, keep_SxN, fprs=(1e-2, 1e-3, 1e-4)
        ),
        "out_tails_secret": tails[0],
        "out_tails_carrier": tails[1],
        "carrier_relabel_null": carrier_relabel_null(x, keep_SxN, secret_NxL),
    }


CARRIER_NULL_ATTACK = "lira:variance=fixed"


def carrier_relabel_null(
    stats_SxNxL: np.ndarray,
    keep_SxN: np.ndarray,
    secret_NxL: np.ndarray,
    num_relabels: int = 99,
    seed: int = 0,
) -> dict:
    """Does membership show at the carrier positions, where IN and OUT models saw the same text?

    With secrets, IN and OUT models train on identical carriers, so under a
    sound design the carriers carry no membership signal. This runs
    ``CARRIER_NULL_ATTACK`` on this statistic at the carrier positions alone (every model a
    target) with the true labels and with ``num_relabels`` membership
    matrices redrawn from the same design (balanced or poisson), and reports
    where the true AUC falls in that null: a permutation test, exact at
    ``num_relabels`` draws, of "carrier statistics do not depend on
    membership". ``p_two_sided`` is 2 (1 + min(#null <= true, #null >= true))
    / (num_relabels + 1), at most 1.
    """
    from seqmia_jax import membership
    from seqmia_jax.attacks import AttackInputs
    from seqmia_jax.attacks.loo import equal_counts
    from seqmia_jax.attacks.runner import resolve_attack
    from seqmia_jax.evaluation.metrics import auc, roc_curve

    attack, options = resolve_attack(CARRIER_NULL_ATTACK)
    carrier_NxL = ~np.asarray(secret_NxL, bool)
    num_models, num_samples = keep_SxN.shape
    redraw = (
        membership.make_membership
        if equal_counts(keep_SxN)
        else (membership.make_poisson_membership)
    )
    # Passed as the attack's default statistic; fixed-variance LiRA is invariant
    # under x -> -x, so a loss array gives the same AUC as its negation.
    stats = {"logit": np.asarray(stats_SxNxL, np.float32)}
    targets = np.arange(num_models)

    def carrier_auc(keep):
        inputs = AttackInputs(stats=stats, keep_SxN=keep, mask_NxL=carrier_NxL)
        scores = attack.run(inputs, targets, options).scores_TxN
        # As the attack runner does: a sample without shadows on a side is ranked lowest.
        scores = np.where(np.isnan(scores), -np.inf, scores)
        return auc(*roc_curve(scores, keep)[:2])

    rng = np.random.default_rng([seed, 0xCA77])
    null = np.array(
        [
            carrier_auc(redraw(num_models, num_samples, int(rng.integers(1 << 31))))
            for _ in range(num_relabels)
        ]
    )
    true = carrier_auc(np.asarray(keep_SxN, bool))
    below, above = int(np.sum(null <= true)), int(np.sum(null >= true))
    return {
        "attack": CARRIER_NULL_ATTACK,
        "auc": float(true),
        "null_mean": float(null.mean()),
        "null_sd": float(null.std(ddof=1)),
        "num_relabels": int(num_relabels),
        "num_null_below": below,
        "num_null_above": above,
        "p_two_sided": float(min(1.0, 2 * (1 + min(below, above)) / (num_relabels + 1))),
    }


def diagnose(
    stats_SxNxL: np.ndarray,
    keep_SxN: np.ndarray,
    tokens_NxL: np.ndarray | None = None,
    max_corr_samples: int = 2000,
    secret_NxL: np.ndarray | None = None,
) -> dict:
    """All diagnostics of one statistic (with ``secret_positions`` where secrets are planted)."""
    m = side_moments(stats_SxNxL, keep_SxN)
    report = {
        "correlation_out": correlation_summary(
            _pooled_correlation(stats_SxNxL, keep_SxN, m["out"].mu_NxL, False, max_corr_samples)
        ),
        "correlation_in": correlation_summary(
            _pooled_correlation(stats_SxNxL, keep_SxN, m["in"].mu_NxL, True, max_corr_samples)
        ),
        "shift_snr": shift_snr(m),
        "shift_profile": shift_profile(m),
        "in_mixture": in_mixture(stats_SxNxL, keep_SxN),
        "ceiling": per_token_ceiling(stats_SxNxL, keep_SxN, fprs=(1e-2, 1e-3, 1e-4)),
        "covariance_ceiling": covariance_ceiling(stats_SxNxL, keep_SxN),
        "correlation_excess": correlation_excess(stats_SxNxL, keep_SxN),
    }
    if tokens_NxL is not None:
        report["cross_sample"] = cross_sample_leakage(stats_SxNxL, keep_SxN, tokens_NxL)
    if secret_NxL is not None:
        report["secret_positions"] = secret_positions(stats_SxNxL, keep_SxN, secret_NxL)
    return report

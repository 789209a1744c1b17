"""Profile LiRA: LiRA on a token-weighted sequence mean, the weights learned across samples.

Legend: S shadow models, N samples, L positions, T targets, G difficulty bins.

The per-token models of ``seq`` estimate L mean shifts per sample from K/2
shadows a side, and that noise costs more than the per-token detail gives
(docs/study.md). This attack keeps the per-token structure but shares it
across samples: a token's expected membership shift and its noise variance
are taken to depend only on how hard the token is, its bin g(n, l) among G
quantile bins of the statistic's mean over the shadows. Under

    x[s, n, l] = mu[n, l] + member(s, n) * delta[g] + e,  e ~ N(0, var[g]) independent,

the likelihood ratio of member(s, n) depends on the data only through the
projection A[s, n] = sum_l w[n, l] x[s, n, l] / L with w = delta[g] / var[g]
(a matched filter), so the attack is univariate LiRA (``lira.py``, same
options and leave-one-out rule) on A. With delta and var constant it is
``lira`` on the plain mean.

Per target t, everything is fitted without model t: the bins use the mean over
the other S - 1 shadows, delta[g] is the mean over the bin's present tokens of
(IN mean - OUT mean) and var[g] the mean of the two sides' ddof=1 variances,
both over the other shadows. A projects every model's statistic, the target's
included, with the same weights, and LiRA's own fits then follow the
equal-count rule. A is oriented so that members score higher (w carries the
sign of delta), so the offline one-sided test needs no statistic-specific
direction.
"""

import numpy as np

from seqmia_jax.attacks import lira
from seqmia_jax.attacks.base import ATTACKS, AttackInputError, AttackInputs, AttackOutput

_SPEC = {
    "statistic": ("logit", lira.STATISTICS),
    "bins": (16, lambda v: isinstance(v, int) and v >= 1),
    "mode": ("online", ("online", "offline")),
    "variance": ("per_sample", ("per_sample", "fixed")),
    "offline_test": ("one_sided", ("one_sided", "two_sided")),
}


def _side_sums(x_SxNxL: np.ndarray, on_SxN: np.ndarray):
    """Sum, sum of squares (N x L) and count (N) of one side over all models, float64."""
    total = np.zeros(x_SxNxL.shape[1:])
    sumsq = np.zeros(x_SxNxL.shape[1:])
    for s in range(x_SxNxL.shape[0]):  # one model at a time: memmap-friendly
        row = np.asarray(x_SxNxL[s], dtype=np.float64) * on_SxN[s][:, None]
        total += row
        sumsq += row * row
    return total, sumsq, on_SxN.sum(axis=0)


def profile_weights(
    x_SxNxL: np.ndarray,
    keep_SxN: np.ndarray,
    mask_NxL: np.ndarray,
    t: int,
    bins: int,
    sums: dict | None = None,
) -> tuple[np.ndarray, dict]:
    """w_NxL (0 where absent) fitted without model t, and the per-bin profile."""
    if sums is None:
        sums = {
            name: _side_sums(x_SxNxL, on) for name, on in (("in", keep_SxN), ("out", ~keep_SxN))
        }
    x_t = np.asarray(x_SxNxL[t], dtype=np.float64)
    moments = {}
    for name, on_N in (("in", keep_SxN[t]), ("out", ~keep_SxN[t])):
        total, sumsq, count = sums[name]
        drop = on_N[:, None]
        total = total - drop * x_t
        sumsq = sumsq - drop * x_t * x_t
        count = (count - on_N)[:, None].astype(np.float64)
        if count.min() < 2:
            raise AttackInputError(
                "profile: every sample needs at least 2 IN and 2 OUT shadows besides the target"
            )
        mean = total / count
        moments[name] = (total, mean, (sumsq - count * mean * mean) / (count - 1.0))
    feature_NxL = (moments["in"][0] + moments["out"][0]) / (x_SxNxL.shape[0] - 1)
    present = feature_NxL[mask_NxL]
    edges = np.quantile(present, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    bin_NxL = np.searchsorted(edges, feature_NxL, side="right")
    shift = (moments["in"][1] - moments["out"][1])[mask_NxL]
    noise = 0.5 * (moments["in"][2] + moments["out"][2])[mask_NxL]
    size_G = np.bincount(bin_NxL[mask_NxL], minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        delta_G = np.bincount(bin_NxL[mask_NxL], shift, minlength=bins) / size_G
        var_G = np.bincount(bin_NxL[mask_NxL], noise, minlength=bins) / size_G
        weight_G = np.where(size_G > 0, delta_G / np.maximum(var_G, 1e-12), 0.0)
    weight_NxL = np.where(mask_NxL, weight_G[bin_NxL], 0.0)
    return weight_NxL, {"delta": delta_G, "var": var_G, "size": size_G, "edges": edges}


@ATTACKS.register("profile")
def profile(inputs: AttackInputs, targets_T: np.ndarray, **options) -> AttackOutput:
    """LiRA on the profile-weighted sequence mean (see module docstring)."""
    opt = lira.parse_options("profile", options, _SPEC)
    x = lira.statistic_array(inputs, "profile", opt["statistic"])
    keep_SxN = np.asarray(inputs.keep_SxN, dtype=bool)
    num_models, num_samples, length = x.shape
    mask_NxL = (
        np.ones((num_samples, length), dtype=bool)
        if inputs.mask_NxL is None
        else np.asarray(inputs.mask_NxL, dtype=bool)
    )
    sums = {name: _side_sums(x, on) for name, on in (("in", keep_SxN), ("out", ~keep_SxN))}
    scores, profiles = [], []
    for t in np.asarray(targets_T, dtype=np.int64):
        weight_NxL, prof = profile_weights(x, keep_SxN, mask_NxL, int(t), opt["bins"], sums)
        a_SxN = np.stack(
            [
                (np.asarray(x[s], dtype=np.float64) * weight_NxL).sum(-1) / length
                for s in range(num_models)
            ]
        )
        scores.append(lira.lira_on_mean(a_SxN, keep_SxN, np.array([t]), opt, direction=1.0)[0])
        profiles.append({k: np.asarray(v).tolist() for k, v in prof.items()})
    diagnostics = {"options": opt, "equal_count_rule": True, "profile_first_target": profiles[0]}
    return AttackOutput(scores_TxN=np.stack(scores), diagnostics=diagnostics)

"""Sparse aggregation of per-token evidence (``sparse``): top-k and higher criticism.

Legend: S shadow models, N samples, L positions, T targets.

When few tokens carry the membership signal (a secret in ordinary text, the
surprising tokens of a fine-tuned sample), the mean over all L positions
dilutes it with L - few noise terms, and so does any sum of per-token terms.
This attack scores each present position separately and keeps only the
strongest evidence. Per target t, sample n and present position l, with each
side's per-position moments fitted leave-one-out under the equal-count rule of
``loo.py`` (the same fits as ``seq:cov=diag``):

- ``mode='offline'`` (default): z[l] = d (x[l] - mu_out[l]) / sd_out[l], the
  target's statistic in OUT standard deviations, d = +1 for ``logit``
  (members higher) and -1 for ``loss``; its one-sided p-value p[l] = Phi(-z[l]);
- ``mode='online'``: the per-token log-likelihood ratio
  e[l] = log N(x[l]; mu_in, v_in) - log N(x[l]; mu_out, v_out).

Variances are the predictive ddof=1 variances v * (1 + 1/k) of ``lira``;
``variance='fixed'`` pools each position's variance over the samples (per
side), the per-token analogue of ``lira:variance=fixed``.

``agg`` collapses a sample's evidence to one score (higher = member):

- ``topk``: the mean of the ceil(k * present) largest terms (z offline, e
  online); k = 1 is the mean of all of them;
- ``hc`` (offline only): the higher-criticism statistic of the p-values
  (Donoho and Jin 2004), with m present positions and p_(1) <= ... <= p_(m),
  max over i <= max(1, floor(alpha * m)) of
  sqrt(m) (i/m - p_(i)) / sqrt(p_(i) (1 - p_(i))). It asks whether more
  p-values are small than chance allows, at whatever level that happens, so
  it needs no k;
- ``mean``: the mean of all terms (the dense reference point).

``null`` says what a term is measured against:

- ``gaussian`` (default): the raw term (z, e), and for ``hc`` the Gaussian
  p-value Phi(-z);
- ``empirical``: each position's own null distribution, from the shadows.
  Every model s is scored as a target once, with the same fits. The terms of
  the models' OUT samples at position l, over every model but the target and
  every sample but the term's own (``empirical_p_values``), form position l's
  null (about (S - 1) N / 2 values). A term becomes its upper-tail p-value
  p = (1 + #{null >= term}) / (2 + #null), in (0, 1) so that z' stays
  finite; ``topk`` and ``mean`` take z' = Phi^-1(1 - p). A position whose
  terms are heavy-tailed under the null then gets p-values as large as its
  tails warrant, so its tails alone cannot outrank a position with a real
  shift. ``hc`` then works online too. Cost: all S models' terms, not only
  the targets'. (On the secrets audit it did not help: the tails there are
  close to Student t; docs/study.md H17.)

Absent positions never enter a ranking, a mean or a null. Scores are float64 numpy.
"""

import dataclasses
import functools
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special

from seqmia_jax.attacks import common, gaussian, loo
from seqmia_jax.attacks.base import (
    AttackInputError,
    AttackInputs,
    AttackOptions,
    AttackOutput,
    option,
    register_attack,
)
from seqmia_jax.attacks.baseref import top_counts
from seqmia_jax.attacks.lira import Statistic, Variance


@dataclasses.dataclass(frozen=True)
class SparseOptions(AttackOptions):
    statistic: Statistic = "logit"
    mode: Literal["offline", "online"] = "offline"
    variance: Variance = "per_sample"
    agg: Literal["topk", "hc", "mean"] = "topk"
    k: float = option(0.1, check=lambda k: 0.0 < k <= 1.0, rule="in (0, 1]")  # topk's fraction
    alpha: float = option(0.5, check=lambda a: 0.0 < a <= 1.0, rule="in (0, 1]")  # hc's range
    null: Literal["gaussian", "empirical"] = "gaussian"

    def validate(self) -> None:
        if self.agg == "hc" and self.mode != "offline" and self.null != "empirical":
            raise AttackInputError(
                "sparse: agg='hc' needs mode='offline' or null='empirical' (it ranks p-values)"
            )


def _pool_positions(var_NxL, k_N, mask_NxL):
    """Each position's variance pooled over the samples where it is present (ddof weights)."""
    w_NxL = jnp.where(mask_NxL, (k_N - 1.0)[:, None], 0.0)
    pooled_L = jnp.sum(w_NxL * var_NxL, 0) / jnp.maximum(jnp.sum(w_NxL, 0), 1.0)
    return jnp.broadcast_to(pooled_L[None], var_NxL.shape)


def _predictive(mom: common.SideMoments, mask_NxL, fixed: bool):
    var = _pool_positions(mom.var_NxL, mom.k_N, mask_NxL) if fixed else mom.var_NxL
    scale = jnp.sum(jnp.where(mask_NxL, var, 0.0)) / jnp.maximum(jnp.sum(mask_NxL), 1) + 1e-300
    var = jnp.maximum(var, 1e-12 * scale)  # a side with k = 1 has no variance estimate
    return var * (1.0 + 1.0 / mom.k_N)[:, None]


@functools.partial(jax.jit, static_argnames=("mode", "fixed", "direction"))
def _terms(mode, fixed, direction, side, mask_NxL, x_t_NxL, on_in_N):
    """N x L per-token evidence of one target: z (offline) or the log-likelihood ratio (online)."""
    out = common.equal_count_moments(side["out"], x_t_NxL, ~on_in_N)
    v_out = _predictive(out, mask_NxL, fixed)
    if mode == "offline":
        return direction * (x_t_NxL - out.mu_NxL) / jnp.sqrt(v_out)
    inn = common.equal_count_moments(side["in"], x_t_NxL, on_in_N)
    v_in = _predictive(inn, mask_NxL, fixed)

    def log_normal(mu, var):
        return -0.5 * (x_t_NxL - mu) ** 2 / var - 0.5 * jnp.log(var)

    return log_normal(inn.mu_NxL, v_in) - log_normal(out.mu_NxL, v_out)


def _sorted_desc(values_NxL: np.ndarray, mask_NxL: np.ndarray) -> np.ndarray:
    """Each row's present values, largest first; absent positions last as -inf."""
    return -np.sort(np.where(mask_NxL, -values_NxL, np.inf), axis=1)


def top_mean(terms_NxL: np.ndarray, mask_NxL: np.ndarray, k: float) -> np.ndarray:
    """Per row, the mean of the ceil(k * present) largest present terms."""
    count_N = top_counts(k, mask_NxL.sum(1))
    desc_NxL = _sorted_desc(terms_NxL, mask_NxL)
    take_NxL = np.arange(terms_NxL.shape[1])[None] < count_N[:, None]
    return np.where(take_NxL, desc_NxL, 0.0).sum(1) / count_N


def higher_criticism(z_NxL: np.ndarray, mask_NxL: np.ndarray, alpha: float) -> np.ndarray:
    """Per row, HC over the present positions' one-sided p-values Phi(-z) (module docstring)."""
    present_N = mask_NxL.sum(1)
    desc_NxL = _sorted_desc(z_NxL, mask_NxL)  # largest z = smallest p first
    p_NxL = np.clip(scipy.special.ndtr(-desc_NxL), 1e-300, 1.0 - 1e-16)
    m = np.maximum(present_N, 1).astype(np.float64)[:, None]
    i = np.arange(1, z_NxL.shape[1] + 1, dtype=np.float64)[None]
    hc_NxL = np.sqrt(m) * (i / m - p_NxL) / np.sqrt(p_NxL * (1.0 - p_NxL))
    upto_N = np.maximum(1, np.floor(np.round(alpha * present_N, 9))).astype(np.int64)
    return np.where(i <= upto_N[:, None], hc_NxL, -np.inf).max(1)


def empirical_p_values(terms_SxNxL, out_SxN, mask_NxL, targets_T):
    """Per target, each term's upper-tail p-value in its position's null (module docstring).

    The null of target t's sample n at position l: the terms of every model
    s != t at its OUT samples n' != n where l is present. Leaving sample n out
    matters: the fits behind the other models' terms at n include the target's
    own x_t[n] when t is OUT there, which would tie the null to t's membership.
    """
    null_SxNxL = out_SxN[:, :, None] & mask_NxL[None]
    above_TxNxL = np.zeros((len(targets_T),) + terms_SxNxL.shape[1:])  # null terms >= the query
    total_TxNxL = np.zeros_like(above_TxNxL)
    for i, t in enumerate(targets_T):
        # left out: the other models' null terms at the query's own sample ...
        others_SxNxL = null_SxNxL.copy()
        others_SxNxL[t] = False
        above_TxNxL[i] = -np.sum(others_SxNxL & (terms_SxNxL >= terms_SxNxL[t][None]), 0)
        total_TxNxL[i] = -others_SxNxL.sum(0)
    for pos in range(terms_SxNxL.shape[2]):
        pooled = np.sort(terms_SxNxL[:, :, pos][null_SxNxL[:, :, pos]])
        for i, t in enumerate(targets_T):
            # ... and every null term of the target model itself
            own = np.sort(terms_SxNxL[t, :, pos][null_SxNxL[t, :, pos]])
            query_N = terms_SxNxL[t, :, pos]
            above_TxNxL[i, :, pos] += (len(pooled) - np.searchsorted(pooled, query_N, "left")) - (
                len(own) - np.searchsorted(own, query_N, "left")
            )
            total_TxNxL[i, :, pos] += len(pooled) - len(own)
    return (1.0 + above_TxNxL) / (2.0 + total_TxNxL)


@register_attack("sparse", SparseOptions)
def sparse(inputs: AttackInputs, targets_T: np.ndarray, opt: SparseOptions) -> AttackOutput:
    """Top-k or higher criticism of per-token LOO evidence (see module docstring)."""
    x = common.statistic(inputs, "sparse", opt.statistic)
    keep_SxN = np.asarray(inputs.keep_SxN, dtype=bool)
    mask_NxL = common.presence_mask(inputs.mask_NxL, *x.shape[1:])
    targets_T = np.asarray(targets_T, dtype=np.int64)
    empirical = opt.null == "empirical"
    with gaussian.float64_scope():
        stats = loo.collect(x, keep_SxN, inputs.mask_NxL, None)

        def terms_of(t):
            terms = _terms(
                opt.mode,
                opt.variance == "fixed",
                common.direction(opt.statistic),
                stats.side,
                stats.mask_NxL,
                loo.target_row(x, int(t), stats),
                jnp.asarray(keep_SxN[t]),
            )
            return np.asarray(terms, np.float64)

        # The empirical null needs every model's terms; the targets' are among them.
        models_M = np.arange(len(keep_SxN)) if empirical else targets_T
        terms_MxNxL = np.stack([terms_of(t) for t in models_M])
    terms_TxNxL = terms_MxNxL
    if empirical:
        p_TxNxL = empirical_p_values(terms_MxNxL, ~keep_SxN, mask_NxL, targets_T)
        terms_TxNxL = -scipy.special.ndtri(p_TxNxL)  # z' = Phi^-1(1 - p)
    rows = []
    for terms_NxL in terms_TxNxL:
        if opt.agg == "hc":
            rows.append(higher_criticism(terms_NxL, mask_NxL, opt.alpha))
        else:
            rows.append(top_mean(terms_NxL, mask_NxL, 1.0 if opt.agg == "mean" else opt.k))
    diagnostics = {"options": opt.as_dict(), "equal_count_rule": loo.equal_counts(keep_SxN)}
    return AttackOutput(scores_TxN=np.stack(rows), diagnostics=diagnostics)

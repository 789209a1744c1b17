"""Univariate LiRA on the sequence mean, ours (``lira``) and Carlini's (``carlini``).

Legend: S shadow models, N samples, L positions, T targets.

Both attacks collapse a sequence to A_SxN = the mean of the statistic over its
present positions, then fit one Gaussian per sample and side.

``lira`` (ours), leave-one-out with the equal-count rule of ``loo.py``:
- centre = mean of the K_side - 1 shadows; variance = ddof=1 sample variance
  times (1 + 1/k), the predictive variance of a new draw when the mean itself
  is estimated from k shadows. ``variance='fixed'`` pools the within-sample
  variances over all samples of a side (Carlini's global std also mixes in the
  spread *between* samples' means, which is not a noise level).
- online: log N(A; mu_in, v_in) - log N(A; mu_out, v_out). The likelihood
  ratio needs no sign convention, so ``loss`` and ``logit`` use the same
  formula.
- offline, ``offline_test='one_sided'`` (LiRA paper): score = -log P_OUT(Z at
  least as member-like as A) = -log Phi(-d z), z = (A - mu_out)/sd_out, with
  d = +1 for ``logit`` (members score higher) and -1 for ``loss`` (members
  have lower loss). ``'two_sided'``: -log N(A; mu_out, v_out) as in plot.py.

``carlini`` transcribes tensorflow/privacy research/mi_lira_2021/plot.py
(``generate_ours`` / ``generate_ours_offline``), with the held-out target
model as the single test model and the others as shadows, in model order:
- each sample keeps the first in_size IN and first out_size OUT shadows, where
  in_size = min over samples of the IN count (same for OUT);
- centre = median, scale = np.std (ddof=0) + 1e-30;
- online score = logpdf_in - logpdf_out (plot.py sweeps -prediction where
  prediction = -logpdf_in + logpdf_out, so this is its member score);
- offline score = -logpdf_out (two-sided);
- ``fix_variance``: std_in = np.std(dat_in) over all samples and shadows. The
  reference then sets std_out = np.std(dat_in) too; ``fixed_variance_bug=True``
  (default) reproduces that line, since this attack's contract is literal
  reproduction; False uses np.std(dat_out). Offline fix_variance uses
  np.std(dat_out) in the reference and here. The reference's augmentation
  axis is our single A per sample. It is exempt from null calibration: with
  the target missing from its side, its plug-in fits are not calibrated.
"""

import dataclasses
import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm

from seqmia_jax.attacks import common, gaussian, loo
from seqmia_jax.attacks.base import AttackInputs, AttackOptions, AttackOutput, register_attack

Statistic = Literal["logit", "loss"]
Mode = Literal["online", "offline"]
Variance = Literal["per_sample", "fixed"]
OfflineTest = Literal["one_sided", "two_sided"]


@dataclasses.dataclass(frozen=True)
class LiraOptions(AttackOptions):
    statistic: Statistic = "logit"
    mode: Mode = "online"
    variance: Variance = "per_sample"
    offline_test: OfflineTest = "one_sided"


@dataclasses.dataclass(frozen=True)
class CarliniOptions(AttackOptions):
    statistic: Statistic = "logit"
    mode: Mode = "online"
    fix_variance: bool = False
    fixed_variance_bug: bool = True  # plot.py's std_out = np.std(dat_in) under fix_variance


def sequence_mean(x_SxNxL: np.ndarray, mask_NxL: np.ndarray | None) -> np.ndarray:
    """A_SxN: float64 mean over present positions, streamed over samples."""
    num_models, num_samples, length = x_SxNxL.shape
    out_SxN = np.empty((num_models, num_samples))
    chunk = max(1, (1 << 27) // (8 * num_models * length))
    for n0 in range(0, num_samples, chunk):
        x = np.asarray(x_SxNxL[:, n0 : n0 + chunk], dtype=np.float64)
        if mask_NxL is None:
            out_SxN[:, n0 : n0 + chunk] = x.mean(axis=-1)
        else:
            m = np.asarray(mask_NxL[n0 : n0 + chunk], dtype=bool)
            out_SxN[:, n0 : n0 + chunk] = np.where(m, x, 0.0).sum(-1) / np.maximum(m.sum(-1), 1)
    return out_SxN


def _log_normal(x, mu, var):
    return -0.5 * (x - mu) ** 2 / var - 0.5 * jnp.log(var) - 0.5 * math.log(2.0 * math.pi)


def _pooled_var(var_N, k_N):
    # A sample with no shadow on a side (k=0, possible under poisson membership)
    # has no moments; it must not poison every other sample's pooled variance.
    w_N = jnp.maximum(k_N - 1.0, 0.0)
    return jnp.sum(jnp.where(w_N > 0, w_N * var_N, 0.0)) / jnp.maximum(jnp.sum(w_N), 1.0)


def _floor(var, k_N):
    # A side with a single shadow (k=1) has no variance estimate; keep it finite.
    # Samples without any shadow (k=0: NaN moments, NaN scores) stay out of the scale.
    has_N = k_N >= 1
    scale = jnp.sum(jnp.where(has_N, var, 0.0)) / jnp.maximum(jnp.sum(has_N), 1) + 1e-300
    return jnp.maximum(var, 1e-12 * scale)


@functools.partial(jax.jit, static_argnames=("mode", "variance", "offline_test", "direction"))
def _lira_scores(mode, variance, offline_test, direction, side, center_N, a_TxN, on_in_TxN):
    """Scores of all targets at once (vmapped; T x N is small)."""

    def one(a_raw_N, on_in_N):
        a = a_raw_N - center_N
        fit = {}
        for name, on in (("in", on_in_N), ("out", ~on_in_N)):
            if mode == "offline" and name == "in":
                continue
            mom = common.equal_count_moments(side[name], a[:, None], on)
            mu, var, k = mom.mu_NxL[:, 0], mom.var_NxL[:, 0], mom.k_N
            if variance == "fixed":
                var = jnp.full_like(var, _pooled_var(var, k))
            fit[name] = (mu, _floor(var, k) * (1.0 + 1.0 / k))
        if mode == "online":
            return _log_normal(a, *fit["in"]) - _log_normal(a, *fit["out"])
        if offline_test == "one_sided":
            mu, var = fit["out"]
            return -norm.logcdf(-direction * (a - mu) / jnp.sqrt(var))
        return -_log_normal(a, *fit["out"])

    return jax.vmap(one)(a_TxN, on_in_TxN)


@register_attack("lira", LiraOptions)
def lira(inputs: AttackInputs, targets_T: np.ndarray, opt: LiraOptions) -> AttackOutput:
    """Univariate LiRA on the sequence mean (see module docstring)."""
    x = common.statistic(inputs, "lira", opt.statistic)
    a_SxN = sequence_mean(x, inputs.mask_NxL)
    return AttackOutput(
        scores_TxN=lira_on_mean(
            a_SxN, inputs.keep_SxN, targets_T, opt, common.direction(opt.statistic)
        ),
        diagnostics={
            "equal_count_rule": loo.equal_counts(inputs.keep_SxN),
            "options": opt.as_dict(),
        },
    )


def lira_on_mean(
    a_SxN: np.ndarray,
    keep_SxN: np.ndarray,
    targets_T: np.ndarray,
    opt: LiraOptions,
    direction: float,
) -> np.ndarray:
    """Scores T x N of LiRA on one number per model and sample (``opt.statistic`` unused);
    ``direction`` +1 when members score higher."""
    keep_SxN = np.asarray(keep_SxN, dtype=bool)
    targets_T = np.asarray(targets_T, dtype=np.int64)
    with gaussian.float64_scope():
        stats = loo.collect(np.asarray(a_SxN, dtype=np.float64)[..., None], keep_SxN, None)
        scores = _lira_scores(
            opt.mode,
            opt.variance,
            opt.offline_test,
            direction,
            stats.side,
            stats.center_NxL[:, 0],
            jnp.asarray(a_SxN[targets_T]),
            jnp.asarray(keep_SxN[targets_T]),
        )
        return np.asarray(scores, dtype=np.float64)


def _np_log_normal(x, mu, std):
    return -0.5 * ((x - mu) / std) ** 2 - np.log(std) - 0.5 * math.log(2.0 * math.pi)


@register_attack("carlini", CarliniOptions)
def carlini(inputs: AttackInputs, targets_T: np.ndarray, opt: CarliniOptions) -> AttackOutput:
    """LiRA exactly as tensorflow/privacy mi_lira_2021/plot.py computes it."""
    a_SxN = sequence_mean(common.statistic(inputs, "carlini", opt.statistic), inputs.mask_NxL)
    keep_SxN = np.asarray(inputs.keep_SxN, dtype=bool)
    num_models, num_samples = keep_SxN.shape
    cols = np.arange(num_samples)
    scores = []
    for t in np.asarray(targets_T):
        shadows = np.delete(np.arange(num_models), int(t))
        keep_sh, a_sh = keep_SxN[shadows], a_SxN[shadows]
        # Stable argsort puts each side's shadows first, in model order, as
        # plot.py's boolean indexing does; then truncate to the smallest count.
        dat = {}
        for side, on in (("in", keep_sh), ("out", ~keep_sh)):
            size = min(int(on.sum(0).min()), 100000)
            order = np.argsort(~on, axis=0, kind="stable")[:size]
            dat[side] = a_sh[order, cols]  # size x N
        mean_out = np.median(dat["out"], 0)
        a = a_SxN[t]
        if opt.mode == "online":
            mean_in = np.median(dat["in"], 0)
            if opt.fix_variance:
                std_in = np.std(dat["in"])
                std_out = np.std(dat["in"] if opt.fixed_variance_bug else dat["out"])
            else:
                std_in, std_out = np.std(dat["in"], 0), np.std(dat["out"], 0)
            score = _np_log_normal(a, mean_in, std_in + 1e-30) - _np_log_normal(
                a, mean_out, std_out + 1e-30
            )
        else:
            std_out = np.std(dat["out"]) if opt.fix_variance else np.std(dat["out"], 0)
            score = -_np_log_normal(a, mean_out, std_out + 1e-30)
        scores.append(score.astype(np.float64))
    return AttackOutput(scores_TxN=np.stack(scores), diagnostics={"options": opt.as_dict()})

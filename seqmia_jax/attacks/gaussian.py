"""Float64 Gaussian numerics shared by the LiRA attacks.

Legend: N samples, L positions, B a batch of samples, G knots of a tabulated
marginal, R pooled residual rows.

- ``float64_scope``: x64 for the attack stage only, never process-wide.
- Correlation estimates from pooled cross-products, shrunk towards the
  identity (i.e. the covariance towards its diagonal) by OAS, Ledoit-Wolf or a
  fixed intensity.
- Cholesky with an in-graph jitter fallback; no explicit inverse anywhere.
- Everything here is pure, so the attacks trace it into one jitted,
  target-vmapped program.
- Chain-rule log densities: with C = chol chol^T and w = chol^-1 z,
  log N(z; 0, C) = sum_l [-w_l^2 / 2 - log chol_ll - log(2 pi) / 2], where
  term l is log p(z_l | z_<l). These terms are the per-position evidence.
- Masked samples: the model of a sample with present set P is the Gaussian
  restricted to P. We use the padded matrix C_P = C on P x P, identity
  elsewhere, whose Cholesky factor decouples the absent positions exactly.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_solve, solve_triangular
from jax.scipy.special import ndtr, ndtri

LOG_2PI = math.log(2.0 * math.pi)
SHRINKAGE_METHODS = ("oas", "lw")


def float64_scope():
    """Context manager enabling float64 in jax without leaking to the rest of the process."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64  # older/newer jax spellings

    return enable_x64()


@jax.jit
def correlation_from_cross(cross_LxL, dof_LxL):
    """Pairwise-complete covariance -> (correlation R_LxL, std_L, present_L).

    Positions with no degrees of freedom get a unit row, so they decouple.
    """
    present_L = jnp.diag(dof_LxL) > 0
    cov = jnp.where(dof_LxL > 0, cross_LxL / jnp.maximum(dof_LxL, 1e-300), 0.0)
    std_L = jnp.sqrt(jnp.maximum(jnp.diag(cov), 0.0))
    std_L = jnp.where(present_L & (std_L > 0), std_L, 1.0)
    corr = cov / jnp.outer(std_L, std_L)
    both = jnp.outer(present_L, present_L)
    eye = jnp.eye(cov.shape[0])
    corr = jnp.where(both, corr, 0.0) * (1.0 - eye) + eye
    return corr, std_L, present_L


def shrinkage_intensity(corr_LxL, present_L, n_eff, method, fourth):
    """Shrinkage towards I of a correlation matrix estimated from n_eff residual dof (pure).

    OAS (Chen et al. 2010) needs only second moments. Ledoit-Wolf needs
    ``fourth`` = sum over residual vectors of ||z||^4, with z standardized so
    that sum z z^T = n_eff * corr. ``method`` is static: a name or a float.
    """
    if not isinstance(method, str):
        return jnp.asarray(float(method), dtype=corr_LxL.dtype)
    p = jnp.sum(present_L).astype(corr_LxL.dtype)
    off2 = jnp.sum((corr_LxL - jnp.eye(corr_LxL.shape[0])) ** 2)
    degenerate = (off2 <= 0.0) | (p < 2)
    p = jnp.where(degenerate, 2.0, p)
    off2 = jnp.where(degenerate, 1.0, off2)
    tr2 = p + off2
    if method == "oas":
        rho = jnp.minimum(1.0, ((1.0 - 2.0 / p) * tr2 + p * p) / ((n_eff + 1.0 - 2.0 / p) * off2))
    else:
        beta = (fourth / n_eff - tr2) / n_eff
        rho = jnp.minimum(jnp.maximum(beta, 0.0), off2) / off2
    return jnp.where(degenerate, 1.0, rho)


def shrunk_correlation(cross_LxL, dof_LxL, method, fourth=None):
    """(shrunk correlation, std_L, rho) from pairwise-complete cross-products (pure)."""
    corr, std_L, present_L = correlation_from_cross(cross_LxL, dof_LxL)
    n_eff = jnp.sum(jnp.where(present_L, jnp.diag(dof_LxL), 0.0)) / jnp.maximum(
        jnp.sum(present_L), 1
    )
    rho = shrinkage_intensity(corr, present_L, n_eff, method, fourth)
    return shrink(corr, rho), std_L, rho


def shrink(corr_LxL, rho):
    eye = jnp.eye(corr_LxL.shape[0])
    return (1.0 - rho) * corr_LxL + rho * eye


_JITTER_EXPONENTS = np.arange(-12, 1)  # jitter 10^k * mean(diag), k = -12 ... 0


def jittered_cholesky(a_LxL, factor=jnp.linalg.cholesky) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Cholesky factor with the smallest jitter 10^k * mean(diag) (k = -12..0) that is finite.

    Pure: all 13 candidates are factored at once (no data-dependent loop, which
    can stall XLA's CPU runtime); callers use it only for the rare matrices
    whose plain ``jnp.linalg.cholesky`` is not finite. Returns (chol, jitter,
    ok); ``ok`` False means even the largest jitter failed. ``factor`` is the
    batched Cholesky to use (``batched_cholesky`` for per-sample matrices).
    """
    scale = jnp.mean(jnp.diag(a_LxL))
    jitters = scale * 10.0 ** jnp.asarray(_JITTER_EXPONENTS, dtype=a_LxL.dtype)
    eye = jnp.eye(a_LxL.shape[0], dtype=a_LxL.dtype)
    chols = factor(a_LxL[None] + jitters[:, None, None] * eye[None])
    finite = jnp.all(jnp.isfinite(chols), axis=(1, 2))
    first = jnp.argmax(finite)
    return chols[first], jitters[first], jnp.any(finite)


def padded(a_LxL, present_L):
    """Matrix of the sub-vector on ``present_L``, identity on absent positions."""
    both = jnp.outer(present_L, present_L)
    return jnp.where(both, a_LxL, 0.0) + jnp.diag(jnp.where(present_L, 0.0, 1.0))


def chain_terms(chol_LxL, z_BxL, extra_BxL, mask_BxL):
    """Per-position terms of log N(z; 0, chol chol^T) + extra, zero where masked."""
    w_BxL = solve_triangular(chol_LxL, z_BxL.T, lower=True).T
    terms = -0.5 * w_BxL**2 - jnp.log(jnp.diag(chol_LxL))[None] + extra_BxL
    return jnp.where(mask_BxL, terms, 0.0)


def diag_chain_terms(z_BxL, extra_BxL, mask_BxL):
    """``chain_terms`` with an identity factor, without the triangular solve."""
    return jnp.where(mask_BxL, -0.5 * z_BxL**2 + extra_BxL, 0.0)


def diag_gls_terms(z_BxL, a_BxL, mask_BxL):
    """``gls_terms`` with an identity factor."""
    norm_B = jnp.sqrt(jnp.maximum(jnp.sum(a_BxL * a_BxL, axis=-1), 1e-300))
    return jnp.where(mask_BxL, a_BxL * z_BxL / norm_B[:, None], 0.0)


def gls_terms(chol_LxL, z_BxL, a_BxL, mask_BxL):
    """Per-position parts of a^T C^-1 z / sqrt(a^T C^-1 a), the GLS shift statistic."""
    q_BxL = cho_solve((chol_LxL, True), a_BxL.T).T
    norm_B = jnp.sqrt(jnp.maximum(jnp.sum(q_BxL * a_BxL, axis=-1), 1e-300))
    return jnp.where(mask_BxL, q_BxL * z_BxL / norm_B[:, None], 0.0)


# ---------------------------------------------------------------- per-sample factors
# Batches of one L x L matrix per sample, factored and solved with O(L) loops of
# batched XLA ops instead of LAPACK custom calls: XLA:CPU's batched LAPACK
# kernels split a large batch over the intra-op thread pool and block until it
# is done, and two of them running at once (one per side) on a 2-thread pool
# deadlocked (jax 0.10.2, 12,500 samples). Same flops, no nested parallelism.


def batched_cholesky(a_BxLxL):
    """Lower Cholesky factors of a batch (column by column); NaN where not positive definite."""
    length = a_BxLxL.shape[-1]
    rows_BxL = jnp.arange(length).reshape((1,) * (a_BxLxL.ndim - 2) + (length,))

    def column(j, l_BxLxL):
        # Columns >= j of the factor are still zero, so l @ l[j] sums over k < j only.
        row_BxL = jax.lax.dynamic_index_in_dim(l_BxLxL, j, axis=-2, keepdims=False)
        a_col = jax.lax.dynamic_index_in_dim(a_BxLxL, j, axis=-1, keepdims=False)
        col_BxL = a_col - jnp.einsum("...ik,...k->...i", l_BxLxL, row_BxL)
        pivot = jnp.sqrt(jax.lax.dynamic_index_in_dim(col_BxL, j, axis=-1, keepdims=False))
        new_BxL = jnp.where(rows_BxL >= j, col_BxL / pivot[..., None], 0.0)
        return jax.lax.dynamic_update_index_in_dim(l_BxLxL, new_BxL, j, axis=-1)

    return jax.lax.fori_loop(0, length, column, jnp.zeros_like(a_BxLxL))


def batched_forward(chol_BxLxL, z_BxL):
    """w with chol w = z, per batch row (forward substitution)."""

    def step(j, w_BxL):
        row_BxL = jax.lax.dynamic_index_in_dim(chol_BxLxL, j, axis=-2, keepdims=False)
        z_j = jax.lax.dynamic_index_in_dim(z_BxL, j, axis=-1, keepdims=False)
        diag = jax.lax.dynamic_index_in_dim(row_BxL, j, axis=-1, keepdims=False)
        w_j = (z_j - jnp.sum(row_BxL * w_BxL, axis=-1)) / diag  # w_k = 0 for k >= j
        return jax.lax.dynamic_update_index_in_dim(w_BxL, w_j, j, axis=-1)

    return jax.lax.fori_loop(0, z_BxL.shape[-1], step, jnp.zeros_like(z_BxL))


def batched_backward(chol_BxLxL, w_BxL):
    """q with chol^T q = w, per batch row (backward substitution)."""
    length = w_BxL.shape[-1]

    def step(i, q_BxL):
        j = length - 1 - i
        col_BxL = jax.lax.dynamic_index_in_dim(chol_BxLxL, j, axis=-1, keepdims=False)
        w_j = jax.lax.dynamic_index_in_dim(w_BxL, j, axis=-1, keepdims=False)
        diag = jax.lax.dynamic_index_in_dim(col_BxL, j, axis=-1, keepdims=False)
        q_j = (w_j - jnp.sum(col_BxL * q_BxL, axis=-1)) / diag  # q_k = 0 for k <= j
        return jax.lax.dynamic_update_index_in_dim(q_BxL, q_j, j, axis=-1)

    return jax.lax.fori_loop(0, length, step, jnp.zeros_like(w_BxL))


def sample_chain_terms(chol_BxLxL, z_BxL, extra_BxL, mask_BxL):
    """``chain_terms`` with one factor per row."""
    w_BxL = batched_forward(chol_BxLxL, z_BxL)
    log_diag = jnp.log(jnp.diagonal(chol_BxLxL, axis1=-2, axis2=-1))
    return jnp.where(mask_BxL, -0.5 * w_BxL**2 - log_diag + extra_BxL, 0.0)


def sample_gls_terms(chol_BxLxL, z_BxL, a_BxL, mask_BxL):
    """``gls_terms`` with one factor per row."""
    q_BxL = batched_backward(chol_BxLxL, batched_forward(chol_BxLxL, a_BxL))
    norm_B = jnp.sqrt(jnp.maximum(jnp.sum(q_BxL * a_BxL, axis=-1), 1e-300))
    return jnp.where(mask_BxL, q_BxL * z_BxL / norm_B[:, None], 0.0)


def mask_patterns(mask_NxL: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Unique mask rows and, for each, the samples that share it."""
    if mask_NxL.all():  # fast path: np.unique over rows is slow for large N
        return mask_NxL[:1], [np.arange(mask_NxL.shape[0])]
    patterns_UxL, inverse = np.unique(mask_NxL, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(patterns_UxL) + 1))
    return patterns_UxL, [order[bounds[u] : bounds[u + 1]] for u in range(len(patterns_UxL))]


def bucket(n: int) -> int:
    """Pads group sizes to powers of two so jit compiles O(log N) shapes only."""
    return 1 << max(0, (n - 1).bit_length())


# ---------------------------------------------------------------- empirical marginals
# A smoothed histogram per position: pooled standardized residuals are linearly
# binned onto G knots spanning [-B_l, B_l] (B_l = max |u| + 6 h_l), smoothed
# with a Gaussian kernel of Silverman bandwidth h_l = 1.06 sd_l n_l^(-1/5), and
# mixed with weight 1/(n_l + 1) with a Gaussian N(mean_l, sd_l^2) so the CDF is
# strictly increasing. The CDF is piecewise linear between knots and the
# density is its slope (piecewise constant), so F and f are one consistent
# distribution. Values beyond the knots are clamped to the edge.


class Marginal(NamedTuple):
    """A tabulated marginal per position: CDF F_LxG at knots -B_l + j delta_l."""

    cdf_LxG: jax.Array
    bound_L: jax.Array
    delta_L: jax.Array


def fit_marginal(u_RxL, w_RxL, num_knots: int = 512) -> Marginal:
    """The smoothed-histogram marginal of weighted residual rows (weights 0 drop a row)."""
    knots_G = jnp.arange(num_knots, dtype=u_RxL.dtype)
    n_L = jnp.maximum(jnp.sum(w_RxL, axis=0), 1.0)
    mean_L = jnp.sum(w_RxL * u_RxL, axis=0) / n_L
    sd_L = jnp.sqrt(jnp.sum(w_RxL * (u_RxL - mean_L[None]) ** 2, axis=0) / n_L)
    sd_L = jnp.where(sd_L > 0, sd_L, 1.0)
    h_L = 1.06 * sd_L * n_L ** (-0.2)
    bound_L = jnp.max(jnp.where(w_RxL > 0, jnp.abs(u_RxL), 0.0), axis=0) + 6.0 * h_L
    delta_L = 2.0 * bound_L / (num_knots - 1)
    pos = (jnp.clip(u_RxL, -bound_L[None], bound_L[None]) + bound_L[None]) / delta_L[None]
    i = jnp.clip(jnp.floor(pos), 0, num_knots - 2).astype(jnp.int32)
    frac = pos - i
    length = u_RxL.shape[1]
    flat = (jnp.arange(length)[None, :] * num_knots + i).reshape(-1)
    hist = jnp.zeros(length * num_knots)
    hist = hist.at[flat].add((w_RxL * (1.0 - frac)).reshape(-1))
    hist = hist.at[flat + 1].add((w_RxL * frac).reshape(-1))
    hist_LxG = hist.reshape(length, num_knots) / n_L[:, None]
    # Kernel CDF between knots i and j depends on (j - i) only: a convolution.
    lags = jnp.arange(-(num_knots - 1), num_knots)
    kern = ndtr(lags[None, :] * (delta_L / h_L)[:, None])
    # FFT convolution: a batched direct convolution is pathologically slow on CPU.
    n_fft = 4 * num_knots
    conv = jnp.fft.irfft(
        jnp.fft.rfft(hist_LxG, n_fft, axis=-1) * jnp.fft.rfft(kern, n_fft, axis=-1), n_fft, axis=-1
    )
    kde_LxG = conv[:, num_knots - 1 : 2 * num_knots - 1]
    grid_LxG = -bound_L[:, None] + knots_G[None, :] * delta_L[:, None]
    alpha_L = (1.0 / (n_L + 1.0))[:, None]
    gauss = ndtr((grid_LxG - mean_L[:, None]) / sd_L[:, None])
    return Marginal((1.0 - alpha_L) * kde_LxG + alpha_L * gauss, bound_L, delta_L)


def eval_marginal(cdf_LxG, bound_L, delta_L, u_BxL):
    """Normal score z = Phi^-1(F(u)) and log density log f(u) of the tabulated marginal."""
    num_knots = cdf_LxG.shape[1]
    pos = (jnp.clip(u_BxL, -bound_L[None], bound_L[None]) + bound_L[None]) / delta_L[None]
    i = jnp.clip(jnp.floor(pos), 0, num_knots - 2).astype(jnp.int32)
    frac = pos - i
    lo = jnp.take_along_axis(cdf_LxG.T, i, axis=0)
    hi = jnp.take_along_axis(cdf_LxG.T, i + 1, axis=0)
    cdf = jnp.clip(lo + frac * (hi - lo), 1e-300, 1.0 - 1e-16)
    log_density = jnp.log(jnp.maximum(hi - lo, 1e-300) / delta_L[None])
    return ndtri(cdf), log_density

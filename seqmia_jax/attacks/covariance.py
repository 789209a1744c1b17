"""The covariance models of sequence-aware LiRA (``seq:cov=<name>``), one class each.

Legend: N samples, C a chunk of samples, L positions, M samples in the
covariance subset, K rows of one side per subset sample, P samples of the
marginal subset, S shadow models.

Each model is a frozen dataclass deriving from ``seq_math.CovarianceModel``
and registered in ``COVARIANCES``; adding one is one class and its
registration line. It says how one side is fitted (``fit`` on the subset, or
``sample_fit`` per sample) and how residuals are standardized; the shared
maths (moments, floors, tying, chain-rule and GLS terms) and the execution
plan do the rest. ``pool`` is the tuple of sides whose residuals a fit uses:
the side itself, or both when tied, in a fixed order ("in", "out").

Pooled matrices come from the subset's sufficient statistics or residual
rows and are shrunk towards their diagonal by ``gaussian.shrunk_correlation``
(OAS, Ledoit-Wolf, or a given intensity); Ledoit-Wolf also needs the fourth
moment, sum over residual vectors of ||z||^4, with z standardized so that
sum z z^T = n_eff R.
"""

import dataclasses

import jax
import jax.numpy as jnp

from seqmia_jax.attacks import gaussian
from seqmia_jax.attacks.seq_math import (
    HALF_LOG_2PI,
    CovarianceModel,
    SideFit,
    Standardized,
    side_rows,
)
from seqmia_jax.registry import Registry

COVARIANCES: Registry[type[CovarianceModel]] = Registry("covariance model")


def _fourth(r_SxMxL, w_SxM):
    """Sum over weighted residual vectors of ||r||^4."""
    return jnp.sum(w_SxM * jnp.sum(r_SxMxL**2, axis=-1) ** 2)


@COVARIANCES.register("diag")
@dataclasses.dataclass(frozen=True)
class Diag(CovarianceModel):
    """C[n] = diag(v[n] (1 + 1/k)): positions independent."""

    factors = "none"


@COVARIANCES.register("pooled")
@dataclasses.dataclass(frozen=True)
class Pooled(CovarianceModel):
    """C[n] = (1 + 1/k_n) C: one residual covariance per side, pooled over samples.

    C comes from sufficient statistics: the subset's Gram matrix minus the
    removed rows and the k mu mu^T terms.
    """

    factors = "pooled"

    def fit(self, cfg, sub, mom_sub, on_sub_M, t, pool):
        mf = sub.mask_MxL.astype(jnp.float64)
        cross, dof = 0.0, 0.0
        for s in pool:
            mom = mom_sub[s]
            removed, mu, k = mom.removed_NxL, mom.mu_NxL, mom.k_N
            cross = cross + sub.gram_LxL[s] - removed.T @ removed - (mu * k[:, None]).T @ mu
            dof = dof + (mf * (k - 1.0)[:, None]).T @ mf
        fourth = None
        if cfg.shrinkage == "lw":
            _, std_L, _ = gaussian.correlation_from_cross(cross, dof)
            fourth = 0.0
            for s in pool:
                x_rows, w = side_rows(sub, on_sub_M, t, s)
                r = jnp.where(
                    sub.mask_MxL[None], (x_rows - mom_sub[s].mu_NxL[None]) / std_L[None, None], 0.0
                )
                fourth = fourth + _fourth(r, w)
        corr, std_L, rho = gaussian.shrunk_correlation(cross, dof, cfg.shrinkage, fourth)
        return SideFit(corr * jnp.outer(std_L, std_L), rho)

    def standardize(self, fit, mom, xc_CxL, mask_CxL):
        resid = xc_CxL - mom.mu_NxL
        d_C = jnp.sqrt(1.0 + 1.0 / mom.k_N)[:, None]
        z = jnp.where(mask_CxL, resid / d_C, 0.0)
        extra = jnp.broadcast_to(-jnp.log(d_C) - HALF_LOG_2PI, z.shape)
        return Standardized(z, extra, jnp.where(mask_CxL, 1.0 / d_C, 0.0))


@COVARIANCES.register("hetero")
@dataclasses.dataclass(frozen=True)
class Hetero(CovarianceModel):
    """C[n] = D[n] R D[n]: per-sample sds, R the correlation of pooled standardized residuals."""

    factors = "pooled"

    def fit(self, cfg, sub, mom_sub, on_sub_M, t, pool):
        m = sub.mask_MxL
        mf = m.astype(jnp.float64)
        cross, dof, fourth = 0.0, 0.0, 0.0
        for s in pool:
            mom = mom_sub[s]
            x_rows, w = side_rows(sub, on_sub_M, t, s)
            # Residual rows, not per-sample Gram matrices: those lose the exact
            # rank deficiency of few shadows, which jitter must see to repair.
            z_KxMxL = (x_rows - mom.mu_NxL[None]) / jnp.sqrt(mom.var_NxL)[None]
            z = jnp.where(m[None], z_KxMxL, 0.0) * w[..., None]
            flat = z.reshape(-1, z.shape[-1])
            cross = cross + flat.T @ flat
            dof = dof + (mf * (mom.k_N - 1.0)[:, None]).T @ mf
            if cfg.shrinkage == "lw":
                fourth = fourth + _fourth(z, w)
        corr, _, rho = gaussian.shrunk_correlation(cross, dof, cfg.shrinkage, fourth)
        return SideFit(corr, rho)


@COVARIANCES.register("copula")
@dataclasses.dataclass(frozen=True)
class Copula(CovarianceModel):
    """Gaussian copula with empirical marginals; with Gaussian marginals it is ``hetero``.

    The marginal of position l is the pooled standardized residuals u, rescaled
    by sqrt((k+1)/(k-1)) to the spread of a new draw around an estimated mean,
    as a smoothed histogram (``gaussian.fit_marginal``); R is the correlation
    of the normal scores z = Phi^-1(F(u)). Both are refit per target (the LOO
    standardization depends on it) on the marginal subset of P samples.
    log density = log N(z; 0, R) - sum log phi(z_l) + sum log f_l(x_l).
    """

    factors = "pooled"
    marginals = ("gaussian", "empirical")

    @classmethod
    def build(cls, marginal: str) -> CovarianceModel:
        return Hetero() if marginal == "gaussian" else cls()

    def fit(self, cfg, sub, mom_sub, on_sub_M, t, pool):
        pick = sub.pick_P
        m = sub.mask_MxL[pick]
        u_rows, w_rows = [], []
        for s in pool:
            mom = jax.tree.map(lambda v: v[pick], mom_sub[s])
            k = mom.k_N
            x_rows, w = side_rows(sub, on_sub_M, t, s)
            x_rows, w = x_rows[:, pick], w[:, pick]
            inflate = jnp.sqrt((k + 1.0) / jnp.maximum(k - 1.0, 1.0))[:, None]
            std_KxPxL = (x_rows - mom.mu_NxL[None]) / jnp.sqrt(mom.var_NxL)[None] * inflate[None]
            u = jnp.where(m[None], std_KxPxL, 0.0)
            u_rows.append(u * (w[..., None] > 0))
            w_rows.append(w)
        u_KxPxL, w_KxP = jnp.concatenate(u_rows), jnp.concatenate(w_rows)
        length = m.shape[-1]
        w_flat = (w_KxP[..., None] * m[None]).reshape(-1, length)
        marginal = gaussian.fit_marginal(u_KxPxL.reshape(-1, length), w_flat)
        z, _ = gaussian.eval_marginal(*marginal, u_KxPxL.reshape(-1, length))
        z = jnp.where(m, z.reshape(u_KxPxL.shape), 0.0) * w_KxP[..., None]
        flat = z.reshape(-1, length)
        fourth = jnp.sum(jnp.sum(flat**2, axis=-1) ** 2)
        mf = m.astype(jnp.float64)
        dof = (mf * jnp.sum(w_KxP, axis=0)[:, None]).T @ mf
        corr, _, rho = gaussian.shrunk_correlation(flat.T @ flat, dof, cfg.shrinkage, fourth)
        return SideFit(corr, rho, marginal)

    def standardize(self, fit, mom, xc_CxL, mask_CxL):
        resid = xc_CxL - mom.mu_NxL
        sd = jnp.sqrt(mom.var_NxL)
        u = jnp.where(mask_CxL, resid / sd, 0.0)
        z, log_density = gaussian.eval_marginal(*fit.marginal, u)
        z = jnp.where(mask_CxL, z, 0.0)
        return Standardized(
            z, 0.5 * z**2 + log_density - jnp.log(sd), jnp.where(mask_CxL, 1.0 / sd, 0.0)
        )


@COVARIANCES.register("full")
@dataclasses.dataclass(frozen=True)
class Full(CovarianceModel):
    """C[n] = D[n] R[n] D[n]: each sample's own correlation of its side's shadows.

    R[n] comes from sufficient statistics: the sample's cross-products over
    the side's shadows minus the removed row's and the k mu mu^T terms, over
    k - 1 dof, shrunk towards I per sample (n_eff = k - 1; with few shadows
    the raw matrix is singular and only shrinkage makes it usable). D[n] is
    the predictive sd of ``hetero``, so ``shrinkage=1`` gives ``diag``.
    """

    factors = "per_sample"

    def sample_fit(self, cfg, samples, mom, on_in_C, t, pool):
        mask = samples.mask_NxL
        mf = mask.astype(jnp.float64)
        both_CxLxL = mf[:, :, None] * mf[:, None, :]
        cross, dof = 0.0, 0.0
        for s in pool:
            mu, r, k = mom[s].mu_NxL, mom[s].removed_NxL, mom[s].k_N
            outer = (
                r[:, :, None] * r[:, None, :] + k[:, None, None] * mu[:, :, None] * mu[:, None, :]
            )
            cross = cross + samples.cross_NxLxL[s] - outer
            dof = dof + (k - 1.0)[:, None, None] * both_CxLxL
        fourth = None
        if cfg.shrinkage == "lw":
            _, std_CxL, _ = jax.vmap(gaussian.correlation_from_cross)(cross, dof)
            models_S = jnp.arange(samples.keep_NxS.shape[1])
            fourth = 0.0
            for s in pool:
                on_side_C = on_in_C if s == "in" else ~on_in_C
                removed_C = jnp.where(on_side_C, t, samples.sides[s].designated_model_N)
                member_CxS = samples.keep_NxS if s == "in" else ~samples.keep_NxS
                w_CxS = member_CxS & (models_S[None, :] != removed_C[:, None])
                resid = (samples.rows_NxSxL - mom[s].mu_NxL[:, None]) / std_CxL[:, None]
                z = jnp.where(mask[:, None], resid, 0.0)
                fourth = fourth + jnp.sum(w_CxS * jnp.sum(z**2, axis=-1) ** 2, axis=-1)

        def shrunk(cross_LxL, dof_LxL, fourth_1):
            return gaussian.shrunk_correlation(cross_LxL, dof_LxL, cfg.shrinkage, fourth_1)

        corr, _, rho = jax.vmap(shrunk)(cross, dof, fourth)
        return SideFit(jax.vmap(gaussian.padded)(corr, mask), rho)

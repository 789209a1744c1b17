"""Sequence-aware LiRA (``seq``): a joint model of the L per-position statistics.

Legend: S shadow models, N samples, L positions, T targets, M samples in the
covariance subset.

For target t and sample n the score compares the target's vector x = X_t[n]
with per-side models fitted on the shadows (leave-one-out, equal-count rule of
``loo.py``: each side uses K_side - 1 shadows, so members and non-members are
fitted identically under no signal):

- mu[n]: per-sample, per-position mean of the side's shadows;
- v[n] = ddof=1 variance * (1 + 1/k): predictive variance of a new draw when
  the mean comes from k shadows;
- ``cov='diag'``: C[n] = diag(v[n]);
- ``cov='pooled'``: C[n] = (1 + 1/k_n) C, one residual covariance per side,
  pooled over samples from sufficient statistics (Gram matrix minus the
  removed rows and the k mu mu^T terms);
- ``cov='hetero'``: C[n] = D[n] R D[n], D[n] = sqrt(v[n]), R the correlation of
  the pooled per-sample standardized residuals;
- ``cov='copula'``: Gaussian copula with correlation R of the normal scores
  z = Phi^-1(F(u)), u = (x - mu) / sd. ``marginal='gaussian'`` equals
  ``hetero``. ``marginal='empirical'`` uses the pooled standardized residuals
  of each position, rescaled by sqrt((k+1)/(k-1)) to the spread of a new draw
  around an estimated mean, as a smoothed histogram (see ``gaussian.py``).
  log density = log N(z; 0, R) - sum log phi(z_l) + sum log f_l(x_l).

Pooled matrices (covariance or correlation) are estimated on M = ``cov_samples``
evenly spread samples (default 2048; all when N is smaller; the copula with
empirical marginals uses an even sub-subset of ``marginal_samples``, default
512, for its marginals and correlation): at S = 64 that is
~64k residual vectors, far beyond what an L x L matrix needs, and it bounds the
per-target cost of the correlation fits, which cannot use sufficient
statistics because the standardization depends on the target. Every matrix is
shrunk towards its diagonal: correlation (1 - rho) R + rho I, with rho from
OAS (default; second moments only), Ledoit-Wolf, or a given float.
``tied=True``: IN and OUT share variances, correlation and marginals (pooled
over both sides); only their means differ.

Modes (higher = member):
- ``online``: log p_in(x) - log p_out(x);
- ``offline``: -log p_out(x), two-sided (any deviation from OUT is evidence);
- ``gls``: the most powerful test for a uniform shift under the OUT model,
  d * 1^T C^-1 (x - mu) / sqrt(1^T C^-1 1), d = +1 for ``logit`` (members
  higher), -1 for ``loss`` (members lower). For the copula it is computed on
  the normal scores with the shift scaled by 1/sd per position.

Evidence (``evidence=True``), evidence_TxNxL, sums to the score: with chol the
Cholesky factor of the side's (restricted) correlation/covariance in position
order, term_l = log p(x_l | x_<l) is the chain-rule term of the side's log
density (exact per-position terms for ``diag``); online evidence is
term_in_l - term_out_l, offline -term_out_l, and gls d * (C^-1 1)_l (x - mu)_l /
sqrt(1^T C^-1 1). Masked positions carry 0. Stored as float32 to bound memory.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from seqmia_jax.attacks import gaussian, loo
from seqmia_jax.attacks.base import ATTACKS, AttackInputError, AttackInputs, AttackOutput
from seqmia_jax.attacks.lira import STATISTICS, parse_options, statistic_array


def _is_shrinkage(v) -> bool:
    if isinstance(v, str):
        return v in gaussian.SHRINKAGE_METHODS
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0


_SPEC = {
    "statistic": ("logit", STATISTICS),
    "cov": ("hetero", ("diag", "pooled", "hetero", "copula")),
    "marginal": ("gaussian", ("gaussian", "empirical")),
    "shrinkage": ("oas", _is_shrinkage),
    "tied": (False, (False, True)),
    "mode": ("online", ("online", "offline", "gls")),
    "evidence": (False, (False, True)),
    "cov_samples": (2048, lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 2),
    "marginal_samples": (512, lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 2),
}


@jax.jit
def _floor(var_NxL, mask_NxL):
    # A side with one shadow has no variance; keep the density finite.
    scale = jnp.sum(jnp.where(mask_NxL, var_NxL, 0.0)) / jnp.maximum(jnp.sum(mask_NxL), 1)
    return jnp.maximum(var_NxL, 1e-12 * scale + 1e-300)


@jax.jit
def _removed_cross(removed_MxL, mu_MxL, k_M, mask_MxL):
    """Gram-matrix correction and pairwise dof of one side on the subset."""
    cross = removed_MxL.T @ removed_MxL + (mu_MxL * k_M[:, None]).T @ mu_MxL
    m = mask_MxL.astype(jnp.float64)
    dof = (m * (k_M - 1.0)[:, None]).T @ m
    return cross, dof


@jax.jit
def _std_cross(x_SxMxL, mu_MxL, scale_MxL, w_SxM, mask_MxL):
    """Cross-products and sum of ||.||^4 of weighted standardized residuals."""
    z = jnp.where(mask_MxL, (x_SxMxL - mu_MxL) / scale_MxL, 0.0) * w_SxM[..., None]
    flat = z.reshape(-1, z.shape[-1])
    return flat.T @ flat, jnp.sum(jnp.sum(flat**2, axis=-1) ** 2)


@jax.jit
def _fourth(x_SxMxL, mu_MxL, std_L, w_SxM, mask_MxL):
    r = jnp.where(mask_MxL, (x_SxMxL - mu_MxL) / std_L, 0.0) * w_SxM[..., None]
    return jnp.sum(jnp.sum(r**2, axis=-1) ** 2)


@jax.jit
def _normal_scores(cdf_LxG, bound_L, delta_L, u_SxMxL, w_SxM, mask_MxL):
    z, _ = gaussian.eval_marginal(cdf_LxG, bound_L, delta_L, u_SxMxL.reshape(-1, u_SxMxL.shape[-1]))
    z = jnp.where(mask_MxL, z.reshape(u_SxMxL.shape), 0.0) * w_SxM[..., None]
    flat = z.reshape(-1, z.shape[-1])
    return flat.T @ flat, jnp.sum(jnp.sum(flat**2, axis=-1) ** 2)


class _Target:
    """Per-target fits of every side needed by one attack configuration."""

    def __init__(self, x, keep_SxN, stats, t, opt):
        self.stats, self.opt, self.t = stats, opt, t
        self.mask = stats.mask_NxL
        self.x_t = loo.target_row(x, t, stats)
        self.keep_t = keep_SxN[t]
        self.sub = stats.sub_idx_M
        self.keep_sub = keep_SxN[:, self.sub]
        self.mom = {}
        for side, on in (("in", self.keep_t), ("out", ~self.keep_t)):
            st = stats.side[side]
            self.mom[side] = loo.loo_moments(
                st.total_NxL, st.sumsq_NxL, st.count_N, st.last_row_NxL, self.x_t, on
            )
        if opt["tied"]:
            (_, v_in, k_in, _), (_, v_out, k_out, _) = self.mom["in"], self.mom["out"]
            pooled = ((k_in - 1)[:, None] * v_in + (k_out - 1)[:, None] * v_out) / jnp.maximum(
                k_in + k_out - 2.0, 1.0
            )[:, None]
            self.var = {s: _floor(pooled, self.mask) for s in ("in", "out")}
        else:
            self.var = {s: _floor(self.mom[s][1], self.mask) for s in ("in", "out")}

    def weights(self, side):
        last = self.stats.side[side].last_model_N[self.sub]
        return jnp.asarray(loo.side_weights(self.keep_sub, side, self.t, last))

    def sides_for_matrix(self, side):
        return ("in", "out") if self.opt["tied"] else (side,)

    def shrunk(self, cross, dof, fourth):
        corr, std, present = gaussian.correlation_from_cross(cross, dof)
        n_eff = float(jnp.sum(jnp.where(present, jnp.diag(dof), 0.0)) / max(int(present.sum()), 1))
        rho = gaussian.shrinkage_intensity(corr, present, n_eff, self.opt["shrinkage"], fourth)
        return gaussian.shrink(corr, rho), std, rho

    def model(self, side):
        """(matrix or None, z_NxL, extra_NxL, a_NxL, diagnostics) for one side."""
        mu, _, k, _ = self.mom[side]
        var = self.var[side]
        cov, m = self.opt["cov"], self.mask
        pred_sd = jnp.sqrt(var * (1.0 + 1.0 / k)[:, None])
        resid = self.x_t - mu
        if cov == "diag" or (cov in ("hetero", "copula") and self.opt["marginal"] == "gaussian"):
            z = jnp.where(m, resid / pred_sd, 0.0)
            extra = -jnp.log(pred_sd) - 0.5 * math.log(2 * math.pi)
            a = jnp.where(m, 1.0 / pred_sd, 0.0)
            if cov == "diag":
                return None, z, extra, a, {}
            cross, dof, fourth = 0.0, 0.0, 0.0
            for s in self.sides_for_matrix(side):
                mu_s, _, k_s, _ = self.mom[s]
                sd_sub = jnp.sqrt(self.var[s][self.sub])
                c, f = _std_cross(
                    self.stats.x_sub_SxMxL, mu_s[self.sub], sd_sub, self.weights(s), m[self.sub]
                )
                _, d = _removed_cross(mu_s[self.sub], mu_s[self.sub], k_s[self.sub], m[self.sub])
                cross, dof, fourth = cross + c, dof + d, fourth + f
            corr, _, rho = self.shrunk(cross, dof, fourth)
            return corr, z, extra, a, {"rho": rho}
        if cov == "pooled":
            d_N = jnp.sqrt(1.0 + 1.0 / k)[:, None]
            z = jnp.where(m, resid / d_N, 0.0)
            extra = jnp.broadcast_to(-jnp.log(d_N) - 0.5 * math.log(2 * math.pi), z.shape)
            a = jnp.where(m, 1.0 / d_N, 0.0)
            cross, dof = 0.0, 0.0
            for s in self.sides_for_matrix(side):
                mu_s, _, k_s, removed = self.mom[s]
                c, d = _removed_cross(removed[self.sub], mu_s[self.sub], k_s[self.sub], m[self.sub])
                cross, dof = cross + self.stats.gram[s] - c, dof + d
            fourth = None
            if self.opt["shrinkage"] == "lw":
                _, std, _ = gaussian.correlation_from_cross(cross, dof)
                fourth = sum(
                    float(
                        _fourth(
                            self.stats.x_sub_SxMxL,
                            self.mom[s][0][self.sub],
                            std,
                            self.weights(s),
                            m[self.sub],
                        )
                    )
                    for s in self.sides_for_matrix(side)
                )
            corr, std, rho = self.shrunk(cross, dof, fourth)
            return corr * jnp.outer(std, std), z, extra, a, {"rho": rho}
        return self._copula_empirical(side)

    def _copula_empirical(self, side):
        # The marginals and copula correlation are refit per target from pooled
        # residuals (they depend on the target through the LOO standardization),
        # so they use a further even subset of ``marginal_samples`` samples.
        pick = loo.subset_indices(len(self.sub), self.opt["marginal_samples"])
        sub = self.sub[pick]
        x_sub = self.stats.x_sub_SxMxL[:, pick]
        m, m_sub = self.mask, self.mask[sub]
        u_rows, w_rows = [], []
        for s in self.sides_for_matrix(side):
            mu_s, _, k_s, _ = self.mom[s]
            sd_sub = jnp.sqrt(self.var[s][sub])
            k_sub = k_s[sub][:, None]
            inflate = jnp.sqrt((k_sub + 1.0) / jnp.maximum(k_sub - 1.0, 1.0))
            u = jnp.where(m_sub, (x_sub - mu_s[sub]) / sd_sub * inflate, 0.0)
            u_rows.append(u)
            w_rows.append(self.weights(s)[:, pick])
        u_SxMxL = sum(u * (w[..., None] > 0) for u, w in zip(u_rows, w_rows))
        w_SxM = sum(w_rows)
        w_flat = (w_SxM[..., None] * m_sub).reshape(-1, m_sub.shape[-1])
        cdf, bound, delta = gaussian.fit_marginal(u_SxMxL.reshape(-1, m_sub.shape[-1]), w_flat)
        cross, fourth = _normal_scores(cdf, bound, delta, u_SxMxL, w_SxM, m_sub)
        count_M = jnp.sum(w_SxM, axis=0)
        msk = m_sub.astype(jnp.float64)
        dof = (msk * count_M[:, None]).T @ msk
        corr, _, rho = self.shrunk(cross, dof, float(fourth))
        mu, _, _, _ = self.mom[side]
        sd = jnp.sqrt(self.var[side])
        u_t = jnp.where(m, (self.x_t - mu) / sd, 0.0)
        z, log_density = gaussian.eval_marginal(cdf, bound, delta, u_t)
        z = jnp.where(m, z, 0.0)
        extra = 0.5 * z**2 + log_density - jnp.log(sd)
        a = jnp.where(m, 1.0 / sd, 0.0)
        return corr, z, extra, a, {"rho": rho}


def _side_terms(model, mask_NxL, patterns, groups, gls: bool, diag: dict):
    matrix, z, extra, a, _ = model
    if matrix is None:
        if gls:
            return gaussian.diag_gls_terms(z, a, mask_NxL)
        return gaussian.diag_chain_terms(z, extra, mask_NxL)

    def chol_for(present_L):
        chol, jitter = gaussian.cholesky_pd(gaussian.padded(matrix, jnp.asarray(present_L)))
        diag["jitter_max"] = max(diag.get("jitter_max", 0.0), jitter)
        diag["jitter_repairs"] = diag.get("jitter_repairs", 0) + int(jitter > 0)
        return chol

    if gls:
        return gaussian.apply_by_pattern(
            gaussian.gls_terms, chol_for, groups, patterns, z, a, mask_NxL
        )
    return gaussian.apply_by_pattern(
        gaussian.chain_terms, chol_for, groups, patterns, z, extra, mask_NxL
    )


@ATTACKS.register("seq")
def seq(inputs: AttackInputs, targets_T: np.ndarray, **options) -> AttackOutput:
    """Sequence-aware LiRA over the L positions (see module docstring)."""
    opt = parse_options("seq", options, _SPEC)
    if opt["marginal"] == "empirical" and opt["cov"] != "copula":
        raise AttackInputError("seq: marginal='empirical' needs cov='copula'")
    x = statistic_array(inputs, "seq", opt["statistic"])
    keep_SxN = np.asarray(inputs.keep_SxN, dtype=bool)
    direction = 1.0 if opt["statistic"] == "logit" else -1.0
    needs_subset = opt["cov"] != "diag"
    scores, evidence, diag = [], [], {"rho": [], "options": opt, "equal_count_rule": True}
    with gaussian.float64_scope():
        stats = loo.collect(
            x, keep_SxN, inputs.mask_NxL, opt["cov_samples"] if needs_subset else None
        )
        mask_np = np.asarray(stats.mask_NxL)
        patterns, groups = gaussian.mask_patterns(mask_np)
        for t in np.asarray(targets_T):
            fit = _Target(x, keep_SxN, stats, int(t), opt)
            gls = opt["mode"] == "gls"
            out_model = fit.model("out")
            terms = -_side_terms(out_model, stats.mask_NxL, patterns, groups, gls, diag)
            rho = [out_model[4].get("rho")]
            if opt["mode"] == "online":
                in_model = fit.model("in")
                rho.append(in_model[4].get("rho"))
                terms = terms + _side_terms(in_model, stats.mask_NxL, patterns, groups, False, diag)
            elif gls:
                terms = -direction * terms
            diag["rho"].append(rho)
            scores.append(np.asarray(jnp.sum(terms, axis=-1), dtype=np.float64))
            if opt["evidence"]:
                evidence.append(np.asarray(terms, dtype=np.float32))
    diag["cov_samples_used"] = len(stats.sub_idx_M) if needs_subset else 0
    return AttackOutput(
        scores_TxN=np.stack(scores),
        evidence_TxNxL=np.stack(evidence) if opt["evidence"] else None,
        diagnostics=diag,
    )

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

**Execution.** All per-target work is two jitted pure programs, vmapped over a
block of B targets (B sized from a memory budget: many targets per call on an
accelerator, few on CPU): ``_fit_block`` (LOO moments, the variance floor and
every L x L fit on the subset, including shrinkage) and ``_score_block`` over
chunks of samples (moments again, normal scores, Cholesky with in-graph
jitter repair, chain-rule or GLS terms). Nothing returns to the host per
target; results are fetched once per block.
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from seqmia_jax.attacks import gaussian, loo
from seqmia_jax.attacks.base import ATTACKS, AttackInputError, AttackInputs, AttackOutput
from seqmia_jax.attacks.lira import STATISTICS, parse_options, statistic_array

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
# Bytes of one float64 B x N x L (or B x S x M x L) array per call: bounds
# every target block and scoring chunk.
_BLOCK_BYTES = {"cpu": 1 << 26}
_BLOCK_BYTES_ACCELERATOR = 1 << 30
# On CPU one target per call: batching targets gains nothing on a few cores,
# and batched LAPACK solves under XLA's concurrent CPU scheduler were seen to
# deadlock (jax 0.10.2, copula scoring with B >= 2).
_MAX_BLOCK = {"cpu": 1}


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


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Static (hashable) configuration the jitted programs specialise on."""

    cov: str  # diag | pooled | correlation (hetero, gaussian copula) | empirical
    shrinkage: str | float
    tied: bool
    mode: str
    evidence: bool
    direction: float

    @property
    def sides(self) -> tuple[str, ...]:
        return ("out", "in") if self.mode == "online" else ("out",)

    def matrix_sides(self, side: str) -> tuple[str, ...]:
        return ("in", "out") if self.tied else (side,)


def _moments(plan, side_arrays, xc_NxL, on_in_N, mask_NxL, floor=None):
    """Per side (mu, floored var, k, removed); the floor is computed unless given."""
    mom = {}
    for side, on in (("in", on_in_N), ("out", ~on_in_N)):
        mom[side] = loo.loo_moments(*side_arrays[side], xc_NxL, on)
    var = {s: mom[s][1] for s in mom}
    if plan.tied:
        (_, v_in, k_in, _), (_, v_out, k_out, _) = mom["in"], mom["out"]
        pooled = ((k_in - 1)[:, None] * v_in + (k_out - 1)[:, None] * v_out) / jnp.maximum(
            k_in + k_out - 2.0, 1.0
        )[:, None]
        var = {"in": pooled, "out": pooled}
    if floor is None:
        # A side with one shadow has no variance; keep the density finite.
        count = jnp.maximum(jnp.sum(mask_NxL), 1)
        floor = {
            s: 1e-12 * jnp.sum(jnp.where(mask_NxL, v, 0.0)) / count + 1e-300 for s, v in var.items()
        }
    out = {s: (mom[s][0], jnp.maximum(var[s], floor[s]), mom[s][2], mom[s][3]) for s in mom}
    return out, floor


def _fourth(r_SxMxL, w_SxM):
    """Sum over weighted residual vectors of ||r||^4."""
    return jnp.sum(w_SxM * jnp.sum(r_SxMxL**2, axis=-1) ** 2)


def _side_rows(shared, on_sub, t, side):
    """(x_KxMxL, w_KxM): this side's subset rows and their weights for target t."""
    models, valid, x_rows = shared["side_rows"][side]
    on = on_sub if side == "in" else ~on_sub
    return x_rows, loo.subset_weights(models, valid, on, t, shared["last_sub"][side])


def _matrix(plan, shared, mom_sub, on_sub, t, side):
    """(matrix L x L, rho, marginal table or None) of one side, from the subset."""
    m = shared["mask_sub"]
    mf = m.astype(jnp.float64)
    cross, dof, fourth = 0.0, 0.0, 0.0
    need_fourth = plan.shrinkage == "lw"
    if plan.cov == "pooled":
        for s in plan.matrix_sides(side):
            mu, _, k, removed = mom_sub[s]
            cross = cross + shared["gram"][s] - removed.T @ removed - (mu * k[:, None]).T @ mu
            dof = dof + (mf * (k - 1.0)[:, None]).T @ mf
        fourth = None
        if need_fourth:
            _, std_L, _ = gaussian.correlation_from_cross(cross, dof)
            fourth = 0.0
            for s in plan.matrix_sides(side):
                x_rows, w = _side_rows(shared, on_sub, t, s)
                r = jnp.where(m, (x_rows - mom_sub[s][0]) / std_L, 0.0)
                fourth = fourth + _fourth(r, w)
        corr, std_L, rho = gaussian.shrunk_correlation(cross, dof, plan.shrinkage, fourth)
        return corr * jnp.outer(std_L, std_L), rho, None
    if plan.cov == "correlation":
        for s in plan.matrix_sides(side):
            mu, var, k, _ = mom_sub[s]
            x_rows, w = _side_rows(shared, on_sub, t, s)
            # Residual rows, not per-sample Gram matrices: those lose the exact
            # rank deficiency of few shadows, which jitter must see to repair.
            z = jnp.where(m, (x_rows - mu) / jnp.sqrt(var), 0.0) * w[..., None]
            flat = z.reshape(-1, z.shape[-1])
            cross = cross + flat.T @ flat
            dof = dof + (mf * (k - 1.0)[:, None]).T @ mf
            if need_fourth:
                fourth = fourth + _fourth(z, w)
        corr, _, rho = gaussian.shrunk_correlation(cross, dof, plan.shrinkage, fourth)
        return corr, rho, None
    return _copula_matrix(plan, shared, mom_sub, on_sub, t, side)


def _copula_matrix(plan, shared, mom_sub, on_sub, t, side):
    # The marginals and copula correlation are refit per target from pooled
    # residuals (they depend on the target through the LOO standardization),
    # on a further even subset of ``marginal_samples`` samples.
    pick = shared["pick"]
    m = shared["mask_sub"][pick]
    u_rows, w_rows = [], []
    for s in plan.matrix_sides(side):
        mu, var, k, _ = (v[pick] for v in mom_sub[s])
        x_rows, w = _side_rows(shared, on_sub, t, s)
        x_rows, w = x_rows[:, pick], w[:, pick]
        inflate = jnp.sqrt((k + 1.0) / jnp.maximum(k - 1.0, 1.0))[:, None]
        u = jnp.where(m, (x_rows - mu) / jnp.sqrt(var) * inflate, 0.0)
        u_rows.append(u * (w[..., None] > 0))
        w_rows.append(w)
    u_KxMxL, w_KxM = jnp.concatenate(u_rows), jnp.concatenate(w_rows)
    length = m.shape[-1]
    w_flat = (w_KxM[..., None] * m).reshape(-1, length)
    table = gaussian.fit_marginal(u_KxMxL.reshape(-1, length), w_flat)
    z, _ = gaussian.eval_marginal(*table, u_KxMxL.reshape(-1, length))
    z = jnp.where(m, z.reshape(u_KxMxL.shape), 0.0) * w_KxM[..., None]
    flat = z.reshape(-1, length)
    fourth = jnp.sum(jnp.sum(flat**2, axis=-1) ** 2)
    mf = m.astype(jnp.float64)
    dof = (mf * jnp.sum(w_KxM, axis=0)[:, None]).T @ mf
    corr, _, rho = gaussian.shrunk_correlation(flat.T @ flat, dof, plan.shrinkage, fourth)
    return corr, rho, table


def _fit_target(plan, shared, x_NxL, on_in_N, t):
    """Variance floors and per-side matrices for one target (pure)."""
    mask = shared["mask"]
    xc = jnp.where(mask, x_NxL.astype(jnp.float64) - shared["center"], 0.0)
    mom, floor = _moments(plan, shared["side"], xc, on_in_N, mask)
    fit = {"floor": floor, "matrix": {}, "rho": {}, "table": {}}
    if plan.cov == "diag":
        return fit
    sub = shared["sub_idx"]
    mom_sub = {s: tuple(v[sub] for v in mom[s]) for s in mom}
    for side in plan.sides:
        if plan.tied and side == "in":  # both sides share one matrix
            for key in ("matrix", "rho", "table"):
                fit[key]["in"] = fit[key]["out"]
            continue
        fit["matrix"][side], fit["rho"][side], fit["table"][side] = _matrix(
            plan, shared, mom_sub, on_in_N[sub], t, side
        )
    return fit


def _side_model(plan, fit, mom, xc_NxL, mask_NxL, side):
    """(z, extra, a) of one side, the inputs of the chain-rule and GLS terms."""
    mu, var, k, _ = mom[side]
    resid = xc_NxL - mu
    if plan.cov == "pooled":
        d_N = jnp.sqrt(1.0 + 1.0 / k)[:, None]
        z = jnp.where(mask_NxL, resid / d_N, 0.0)
        extra = jnp.broadcast_to(-jnp.log(d_N) - HALF_LOG_2PI, z.shape)
        return z, extra, jnp.where(mask_NxL, 1.0 / d_N, 0.0)
    if plan.cov == "empirical":
        sd = jnp.sqrt(var)
        u = jnp.where(mask_NxL, resid / sd, 0.0)
        z, log_density = gaussian.eval_marginal(*fit["table"][side], u)
        z = jnp.where(mask_NxL, z, 0.0)
        return z, 0.5 * z**2 + log_density - jnp.log(sd), jnp.where(mask_NxL, 1.0 / sd, 0.0)
    pred_sd = jnp.sqrt(var * (1.0 + 1.0 / k)[:, None])
    z = jnp.where(mask_NxL, resid / pred_sd, 0.0)
    return z, -jnp.log(pred_sd) - HALF_LOG_2PI, jnp.where(mask_NxL, 1.0 / pred_sd, 0.0)


def _score_target(plan, rows, x_CxL, on_in_C, fit, chol):
    """Per-position terms (C x L) of one target; ``chol`` maps side -> factor (pure)."""
    mask = rows["mask"]
    xc = jnp.where(mask, x_CxL.astype(jnp.float64) - rows["center"], 0.0)
    mom, _ = _moments(plan, rows["side"], xc, on_in_C, mask, fit["floor"])
    gls = plan.mode == "gls"
    terms = {}
    for side in plan.sides:
        z, extra, a = _side_model(plan, fit, mom, xc, mask, side)
        if plan.cov == "diag":
            terms[side] = (
                gaussian.diag_gls_terms(z, a, mask)
                if gls
                else gaussian.diag_chain_terms(z, extra, mask)
            )
        elif gls:
            terms[side] = gaussian.gls_terms(chol[side], z, a, mask)
        else:
            terms[side] = gaussian.chain_terms(chol[side], z, extra, mask)
    if plan.mode == "online":
        return terms["in"] - terms["out"]
    if gls:
        return plan.direction * terms["out"]
    return -terms["out"]


def _over_targets(fn, *args_B):
    """vmap over the leading target axis; a plain call when there is one target.

    XLA:CPU runs batched matmuls of batch 1 at about half the speed of plain ones.
    """
    if jax.tree.leaves(args_B)[0].shape[0] == 1:
        out = fn(*jax.tree.map(lambda a: a[0], args_B))
        return jax.tree.map(lambda a: a[None], out)
    return jax.vmap(fn)(*args_B)


@functools.partial(jax.jit, static_argnames=("plan",))
def _fit_block(plan, shared, x_BxNxL, on_in_BxN, t_B):
    return _over_targets(
        lambda x, on, t: _fit_target(plan, shared, x, on, t), x_BxNxL, on_in_BxN, t_B
    )


@jax.jit
def _factor_block(matrices, present_PxL):
    """Plain Cholesky factors of every side's matrix restricted to each mask pattern.

    Returns side -> (matrices B x P x L x L, factors B x P x L x L, finite B x P).
    """
    out = {}
    for side, matrix_BxLxL in matrices.items():
        mats = jax.vmap(lambda a: jax.vmap(lambda p: gaussian.padded(a, p))(present_PxL))(
            matrix_BxLxL
        )
        chol = jnp.linalg.cholesky(mats)
        out[side] = (mats, chol, jnp.all(jnp.isfinite(chol), axis=(-2, -1)))
    return out


_repair = jax.jit(jax.vmap(gaussian.jittered_cholesky))


def _score_block(plan, rows, x_BxCxL, on_in_BxC, fit, chol, u):
    chol_u = {side: c[:, u] for side, c in chol.items()}
    terms = _over_targets(
        lambda x, on, f, c: _score_target(plan, rows, x, on, f, c), x_BxCxL, on_in_BxC, fit, chol_u
    )
    evidence = terms.astype(jnp.float32) if plan.evidence else None
    return jnp.sum(terms, axis=-1), evidence


@functools.partial(jax.jit, static_argnames=("plan", "size"))
def _score_slice(plan, size, row_data, x_BxNxL, on_in_BxN, fit, chol, u, start):
    """``_score_block`` on samples start .. start + size (contiguous, no gather)."""
    rows = jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, start, size, 0), row_data)
    x = jax.lax.dynamic_slice_in_dim(x_BxNxL, start, size, 1)
    on = jax.lax.dynamic_slice_in_dim(on_in_BxN, start, size, 1)
    return _score_block(plan, rows, x, on, fit, chol, u)


@functools.partial(jax.jit, static_argnames=("plan",))
def _score_gather(plan, row_data, x_BxNxL, on_in_BxN, fit, chol, u, idx_C):
    """``_score_block`` on the samples idx_C (one mask pattern)."""
    rows = jax.tree.map(lambda a: a[idx_C], row_data)
    return _score_block(plan, rows, x_BxNxL[:, idx_C], on_in_BxN[:, idx_C], fit, chol, u)


def _factors(plan, fit, present_PxL, num_real, jitters):
    """Cholesky factors per side (B x P x L x L), jitter-repaired where not finite."""
    if plan.cov == "diag":
        return {}
    chol = {}
    for side, (mats, factor, finite) in _factor_block(fit["matrix"], present_PxL).items():
        bad = np.argwhere(~np.asarray(finite))
        if len(bad):
            fixed, jitter, ok = _repair(mats[bad[:, 0], bad[:, 1]])
            if not np.all(np.asarray(ok)):
                raise FloatingPointError("covariance is not positive definite even with jitter")
            factor = factor.at[bad[:, 0], bad[:, 1]].set(fixed)
            jitters.extend(np.asarray(jitter)[bad[:, 0] < num_real].tolist())
        chol[side] = factor
    return chol


def _row_groups(mask_np, chunk):
    """(pattern, start or padded indices, destination indices) per scoring call."""
    patterns, groups = gaussian.mask_patterns(mask_np)
    num_samples = mask_np.shape[0]
    if len(groups) == 1 and len(groups[0]) == num_samples:
        size = min(chunk, num_samples)
        starts = list(range(0, num_samples - size, size)) + [num_samples - size]
        return patterns, size, [(0, s, np.arange(s, s + size)) for s in starts]
    # One padded size for all groups (one compiled program) unless that more
    # than doubles the rows scored; else powers of two.
    common = min(chunk, gaussian.bucket(max(len(idx) for idx in groups)))
    common = common if common * len(groups) <= 2 * num_samples else None
    out = []
    for u, idx in enumerate(groups):
        for c0 in range(0, len(idx), chunk):
            part = idx[c0 : c0 + chunk]
            pad = common or gaussian.bucket(len(part))
            padded_idx = np.concatenate([part, np.full(pad - len(part), part[0])])
            out.append((u, padded_idx, part))
    return patterns, None, out


def _block_size(num_targets, num_samples, length, subset_rows):
    """Targets per call and samples per scoring chunk, from the memory budget."""
    budget = _BLOCK_BYTES.get(jax.default_backend(), _BLOCK_BYTES_ACCELERATOR)
    per_target = 8 * length * max(num_samples, subset_rows)
    block = min(num_targets, max(1, budget // per_target))
    block = int(min(block, _MAX_BLOCK.get(jax.default_backend(), block)))
    chunk = int(max(1, budget // (8 * length * block)))
    return block, chunk


def _shared_arrays(stats, opt):
    sub = stats.sub_idx_M
    side = {s: stats.side[s].arrays() for s in ("in", "out")}
    shared = {"side": side, "center": stats.center_NxL, "mask": stats.mask_NxL}
    if len(sub):
        shared.update(
            sub_idx=jnp.asarray(sub),
            side_rows=stats.side_rows,
            mask_sub=stats.mask_NxL[sub],
            last_sub={s: jnp.asarray(stats.side[s].last_model_N[sub]) for s in ("in", "out")},
            gram=stats.gram,
            pick=jnp.asarray(loo.subset_indices(len(sub), opt["marginal_samples"])),
        )
    return shared


@ATTACKS.register("seq")
def seq(inputs: AttackInputs, targets_T: np.ndarray, **options) -> AttackOutput:
    """Sequence-aware LiRA over the L positions (see module docstring)."""
    opt = parse_options("seq", options, _SPEC)
    if opt["marginal"] == "empirical" and opt["cov"] != "copula":
        raise AttackInputError("seq: marginal='empirical' needs cov='copula'")
    x = statistic_array(inputs, "seq", opt["statistic"])
    keep_SxN = np.asarray(inputs.keep_SxN, dtype=bool)
    cov = opt["cov"]
    if cov in ("hetero", "copula"):
        cov = "empirical" if opt["marginal"] == "empirical" else "correlation"
    plan = _Plan(
        cov=cov,
        shrinkage=opt["shrinkage"],
        tied=opt["tied"],
        mode=opt["mode"],
        evidence=opt["evidence"],
        direction=1.0 if opt["statistic"] == "logit" else -1.0,
    )
    targets_T = np.asarray(targets_T, dtype=np.int64)
    num_targets, (_, num_samples, length) = len(targets_T), x.shape
    scores = np.zeros((num_targets, num_samples))
    evidence = np.zeros((num_targets, num_samples, length), np.float32) if plan.evidence else None
    needs_subset = cov != "diag"
    rho, jitters = [], []
    with gaussian.float64_scope():
        stats = loo.collect(
            x,
            keep_SxN,
            inputs.mask_NxL,
            opt["cov_samples"] if needs_subset else None,
        )
        shared = _shared_arrays(stats, opt)
        row_data = {"side": shared["side"], "center": stats.center_NxL, "mask": stats.mask_NxL}
        subset_rows = stats.x_sub_SxMxL.shape[0] * len(stats.sub_idx_M)  # S x M
        block, chunk = _block_size(num_targets, num_samples, length, subset_rows)
        patterns, size, groups = _row_groups(np.asarray(stats.mask_NxL), chunk)
        # Factors of at most `per_call` patterns are held at once.
        budget = _BLOCK_BYTES.get(jax.default_backend(), _BLOCK_BYTES_ACCELERATOR)
        per_call = max(1, budget // (16 * block * length * length))
        for b0 in range(0, num_targets, block):
            real = targets_T[b0 : b0 + block]
            # Pad the last block with repeats, so every block has one compiled shape.
            tb = np.concatenate([real, np.full(block - len(real), real[-1])])
            x_blk = jnp.asarray(np.stack([np.asarray(x[t], dtype=np.float32) for t in tb]))
            on_in = jnp.asarray(keep_SxN[tb])
            fit = _fit_block(plan, shared, x_blk, on_in, jnp.asarray(tb))
            done, chol, chol_first = [], {}, None
            for u, where, dest in groups:
                if chol_first is None or not chol_first <= u < chol_first + per_call:
                    chol_first = u - u % per_call
                    present = patterns[chol_first : chol_first + per_call]
                    chol = _factors(plan, fit, jnp.asarray(present), len(real), jitters)
                u_local = u - chol_first
                if size is not None:
                    res = _score_slice(
                        plan, size, row_data, x_blk, on_in, fit, chol, u_local, where
                    )
                else:
                    res = _score_gather(plan, row_data, x_blk, on_in, fit, chol, u_local, where)
                done.append((dest, res))
            nb = len(real)
            for dest, (score, ev) in done:
                scores[b0 : b0 + nb, dest] = np.asarray(score)[:nb, : len(dest)]
                if plan.evidence:
                    evidence[b0 : b0 + nb, dest] = np.asarray(ev)[:nb, : len(dest)]
            if needs_subset:
                rho += np.stack([np.asarray(fit["rho"][s]) for s in plan.sides], -1)[:nb].tolist()
            else:
                rho += [[None] * len(plan.sides)] * nb
    diag = {"rho": rho, "options": opt, "equal_count_rule": True}
    if needs_subset:
        diag["jitter_max"] = float(max(jitters, default=0.0))
        diag["jitter_repairs"] = len(jitters)
    diag["cov_samples_used"] = len(stats.sub_idx_M) if needs_subset else 0
    return AttackOutput(scores_TxN=scores, evidence_TxNxL=evidence, diagnostics=diag)


# The runner passes evidence=True only to the attack whose evidence the report shows.
seq.supports_evidence = True

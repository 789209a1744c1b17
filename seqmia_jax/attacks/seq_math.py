"""Sequence-aware LiRA, the pure per-target mathematics, over typed pytrees.

Legend: S shadow models, N samples, C a chunk of samples, L positions, M
samples in the covariance subset, K rows of one side per subset sample, P
samples of the marginal subset.

The data an attack fits from are frozen dataclasses registered as pytrees
(``SeqData``: per-sample ``Samples`` and the covariance ``Subset``), and so
are its per-target results (``TargetFit`` of ``SideFit``). For one target t:

- ``fit_target`` (all N samples): equal-count LOO moments of both sides, the
  variance floors, and each side's pooled L x L fit from the subset;
- ``sample_fits`` (one chunk, per-sample models only): each sample's own
  L x L matrix, padded to its present positions;
- ``score_target`` (one chunk): moments again, each side's standardized
  residuals, and the chain-rule or GLS terms from the Cholesky factors the
  executor (``blocks.py``) supplies.

All three are pure, so ``blocks.py`` jits and vmaps them over target
blocks. What differs between covariance models is a ``CovarianceModel``
(``covariance.py``): how a side is fitted and how residuals are standardized.
``tied=True`` is handled here once, for every model: IN and OUT pool their
variances, one fit pools both sides' residuals, and both sides use it.
"""

import dataclasses
import math
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from seqmia_jax.attacks import gaussian, loo
from seqmia_jax.attacks.common import SideMoments, SideStats, equal_count_moments

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SideRows:
    """One side's shadows of each subset sample (padded rows invalid)."""

    models_KxM: jax.Array
    valid_KxM: jax.Array
    x_KxMxL: jax.Array  # centered, masked-zeroed


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Subset:
    """The covariance subset: M evenly spread samples that the pooled L x L fits use."""

    idx_M: jax.Array
    mask_MxL: jax.Array
    designated_M: dict[str, jax.Array]  # side -> the side's designated shadow
    rows: dict[str, SideRows]
    gram_LxL: dict[str, jax.Array]  # side -> sum over its subset rows of x x^T
    pick_P: jax.Array  # the marginal subset, indices into M


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Samples:
    """Per-sample arrays (leading axis N), sliced per chunk when scoring."""

    sides: dict[str, SideStats]
    center_NxL: jax.Array
    mask_NxL: jax.Array
    # Per-sample models only: side -> sum over its shadows of x x^T (centered),
    # and for Ledoit-Wolf shrinkage the centered rows of every model.
    cross_NxLxL: dict[str, jax.Array] | None = None
    rows_NxSxL: jax.Array | None = None
    keep_NxS: jax.Array | None = None


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SeqData:
    samples: Samples
    subset: Subset | None


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SideFit:
    """One side's fitted matrix (covariance or correlation; C x L x L when per sample),
    its shrinkage intensity and, for the empirical copula, the tabulated marginal."""

    matrix: jax.Array | None = None
    rho: jax.Array | None = None
    marginal: gaussian.Marginal | None = None


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TargetFit:
    floor: dict[str, jax.Array]  # side -> variance floor
    sides: dict[str, SideFit]  # side -> pooled fit; empty unless the model pools


Moments = dict[str, SideMoments]  # side -> moments


class Standardized(NamedTuple):
    """A side's residuals as the chain-rule and GLS terms take them (C x L each)."""

    z: jax.Array  # residuals on the scale of the side's matrix
    extra: jax.Array  # per-position log-density terms beyond the Gaussian of z
    a: jax.Array  # the GLS shift direction on the same scale


def predictive(mom: SideMoments, xc_CxL, mask_CxL) -> Standardized:
    """Residuals over the predictive sd sqrt(v (1 + 1/k)) of a new draw (Gaussian marginals)."""
    resid = xc_CxL - mom.mu_NxL
    pred_sd = jnp.sqrt(mom.var_NxL * (1.0 + 1.0 / mom.k_N)[:, None])
    z = jnp.where(mask_CxL, resid / pred_sd, 0.0)
    return Standardized(
        z, -jnp.log(pred_sd) - HALF_LOG_2PI, jnp.where(mask_CxL, 1.0 / pred_sd, 0.0)
    )


class CovarianceModel:
    """What one covariance model contributes; subclass as a frozen dataclass (hashable).

    ``factors`` says where its Cholesky factors come from: ``"none"`` (an
    identity: positions independent given the standardization), ``"pooled"``
    (one matrix per side, fitted on the subset by ``fit`` and factored once
    per mask pattern), or ``"per_sample"`` (``sample_fit`` gives each sample's
    matrix, factored per chunk).
    """

    factors: ClassVar[str] = "none"
    marginals: ClassVar[tuple[str, ...]] = ("gaussian",)

    @classmethod
    def build(cls, marginal: str) -> "CovarianceModel":
        return cls()

    def fit(
        self,
        cfg: "SeqConfig",
        sub: Subset,
        mom_sub: Moments,
        on_sub_M: jax.Array,
        t: jax.Array,
        pool: tuple[str, ...],
    ) -> SideFit:
        """The pooled fit of the sides in ``pool`` (one side, or both when tied)."""
        raise NotImplementedError

    def sample_fit(
        self,
        cfg: "SeqConfig",
        samples: Samples,
        mom: Moments,
        on_in_C: jax.Array,
        t: jax.Array,
        pool: tuple[str, ...],
    ) -> SideFit:
        """Per-sample matrices C x L x L (padded to each sample's positions) and rho_C."""
        raise NotImplementedError

    def standardize(
        self, fit: SideFit | None, mom: SideMoments, xc_CxL: jax.Array, mask_CxL: jax.Array
    ) -> Standardized:
        """A side's residuals of one chunk, scaled for its matrix (default: ``predictive``)."""
        return predictive(mom, xc_CxL, mask_CxL)


@dataclasses.dataclass(frozen=True)
class SeqConfig:
    """Static (hashable) configuration the jitted programs specialise on."""

    model: CovarianceModel
    shrinkage: str | float
    tied: bool
    mode: str
    evidence: bool
    direction: float  # +1 when members score higher (logit), -1 (loss)

    @property
    def sides(self) -> tuple[str, ...]:
        return ("out", "in") if self.mode == "online" else ("out",)

    def pool(self, side: str) -> tuple[str, ...]:
        """The sides whose residuals one side's fit uses."""
        return ("in", "out") if self.tied else (side,)


def side_rows(sub: Subset, on_sub_M, t, side) -> tuple[jax.Array, jax.Array]:
    """(x_KxMxL, w_KxM): a side's subset rows and their equal-count weights for target t."""
    rows = sub.rows[side]
    on = on_sub_M if side == "in" else ~on_sub_M
    w = loo.subset_weights(rows.models_KxM, rows.valid_KxM, on, t, sub.designated_M[side])
    return rows.x_KxMxL, w


def floored_side_moments(cfg: SeqConfig, sides, xc_NxL, on_in_N, mask_NxL, floor=None):
    """Per side the equal-count moments with floored (and, if tied, pooled) variances.

    Returns (side -> SideMoments, side -> floor); the floor is computed unless given.
    """
    mom = {
        side: equal_count_moments(sides[side], xc_NxL, on)
        for side, on in (("in", on_in_N), ("out", ~on_in_N))
    }
    var = {s: mom[s].var_NxL for s in mom}
    if cfg.tied:
        k_in, k_out = mom["in"].k_N, mom["out"].k_N
        pooled = ((k_in - 1)[:, None] * var["in"] + (k_out - 1)[:, None] * var["out"]) / (
            jnp.maximum(k_in + k_out - 2.0, 1.0)[:, None]
        )
        var = {"in": pooled, "out": pooled}
    if floor is None:
        # A side with one shadow has no variance; keep the density finite.
        count = jnp.maximum(jnp.sum(mask_NxL), 1)
        floor = {
            s: 1e-12 * jnp.sum(jnp.where(mask_NxL, v, 0.0)) / count + 1e-300 for s, v in var.items()
        }
    out = {s: dataclasses.replace(mom[s], var_NxL=jnp.maximum(var[s], floor[s])) for s in mom}
    return out, floor


def _centered(samples: Samples, x_NxL):
    return jnp.where(samples.mask_NxL, x_NxL.astype(jnp.float64) - samples.center_NxL, 0.0)


def fit_target(cfg: SeqConfig, data: SeqData, x_NxL, on_in_N, t) -> TargetFit:
    """Variance floors and per-side pooled fits for one target (pure)."""
    samples = data.samples
    mom, floor = floored_side_moments(
        cfg, samples.sides, _centered(samples, x_NxL), on_in_N, samples.mask_NxL
    )
    if cfg.model.factors != "pooled":
        return TargetFit(floor, {})
    sub = data.subset
    mom_sub = {s: jax.tree.map(lambda v: v[sub.idx_M], mom[s]) for s in mom}
    fits = {}
    for side in cfg.sides:
        if cfg.tied and side == "in":  # both sides share one fit
            fits["in"] = fits["out"]
            continue
        fits[side] = cfg.model.fit(cfg, sub, mom_sub, on_in_N[sub.idx_M], t, cfg.pool(side))
    return TargetFit(floor, fits)


def sample_fits(cfg: SeqConfig, samples: Samples, x_CxL, on_in_C, fit: TargetFit, t):
    """side -> SideFit of per-sample matrices for one chunk (pure; per-sample models)."""
    mom, _ = floored_side_moments(
        cfg, samples.sides, _centered(samples, x_CxL), on_in_C, samples.mask_NxL, fit.floor
    )
    fits = {}
    for side in cfg.sides:
        if cfg.tied and side == "in":
            fits["in"] = fits["out"]
            continue
        fits[side] = cfg.model.sample_fit(cfg, samples, mom, on_in_C, t, cfg.pool(side))
    return fits


def _terms(cfg: SeqConfig, chol, st: Standardized, mask_CxL):
    """Chain-rule (or GLS) terms; ``chol`` None (identity), L x L, or C x L x L per sample."""
    gls = cfg.mode == "gls"
    if chol is None:
        if gls:
            return gaussian.diag_gls_terms(st.z, st.a, mask_CxL)
        return gaussian.diag_chain_terms(st.z, st.extra, mask_CxL)
    if chol.ndim == 3:  # one factor per sample
        if gls:
            return gaussian.sample_gls_terms(chol, st.z, st.a, mask_CxL)
        return gaussian.sample_chain_terms(chol, st.z, st.extra, mask_CxL)
    if gls:
        return gaussian.gls_terms(chol, st.z, st.a, mask_CxL)
    return gaussian.chain_terms(chol, st.z, st.extra, mask_CxL)


def score_target(cfg: SeqConfig, samples: Samples, x_CxL, on_in_C, fit: TargetFit, chol):
    """Per-position terms (C x L) of one target; ``chol`` maps side -> factor (pure)."""
    mask = samples.mask_NxL
    xc = _centered(samples, x_CxL)
    mom, _ = floored_side_moments(cfg, samples.sides, xc, on_in_C, mask, fit.floor)
    terms = {}
    for side in cfg.sides:
        st = cfg.model.standardize(fit.sides.get(side), mom[side], xc, mask)
        terms[side] = _terms(cfg, chol.get(side), st, mask)
    if cfg.mode == "online":
        return terms["in"] - terms["out"]
    if cfg.mode == "gls":
        return cfg.direction * terms["out"]
    return -terms["out"]

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
  pooled over samples from sufficient statistics;
- ``cov='hetero'``: C[n] = D[n] R D[n], D[n] = sqrt(v[n]), R the correlation of
  the pooled per-sample standardized residuals;
- ``cov='copula'``: Gaussian copula with correlation R of the normal scores
  z = Phi^-1(F(u)), u = (x - mu) / sd. ``marginal='gaussian'`` equals
  ``hetero``; ``marginal='empirical'`` uses the pooled standardized residuals
  of each position as a smoothed histogram;
- ``cov='full'``: C[n] = D[n] R[n] D[n], each sample's own correlation from
  its side's shadows (per-sample sufficient statistics), shrunk per sample.

Each model is a class in ``covariance.py``. Pooled matrices are estimated on
M = ``cov_samples`` evenly spread samples (default 2048; all when N is
smaller; the copula with empirical marginals uses an even sub-subset of
``marginal_samples``, default 512, for its marginals and correlation): at
S = 64 that is ~64k residual vectors, far beyond what an L x L matrix needs,
and it bounds the per-target cost of the correlation fits, which cannot use
sufficient statistics because the standardization depends on the target.
Every matrix is shrunk towards its diagonal: correlation (1 - rho) R + rho I,
with rho from OAS (default; second moments only), Ledoit-Wolf, or a given
float. ``tied=True``: IN and OUT share variances, correlation and marginals
(pooled over both sides); only their means differ.

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

The per-target maths is ``seq_math.py``, the execution plan (target blocks,
chunks, mask groups, factor cache) ``blocks.py``.
"""

import dataclasses
from typing import Literal

import jax.numpy as jnp
import numpy as np

from seqmia_jax.attacks import blocks, common, gaussian, loo
from seqmia_jax.attacks.base import (
    AttackInputError,
    AttackInputs,
    AttackOptions,
    AttackOutput,
    option,
    register_attack,
)
from seqmia_jax.attacks.covariance import COVARIANCES
from seqmia_jax.attacks.lira import Statistic
from seqmia_jax.attacks.seq_math import Samples, SeqConfig, SeqData, SideRows, Subset


def _intensity(value: str | float) -> bool:
    return isinstance(value, str) or 0.0 <= value <= 1.0


@dataclasses.dataclass(frozen=True)
class SeqOptions(AttackOptions):
    statistic: Statistic = "logit"
    cov: str = option("hetero", choices=COVARIANCES.names)
    marginal: Literal["gaussian", "empirical"] = "gaussian"
    shrinkage: Literal["oas", "lw"] | float = option(
        "oas", check=_intensity, rule="'oas', 'lw' or a number in [0, 1]"
    )
    tied: bool = False
    mode: Literal["online", "offline", "gls"] = "online"
    evidence: bool = False
    cov_samples: int = option(2048, check=lambda n: n >= 2, rule=">= 2")
    marginal_samples: int = option(512, check=lambda n: n >= 2, rule=">= 2")

    def validate(self) -> None:
        if self.marginal not in COVARIANCES.get(self.cov).marginals:
            names = [n for n in COVARIANCES if self.marginal in COVARIANCES.get(n).marginals]
            needs = " or ".join(f"cov={n!r}" for n in names)
            raise AttackInputError(f"seq: marginal={self.marginal!r} needs {needs}")


def _data(stats: loo.LooStats, keep_SxN: np.ndarray, marginal_samples: int) -> SeqData:
    """The pytrees of the per-target programs, from the sufficient statistics."""
    samples = Samples(
        sides=stats.side,
        center_NxL=stats.center_NxL,
        mask_NxL=stats.mask_NxL,
        cross_NxLxL=stats.cross_NxLxL,
        rows_NxSxL=stats.rows_NxSxL,
        keep_NxS=None if stats.rows_NxSxL is None else jnp.asarray(keep_SxN.T),
    )
    sub = stats.sub_idx_M
    if not len(sub):
        return SeqData(samples, None)
    subset = Subset(
        idx_M=jnp.asarray(sub),
        mask_MxL=stats.mask_NxL[sub],
        designated_M={s: stats.side[s].designated_model_N[sub] for s in ("in", "out")},
        rows={s: SideRows(*stats.side_rows[s]) for s in ("in", "out")},
        gram_LxL=stats.gram,
        pick_P=jnp.asarray(loo.subset_indices(len(sub), marginal_samples)),
    )
    return SeqData(samples, subset)


@register_attack("seq", SeqOptions)
def seq(inputs: AttackInputs, targets_T: np.ndarray, opt: SeqOptions) -> AttackOutput:
    """Sequence-aware LiRA over the L positions (see module docstring)."""
    x = common.statistic(inputs, "seq", opt.statistic)
    keep_SxN = np.asarray(inputs.keep_SxN, dtype=bool)
    model = COVARIANCES.get(opt.cov).build(opt.marginal)
    cfg = SeqConfig(
        model=model,
        shrinkage=opt.shrinkage,
        tied=opt.tied,
        mode=opt.mode,
        evidence=opt.evidence,
        direction=common.direction(opt.statistic),
    )
    pooled, per_sample = model.factors == "pooled", model.factors == "per_sample"
    with gaussian.float64_scope():
        stats = loo.collect(
            x,
            keep_SxN,
            inputs.mask_NxL,
            opt.cov_samples if pooled else None,
            sample_cross=per_sample,
            sample_rows=per_sample and opt.shrinkage == "lw",
        )
        data = _data(stats, keep_SxN, opt.marginal_samples)
        subset_rows = stats.x_sub_SxMxL.shape[0] * len(stats.sub_idx_M)  # S x M
        result = blocks.execute(
            cfg, data, x, keep_SxN, np.asarray(targets_T, dtype=np.int64), subset_rows
        )
    diag = {
        "rho": result.rho,
        "options": opt.as_dict(),
        "equal_count_rule": loo.equal_counts(keep_SxN),
    }
    if model.factors != "none":
        diag["jitter_max"] = float(max(result.jitters, default=0.0))
        diag["jitter_repairs"] = len(result.jitters)
    diag["cov_samples_used"] = len(stats.sub_idx_M) if pooled else 0
    return AttackOutput(
        scores_TxN=result.scores_TxN, evidence_TxNxL=result.evidence_TxNxL, diagnostics=diag
    )

"""The reference-model attack: the pretrained base model is the reference (numpy, float64).

Legend: S shadow models, N samples, L positions, T targets.

When the shadows are fine-tuned from one pretrained base model, that model
saw none of the audit samples, so its statistic says how hard each token is
without any shadow: the reference-model attack (Carlini et al. 2021 compare
with a smaller model, Mireshghallah et al. 2022 with a reference model), here
as a difference of per-token statistics. Per target t, sample n and present
position l, the difference

    d[t, n, l] = base_loss[n, l] - loss[t, n, l]     (``statistic=loss``)
    d[t, n, l] = logit[t, n, l] - base_logit[n, l]   (``statistic=logit``)

is how much more the target predicts token l than the base does; members
score higher. ``agg`` collapses it to a score:

- ``mean`` (default): the mean of d over the present positions, i.e. the base
  model's mean loss minus the target's;
- ``topk``: the mean of the ceil(k * present) largest d. Fine-tuning
  memorizes a sample on the few tokens the base finds surprising, and the
  mean dilutes them with every other position's noise.

Absent positions (``mask_NxL`` False) never enter a mean or a ranking. The
attack reads only the target's row and the base statistics: no shadow is fitted,
so leave-one-out holds trivially. Evidence (``evidence=True``): d / count at
the positions that enter the score, 0 elsewhere, summing to the score.
"""

import dataclasses
from typing import Literal

import numpy as np

from seqmia_jax.attacks import common, lira
from seqmia_jax.attacks.base import (
    AttackInputs,
    AttackOptions,
    AttackOutput,
    option,
    register_attack,
)


@dataclasses.dataclass(frozen=True)
class BaserefOptions(AttackOptions):
    statistic: lira.Statistic = "loss"
    agg: Literal["mean", "topk"] = "mean"  # how the per-token differences become a score
    k: float = option(0.1, check=lambda k: 0.0 < k <= 1.0, rule="in (0, 1]")  # topk's fraction
    evidence: bool = False  # per-position terms of the score (see module docstring)

    def base_statistics(self) -> tuple[str, ...]:
        return (self.statistic,)


def top_counts(k: float, present_N: np.ndarray) -> np.ndarray:
    """ceil(k * present) >= 1 per sample; k * present is rounded first, so 0.28 * 25 gives 7, not 8."""
    return np.maximum(1, np.ceil(np.round(k * present_N, 9))).astype(np.int64)


def _largest(values_NxL: np.ndarray, mask_NxL: np.ndarray, count_N: np.ndarray) -> np.ndarray:
    """Bool N x L: the count_N[n] largest present values of each row (ties by position)."""
    order_NxL = np.argsort(np.where(mask_NxL, -values_NxL, np.inf), axis=1, kind="stable")
    rank_NxL = np.argsort(order_NxL, axis=1)
    return rank_NxL < count_N[:, None]  # absent positions rank last, past every count


@register_attack("baseref", BaserefOptions)
def baseref_attack(
    inputs: AttackInputs, targets_T: np.ndarray, opt: BaserefOptions
) -> AttackOutput:
    """Reference model: the target's per-token gain over the base model, averaged (or top k)."""
    x_SxNxL = common.statistic(inputs, "baseref", opt.statistic)
    base_NxL = np.asarray(common.base_statistic(inputs, "baseref", opt.statistic), np.float64)
    mask_NxL = common.presence_mask(inputs.mask_NxL, *base_NxL.shape)
    present_N = mask_NxL.sum(axis=1)
    count_N = present_N if opt.agg == "mean" else top_counts(opt.k, present_N)
    sign = common.direction(opt.statistic)  # members: higher logit, lower loss
    rows, evidence = [], []
    for t in targets_T:
        d_NxL = sign * (np.asarray(x_SxNxL[int(t)], np.float64) - base_NxL)
        used_NxL = mask_NxL if opt.agg == "mean" else _largest(d_NxL, mask_NxL, count_N)
        terms_NxL = np.where(used_NxL, d_NxL, 0.0) / count_N[:, None]
        rows.append(terms_NxL.sum(axis=1))
        if opt.evidence:
            evidence.append(terms_NxL.astype(np.float32))
    diagnostics = {"statistic": opt.statistic, "agg": opt.agg}
    if opt.agg == "topk":
        diagnostics["k"] = opt.k
    return AttackOutput(
        np.stack(rows), np.stack(evidence) if opt.evidence else None, diagnostics=diagnostics
    )

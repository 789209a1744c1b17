"""What every attack reads and fits: statistic lookup, presence masks, per-side moments.

Legend: S shadow models, N samples, L positions, K shadows on one side.

Every attack and ``seqmia_jax.analysis`` take these from here (the base
model's statistics, N x L, through ``base_statistic``). A side is
"in" (the shadows that trained on sample n) or "out" (the others).

Per-side moments come in three flavours, one per use:

- ``equal_count_moments``: leave-one-out under the equal-count rule of
  ``loo.py`` (each side drops one shadow: the target, or the side's
  designated shadow), from centered sums. Every fit that scores a target uses
  these, so members and non-members are fitted alike under no signal.
- ``target_removed_moments``: only the target's row leaves its own side. For
  fits that weight every model alike (``profile``'s token weights), whose
  calibration comes from the LiRA fit that follows.
- ``side_moments``: all shadows of each side, float64 numpy, streamed over
  samples. For diagnostics that describe the data, not one target's fit.
"""

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from seqmia_jax.attacks.base import AttackInputError, AttackInputs

SIDES = ("in", "out")


def statistic(inputs: AttackInputs, attack: str, name: str) -> np.ndarray:
    """The S x N x L array of statistic ``name``; raises naming the attack and its file."""
    if name not in inputs.stats:
        raise AttackInputError(
            f"attack {attack!r} needs the statistic {name!r} (stats/{name}.npy), which is "
            f"missing; have {sorted(inputs.stats)}"
        )
    return inputs.stats[name]


def base_statistic(inputs: AttackInputs, attack: str, name: str) -> np.ndarray:
    """The base model's N x L statistic ``name``; raises naming the attack and its file."""
    if name not in inputs.base_stats:
        raise AttackInputError(
            f"attack {attack!r} needs the base model's {name!r} (stats/base_{name}.npy), which is "
            f"missing; have {sorted(inputs.base_stats) or 'none'} (only shadows fine-tuned from a "
            "pretrained base have base-model statistics)"
        )
    base_NxL = inputs.base_stats[name]
    if base_NxL.shape != inputs.stats["loss"].shape[1:]:
        raise AttackInputError(
            f"attack {attack!r}: the base model's {name!r} has shape {base_NxL.shape}, expected "
            f"N x L = {inputs.stats['loss'].shape[1:]}"
        )
    return base_NxL


def direction(name: str) -> float:
    """+1 for a statistic members score higher on (``logit``), -1 for one they score lower (``loss``)."""
    return 1.0 if name == "logit" else -1.0


def presence_mask(mask_NxL: np.ndarray | None, num_samples: int, length: int) -> np.ndarray:
    """Bool N x L, False where a position is absent; all True when no mask was given."""
    if mask_NxL is None:
        return np.ones((num_samples, length), dtype=bool)
    return np.asarray(mask_NxL, dtype=bool)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SideStats:
    """Sums over all shadows of one side (centered data), and the side's designated shadow.

    ``designated_row_NxL`` is the row of the shadow the equal-count rule drops
    from this side when the target is on the other side (``loo.py``), and
    ``designated_model_N`` its model index.
    """

    total_NxL: jax.Array
    sumsq_NxL: jax.Array
    count_N: jax.Array
    designated_row_NxL: jax.Array
    designated_model_N: jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SideMoments:
    """Mean, ddof=1 variance and shadow count of one side, and the row left out (None if none)."""

    mu_NxL: jax.Array
    var_NxL: jax.Array
    k_N: jax.Array
    removed_NxL: jax.Array | None = None


def equal_count_moments(
    side: SideStats, x_t_NxL: jax.Array, target_on_side_N: jax.Array
) -> SideMoments:
    """Moments of one side after the equal-count removal (pure; traced in jitted programs).

    The side drops the target where it is on this side, else its designated
    shadow, so it always uses K_side - 1 shadows; without a designated shadow
    (-1: independent inclusion, ``loo.py``) it drops the target only.
    ``x_t_NxL`` is centered like the sums. The variance is unfloored and >= 0.
    """
    removed_NxL = jnp.where(target_on_side_N[:, None], x_t_NxL, side.designated_row_NxL)
    dropped_N = target_on_side_N | (side.designated_model_N >= 0)
    k_N = side.count_N - jnp.where(dropped_N, 1.0, 0.0)
    s = side.total_NxL - removed_NxL
    mu_NxL = s / k_N[:, None]
    ss = side.sumsq_NxL - removed_NxL**2 - s * mu_NxL
    var_NxL = jnp.maximum(ss, 0.0) / jnp.maximum(k_N - 1.0, 1.0)[:, None]
    return SideMoments(mu_NxL, var_NxL, k_N, removed_NxL)


def side_sums(x_SxNxL: jax.Array, on_SxN: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Sum and sum of squares (N x L) over the models of one side (pure)."""
    on = on_SxN[..., None]
    return jnp.sum(jnp.where(on, x_SxNxL, 0.0), 0), jnp.sum(jnp.where(on, x_SxNxL**2, 0.0), 0)


def target_removed_moments(
    total_NxL: jax.Array,
    sumsq_NxL: jax.Array,
    count_N: jax.Array,
    x_t_NxL: jax.Array,
    target_on_side_N: jax.Array,
) -> tuple[jax.Array, SideMoments]:
    """(sum without the target, moments) of one side with only the target's row removed (pure).

    The target's side uses K_side - 1 shadows, the other side all K_side: not
    calibrated on its own, so only for fits applied to every model alike.
    """
    drop = target_on_side_N[:, None]
    removed_NxL = jnp.where(drop, x_t_NxL, 0.0)
    total_NxL = total_NxL - removed_NxL
    sumsq_NxL = sumsq_NxL - jnp.where(drop, x_t_NxL**2, 0.0)
    k = (count_N - target_on_side_N)[:, None].astype(total_NxL.dtype)
    mu_NxL = total_NxL / k
    var_NxL = (sumsq_NxL - k * mu_NxL * mu_NxL) / (k - 1.0)
    return total_NxL, SideMoments(mu_NxL, var_NxL, k[:, 0], removed_NxL)


def side_moments(
    x_SxNxL: np.ndarray, keep_SxN: np.ndarray, chunk: int = 2048
) -> Mapping[str, SideMoments]:
    """Per side, the mean and ddof=1 variance over all its shadows (float64 numpy, two-pass).

    Streams over samples, so a memory-mapped S x N x L statistic is never read
    whole; a trailing L axis of 1 serves per-sample scalars.
    """
    num_models, num_samples, length = x_SxNxL.shape
    keep_SxN = np.asarray(keep_SxN, dtype=bool)
    mu = {s: np.empty((num_samples, length)) for s in SIDES}
    var = {s: np.empty((num_samples, length)) for s in SIDES}
    for lo in range(0, num_samples, chunk):
        x = np.asarray(x_SxNxL[:, lo : lo + chunk], np.float64)
        w_in = keep_SxN[:, lo : lo + chunk, None].astype(np.float64)
        for side, w in (("in", w_in), ("out", 1.0 - w_in)):
            k = w.sum(0)
            m = (w * x).sum(0) / k
            mu[side][lo : lo + chunk] = m
            var[side][lo : lo + chunk] = (w * (x - m) ** 2).sum(0) / (k - 1)
    k_in = keep_SxN.sum(0).astype(np.float64)
    k = {"in": k_in, "out": num_models - k_in}
    return {s: SideMoments(mu[s], var[s], k[s]) for s in SIDES}

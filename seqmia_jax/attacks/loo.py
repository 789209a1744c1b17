"""Leave-one-out sufficient statistics for the LiRA family.

Legend: S shadow models, N samples, L positions, T targets, B a block of
targets, M samples in the covariance subset.

One streaming pass over ``x_SxNxL`` (a float32 ``np.memmap`` is fine; it is read
in chunks of samples and never copied whole to float64) keeps, per sample and
side (IN / OUT), the sum and the sum of squares over shadows, plus the row of
one designated shadow per side. Parameters for target t are these sums minus
one row per side, so fitting all T targets costs O(T N L), not T refits.

**Equal-count rule (null calibration).** For sample n let K_in, K_out count
the IN and OUT shadows among all S models. Leave-one-out removes the target
from its own side; we also remove one shadow from the *other* side: a
designated shadow of that side, drawn uniformly once per sample with a fixed
seed (independent of the target and of the data). Every side therefore always
uses K_side - 1 shadows, whether or not the target is on it, so under no
membership signal the fitted parameters of a member and of a non-member are
identically distributed. A naive LOO fit leaves the target's side one shadow
short; its plug-in variance is then narrower and the attack scores members
*lower* (AUC 0.44 at S=8). The designated shadow must be uniform: with balanced
membership every other model then enters a side's fit with probability
(S/2 - 1)/(S - 1) for members and non-members alike, so a fixed per-model
offset (a "lucky" shadow) cannot bias one group. Dropping e.g. the
highest-index shadow instead measurably biased AUC (0.514 at S=16).

**Independent inclusion (poisson membership).** The rule is right when every
sample is IN for the same number of models: given that count, the target's
side decides the others' counts. Under independent inclusion the other
models' memberships are independent of the target's, so plain leave-one-out
(only the target leaves its side) is the fit whose distribution does not
depend on the target's membership; the equal-count rule would make it depend
(members would be fitted with one IN shadow more than non-members on
average: at S=20, null AUC 0.511-0.526 for lira, seq and profile, and TPR at
FPR 1e-2 up to 1.6x the FPR). Where IN counts differ across samples there is
therefore no designated shadow (``designated_shadows`` returns -1) and each
side drops the target only (``tests/test_poisson.py``).

**Centering.** Each (n, l) is shifted by its mean over all S shadows before
the sums are taken. Every estimator used downstream is shift-equivariant per
(n, l), so the shift carries no information about the target; it only avoids
cancellation in sum-of-squares formulas.

Masked positions (``mask_NxL`` False) are set to zero after centering and are
excluded from every model by the callers' masks; they are never scored.

The per-target functions (``common.equal_count_moments`` on these sums,
``subset_weights``) are pure and traced inside the attacks' jitted,
target-vmapped programs.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from seqmia_jax.attacks.common import SideStats


@dataclasses.dataclass(frozen=True)
class LooStats:
    """Sufficient statistics of one statistic over all models."""

    center_NxL: jax.Array
    mask_NxL: jax.Array  # bool, all True when the input had no mask
    side: dict[str, SideStats]
    sub_idx_M: np.ndarray  # samples used for pooled covariance/correlation fits
    x_sub_SxMxL: jax.Array  # centered, masked-zeroed float64 rows of the subset
    gram: dict[str, jax.Array]  # side -> sum over subset and side shadows of x x^T
    # side -> (models_KxM, valid_KxM, x_KxMxL): per subset sample, the rows of the
    # side's shadows (K = the largest side count, padded rows invalid), so
    # per-target fits touch no rows of the other side.
    side_rows: dict[str, tuple[jax.Array, jax.Array, jax.Array]]
    # Per-sample covariance models: side -> per-sample sum over the side's
    # shadows of x x^T (centered), and the centered rows of every model.
    cross_NxLxL: dict[str, jax.Array] | None = None
    rows_NxSxL: jax.Array | None = None


def equal_counts(keep_SxN: np.ndarray) -> bool:
    """Whether every sample is IN for the same number of models (the equal-count rule applies)."""
    in_N = np.asarray(keep_SxN, bool).sum(0)
    return bool(np.all(in_N == in_N[0]))


def designated_shadows(keep_SxN: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Per side, the shadow dropped when the target is on the other side (uniform, seeded).

    -1 (none) everywhere when IN counts differ across samples (independent inclusion).
    """
    u_N = np.random.default_rng(seed).random(keep_SxN.shape[1])
    if not equal_counts(keep_SxN):
        none_N = np.full(keep_SxN.shape[1], -1, np.int64)
        return {"in": none_N, "out": none_N}
    out = {}
    for side, on_SxN in (("in", keep_SxN), ("out", ~keep_SxN)):
        count_N = on_SxN.sum(0)
        rank_N = np.minimum((u_N * count_N).astype(np.int64), np.maximum(count_N - 1, 0))
        # the rank-th model (in model order) among this side's models
        out[side] = np.argmax(np.cumsum(on_SxN, axis=0) > rank_N, axis=0)
    return out


@jax.jit
def _chunk_sums(x_SxCxL, keep_SxC, mask_CxL, chosen_in_C, chosen_out_C):
    # Scans over models: XLA:CPU reduces over a leading axis ~30x slower than
    # it adds up contiguous C x L slabs one model at a time.
    def add_model(total, x_CxL):
        return total + x_CxL.astype(jnp.float64), None

    zeros = jnp.zeros(x_SxCxL.shape[1:], jnp.float64)
    total, _ = jax.lax.scan(add_model, zeros, x_SxCxL)
    center_CxL = jnp.where(mask_CxL, total / x_SxCxL.shape[0], 0.0)

    def add_centered(carry, inputs):
        s, x_CxL, keep_C = inputs
        xc = jnp.where(mask_CxL, x_CxL.astype(jnp.float64) - center_CxL, 0.0)
        out = []
        for (tot, sq, designated), on_C, chosen_C in zip(
            carry, (keep_C, ~keep_C), (chosen_in_C, chosen_out_C)
        ):
            on = on_C[:, None]
            out.append(
                (
                    tot + jnp.where(on, xc, 0.0),
                    sq + jnp.where(on, xc * xc, 0.0),
                    jnp.where((chosen_C == s)[:, None], xc, designated),
                )
            )
        return tuple(out), None

    init = tuple((zeros, zeros, zeros) for _ in range(2))
    models = jnp.arange(x_SxCxL.shape[0])
    sides, _ = jax.lax.scan(add_centered, init, (models, x_SxCxL, keep_SxC))
    out = [center_CxL]
    for (tot, sq, designated), on_SxC in zip(sides, (keep_SxC, ~keep_SxC)):
        out += [tot, sq, jnp.sum(on_SxC, axis=0).astype(jnp.float64), designated]
    return out


def subset_indices(num_samples: int, cov_samples: int) -> np.ndarray:
    """Deterministic, evenly spread samples used for the pooled fits."""
    if cov_samples >= num_samples:
        return np.arange(num_samples)
    return np.unique(np.linspace(0, num_samples - 1, cov_samples).round().astype(np.int64))


@jax.jit
def _chunk_cross(x_SxCxL, keep_SxC, center_CxL, mask_CxL):
    """Per side and sample the sum over the side's shadows of x x^T, and the rows C x S x L."""
    xc = jnp.where(mask_CxL[None], x_SxCxL.astype(jnp.float64) - center_CxL[None], 0.0)
    cross = {}
    for side, on_SxC in (("in", keep_SxC), ("out", ~keep_SxC)):
        cross[side] = jnp.einsum("scl,scm->clm", jnp.where(on_SxC[..., None], xc, 0.0), xc)
    return cross, jnp.swapaxes(xc, 0, 1)


def collect(
    x_SxNxL: np.ndarray,
    keep_SxN: np.ndarray,
    mask_NxL: np.ndarray | None,
    cov_samples: int | None = None,
    chunk_bytes: int = 1 << 28,
    *,
    sample_cross: bool = False,
    sample_rows: bool = False,
) -> LooStats:
    """Streams over samples and returns the sufficient statistics (call in float64 scope).

    ``cov_samples`` also gathers the covariance subset; ``sample_cross`` the
    per-sample cross-products (N x L x L per side) and ``sample_rows`` the
    centered rows N x S x L, which per-sample covariance models need.
    """
    num_models, num_samples, length = x_SxNxL.shape
    keep_SxN = np.asarray(keep_SxN, dtype=bool)
    if mask_NxL is None:
        mask_NxL = np.ones((num_samples, length), dtype=bool)
    mask_NxL = np.asarray(mask_NxL, dtype=bool)
    chunk = max(1, chunk_bytes // (8 * num_models * length))
    chosen = designated_shadows(keep_SxN)
    parts = []
    for n0 in range(0, num_samples, chunk):
        n1 = min(num_samples, n0 + chunk)
        parts.append(
            _chunk_sums(
                np.ascontiguousarray(x_SxNxL[:, n0:n1]),
                keep_SxN[:, n0:n1],
                mask_NxL[n0:n1],
                chosen["in"][n0:n1],
                chosen["out"][n0:n1],
            )
        )
    if len(parts) == 1:
        cat = parts[0]
    else:
        cat = [jnp.concatenate([p[i] for p in parts], axis=0) for i in range(len(parts[0]))]
    side = {
        "in": SideStats(cat[1], cat[2], cat[3], cat[4], jnp.asarray(chosen["in"])),
        "out": SideStats(cat[5], cat[6], cat[7], cat[8], jnp.asarray(chosen["out"])),
    }
    mask = jnp.asarray(mask_NxL)
    sub_idx_M = np.arange(0) if cov_samples is None else subset_indices(num_samples, cov_samples)
    x_sub = jnp.zeros((num_models, 0, length))
    gram = {}
    if cov_samples is not None:
        x_sub = _center_subset(
            np.asarray(x_SxNxL[:, sub_idx_M]),
            cat[0][sub_idx_M],
            mask[sub_idx_M],
        )
    side_rows = {}
    if cov_samples is not None:
        cols_M = np.arange(len(sub_idx_M))
        for name, on_SxM in (("in", keep_SxN[:, sub_idx_M]), ("out", ~keep_SxN[:, sub_idx_M])):
            gram[name] = _side_gram(x_sub, jnp.asarray(on_SxM))
            kmax = max(int(on_SxM.sum(0).max()), 1)
            models_KxM = np.argsort(~on_SxM, axis=0, kind="stable")[:kmax]
            valid_KxM = np.take_along_axis(on_SxM, models_KxM, axis=0)
            side_rows[name] = (
                jnp.asarray(models_KxM),
                jnp.asarray(valid_KxM),
                x_sub[jnp.asarray(models_KxM), jnp.asarray(cols_M)[None, :]],
            )
    cross, rows = None, None
    if sample_cross:
        parts = []
        step = max(1, chunk_bytes // (8 * length * (2 * num_models + 2 * length)))
        for n0 in range(0, num_samples, step):
            n1 = min(num_samples, n0 + step)
            x = np.ascontiguousarray(x_SxNxL[:, n0:n1])
            parts.append(_chunk_cross(x, keep_SxN[:, n0:n1], cat[0][n0:n1], mask[n0:n1]))
        cross = {s: jnp.concatenate([p[0][s] for p in parts]) for s in ("in", "out")}
        rows = jnp.concatenate([p[1] for p in parts]) if sample_rows else None
    return LooStats(cat[0], mask, side, sub_idx_M, x_sub, gram, side_rows, cross, rows)


@jax.jit
def _center_subset(x_SxMxL, center_MxL, mask_MxL):
    return jnp.where(mask_MxL[None], x_SxMxL.astype(jnp.float64) - center_MxL[None], 0.0)


@jax.jit
def _side_gram(x_SxMxL, on_side_SxM):
    xw = jnp.where(on_side_SxM[..., None], x_SxMxL, 0.0).reshape(-1, x_SxMxL.shape[-1])
    return xw.T @ x_SxMxL.reshape(-1, x_SxMxL.shape[-1])


def target_row(x_SxNxL: np.ndarray, t: int, stats: LooStats) -> jax.Array:
    """Centered, masked-zeroed float64 statistics of target model t (used by the README's extension example)."""
    row = jnp.asarray(np.asarray(x_SxNxL[t]), dtype=jnp.float64)
    return jnp.where(stats.mask_NxL, row - stats.center_NxL, 0.0)


def subset_weights(models_KxM, valid_KxM, target_on_side_M, t, designated_model_M):
    """0/1 float weights of a side's subset rows (``LooStats.side_rows``) for target t (pure)."""
    removed_M = jnp.where(target_on_side_M, t, designated_model_M)
    return (valid_KxM & (models_KxM != removed_M[None, :])).astype(jnp.float64)

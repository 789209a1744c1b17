"""The execution plan of per-target attacks: target blocks, sample chunks, factor cache, scatter.

Legend: T targets, B a block of targets, N samples, C a chunk of samples, L
positions, P mask patterns whose factors are held at once, S shadow models.

Per-target work is a few jitted pure programs vmapped over a block of B
targets (``over_targets``). B and the chunk size C come from a memory budget
(``block_sizes``): many targets per call on an accelerator, one on CPU. The
last block is padded with repeats, so every block has one compiled shape;
nothing returns to the host per target, and results are fetched once per
block and scattered into T x N (``_scatter``).

``execute`` runs sequence-aware LiRA (``seq_math``) this way:

1. ``_fit_block``: every target's floors and pooled fits;
2. per scoring call, the Cholesky factors: for pooled models, of each side's
   matrix restricted to each mask pattern (``gaussian.padded``), computed for
   a window of patterns at a time and reused by every chunk of the window's
   samples (the factor cache); for per-sample models, of each sample's own
   matrix, per chunk. Factors that are not finite are repaired with the
   smallest jitter that works (``gaussian.jittered_cholesky``), rarely;
3. ``_score_slice`` (contiguous chunks, when all samples share one mask
   pattern or the model is per sample) or ``_score_gather`` (one pattern's
   samples, padded to a power of two) for the per-position terms.

``profile`` uses ``block_sizes``, ``target_blocks`` and ``over_targets`` for
its per-target weight fits.
"""

import dataclasses
import functools
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from seqmia_jax.attacks import gaussian, seq_math
from seqmia_jax.attacks.seq_math import SeqConfig, SeqData

# Bytes of one float64 B x N x L (or B x S x M x L) array per call: bounds
# every target block and scoring chunk.
_BLOCK_BYTES = {"cpu": 1 << 26}
_BLOCK_BYTES_ACCELERATOR = 1 << 30
# On CPU one target per call: batching targets gains nothing on a few cores,
# and batched LAPACK solves under XLA's concurrent CPU scheduler were seen to
# deadlock (jax 0.10.2, copula scoring with B >= 2).
_MAX_BLOCK = {"cpu": 1}


def budget_bytes() -> int:
    return _BLOCK_BYTES.get(jax.default_backend(), _BLOCK_BYTES_ACCELERATOR)


def block_sizes(num_targets: int, per_target_bytes: int, per_sample_bytes: int) -> tuple[int, int]:
    """Targets per call and samples per scoring chunk, from the memory budget."""
    budget = budget_bytes()
    block = min(num_targets, max(1, budget // per_target_bytes))
    block = int(min(block, _MAX_BLOCK.get(jax.default_backend(), block)))
    return block, int(max(1, budget // (per_sample_bytes * block)))


def target_blocks(
    targets_T: np.ndarray, block: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(first index, real targets, targets padded with repeats to ``block``) per block."""
    for b0 in range(0, len(targets_T), block):
        real = targets_T[b0 : b0 + block]
        yield b0, real, np.concatenate([real, np.full(block - len(real), real[-1])])


def over_targets(fn, *args_B):
    """vmap over the leading target axis; a plain call when there is one target.

    XLA:CPU runs batched matmuls of batch 1 at about half the speed of plain ones.
    """
    if jax.tree.leaves(args_B)[0].shape[0] == 1:
        out = fn(*jax.tree.map(lambda a: a[0], args_B))
        return jax.tree.map(lambda a: a[None], out)
    return jax.vmap(fn)(*args_B)


@dataclasses.dataclass(frozen=True)
class Call:
    """One scoring call: a mask pattern, contiguous ``start`` or padded ``idx_C``, and
    the destination samples ``dest`` of its first len(dest) rows."""

    pattern: int
    start: int | None
    idx_C: np.ndarray | None
    dest: np.ndarray


def scoring_calls(mask_NxL: np.ndarray, chunk: int, by_pattern: bool):
    """(mask patterns, contiguous chunk size or None, the calls) covering every sample."""
    num_samples = mask_NxL.shape[0]
    patterns, groups = gaussian.mask_patterns(mask_NxL) if by_pattern else (mask_NxL[:1], [None])
    if not by_pattern or (len(groups) == 1 and len(groups[0]) == num_samples):
        size = min(chunk, num_samples)
        starts = list(range(0, num_samples - size, size)) + [num_samples - size]
        return patterns, size, [Call(0, s, None, np.arange(s, s + size)) for s in starts]
    # One padded size for all groups (one compiled program) unless that more
    # than doubles the rows scored; else powers of two.
    common = min(chunk, gaussian.bucket(max(len(idx) for idx in groups)))
    common = common if common * len(groups) <= 2 * num_samples else None
    calls = []
    for u, idx in enumerate(groups):
        for c0 in range(0, len(idx), chunk):
            part = idx[c0 : c0 + chunk]
            pad = common or gaussian.bucket(len(part))
            padded_idx = np.concatenate([part, np.full(pad - len(part), part[0])])
            calls.append(Call(u, None, padded_idx, part))
    return patterns, None, calls


# ------------------------------------------------------------------ jitted programs
@functools.partial(jax.jit, static_argnames=("cfg",))
def _fit_block(cfg: SeqConfig, data: SeqData, x_BxNxL, on_in_BxN, t_B):
    return over_targets(
        lambda x, on, t: seq_math.fit_target(cfg, data, x, on, t), x_BxNxL, on_in_BxN, t_B
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
_repair_sample = jax.jit(
    jax.vmap(functools.partial(gaussian.jittered_cholesky, factor=gaussian.batched_cholesky))
)


def _slice(samples, x_BxNxL, on_in_BxN, start, size):
    samples = jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, start, size, 0), samples)
    x = jax.lax.dynamic_slice_in_dim(x_BxNxL, start, size, 1)
    return samples, x, jax.lax.dynamic_slice_in_dim(on_in_BxN, start, size, 1)


@functools.partial(jax.jit, static_argnames=("cfg", "size"))
def _sample_factor_slice(cfg, size, samples, x_BxNxL, on_in_BxN, fit, t_B, start):
    """Per-sample models: side -> (matrices, factors B x C x L x L, finite B x C, rho B x C)."""
    samples, x, on = _slice(samples, x_BxNxL, on_in_BxN, start, size)

    def one(x_CxL, on_C, f, t):
        fits = seq_math.sample_fits(cfg, samples, x_CxL, on_C, f, t)
        return {side: (fit.matrix, fit.rho) for side, fit in fits.items()}

    out = {}
    for side, (mats, rho) in over_targets(one, x, on, fit, t_B).items():
        chol = gaussian.batched_cholesky(mats)
        out[side] = (mats, chol, jnp.all(jnp.isfinite(chol), axis=(-2, -1)), rho)
    return out


def _score_block(cfg, samples, x_BxCxL, on_in_BxC, fit, chol, u):
    chol_u = {side: c if u is None else c[:, u] for side, c in chol.items()}
    terms = over_targets(
        lambda x, on, f, c: seq_math.score_target(cfg, samples, x, on, f, c),
        x_BxCxL,
        on_in_BxC,
        fit,
        chol_u,
    )
    evidence = terms.astype(jnp.float32) if cfg.evidence else None
    return jnp.sum(terms, axis=-1), evidence


@functools.partial(jax.jit, static_argnames=("cfg", "size"))
def _score_slice(cfg, size, samples, x_BxNxL, on_in_BxN, fit, chol, u, start):
    """``_score_block`` on samples start .. start + size (contiguous, no gather)."""
    samples, x, on = _slice(samples, x_BxNxL, on_in_BxN, start, size)
    return _score_block(cfg, samples, x, on, fit, chol, u)


@functools.partial(jax.jit, static_argnames=("cfg",))
def _score_gather(cfg, samples, x_BxNxL, on_in_BxN, fit, chol, u, idx_C):
    """``_score_block`` on the samples idx_C (one mask pattern)."""
    samples = jax.tree.map(lambda a: a[idx_C], samples)
    return _score_block(cfg, samples, x_BxNxL[:, idx_C], on_in_BxN[:, idx_C], fit, chol, u)


# ------------------------------------------------------------------ host side
def _repaired(factored, num_real, jitters, fresh=None):
    """side -> factors, jitter-repaired where not finite; logs jitters of real rows.

    ``fresh`` (per-sample factors of one chunk) marks the rows not scored before.
    """
    repair = _repair if fresh is None else _repair_sample
    chol = {}
    for side, (mats, factor, finite, *_) in factored.items():
        bad = np.argwhere(~np.asarray(finite))
        if len(bad):
            fixed, jitter, ok = repair(mats[bad[:, 0], bad[:, 1]])
            if not np.all(np.asarray(ok)):
                raise FloatingPointError("covariance is not positive definite even with jitter")
            factor = factor.at[bad[:, 0], bad[:, 1]].set(fixed)
            real = bad[:, 0] < num_real
            if fresh is not None:  # a row scored twice (overlapping last chunk) counts once
                real &= fresh[bad[:, 1]]
            jitters.extend(np.asarray(jitter)[real].tolist())
        chol[side] = factor
    return chol


@dataclasses.dataclass
class SeqResult:
    scores_TxN: np.ndarray
    evidence_TxNxL: np.ndarray | None
    rho: list  # per target, per side: the shrinkage intensity (mean over samples if per sample)
    jitters: list[float]


def execute(cfg: SeqConfig, data: SeqData, x_SxNxL, keep_SxN, targets_T, subset_rows: int):
    """Scores (and evidence) of every target, block by block (call in float64 scope)."""
    num_targets, (_, num_samples, length) = len(targets_T), x_SxNxL.shape
    per_sample = cfg.model.factors == "per_sample"
    # A per-sample model holds matrices and factors of each side per sample.
    sample_bytes = 8 * length * (4 * length if per_sample else 1)
    block, chunk = block_sizes(
        num_targets, 8 * length * max(num_samples, subset_rows), sample_bytes
    )
    mask_NxL = np.asarray(data.samples.mask_NxL)
    patterns, size, calls = scoring_calls(mask_NxL, chunk, by_pattern=not per_sample)
    # Factors of at most `per_call` patterns are held at once.
    per_call = max(1, budget_bytes() // (16 * block * length * length))
    out = SeqResult(np.zeros((num_targets, num_samples)), None, [], [])
    if cfg.evidence:
        out.evidence_TxNxL = np.zeros((num_targets, num_samples, length), np.float32)
    for b0, real, tb in target_blocks(targets_T, block):
        x_blk = jnp.asarray(np.stack([np.asarray(x_SxNxL[t], dtype=np.float32) for t in tb]))
        on_in, t_blk = jnp.asarray(keep_SxN[tb]), jnp.asarray(tb)
        fit = _fit_block(cfg, data, x_blk, on_in, t_blk)
        done, chol, first, rho_sum, covered = [], {}, None, 0.0, 0
        for call in calls:
            u = None
            if per_sample:
                factored = _sample_factor_slice(
                    cfg, size, data.samples, x_blk, on_in, fit, t_blk, call.start
                )
                fresh = call.dest >= covered
                covered = call.start + size
                chol = _repaired(factored, len(real), out.jitters, fresh)
                rho_sum += np.stack(
                    [np.asarray(factored[s][3])[:, fresh].sum(-1) for s in cfg.sides], -1
                )
            elif cfg.model.factors == "pooled":
                if first is None or not first <= call.pattern < first + per_call:
                    first = call.pattern - call.pattern % per_call
                    present = jnp.asarray(patterns[first : first + per_call])
                    matrices = {s: fit.sides[s].matrix for s in cfg.sides}
                    chol = _repaired(_factor_block(matrices, present), len(real), out.jitters)
                u = call.pattern - first
            if call.start is not None:
                res = _score_slice(cfg, size, data.samples, x_blk, on_in, fit, chol, u, call.start)
            else:
                res = _score_gather(cfg, data.samples, x_blk, on_in, fit, chol, u, call.idx_C)
            done.append((call.dest, res))
        _scatter(out, b0, len(real), done)
        if per_sample:
            out.rho += (rho_sum / num_samples)[: len(real)].tolist()
        elif cfg.model.factors == "pooled":
            out.rho += np.stack([np.asarray(fit.sides[s].rho) for s in cfg.sides], -1)[
                : len(real)
            ].tolist()
        else:
            out.rho += [[None] * len(cfg.sides)] * len(real)
    return out


def _scatter(out: SeqResult, b0: int, num_real: int, done) -> None:
    """Writes one block's (destination samples, (scores, evidence)) into the T x N results."""
    for dest, (score, evidence) in done:
        out.scores_TxN[b0 : b0 + num_real, dest] = np.asarray(score)[:num_real, : len(dest)]
        if out.evidence_TxNxL is not None:
            out.evidence_TxNxL[b0 : b0 + num_real, dest] = np.asarray(evidence)[
                :num_real, : len(dest)
            ]

"""DP-SGD for one model: Poisson batches, per-example clipping and Gaussian noise.

Legend: M samples in the model's training set, B expected batch (the
configured ``train.batch_size``), P the static padded batch, G leaves of the
parameter pytree.

Written for ONE model, like every training function; ``lift.over_models``
adds the S axis, so each model draws its own batches and its own noise from
its own key.

- **Poisson subsampling.** At every step each of the model's M rows is in
  the batch independently with probability q = B / M. Shapes stay static: the
  included rows are moved to the front (a stable sort of the inclusion mask)
  and the first P are taken, with a 0/1 mask; P is the smallest size whose
  overflow probability over the whole run is below ``OVERFLOW_PROBABILITY``
  (``padded_batch``). An overflow would drop rows and is reported, not hidden:
  ``overflow_probability`` goes into ``train_done.json``.
- **Training sets of unequal size** (the poisson membership design): the
  rows are padded to the largest M_s with ``membership.PAD``, and a padding
  slot is never in a batch. q is then fixed as B / (N/2) for every model
  (``DPSettings.rate``), not B / M_s: every real row of every model is in a
  step's batch with probability q, which is the per-example sampling rate
  the accountant needs (its add-or-remove-one neighbour changes M_s by one
  and q not at all). Model s's expected batch is q M_s, B on average over
  models; the denominator stays B. P is sized for the largest M_s, which
  bounds the overflow of every model.
- **Clipping and noise.** Each example's gradient (of its mean token loss)
  is clipped to L2 norm C over the whole pytree; the clipped gradients of the
  included rows are summed, Gaussian noise of standard deviation sigma C is
  added to every coordinate, and the sum is divided by B (the fixed
  denominator of the privacy analysis, not the drawn batch size).
- **Microbatching.** Per-example gradients are computed ``microbatch`` rows
  at a time and accumulated, so gradient memory is ``microbatch`` x the
  parameters instead of P x.

The optimizer then runs on the privatized gradient (post-processing).
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
from scipy import stats

from seqmia_jax.membership import PAD

OVERFLOW_PROBABILITY = 1e-6  # bound on P(any step's Poisson batch exceeds P) over a run


@dataclasses.dataclass(frozen=True)
class DPSettings:
    clip_norm: float  # C
    noise_multiplier: float  # sigma
    expected_batch: int  # B = q M, the denominator
    padded_batch: int  # P, static
    microbatch: int  # rows of per-example gradients at a time (divides P)
    rate: float = 0.0  # q for every model (unequal training sets); 0: B / M

    def sample_rate(self, num_rows: int) -> float:
        return self.rate or self.expected_batch / num_rows


def padded_batch(
    expected_batch: int, num_rows: int, total_steps: int, microbatch: int, rate: float = 0.0
) -> int:
    """The smallest multiple of ``microbatch`` that a Poisson batch exceeds with probability
    at most ``OVERFLOW_PROBABILITY`` over ``total_steps`` steps (a union bound).

    ``rate`` is q (0: ``expected_batch / num_rows``)."""
    q = rate or expected_batch / num_rows
    per_step = OVERFLOW_PROBABILITY / max(total_steps, 1)
    size = int(stats.binom.isf(per_step, num_rows, q)) + 1
    size = min(max(size, expected_batch), num_rows)
    return microbatch * math.ceil(size / microbatch)


def overflow_probability(settings: DPSettings, num_rows: int, total_steps: int) -> float:
    """Union bound on the probability that some step drew more than P rows."""
    q = settings.sample_rate(num_rows)
    return float(min(1.0, total_steps * stats.binom.sf(settings.padded_batch, num_rows, q)))


def poisson_batch(key: jax.Array, rows_M: jax.Array, rate: float, size: int, padded=False):
    """Rows of one Poisson batch, padded to ``size``: ``(rows_P, mask_P)`` (float 0/1).

    With ``padded``, ``PAD`` slots of ``rows_M`` are never included (and read row 0).
    """
    include_M = jax.random.bernoulli(key, rate, rows_M.shape)
    if padded:
        include_M = include_M & (rows_M != PAD)
        rows_M = jnp.maximum(rows_M, 0)
    # Included rows first, in their order; the stable sort keeps it reproducible.
    order_M = jnp.argsort(~include_M, stable=True)[:size]
    return rows_M[order_M], include_M[order_M].astype(jnp.float32)


def global_norms(grads_P) -> jax.Array:
    """L2 norm of each example's gradient over every leaf, float32 P."""
    squares = [
        jnp.sum(jnp.square(g.reshape(g.shape[0], -1)), axis=1) for g in jax.tree.leaves(grads_P)
    ]
    return jnp.sqrt(sum(squares))


def clipped_sum(grads_P, mask_P: jax.Array, clip_norm: float):
    """Sum over the masked examples of their gradients clipped to ``clip_norm``."""
    norms_P = global_norms(grads_P)
    scale_P = mask_P * jnp.minimum(1.0, clip_norm / jnp.maximum(norms_P, 1e-12))
    return jax.tree.map(lambda g: jnp.tensordot(scale_P, g, axes=1), grads_P)


def private_gradient(loss_one, params, tokens_PxL: jax.Array, mask_P: jax.Array, key, settings):
    """The DP-SGD gradient: (clipped sum of per-example gradients + noise) / B.

    ``loss_one(params, tokens_1xL)`` is one example's loss. Returns
    ``(gradient, mean loss of the included rows)``.
    """
    micro = settings.microbatch
    tokens_CxMxL = tokens_PxL.reshape(-1, micro, tokens_PxL.shape[-1])
    mask_CxM = mask_P.reshape(-1, micro)

    def per_example(tokens_L):
        return jax.value_and_grad(loss_one)(params, tokens_L[None])

    def accumulate(carry, chunk):
        total, loss_sum = carry
        tokens_MxL, mask_M = chunk
        losses_M, grads_M = jax.vmap(per_example)(tokens_MxL)
        summed = clipped_sum(grads_M, mask_M, settings.clip_norm)
        total = jax.tree.map(jnp.add, total, summed)
        return (total, loss_sum + jnp.sum(losses_M * mask_M)), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    # Carries derived from per-model values, so under shard_map they vary over models too.
    carry = (zeros, jnp.zeros_like(mask_P[0]))
    (total, loss_sum), _ = jax.lax.scan(accumulate, carry, (tokens_CxMxL, mask_CxM))
    leaves, treedef = jax.tree.flatten(total)
    keys = jax.random.split(key, len(leaves))
    std = settings.noise_multiplier * settings.clip_norm
    noisy = [
        (leaf + std * jax.random.normal(k, leaf.shape, leaf.dtype)) / settings.expected_batch
        for leaf, k in zip(leaves, keys)
    ]
    mean_loss = loss_sum / jnp.maximum(mask_P.sum(), 1.0)
    return jax.tree.unflatten(treedef, noisy), mean_loss


def make_settings(
    clip_norm: float,
    noise_multiplier: float,
    batch_size: int,
    num_rows: int,
    total_steps: int,
    microbatch: int = 0,
    rate: float = 0.0,
) -> DPSettings:
    """DP-SGD settings with the padded batch for M = ``num_rows`` rows over ``total_steps``.

    ``microbatch`` 0 computes every per-example gradient of a batch at once;
    ``rate`` fixes q for every model (0: ``batch_size / num_rows``).
    """
    micro = microbatch or padded_batch(batch_size, num_rows, total_steps, 1, rate)
    return DPSettings(
        clip_norm=float(clip_norm),
        noise_multiplier=float(noise_multiplier),
        expected_batch=int(batch_size),
        padded_batch=padded_batch(batch_size, num_rows, total_steps, micro, rate),
        microbatch=int(micro),
        rate=float(rate),
    )


def settings_for(
    cfg, num_rows: int, total_steps: int, nominal_rows: float | None = None
) -> tuple[DPSettings | None, dict | None]:
    """DP-SGD settings of a ``TrainConfig`` and the accountant's record, or (None, None).

    ``num_rows`` is M, the rows each model trains on (the largest M_s when
    training sets differ in size); the sample rate is q = batch_size / M over
    ``total_steps`` steps, or batch_size / ``nominal_rows`` when given (N/2
    under poisson membership; the record then holds ``nominal_rows``). The
    record (written to ``train_done.json``) holds the PLD accountant's
    epsilon at ``dp_delta`` (``seqmia_jax.privacy.accounting``) and the
    padding's overflow bound.
    """
    if not cfg.dp_clip_norm:
        return None, None
    from seqmia_jax.privacy import accounting

    rate = cfg.batch_size / (nominal_rows or num_rows)
    sigma = cfg.dp_noise_multiplier
    if cfg.dp_target_epsilon:
        sigma = accounting.noise_for_epsilon(cfg.dp_target_epsilon, rate, total_steps, cfg.dp_delta)
    settings = make_settings(
        cfg.dp_clip_norm,
        sigma,
        cfg.batch_size,
        num_rows,
        total_steps,
        cfg.dp_microbatch,
        rate if nominal_rows else 0.0,
    )
    record = {
        "epsilon": accounting.epsilon(sigma, rate, total_steps, cfg.dp_delta),
        "delta": cfg.dp_delta,
        "accountant": "PLD (dp_accounting), Poisson-subsampled Gaussian",
        "noise_multiplier": settings.noise_multiplier,
        "clip_norm": settings.clip_norm,
        "sample_rate": rate,
        "steps": int(total_steps),
        "padded_batch": settings.padded_batch,
        "microbatch": settings.microbatch,
        "overflow_probability": overflow_probability(settings, num_rows, total_steps),
    }
    if nominal_rows:
        record["nominal_rows"] = nominal_rows
    return settings, record

"""Pure training steps for one model, and the training chunk lifted to S models.

Legend: S shadow models (S_loc: on this device), N audit samples, M rows
per model (N/2 in the balanced design), B batch per model, L positions, K
steps per chunk.

Each model draws its batches from its own IN set (``in_idx_SxM``) in its own
order: at epoch e, model s visits ``in_idx[s, perm(fold_in(key_s, e))]``. The
last batch of an epoch is padded with weight-0 rows, so every model sees each
of its samples exactly once per epoch.

Training sets of unequal size (the poisson membership design,
``Schedule.padded``) keep the shapes static: each model's rows are padded to
the largest M with ``membership.PAD``, all models share ceil(M / B) steps per
epoch, and the permutation runs over all M slots, so a model's padding slots
fall at random places in its batches with weight 0 (the loss is a mean over
the real rows). Each model still sees each of its samples exactly once per
epoch, in batches of B * M_s / M real rows on average. A batch with no real
row leaves the model unchanged (AdamW would otherwise take a momentum step on
a zero gradient); DP-SGD steps never skip (``dp.poisson_batch``). Batch indices are generated on the
device from the step counter: the host never feeds the loop. The epoch
orders a chunk of K steps needs are drawn once per chunk, not once per step
(a permutation is a sort of M keys).
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from seqmia_jax.config import TrainConfig
from seqmia_jax.ensemble import lift
from seqmia_jax.ensemble.dp import DPSettings, poisson_batch, private_gradient
from seqmia_jax.membership import PAD
from seqmia_jax.models.build import merge

DP_STREAM = 0xD9  # folded into a model's key for its Poisson batches and noise


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Static step bookkeeping shared by all models."""

    batch_size: int
    samples_per_model: int  # M (the largest M_s when padded)
    epochs: int
    padded: bool = False  # rows end in PAD slots: training sets of unequal size

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.samples_per_model // self.batch_size)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


def make_optimizer(cfg: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    """AdamW with linear warmup, cosine decay to 10% and global-norm clipping."""
    warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))
    lr = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=cfg.learning_rate,
        warmup_steps=warmup,
        decay_steps=max(total_steps, warmup + 1),
        end_value=0.1 * cfg.learning_rate,
    )
    return optax.chain(
        optax.clip_by_global_norm(cfg.grad_clip),
        optax.adamw(lr, b1=0.9, b2=0.95, weight_decay=cfg.weight_decay),
    )


def token_losses(
    graphdef: nnx.GraphDef, params: nnx.State, tokens_BxL: jax.Array, frozen=None
) -> jax.Array:
    """Per-token cross-entropy -log p(x_l | x_<l), float32 B x L (``frozen``: see ``merge``)."""
    logits_BxLxV = merge(graphdef, params, frozen)(tokens_BxL)
    return optax.softmax_cross_entropy_with_integer_labels(
        logits_BxLxV.astype(jnp.float32), tokens_BxL
    )


def epoch_order(key: jax.Array, epoch: jax.Array, sched: Schedule) -> jax.Array:
    """The order (a permutation of 0..M-1) in which one model visits its IN set at ``epoch``."""
    return jax.random.permutation(jax.random.fold_in(key, epoch), sched.samples_per_model)


def chunk_orders(key: jax.Array, step0: jax.Array, sched: Schedule, num_steps: int):
    """Epoch orders for steps step0 .. step0+num_steps-1: (first epoch, orders_ExM).

    E = (num_steps - 1) // steps_per_epoch + 2 bounds the epochs any such
    window touches, whatever step0 is.
    """
    first_epoch = step0 // sched.steps_per_epoch
    num_epochs = (num_steps - 1) // sched.steps_per_epoch + 2
    epochs_E = first_epoch + jnp.arange(num_epochs)
    return first_epoch, jax.vmap(lambda e: epoch_order(key, e, sched))(epochs_E)


def batch_indices(order_M: jax.Array, in_idx_M: jax.Array, step: jax.Array, sched: Schedule):
    """Sample indices and 0/1 weights of one model's batch at ``step``, given its epoch order."""
    within = step % sched.steps_per_epoch
    slot_B = within * sched.batch_size + jnp.arange(sched.batch_size)
    weight_B = (slot_B < sched.samples_per_model).astype(jnp.float32)
    idx_B = in_idx_M[order_M[slot_B % sched.samples_per_model]]
    if sched.padded:  # PAD slots weigh 0 and read row 0
        weight_B = jnp.where(idx_B == PAD, 0.0, weight_B)
        idx_B = jnp.maximum(idx_B, 0)
    return idx_B, weight_B


def make_model_chunk(
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    sched: Schedule,
    num_steps: int,
    dp: DPSettings | None = None,
) -> Callable:
    """Returns ``chunk(tokens_NxL, state, in_idx_M, step0[, frozen]) -> (state, losses_K)`` for ONE model.

    ``state`` is ``{"params", "opt_state", "key"}`` with ``key`` raw uint32 key data.
    Under LoRA ``params`` are the adapters and ``frozen`` the base weights they
    adapt, which are never trained (the same for every model).
    With ``dp``, every step is a DP-SGD step (``seqmia_jax.ensemble.dp``): a
    Poisson batch from the model's rows instead of its epoch order, clipped
    per-example gradients and Gaussian noise, all drawn from the model's key.
    """

    def chunk(tokens_NxL, state, in_idx_M, step0, frozen=None):
        def loss_fn(params, tokens_BxL, weight_B):
            per_seq_B = token_losses(graphdef, params, tokens_BxL, frozen).mean(axis=1)
            return jnp.sum(per_seq_B * weight_B) / jnp.maximum(weight_B.sum(), 1.0)

        def loss_one(params, tokens_1xL):
            return token_losses(graphdef, params, tokens_1xL, frozen).mean()

        key = jax.random.wrap_key_data(state["key"])
        # DP-SGD draws Poisson batches instead of visiting epoch orders.
        first_epoch, orders_ExM = (
            chunk_orders(key, step0, sched, num_steps) if dp is None else (None, None)
        )
        dp_key = jax.random.fold_in(key, DP_STREAM)

        def gradient(params, step):
            if dp is not None:
                batch_key, noise_key = jax.random.split(jax.random.fold_in(dp_key, step))
                rate = dp.sample_rate(sched.samples_per_model)
                idx_P, mask_P = poisson_batch(
                    batch_key, in_idx_M, rate, dp.padded_batch, sched.padded
                )
                grads, loss = private_gradient(
                    loss_one, params, tokens_NxL[idx_P], mask_P, noise_key, dp
                )
                return loss, grads, None
            order_M = orders_ExM[step // sched.steps_per_epoch - first_epoch]
            idx_B, weight_B = batch_indices(order_M, in_idx_M, step, sched)
            loss, grads = jax.value_and_grad(loss_fn)(params, tokens_NxL[idx_B], weight_B)
            return loss, grads, (weight_B.sum() > 0) if sched.padded else None

        def step_fn(carry, i):
            params, opt_state = carry
            loss, grads, has_rows = gradient(params, step0 + i)
            updates, new_opt_state = tx.update(grads, opt_state, params)
            new = (optax.apply_updates(params, updates), new_opt_state)
            if has_rows is not None:  # an all-padding batch: no step at all
                new = jax.tree.map(lambda a, b: jnp.where(has_rows, a, b), new, carry)
            return new, loss

        (params, opt_state), losses_K = jax.lax.scan(
            step_fn, (state["params"], state["opt_state"]), jnp.arange(num_steps)
        )
        return {"params": params, "opt_state": opt_state, "key": state["key"]}, losses_K

    return chunk


def lift_to_ensemble(
    model_chunk: Callable, mesh: Mesh, strategy: str, map_chunk: int = 0, frozen: bool = False
) -> Callable:
    """The training chunk for all S models (``lift.over_models``; strategies are described there).

    Returns ``ensemble(tokens_NxL, state_S, in_idx_SxM, step0) -> (state_S, losses_SxK)``,
    with the state buffers donated; with ``frozen`` it takes the frozen base
    weights last, broadcast to every model.
    """
    return lift.over_models(
        model_chunk,
        mesh,
        strategy,
        in_axes=(None, 0, 0, None) + ((None,) if frozen else ()),
        map_chunk=map_chunk,
        donate_argnums=(1,),
    )

"""Golden values of a few training steps from a fixed seed, recorded once.

The vmap-equals-loop test cannot see an error both sides share (a wrong loss
weighting, a changed initializer or optimizer). This test pins one model's
first four steps of the ``kjv_gpt:tiny`` recipe to recorded numbers, and
recomputes each step's loss independently in float64.

The model gets M = 6 samples and batches of B = 8: every batch holds all six
(in a permuted order) plus two weight-0 padding rows, so the batch loss is
known without reproducing the data order.

Legend: N samples, M samples of this model, B batch, L positions, V vocabulary,
K steps.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from seqmia_jax import models
from seqmia_jax.data import load_dataset
from seqmia_jax.ensemble import sharding, steps
from seqmia_jax.ensemble.train import init_ensemble
from tests.helpers import tiny_config

IN_IDX_M = np.array([3, 10, 17, 29, 40, 58], np.int32)
NUM_STEPS = 4  # lr: 0 at step 0 (warmup), peak at step 2, cosine decay at step 3

# Recorded once with jax 0.10.2 on CPU (float32). A checksum is (sum, sum of
# squares) of every parameter entry, accumulated in float64; the update's is
# the sharper one, since the initial params are dominated by LayerNorm's ones.
GOLDEN_LOSSES_K = [5.5356879234313965, 5.535688400268555, 5.418336391448975, 5.2527642250061035]
GOLDEN_INIT_CHECKSUM = (99.110635929609, 108.02867360646678)
GOLDEN_UPDATE_CHECKSUM = (1.6000553691304038, 0.5901594729035675)


def checksum(params) -> tuple[float, float]:
    flat = np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(params)])
    return float(flat.sum()), float(np.square(flat).sum())


def reference_loss(graphdef, params, tokens_MxL: np.ndarray) -> float:
    """Mean over the M real rows of each sequence's mean token cross-entropy, in float64."""
    logits_MxLxV = jax.jit(models.apply, static_argnums=0)(graphdef, params, tokens_MxL)
    logits_MxLxV = np.asarray(logits_MxLxV, np.float64)
    logp_MxLxV = logits_MxLxV - logsumexp(logits_MxLxV, axis=-1, keepdims=True)
    token_loss_MxL = -np.take_along_axis(logp_MxLxV, tokens_MxL[..., None], axis=-1)[..., 0]
    return float(token_loss_MxL.mean(axis=1).mean())


def run_golden_steps():
    """Model 0 of the tiny ensemble, one step per call: (graphdef, tokens, params_K+1, losses_K)."""
    cfg = tiny_config()
    dataset = load_dataset(cfg.data)
    sched = steps.Schedule(cfg.train.batch_size, len(IN_IDX_M), epochs=NUM_STEPS)
    assert sched.steps_per_epoch == 1 and sched.batch_size == 8  # all 6 rows + 2 padding
    tx = steps.make_optimizer(cfg.train, sched.total_steps)
    mesh = sharding.make_mesh(cfg.num_shadow_models, jax.devices()[:1])
    graphdef, state_S = init_ensemble(cfg, dataset, mesh, tx)
    state = jax.tree.map(lambda x: np.asarray(x)[0], state_S)
    tokens_NxL = np.asarray(dataset.tokens_NxL, np.int32)
    chunk = jax.jit(steps.make_model_chunk(graphdef, tx, sched, num_steps=1))
    params, losses = [state["params"]], []
    for step in range(NUM_STEPS):
        state, losses_1 = chunk(tokens_NxL, state, IN_IDX_M, jnp.int32(step))
        params.append(jax.tree.map(np.asarray, state["params"]))
        losses.append(float(losses_1[0]))
    return graphdef, tokens_NxL, params, np.array(losses)


def test_first_steps_match_golden_values():
    graphdef, tokens_NxL, params, losses_K = run_golden_steps()
    # Each step's loss is at the params it starts from: recompute it outside the
    # trainer, so padding rows that counted, or a mean over the wrong axis, show.
    for step in range(NUM_STEPS):
        want = reference_loss(graphdef, params[step], tokens_NxL[IN_IDX_M])
        np.testing.assert_allclose(losses_K[step], want, rtol=2e-6, err_msg=f"step {step}")
    update = jax.tree.map(lambda a, b: np.float64(b) - np.float64(a), params[0], params[-1])
    np.testing.assert_allclose(losses_K, GOLDEN_LOSSES_K, rtol=1e-5)
    np.testing.assert_allclose(checksum(params[0]), GOLDEN_INIT_CHECKSUM, rtol=1e-5)
    total, squares = checksum(update)
    # The update's sum cancels over 30k entries of either sign, so it gets an
    # absolute tolerance.
    assert total == pytest.approx(GOLDEN_UPDATE_CHECKSUM[0], abs=1e-4)
    assert squares == pytest.approx(GOLDEN_UPDATE_CHECKSUM[1], rel=1e-5)

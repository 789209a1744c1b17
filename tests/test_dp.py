"""DP-SGD: Poisson batches, per-example clipping and noise against float64 references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqmia_jax.data import load_dataset
from seqmia_jax.ensemble import dp, sharding, steps
from seqmia_jax.ensemble.train import init_ensemble
from tests.helpers import tiny_config


@pytest.fixture(scope="module")
def one_model():
    """Model 0 of the tiny ensemble: (graphdef, params, tokens_NxL)."""
    cfg = tiny_config()
    dataset = load_dataset(cfg.data)
    sched = steps.Schedule(cfg.train.batch_size, 32, epochs=1)
    tx = steps.make_optimizer(cfg.train, sched.total_steps)
    mesh = sharding.make_mesh(cfg.num_shadow_models, jax.devices()[:1])
    graphdef, state_S = init_ensemble(cfg, dataset, mesh, tx)
    params = jax.tree.map(lambda x: jnp.asarray(np.asarray(x)[0]), state_S["params"])
    return graphdef, params, np.asarray(dataset.tokens_NxL, np.int32)


def _loss_one(graphdef):
    return lambda params, tokens_1xL: steps.token_losses(graphdef, params, tokens_1xL).mean()


def _flat(tree) -> np.ndarray:
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(tree)])


def _settings(clip, sigma, batch, padded, micro):
    return dp.DPSettings(
        clip_norm=clip,
        noise_multiplier=sigma,
        expected_batch=batch,
        padded_batch=padded,
        microbatch=micro,
    )


@pytest.mark.parametrize("micro", [1, 3, 6])
def test_clipped_sum_matches_a_float64_per_example_reference(one_model, micro):
    graphdef, params, tokens_NxL = one_model
    loss_one = _loss_one(graphdef)
    tokens_PxL = tokens_NxL[:6]
    mask_P = np.array([1, 1, 0, 1, 1, 1], np.float32)
    # Reference: each example's gradient alone, clipped and summed in float64.
    per_example = [_flat(jax.grad(loss_one)(params, tokens_PxL[i : i + 1])) for i in range(6)]
    norms = np.array([np.linalg.norm(g) for g in per_example])
    clip = float(np.median(norms))  # about half the examples are clipped
    want = (
        sum(m * g * min(1.0, clip / n) for m, g, n in zip(mask_P, per_example, norms)) / 4
    )  # expected batch 4
    settings = _settings(clip, 0.0, 4, 6, micro)
    got, mean_loss = jax.jit(
        lambda p, t, m, k: dp.private_gradient(loss_one, p, t, m, k, settings)
    )(params, tokens_PxL, mask_P, jax.random.key(0))
    np.testing.assert_allclose(
        _flat(got), want, rtol=2e-5, atol=1e-7
    )  # float32 rounding on near-zero entries
    losses = [float(loss_one(params, tokens_PxL[i : i + 1])) for i in range(6)]
    assert float(mean_loss) == pytest.approx(np.dot(mask_P, losses) / 5, rel=1e-5)


def test_noise_has_standard_deviation_sigma_clip_over_batch(one_model):
    graphdef, params, tokens_NxL = one_model
    loss_one = _loss_one(graphdef)
    tokens_PxL, mask_P = tokens_NxL[:4], np.ones(4, np.float32)
    clean = dp.private_gradient(
        loss_one, params, tokens_PxL, mask_P, jax.random.key(1), _settings(0.5, 0.0, 8, 4, 4)
    )[0]
    noisy = dp.private_gradient(
        loss_one, params, tokens_PxL, mask_P, jax.random.key(1), _settings(0.5, 1.7, 8, 4, 4)
    )[0]
    noise = _flat(noisy) - _flat(clean)
    # Tens of thousands of independent coordinates: the sample moments are sharp.
    assert noise.size > 20_000
    assert np.std(noise) == pytest.approx(1.7 * 0.5 / 8, rel=0.02)
    assert abs(np.mean(noise)) < 4 * 1.7 * 0.5 / 8 / np.sqrt(noise.size)
    other = dp.private_gradient(
        loss_one, params, tokens_PxL, mask_P, jax.random.key(2), _settings(0.5, 1.7, 8, 4, 4)
    )[0]
    assert abs(np.corrcoef(noise, _flat(other) - _flat(clean))[0, 1]) < 0.03  # fresh per key


def test_without_noise_and_binding_clip_a_dp_step_is_an_sgd_step(one_model):
    graphdef, params, tokens_NxL = one_model
    cfg = tiny_config()
    tokens_BxL = tokens_NxL[:8]

    def loss_fn(p):
        return steps.token_losses(graphdef, p, tokens_BxL).mean(axis=1).mean()

    want = jax.grad(loss_fn)(params)
    got, _ = dp.private_gradient(
        _loss_one(graphdef),
        params,
        tokens_BxL,
        np.ones(8, np.float32),
        jax.random.key(0),
        _settings(1e9, 0.0, 8, 8, 4),
    )
    np.testing.assert_allclose(
        _flat(got), _flat(want), rtol=2e-5, atol=1e-7
    )  # float32 rounding on near-zero entries
    # And through the optimizer: the same update.
    tx = steps.make_optimizer(cfg.train, 10)
    state = tx.init(params)
    up_want, _ = tx.update(want, state, params)
    up_got, _ = tx.update(got, state, params)
    np.testing.assert_allclose(_flat(up_got), _flat(up_want), rtol=1e-4, atol=1e-9)


def test_poisson_batches_include_each_row_with_the_sample_rate():
    rows_M = jnp.arange(100, 200, dtype=jnp.int32)
    draw = jax.jit(lambda k: dp.poisson_batch(k, rows_M, 0.2, 40))
    counts = np.zeros(100)
    sizes = []
    for i in range(400):
        rows_P, mask_P = draw(jax.random.key(i))
        rows_P, mask_P = np.asarray(rows_P), np.asarray(mask_P).astype(bool)
        assert np.all(np.diff(rows_P[mask_P]) > 0)  # included rows first, in order, no repeats
        counts[rows_P[mask_P] - 100] += 1
        sizes.append(mask_P.sum())
    assert np.mean(sizes) == pytest.approx(20, abs=0.6)  # E = qM, sd 4 / sqrt(400)
    assert np.std(sizes) == pytest.approx(4.0, rel=0.15)
    assert counts.min() > 40 and counts.max() < 120  # each row about 80 times
    np.testing.assert_array_equal(draw(jax.random.key(3))[0], draw(jax.random.key(3))[0])


def test_the_padded_batch_bounds_the_overflow_probability():
    size = dp.padded_batch(32, 500, 1000, microbatch=8)
    settings = _settings(1.0, 1.0, 32, size, 8)
    assert size % 8 == 0 and 32 < size < 90
    assert dp.overflow_probability(settings, 500, 1000) <= dp.OVERFLOW_PROBABILITY
    smaller = _settings(1.0, 1.0, 32, size - 8, 8)
    assert dp.overflow_probability(smaller, 500, 1000) > dp.OVERFLOW_PROBABILITY / 8


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"train.dp_clip_norm": 0.0}, "need train.dp_clip_norm > 0"),  # a target epsilon
        ({"train.dp_delta": 0.0}, "train.dp_delta must be in"),
        ({"train.dp_clip_norm": -1.0}, "train.dp_clip_norm must be >= 0"),
        ({"data.duplicated_samples": 4, "data.duplicates": 2}, "group privacy"),
    ],
)
def test_impossible_dp_settings_are_refused_with_the_field(overrides, message):
    from seqmia_jax.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        tiny_config("kjv_dp", **overrides)

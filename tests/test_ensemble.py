"""Ensemble training: lifting, sharding, determinism and resume."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqmia_jax import membership, models
from seqmia_jax.data import load_dataset
from seqmia_jax.ensemble import sharding, steps
from seqmia_jax.ensemble.loop import _check_finite
from seqmia_jax.ensemble.train import (
    TrainingError,
    init_ensemble,
    load_params,
    model_keys,
    train,
)
from tests.helpers import tiny_config


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _setup(cfg, num_devices=1):
    dataset = load_dataset(cfg.data)
    keep = membership.make_membership(cfg.num_shadow_models, cfg.data.num_samples, cfg.seed)
    in_idx = membership.in_indices(keep)
    sched = steps.Schedule(cfg.train.batch_size, in_idx.shape[1], cfg.train.epochs)
    tx = steps.make_optimizer(cfg.train, sched.total_steps)
    mesh = sharding.make_mesh(cfg.num_shadow_models, jax.devices()[:num_devices])
    graphdef, state = init_ensemble(cfg, dataset, mesh, tx)
    return dataset, in_idx, sched, tx, mesh, graphdef, state


def test_ensemble_init_gives_distinct_models_each_equal_to_its_single_init():
    cfg = tiny_config()
    dataset, _, _, _, _, graphdef, state = _setup(cfg, num_devices=2)
    init_keys, _ = model_keys(cfg.seed, cfg.num_shadow_models)
    tokens_BxL = jnp.asarray(dataset.tokens_NxL[:2])
    logits_S = [
        models.apply(graphdef, jax.tree.map(lambda x, s=s: x[s], state["params"]), tokens_BxL)
        for s in range(2)
    ]
    for s in range(cfg.num_shadow_models):
        # Model s of the lifted initializer equals the one-model initializer on its key.
        _, params_one = models.init_params(
            cfg.model,
            jax.random.wrap_key_data(jnp.asarray(init_keys[s])),
            vocab_size=dataset.vocab_size,
            seq_len=dataset.tokens_NxL.shape[1],
            image_shape=dataset.image_shape,
        )
        for stacked, one in zip(_leaves(state["params"]), _leaves(params_one)):
            np.testing.assert_allclose(stacked[s], one, rtol=1e-6, atol=1e-7)
    assert not np.allclose(logits_S[0], logits_S[1])


@pytest.mark.parametrize("strategy", ["vmap", "map"])
def test_ensemble_step_equals_separate_single_model_steps(strategy):
    cfg = tiny_config()
    dataset, in_idx, sched, tx, mesh, graphdef, state = _setup(cfg)
    chunk = steps.make_model_chunk(graphdef, tx, sched, num_steps=3)
    tokens = jnp.asarray(dataset.tokens_NxL)
    separate = [
        jax.jit(chunk)(tokens, jax.tree.map(lambda x, s=s: x[s], state), in_idx[s], jnp.int32(0))
        for s in range(cfg.num_shadow_models)
    ]
    ensemble = steps.lift_to_ensemble(chunk, mesh, strategy)
    got_state, got_losses = ensemble(tokens, state, jnp.asarray(in_idx), jnp.int32(0))
    for s, (want_state, want_losses) in enumerate(separate):
        np.testing.assert_allclose(got_losses[s], want_losses, rtol=1e-5, atol=1e-6)
        for got, want in zip(
            _leaves(jax.tree.map(lambda x, s=s: x[s], got_state)), _leaves(want_state)
        ):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # The models really are different: independent init and data order.
    assert not np.allclose(got_losses[0], got_losses[1])


def test_every_model_sees_each_of_its_samples_once_per_epoch():
    keep = membership.make_membership(8, 64, seed=0)
    in_idx = membership.in_indices(keep)
    sched = steps.Schedule(5, in_idx.shape[1], epochs=2)  # 32 samples per model: a ragged batch
    assert sched.steps_per_epoch == 7
    key = jax.random.key(1)
    visits = []
    for epoch in range(2):
        seen, real_rows = [], []
        order = steps.epoch_order(key, epoch, sched)
        for i in range(sched.steps_per_epoch):
            idx, weight = steps.batch_indices(
                order, jnp.asarray(in_idx[3]), epoch * sched.steps_per_epoch + i, sched
            )
            seen += np.asarray(idx)[np.asarray(weight) > 0].tolist()
            real_rows.append(int(np.asarray(weight).sum()))
        assert sorted(seen) == in_idx[3].tolist()
        # Only the epoch's last batch is padded: 2 real rows, 3 of weight 0.
        assert real_rows == [5] * 6 + [2]
        visits.append(seen)
    assert visits[0] != visits[1]  # each epoch has its own order


@pytest.mark.parametrize("step0,num_steps", [(0, 1), (0, 7), (5, 7), (6, 1), (6, 15), (13, 20)])
def test_chunk_orders_cover_every_epoch_a_chunk_touches(step0, num_steps):
    sched = steps.Schedule(batch_size=5, samples_per_model=32, epochs=10)  # 7 steps per epoch
    key = jax.random.key(4)
    first_epoch, orders_ExM = steps.chunk_orders(key, jnp.asarray(step0), sched, num_steps)
    for step in range(step0, step0 + num_steps):
        epoch = step // sched.steps_per_epoch
        np.testing.assert_array_equal(
            orders_ExM[epoch - int(first_epoch)], steps.epoch_order(key, epoch, sched)
        )


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """One uninterrupted tiny run on all 8 devices, shared by the tests below."""
    path = tmp_path_factory.mktemp("full")
    return path, train(tiny_config(), path)


def test_eight_devices_match_one_device(tmp_path, full_run):
    cfg = tiny_config()
    assert jax.device_count() == 8
    train(cfg, tmp_path / "one", num_devices=1)
    dataset = load_dataset(cfg.data)
    _, params1 = load_params(cfg, tmp_path / "one", dataset)
    _, params8 = load_params(cfg, full_run[0], dataset)
    for a, b in zip(_leaves(params1), _leaves(params8)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_resume_equals_uninterrupted_run(tmp_path, full_run):
    cfg = tiny_config()
    full_path, full = full_run
    partial = train(cfg, tmp_path / "resumed", stop_after_steps=4)
    assert partial == {"step": 4, "finished": False}
    assert not (tmp_path / "resumed" / "train_done.json").exists()
    resumed = train(cfg, tmp_path / "resumed")
    assert resumed["step"] == full["step"]
    dataset = load_dataset(cfg.data)
    _, a = load_params(cfg, full_path, dataset)
    _, b = load_params(cfg, tmp_path / "resumed", dataset)
    for x, y in zip(_leaves(a), _leaves(b)):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    # The log has one line per logged step, none duplicated by the resume.
    steps_logged = [
        int(line.split('"step": ')[1].split(",")[0])
        for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps_logged == sorted(set(steps_logged))
    # A finished run re-run is a no-op.
    assert train(cfg, full_path) == full


def test_training_reduces_loss(full_run):
    lines = (full_run[0] / "metrics.jsonl").read_text().splitlines()
    first, last = json.loads(lines[0]), json.loads(lines[-1])
    assert last["loss_mean"] < first["loss_mean"] - 0.2
    assert {"loss_std", "tokens_per_s", "eta_s"} <= set(last)


def test_nan_loss_names_step_and_models():
    losses = np.ones((4, 3))
    losses[2, 1] = np.nan
    losses[3, 1] = np.inf
    with pytest.raises(TrainingError, match=r"step 12 in model\(s\) \[2, 3\]"):
        _check_finite(losses, step0=10)
    _check_finite(np.ones((4, 3)), step0=0)

"""Duplicated samples: a seeded subset repeated in every training set that holds it."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqmia_jax import membership
from seqmia_jax.config import ConfigError
from seqmia_jax.data import training_copies
from seqmia_jax.ensemble import steps
from seqmia_jax.ensemble.train import train
from tests.helpers import tiny_config


def test_training_copies_are_a_seeded_subset():
    data = tiny_config(**{"data.duplicated_samples": 6, "data.duplicates": 3}).data
    copies_N = training_copies(data)
    assert sorted(np.unique(copies_N).tolist()) == [1, 3]
    assert (copies_N == 3).sum() == 6
    np.testing.assert_array_equal(copies_N, training_copies(data))
    other = training_copies(dataclasses.replace(data, seed=data.seed + 1))
    assert not np.array_equal(copies_N, other)
    assert np.all(training_copies(tiny_config().data) == 1)


def test_membership_splits_the_duplicated_samples_evenly():
    copies_N = np.ones(100, np.int64)
    copies_N[[3, 10, 11, 40, 41, 77, 78, 99]] = 4
    keep = membership.make_membership(16, 100, seed=2, copies_N=copies_N)
    assert np.all(keep.sum(0) == 8) and np.all(keep.sum(1) == 50)
    assert np.all(keep[:, copies_N > 1].sum(1) == 4)  # half of the duplicated ones each
    # Without duplicated samples the draw is the plain one (older work directories).
    np.testing.assert_array_equal(
        membership.make_membership(16, 100, 2, np.ones(100, np.int64)),
        membership.make_membership(16, 100, 2),
    )
    in_idx = membership.in_indices(keep, copies_N)
    assert in_idx.shape == (16, 50 + 4 * 3)
    for s in range(16):
        count_N = np.bincount(in_idx[s], minlength=100)
        np.testing.assert_array_equal(count_N, np.where(keep[s], copies_N, 0))


def test_in_indices_refuses_training_sets_of_unequal_size():
    keep = membership.make_membership(4, 10, seed=0)
    copies_N = np.ones(10, np.int64)
    copies_N[np.flatnonzero(keep[0])[:2]] = 2  # both duplicated samples in model 0's half
    with pytest.raises(ConfigError, match="duplicated samples"):
        membership.in_indices(keep, copies_N)


def test_each_duplicate_is_seen_that_many_times_per_epoch():
    copies_N = np.ones(64, np.int64)
    copies_N[:8] = 3
    keep = membership.make_membership(4, 64, seed=1, copies_N=copies_N)
    in_idx = membership.in_indices(keep, copies_N)
    sched = steps.Schedule(batch_size=5, samples_per_model=in_idx.shape[1], epochs=1)
    order = steps.epoch_order(jax.random.key(0), 0, sched)
    seen = []
    for i in range(sched.steps_per_epoch):
        idx, weight = steps.batch_indices(order, jnp.asarray(in_idx[1]), i, sched)
        seen += np.asarray(idx)[np.asarray(weight) > 0].tolist()
    np.testing.assert_array_equal(np.bincount(seen, minlength=64), np.where(keep[1], copies_N, 0))


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"data.duplicated_samples": 3, "data.duplicates": 2}, "even"),
        ({"data.duplicated_samples": 4}, "together"),
        ({"data.duplicates": 4}, "together"),
        ({"data.duplicated_samples": -2, "data.duplicates": 2}, "duplicated_samples"),
        ({"data.duplicated_samples": 4, "data.duplicates": 0}, "together"),
    ],
)
def test_impossible_duplication_is_a_config_error(overrides, match):
    with pytest.raises(ConfigError, match=match):
        tiny_config(**overrides)


def test_training_with_duplicates_takes_the_longer_epochs(tmp_path):
    cfg = tiny_config(**{"data.duplicated_samples": 4, "data.duplicates": 3})
    done = train(cfg, tmp_path)
    per_model = cfg.data.num_samples // 2 + 2 * 2
    assert done["step"] == cfg.train.epochs * -(-per_model // cfg.train.batch_size)
    keep = np.load(tmp_path / "membership.npy")
    assert np.all(keep[:, training_copies(cfg.data) > 1].sum(1) == 2)
    assert json.loads((tmp_path / "config.json").read_text())["config"]["data"]["duplicates"] == 3

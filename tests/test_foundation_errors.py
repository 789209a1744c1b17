"""Membership and the clear errors of the foundation: configs, data, work directories."""

import dataclasses
import json

import numpy as np
import pytest

from seqmia_jax import membership
from seqmia_jax.config import ConfigError
from seqmia_jax.data.base import canary_spans
from seqmia_jax.ensemble.train import train
from seqmia_jax.workdir import WorkdirError
from tests.helpers import tiny_config


@pytest.mark.parametrize("num_models,num_samples", [(2, 10), (8, 64), (16, 1000)])
def test_membership_is_balanced_and_reproducible(num_models, num_samples):
    keep = membership.make_membership(num_models, num_samples, seed=7)
    assert keep.dtype == bool and keep.shape == (num_models, num_samples)
    assert np.all(keep.sum(axis=0) == num_models // 2)
    assert np.all(keep.sum(axis=1) == num_samples // 2)
    np.testing.assert_array_equal(keep, membership.make_membership(num_models, num_samples, seed=7))
    assert not np.array_equal(keep, membership.make_membership(num_models, num_samples, seed=8))


def test_membership_is_not_trivially_structured():
    keep = membership.make_membership(16, 2000, seed=0)
    # Apart from its complementary partner, each pair of models shares about half its samples.
    overlap = (keep[:, None] & keep[None]).sum(-1) / 1000
    partner = overlap == 0
    assert np.all(partner.sum(1) == 1)
    off = overlap[~partner & ~np.eye(16, dtype=bool)]
    assert np.all(np.abs(off - 0.5) < 0.06)


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"num_shadow_models": 7}, "must be even"),
        ({"data.name": "no_such_data"}, "unknown dataset"),
        ({"data.seq_len": 10**7}, "seq_len"),
        ({"data.num_samples": 63}, "data.num_samples must be even"),
        ({"model.embed_dim": 31}, "divisible"),
        ({"train.strategy": "fast"}, "strategy"),
    ],
)
def test_bad_config_is_refused_clearly(tmp_path, overrides, match):
    with pytest.raises(ConfigError, match=match):
        train(tiny_config(**overrides), tmp_path)


def test_mismatched_workdir_is_refused(tmp_path):
    train(tiny_config(), tmp_path)
    with pytest.raises(WorkdirError, match="train.learning_rate"):
        train(tiny_config(**{"train.learning_rate": 0.5}), tmp_path)
    with pytest.raises(WorkdirError, match="dataset"):
        train(tiny_config(**{"data.selection": "first"}), tmp_path)
    # Strategy and logging do not change what is trained: allowed.
    train(tiny_config(**{"train.strategy": "vmap", "train.log_every": 3}), tmp_path)


def test_work_directories_from_before_a_neutral_new_field_stay_valid(tmp_path):
    train(tiny_config(), tmp_path)
    stored = json.loads((tmp_path / "config.json").read_text())
    for field in ("canary_tokens", "duplicated_samples", "duplicates"):
        del stored["config"]["data"][field]  # as written before the fields existed
    del stored["config"]["model"]["attention"]
    (tmp_path / "config.json").write_text(json.dumps(stored))
    assert train(tiny_config(), tmp_path)["finished"]  # same identity: nothing to redo
    with pytest.raises(WorkdirError, match="data.canary_tokens: new field, 2 now"):
        train(tiny_config(**{"data.canary_tokens": 2}), tmp_path)


def test_canaries_are_planted_reproducibly_and_change_only_their_run():
    from seqmia_jax.data import load_dataset

    plain = tiny_config().data
    base = load_dataset(plain).tokens_NxL
    cfg = dataclasses.replace(plain, canary_tokens=5)
    tokens = load_dataset(cfg).tokens_NxL
    np.testing.assert_array_equal(tokens, load_dataset(cfg).tokens_NxL)
    changed = tokens != base
    start_N = canary_spans(cfg)
    for n in range(len(tokens)):
        run = np.arange(start_N[n], start_N[n] + 5)
        assert not changed[n, np.setdiff1d(np.arange(tokens.shape[1]), run)].any()
        assert all(chr(b) in "0123456789" for b in tokens[n, run])
    with pytest.raises(ConfigError, match="canary_tokens"):
        load_dataset(dataclasses.replace(plain, canary_tokens=plain.seq_len + 1))


def test_corrupt_workdir_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(WorkdirError, match="corrupt"):
        train(tiny_config(), tmp_path)


def test_shadow_subset_is_balanced_and_excludes_nothing_needed():
    keep = membership.make_membership(16, 200, seed=3)
    for target in (0, 5):
        models = membership.shadow_subset(keep, target, 6)
        assert models[0] == target and len(set(models.tolist())) == 8
        sub = keep[models]
        assert np.all(sub.sum(0) == 4)  # every sample IN for exactly half of the chosen models
    with pytest.raises(ConfigError, match="num_shadows"):
        membership.shadow_subset(keep, 0, 16)

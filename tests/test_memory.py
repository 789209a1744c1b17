"""The vmap chunk from the memory budget: the arithmetic, XLA's estimate, and the whole choice."""

import jax
import numpy as np
import pytest

from seqmia_jax import membership
from seqmia_jax.config import ConfigError
from seqmia_jax.data import load_dataset
from seqmia_jax.ensemble import memory, sharding, steps
from seqmia_jax.ensemble.train import init_ensemble
from tests.helpers import tiny_config

GIB = 2**30


def test_models_per_chunk_fits_what_the_budget_allows():
    assert memory.models_per_chunk(GIB, 64, 100 * GIB) == 64  # all fit
    assert memory.models_per_chunk(GIB, 64, 10 * GIB) == 8  # 0.8 * 10 GiB
    assert memory.models_per_chunk(GIB, 64, 10 * GIB, shared_bytes=2 * GIB) == 6
    with pytest.raises(ConfigError, match=r"one model's training step needs 2.00 GiB"):
        memory.models_per_chunk(2 * GIB, 64, 2 * GIB)


@pytest.fixture(scope="module")
def ensemble():
    cfg = tiny_config()
    dataset = load_dataset(cfg.data)
    keep = membership.make_membership(cfg.num_shadow_models, cfg.data.num_samples, cfg.seed)
    in_idx = membership.in_indices(keep)
    sched = steps.Schedule(cfg.train.batch_size, in_idx.shape[1], cfg.train.epochs)
    tx = steps.make_optimizer(cfg.train, sched.total_steps)
    mesh = sharding.make_mesh(cfg.num_shadow_models, jax.devices()[:1])
    graphdef, state = init_ensemble(cfg, dataset, mesh, tx)
    chunk = steps.make_model_chunk(graphdef, tx, sched, 2)
    return cfg, chunk, np.asarray(dataset.tokens_NxL), state, in_idx


def test_program_bytes_cover_one_models_state(ensemble):
    _, chunk, tokens, state, in_idx = ensemble
    one = jax.tree.map(lambda x: x[0], state)
    total = memory.program_bytes(chunk, tokens, one, in_idx[0], np.int32(0))
    state_bytes = sum(x.nbytes for x in jax.tree.leaves(one))
    assert total >= state_bytes + tokens.nbytes


def test_auto_strategy_chunks_the_ensemble_when_memory_is_short(ensemble, monkeypatch):
    cfg, chunk, tokens, state, in_idx = ensemble
    num_models = cfg.num_shadow_models
    one = jax.tree.map(lambda x: x[0], state)
    per_model = memory.program_bytes(chunk, tokens, one, in_idx[0], np.int32(0)) - tokens.nbytes
    # A device with room for 3 models (after the shared token table) gets lax.map over 3 at a time.
    limit = int((3.5 * per_model + tokens.nbytes) / memory.MEMORY_FRACTION)
    monkeypatch.setattr(memory, "device_bytes_limit", lambda device: limit)
    assert memory.auto_strategy(chunk, tokens, state, in_idx, num_models) == ("map", 3)
    monkeypatch.setattr(memory, "device_bytes_limit", lambda device: 1000 * limit)
    assert memory.auto_strategy(chunk, tokens, state, in_idx, num_models) == ("vmap", 0)
    monkeypatch.setattr(memory, "device_bytes_limit", lambda device: None)  # CPU
    assert memory.auto_strategy(chunk, tokens, state, in_idx, num_models) == ("vmap", 0)

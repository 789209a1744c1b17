"""Fine-tuned shadows from one base: full fine-tuning and LoRA.

Unit checks build a base with ``init_params``; the end-to-end checks pretrain
a tiny base on pydoc with a BPE vocabulary (configs/kjv_finetune.py:tiny).
"""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from seqmia_jax.config import ConfigError, from_config_dict
from seqmia_jax.ensemble import finetune, lift, sharding, steps
from seqmia_jax.ensemble.finetune import Base
from seqmia_jax.models import build
from seqmia_jax.models.lora import LoRALinear, add_lora
from seqmia_jax.sweep import apply_overrides
from seqmia_jax.workdir import WorkdirError
from tests.helpers import assert_params_close, tiny_config

VOCAB, LENGTH, S = 40, 12, 8


def _setup(finetune_mode: str, **train):
    import configs.kjv_finetune as module

    raw = module.get_config("tiny")
    overrides = {"train.finetune": finetune_mode, "num_shadow_models": S, **train}
    cfg = from_config_dict(apply_overrides(raw, overrides))
    graphdef, params = build.init_params(
        cfg.model, jax.random.key(3), vocab_size=VOCAB, seq_len=LENGTH
    )
    base = Base(graphdef, params, {"fingerprint": {}})
    mesh = sharding.make_mesh(S)
    sched = steps.Schedule(batch_size=4, samples_per_model=8, epochs=2)
    tx = steps.make_optimizer(cfg.train, sched.total_steps)
    data_keys = np.stack(
        [np.asarray(jax.random.key_data(jax.random.key(100 + s))) for s in range(S)]
    )
    graphdef_s, state, frozen = finetune.init_finetuned(cfg, base, mesh, tx, data_keys)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, VOCAB, size=(16, LENGTH)).astype(np.int32)
    in_idx = np.stack([rng.permutation(16)[:8] for _ in range(S)]).astype(np.int32)
    return cfg, base, mesh, sched, tx, graphdef_s, state, frozen, tokens, in_idx


def _host(tree):
    return jax.tree.map(np.asarray, tree)


def test_full_finetuning_starts_every_model_at_the_base():
    _, base, *_, state, frozen, _, _ = _setup("full")
    assert frozen is None
    for got, want in zip(jax.tree.leaves(_host(state["params"])), jax.tree.leaves(base.params)):
        assert got.shape == (S, *want.shape)
        np.testing.assert_array_equal(got, np.broadcast_to(np.asarray(want), got.shape))


def test_lora_shadows_equal_the_base_at_step_zero():
    _, base, _, _, _, graphdef, state, frozen, tokens, _ = _setup("lora")
    want = np.asarray(build.merge(base.graphdef, base.params)(tokens))
    for s in range(S):
        adapters = jax.tree.map(lambda x, s=s: x[s], state["params"])
        got = np.asarray(build.merge(graphdef, (adapters, lift.Shared(frozen)))(tokens))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    # B starts at zero and A is the same in every model: the shadows differ only by data.
    for path, leaf in nnx.to_flat_state(state["params"]):
        leaf = np.asarray(leaf.get_value() if hasattr(leaf, "get_value") else leaf.value)
        if path[-1] == "lora_b":
            assert not leaf.any()
        np.testing.assert_array_equal(leaf, np.broadcast_to(leaf[:1], leaf.shape))


def test_lora_trains_only_the_adapters_and_keeps_one_base():
    _, base, mesh, sched, tx, graphdef, state, frozen, tokens, in_idx = _setup("lora")
    names = {path[-1] for path, _ in nnx.to_flat_state(state["params"])}
    assert names == {"lora_a", "lora_b"}  # the ensemble's parameters are adapters only
    base_bytes = finetune.tree_bytes(base.params)
    assert finetune.tree_bytes(state["params"]) < S * base_bytes / 4
    before = _host(state["params"])
    frozen_before = _host(frozen)
    chunk = steps.lift_to_ensemble(
        steps.make_model_chunk(graphdef, tx, sched, 2), mesh, "vmap", frozen=True
    )
    state, _ = chunk(
        sharding.put_replicated(tokens, mesh),
        state,
        sharding.put_sharded(in_idx, mesh),
        np.int32(0),
        sharding.put_replicated(frozen, mesh),
    )
    after = _host(state["params"])
    moved = [
        np.abs(a - b).max()
        for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(before))
        if np.asarray(a).ndim
    ]
    assert max(moved) > 0  # the adapters trained
    for a, b in zip(jax.tree.leaves(_host(frozen)), jax.tree.leaves(frozen_before)):
        np.testing.assert_array_equal(a, b)  # the base did not


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_a_vmapped_finetuning_step_equals_separate_steps(mode):
    _, _, mesh, sched, tx, graphdef, state, frozen, tokens, in_idx = _setup(mode)
    extra = () if frozen is None else (sharding.put_replicated(frozen, mesh),)
    outs = {}
    for strategy in ("vmap", "loop"):
        chunk = steps.lift_to_ensemble(
            steps.make_model_chunk(graphdef, tx, sched, 3), mesh, strategy, frozen=bool(extra)
        )
        copy = jax.tree.map(lambda x: x.copy(), state)
        new, losses = chunk(
            sharding.put_replicated(tokens, mesh),
            copy,
            sharding.put_sharded(in_idx, mesh),
            np.int32(0),
            *extra,
        )
        outs[strategy] = (_host(new["params"]), np.asarray(losses))
    np.testing.assert_allclose(outs["vmap"][1], outs["loop"][1], rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(outs["vmap"][0]), jax.tree.leaves(outs["loop"][0])):
        # Adam divides by the root of the second moment: a coordinate whose gradient is
        # near 0 can differ by ~1e-6 between two compiled programs.
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_lora_scales_its_update_by_alpha_over_rank():
    linear = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    wrapped = LoRALinear(linear, rank=2, alpha=6.0, rngs=nnx.Rngs(1))
    wrapped.lora_b[...] = np.ones((2, 2), np.float32)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    a = np.asarray(wrapped.lora_a[...], np.float64)
    want = np.asarray(linear(x), np.float64) + 3.0 * (x @ a @ np.ones((2, 2)))
    np.testing.assert_allclose(np.asarray(wrapped(x)), want, rtol=1e-5)


def test_lora_targets_must_name_linear_layers():
    cfg = tiny_config("kjv_gpt").model
    model = build.build_model(cfg, vocab_size=VOCAB, seq_len=LENGTH, rngs=nnx.Rngs(0))
    with pytest.raises(ConfigError, match="qkvv.*its Linear layers are"):
        add_lora(model, 2, 4.0, "qkvv", nnx.Rngs(0))
    with pytest.raises(ConfigError, match="needs a base"):
        tiny_config("kjv_finetune", **{"train.finetune": "lora", "base.source": "none"})


# End to end: a tiny BPE base pretrained on pydoc, shadows fine-tuned from it.


@pytest.fixture(scope="module")
def lora_audit(tmp_path_factory):
    from seqmia_jax.pipeline import run_audit

    path = tmp_path_factory.mktemp("lora")
    cfg = tiny_config("kjv_finetune", **{"train.finetune": "lora"})
    return cfg, path, run_audit(cfg, path)


def test_a_lora_audit_runs_end_to_end_and_stores_adapters_only(lora_audit):
    cfg, path, out = lora_audit
    results = out["results"]
    assert "baseref" in results["attacks"] and "lira" in results["attacks"]
    assert set(out["seconds"]) == {"pretrain", "train", "score", "attack", "report"}
    done = json.loads((path / "train_done.json").read_text())
    memory = done["finetune"]["memory_bytes"]
    assert done["finetune"]["mode"] == "lora"
    assert memory["ensemble"] == memory["frozen"] + memory["trained_params"] + memory["optimizer"]
    assert memory["ensemble"] < memory["full_finetune"] / 4
    base = json.loads((path / "base" / "base.json").read_text())
    assert base["test_loss"] > 0 and base["train_loss"] > 0
    assert results["finetune"] == done["finetune"]
    assert done["finetune"]["base_test_loss"] == base["test_loss"]
    md = (path / "results" / "results.md").read_text()
    assert f"Fine-tuned (lora) from base {done['finetune']['base']}" in md
    assert f"{memory['ensemble']:,} bytes (full fine-tuning: {memory['full_finetune']:,})" in md
    n, length = cfg.data.num_samples, cfg.data.seq_len
    for name in ("base_loss", "base_logit"):
        assert np.load(path / "stats" / f"{name}.npy").shape == (n, length)
    assert (path / "tokenizer.json").exists() and (path / "base" / "tokenizer.json").exists()
    # Subword ids for the token-level analyses, and each sample's bytes for zlib.
    from seqmia_jax.data import load_dataset as load

    dataset = load(cfg.data)
    np.testing.assert_array_equal(np.load(path / "tokens.npy"), dataset.tokens_NxL)
    text, lengths = np.load(path / "text_bytes.npy"), np.load(path / "text_lengths.npy")
    assert text[0, : lengths[0]].tobytes() == dataset.raw_bytes(0)
    # The stored ensemble: S sets of adapters, no copy of the base.
    from seqmia_jax.data import load_dataset
    from seqmia_jax.ensemble.train import load_params

    _, (adapters, shared) = load_params(cfg, path, load_dataset(cfg.data))
    names = {p[-1] for p, _ in nnx.to_flat_state(adapters)}
    assert names == {"lora_a", "lora_b"}
    assert all(x.shape[0] == cfg.num_shadow_models for x in jax.tree.leaves(adapters))
    base_leaves = jax.tree.leaves(shared.value)
    assert all(x.ndim <= 2 for x in base_leaves)  # one base: no S axis


def test_the_base_statistics_are_the_base_models(lora_audit):
    cfg, path, _ = lora_audit
    from seqmia_jax import pretrain
    from seqmia_jax.data import load_dataset
    from seqmia_jax.scoring import token_statistics

    dataset = load_dataset(cfg.data)
    base = pretrain.load_base(cfg, path, dataset)
    tokens = np.asarray(dataset.tokens_NxL[:8])
    want = token_statistics(build.merge(base.graphdef, base.params)(tokens), tokens)
    got = np.load(path / "stats" / "base_loss.npy")[:8]
    np.testing.assert_allclose(got, np.asarray(want["loss"]), rtol=1e-5, atol=1e-6)


def test_a_base_is_reused_and_a_workdir_refuses_another_base(lora_audit, tmp_path):
    from seqmia_jax import pretrain
    from seqmia_jax.ensemble.train import train

    cfg, path, _ = lora_audit
    record = pretrain.pretrain(cfg, path)  # finished: reused, not retrained
    assert record == json.loads((path / "base" / "base.json").read_text())
    # Another base (one more epoch) in another directory, named by the same work directory.
    other = tiny_config(
        "kjv_finetune",
        **{"train.finetune": "lora", "base.epochs": 2, "base.dir": str(tmp_path / "b2")},
    )
    pretrain.pretrain(other, tmp_path)
    with pytest.raises(WorkdirError, match="dataset fingerprint"):
        train(other, path)
    # A base whose sizes differ from the config is refused, naming the field.
    wider = tiny_config(
        "kjv_finetune",
        **{"model.embed_dim": 48, "base.source": f"checkpoint:{path / 'base'}"},
    )
    with pytest.raises(WorkdirError, match=r"model\.embed_dim: 32 in the base, 48"):
        pretrain.pretrain(wider, tmp_path / "w")
    # A base trained with other settings in the same base.dir is refused, not replaced.
    changed = tiny_config("kjv_finetune", **{"base.epochs": 3})
    with pytest.raises(WorkdirError, match=r"base\.epochs: 1 in the base, 3 in the config"):
        pretrain.pretrain(changed, path)


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_finetuning_resumes_and_eight_devices_equal_one(tmp_path, mode):
    from seqmia_jax import pretrain
    from seqmia_jax.data import load_dataset
    from seqmia_jax.ensemble.train import load_params, train

    cfg = tiny_config(
        "kjv_finetune", **{"train.finetune": mode, "base.dir": str(tmp_path / "base")}
    )
    pretrain.pretrain(cfg, tmp_path)
    full = train(cfg, tmp_path / "one", num_devices=1)
    assert train(cfg, tmp_path / "resumed", stop_after_steps=4)["finished"] is False
    resumed = train(cfg, tmp_path / "resumed")  # all 8 devices
    assert resumed["step"] == full["step"]
    dataset = load_dataset(cfg.data)
    _, a = load_params(cfg, tmp_path / "one", dataset)
    _, b = load_params(cfg, tmp_path / "resumed", dataset)
    assert_params_close(a, b)


def test_dp_sgd_trains_lora_adapters(tmp_path):
    """DP-SGD clips and noises the adapters' per-example gradients; the audit reports both."""
    from configs import kjv_finetune
    from seqmia_jax.pipeline import run_audit

    raw = kjv_finetune.get_config("tiny,lora")
    raw.train.dp_clip_norm = 1.0
    raw.train.dp_noise_multiplier = 1.0
    raw.attack.attacks = "lira;baseref;loss"
    out = run_audit(from_config_dict(raw), tmp_path)["results"]
    done = json.loads((tmp_path / "train_done.json").read_text())
    assert out["dp"] == done["dp"] and out["dp"]["epsilon"] > 0
    assert out["finetune"]["mode"] == "lora"
    assert {"lira", "baseref", "loss"} <= set(out["attacks"])

"""Tests of the one-model flax.nnx models, their registry and init helpers.

Shape legend: S shadow models, B batch, L positions, D width, V vocabulary.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqmia_jax import models
from seqmia_jax.config import ModelConfig

VOCAB = 11
SEQ_LEN = 8
IMAGE_SHAPE = (2, 2, 2)  # H*W*C == SEQ_LEN
TINY = ModelConfig(num_layers=2, embed_dim=16, num_heads=2, mlp_ratio=2)


def make(name: str, seed: int = 0, **overrides) -> nnx.Module:
    cfg = dataclasses.replace(TINY, name=name, **overrides)
    return models.build_model(
        cfg,
        vocab_size=VOCAB,
        seq_len=SEQ_LEN,
        image_shape=IMAGE_SHAPE,
        rngs=nnx.Rngs(params=jax.random.key(seed)),
    )


def random_tokens(seed: int, batch: int = 2) -> jax.Array:
    return jax.random.randint(jax.random.key(seed), (batch, SEQ_LEN), 0, VOCAB)


@pytest.mark.parametrize("name", ["gpt", "pixel"])
def test_shapes_and_dtypes(name):
    model = make(name)
    logits_BxLxV = model(random_tokens(1, batch=3))
    assert logits_BxLxV.shape == (3, SEQ_LEN, VOCAB)
    assert logits_BxLxV.dtype == jnp.float32
    assert np.all(np.isfinite(logits_BxLxV))
    params = nnx.state(model, nnx.Param)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
    assert model.token_embed.embedding[...].shape == (VOCAB + 1, TINY.embed_dim)  # + BOS


@pytest.mark.parametrize("name", ["gpt", "pixel"])
def test_causality_through_gradients(name):
    """d logits[l] / d embedding(token j) is zero for j >= l and nonzero for j < l."""
    model = make(name)
    tok_1xLxD = model.embed_tokens(random_tokens(2, batch=1))
    weights_LxV = jax.random.normal(jax.random.key(3), (SEQ_LEN, VOCAB))

    def projected_logits_L(tok_1xLxD):
        logits_LxV = model.logits_from_token_embeddings(tok_1xLxD)[0]
        return jnp.sum(logits_LxV * weights_LxV, axis=-1)

    jacobian_Lx1xLxD = jax.jacrev(projected_logits_L)(tok_1xLxD)
    dependence_LxL = np.abs(np.asarray(jacobian_Lx1xLxD)).sum(axis=(1, 3))
    future_or_self = np.triu(np.ones((SEQ_LEN, SEQ_LEN), dtype=bool))
    assert np.all(dependence_LxL[future_or_self] == 0.0)
    assert np.all(dependence_LxL[~future_or_self] > 0.0)
    assert np.all(dependence_LxL[0] == 0.0)  # position 0 sees only BOS


@pytest.mark.parametrize("name", ["gpt", "pixel"])
def test_token_change_only_affects_later_positions(name):
    """The int-token path: changing token j changes logits at l > j only."""
    model = make(name)
    tokens_1xL = random_tokens(4, batch=1)
    j = 3
    changed_1xL = tokens_1xL.at[0, j].set((tokens_1xL[0, j] + 1) % VOCAB)
    delta_L = np.abs(np.asarray(model(tokens_1xL) - model(changed_1xL))[0]).max(axis=-1)
    assert np.all(delta_L[: j + 1] == 0.0)
    assert np.all(delta_L[j + 1 :] > 0.0)


@pytest.mark.parametrize("name", ["gpt", "pixel"])
def test_bfloat16_compute_close_to_float32(name):
    tokens = random_tokens(5)
    logits_f32 = make(name)(tokens)
    model_bf16 = make(name, compute_dtype="bfloat16")
    logits_bf16 = model_bf16(tokens)
    assert logits_bf16.dtype == jnp.float32
    params_bf16 = nnx.state(model_bf16, nnx.Param)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params_bf16))
    error = float(jnp.max(jnp.abs(logits_bf16 - logits_f32)))
    scale = float(jnp.max(jnp.abs(logits_f32)))
    assert 0.0 < error < 0.05 * scale + 1e-3  # > 0: bfloat16 really ran


@pytest.mark.parametrize("name", ["gpt", "pixel"])
def test_remat_gives_same_gradients(name):
    tokens = random_tokens(6)

    def grads_and_jaxpr(remat):
        graphdef, params = nnx.split(make(name, remat=remat), nnx.Param)

        def loss(params):
            logits_BxLxV = models.apply(graphdef, params, tokens)
            log_probs = jax.nn.log_softmax(logits_BxLxV)
            return -jnp.take_along_axis(log_probs, tokens[..., None], axis=-1).mean()

        grad_fn = jax.grad(loss)
        return grad_fn(params), str(jax.make_jaxpr(grad_fn)(params))

    grads_plain, jaxpr_plain = grads_and_jaxpr(False)
    grads_remat, jaxpr_remat = grads_and_jaxpr(True)
    assert "remat" in jaxpr_remat or "checkpoint" in jaxpr_remat
    assert "remat" not in jaxpr_plain and "checkpoint" not in jaxpr_plain
    for plain, remat in zip(jax.tree.leaves(grads_plain), jax.tree.leaves(grads_remat)):
        np.testing.assert_allclose(plain, remat, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["gpt", "pixel"])
def test_vmapped_init_gives_distinct_models(name):
    cfg = dataclasses.replace(TINY, name=name)
    kwargs = {"vocab_size": VOCAB, "seq_len": SEQ_LEN, "image_shape": IMAGE_SHAPE}
    keys_S = jax.random.split(jax.random.key(7), 3)
    graphdef, params_S = models.init_params(cfg, keys_S, **kwargs)
    assert all(leaf.shape[0] == 3 for leaf in jax.tree.leaves(params_S))

    tokens_SxBxL = jnp.broadcast_to(random_tokens(8), (3, 2, SEQ_LEN))
    apply_S = jax.jit(jax.vmap(models.apply, in_axes=(None, 0, 0)), static_argnums=0)
    logits_SxBxLxV = apply_S(graphdef, params_S, tokens_SxBxL)
    assert logits_SxBxLxV.shape == (3, 2, SEQ_LEN, VOCAB)
    for s in range(3):
        # Each vmapped model equals the same model initialised alone.
        _, params_one = models.init_params(cfg, keys_S[s], **kwargs)
        for stacked, one in zip(jax.tree.leaves(params_S), jax.tree.leaves(params_one)):
            np.testing.assert_allclose(stacked[s], one, rtol=1e-6)
        np.testing.assert_allclose(
            logits_SxBxLxV[s], models.apply(graphdef, params_one, tokens_SxBxL[s]), atol=1e-5
        )
    kernel_SxDxV = params_S["head"]["kernel"][...]
    assert not np.allclose(kernel_SxDxV[0], kernel_SxDxV[1])
    assert not np.allclose(logits_SxBxLxV[0], logits_SxBxLxV[1])


def test_flop_count_matches_hand_count():
    cfg = ModelConfig(num_layers=2, embed_dim=8, num_heads=2, mlp_ratio=4)
    # Per layer: qkv 8*24 + out 8*8 + up 8*32 + down 32*8 = 768; head 8*10 = 80.
    matmul_params = 2 * 768 + 80
    expected = 6 * matmul_params + 12 * 2 * 8 * 6
    assert models.count_flops_per_token(cfg, vocab_size=10, seq_len=6) == expected == 10848

    # N is exactly the model's matmul kernels (no embeddings, biases or norms).
    model = models.build_model(cfg, vocab_size=10, seq_len=6, rngs=nnx.Rngs(0))
    kernels = nnx.state(model, lambda path, _: path[-1] == "kernel")
    assert models.num_params(kernels) == matmul_params
    all_params = nnx.state(model, nnx.Param)
    embeddings = (10 + 1) * 8 + 6 * 8
    biases_and_norms = 2 * (24 + 8 + 32 + 8 + 4 * 8) + 2 * 8 + 10
    assert models.num_params(all_params) == matmul_params + embeddings + biases_and_norms


def test_registry_and_config_errors():
    assert models.MODELS.names() == ["gpt", "pixel"]
    cfg = dataclasses.replace(TINY, name="pixel")
    with pytest.raises(ValueError, match="H\\*W\\*C"):
        models.build_model(
            cfg, vocab_size=VOCAB, seq_len=SEQ_LEN, image_shape=(2, 2, 3), rngs=nnx.Rngs(0)
        )
    with pytest.raises(ValueError, match="image_shape"):
        models.build_model(cfg, vocab_size=VOCAB, seq_len=SEQ_LEN, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="unknown model"):
        models.build_model(
            dataclasses.replace(TINY, name="rnn"),
            vocab_size=VOCAB,
            seq_len=SEQ_LEN,
            rngs=nnx.Rngs(0),
        )

"""Tests of the one-model flax.nnx models, their registry and init helpers.

Every forward pass is jitted (without LLVM optimization on CPU, which cuts compile
time about 3x and leaves the computation unchanged), models are initialised through
the cached, jitted ``init_params`` and test inputs come from numpy: eager op-by-op
dispatch and threefry compiles otherwise dominate test time on CPU.

Shape legend: S shadow models, B batch, L positions, D width, V vocabulary.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqmia_jax import models
from seqmia_jax.config import ConfigError, ModelConfig
from seqmia_jax.models import decoder

VOCAB = 11
SEQ_LEN = 8
IMAGE_SHAPE = (2, 2, 2)  # H*W*C == SEQ_LEN
SIZES = {"vocab_size": VOCAB, "seq_len": SEQ_LEN, "image_shape": IMAGE_SHAPE}
TINY = ModelConfig(num_layers=2, embed_dim=16, num_heads=2, mlp_ratio=2)

FAST_COMPILE = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else None
jit = functools.partial(jax.jit, compiler_options=FAST_COMPILE)
apply_jit = jit(models.apply, static_argnums=0)


def config(name: str, **overrides) -> ModelConfig:
    return dataclasses.replace(TINY, name=name, **overrides)


@functools.cache
def init(name: str, **overrides) -> tuple[nnx.GraphDef, nnx.State]:
    return models.init_params(config(name, **overrides), jax.random.key(0), **SIZES)


def random_tokens(seed: int, batch: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, (batch, SEQ_LEN), dtype=np.int32)


@pytest.mark.parametrize("name", ["gpt", "pixel"])
def test_shapes_and_dtypes(name):
    graphdef, params = init(name)
    logits_BxLxV = apply_jit(graphdef, params, random_tokens(1))
    assert logits_BxLxV.shape == (2, SEQ_LEN, VOCAB)
    assert logits_BxLxV.dtype == jnp.float32
    assert np.all(np.isfinite(logits_BxLxV))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
    assert params["token_embed"]["embedding"].shape == (VOCAB + 1, TINY.embed_dim)  # + BOS
    # A module built directly (eagerly) has the same structure as init_params's.
    model = nnx.eval_shape(lambda: models.build_model(config(name), **SIZES, rngs=nnx.Rngs(0)))
    assert nnx.split(model, nnx.Param)[0] == graphdef


@pytest.mark.parametrize("name", ["gpt", "pixel"])
def test_causality_through_gradients(name):
    """d logits[l] / d embedding(token j) is zero for j >= l and nonzero for j < l."""
    graphdef, params = init(name)
    weights_LxV = np.random.default_rng(3).normal(size=(SEQ_LEN, VOCAB)).astype(np.float32)

    @jit
    def jacobian(params, tokens_1xL):
        model = nnx.merge(graphdef, params)

        def projected_logits_L(tok_1xLxD):
            logits_LxV = model.logits_from_token_embeddings(tok_1xLxD)[0]
            return jnp.sum(logits_LxV * weights_LxV, axis=-1)

        return jax.jacrev(projected_logits_L)(model.embed_tokens(tokens_1xL))

    jacobian_Lx1xLxD = jacobian(params, random_tokens(2, batch=1))
    dependence_LxL = np.abs(np.asarray(jacobian_Lx1xLxD)).sum(axis=(1, 3))
    future_or_self = np.triu(np.ones((SEQ_LEN, SEQ_LEN), dtype=bool))
    assert np.all(dependence_LxL[future_or_self] == 0.0)
    assert np.all(dependence_LxL[~future_or_self] > 0.0)
    assert np.all(dependence_LxL[0] == 0.0)  # position 0 sees only BOS


@pytest.mark.parametrize("name", ["gpt", "pixel"])
def test_token_change_only_affects_later_positions(name):
    """The int-token path: changing token j changes logits at l > j only."""
    graphdef, params = init(name)
    tokens_L = random_tokens(4, batch=1)[0]
    j = 3
    changed_L = tokens_L.copy()
    changed_L[j] = (changed_L[j] + 1) % VOCAB
    tokens_2xL = np.stack([tokens_L, changed_L])
    logits_2xLxV = np.asarray(apply_jit(graphdef, params, tokens_2xL))
    delta_L = np.abs(logits_2xLxV[0] - logits_2xLxV[1]).max(axis=-1)
    assert np.all(delta_L[: j + 1] == 0.0)
    assert np.all(delta_L[j + 1 :] > 0.0)


def test_bfloat16_compute_close_to_float32():
    graphdef_f32, params = init("gpt")
    graphdef_bf16, params_bf16 = init("gpt", compute_dtype="bfloat16")
    jax.tree.map(np.testing.assert_array_equal, params, params_bf16)  # same f32 params
    tokens = random_tokens(5)
    logits_f32 = apply_jit(graphdef_f32, params, tokens)
    logits_bf16 = apply_jit(graphdef_bf16, params, tokens)
    assert logits_bf16.dtype == jnp.float32
    error = np.max(np.abs(np.asarray(logits_bf16) - np.asarray(logits_f32)))
    scale = np.max(np.abs(np.asarray(logits_f32)))
    assert 0.0 < error < 0.05 * scale + 1e-3  # > 0: bfloat16 compute really ran
    jaxpr = str(jax.make_jaxpr(functools.partial(models.apply, graphdef_bf16))(params, tokens))
    assert "bf16" in jaxpr


def test_remat_gives_same_gradients():
    tokens = random_tokens(6)

    def grads_and_jaxpr(remat):
        graphdef, params = init("gpt", remat=remat)

        def loss(params):
            logits_BxLxV = models.apply(graphdef, params, tokens)
            log_probs = jax.nn.log_softmax(logits_BxLxV)
            return -jnp.take_along_axis(log_probs, tokens[..., None], axis=-1).mean()

        grad_fn = jax.grad(loss)
        return jit(grad_fn)(params), str(jax.make_jaxpr(grad_fn)(params))

    grads_plain, jaxpr_plain = grads_and_jaxpr(False)
    grads_remat, jaxpr_remat = grads_and_jaxpr(True)
    assert "remat" in jaxpr_remat or "checkpoint" in jaxpr_remat
    assert "remat" not in jaxpr_plain and "checkpoint" not in jaxpr_plain
    for plain, remat in zip(jax.tree.leaves(grads_plain), jax.tree.leaves(grads_remat)):
        np.testing.assert_allclose(plain, remat, rtol=1e-5, atol=1e-7)


def test_flop_count_matches_hand_count():
    cfg = ModelConfig(num_layers=2, embed_dim=8, num_heads=2, mlp_ratio=4)
    # Per layer: qkv 8*24 + out 8*8 + up 8*32 + down 32*8 = 768; head 8*10 = 80.
    matmul_params = 2 * 768 + 80
    expected = 6 * matmul_params + 12 * 2 * 8 * 6
    assert models.count_flops_per_token(cfg, vocab_size=10, seq_len=6) == expected == 10848

    # N is exactly the model's matmul kernels (no embeddings, biases or norms).
    model = nnx.eval_shape(
        lambda: models.build_model(cfg, vocab_size=10, seq_len=6, rngs=nnx.Rngs(0))
    )
    kernels = nnx.state(model, lambda path, _: path[-1] == "kernel")
    assert models.num_params(kernels) == matmul_params
    embeddings = (10 + 1) * 8 + 6 * 8
    biases_and_norms = 2 * (24 + 8 + 32 + 8 + 4 * 8) + 2 * 8 + 10
    assert models.num_params(nnx.state(model, nnx.Param)) == (
        matmul_params + embeddings + biases_and_norms
    )


def test_registry_and_config_errors():
    assert models.MODELS.names() == ["gpt", "pixel"]
    cfg = config("pixel")
    with pytest.raises(ValueError, match="H\\*W\\*C"):
        models.build_model(
            cfg, vocab_size=VOCAB, seq_len=SEQ_LEN, image_shape=(2, 2, 3), rngs=nnx.Rngs(0)
        )
    with pytest.raises(ValueError, match="image_shape"):
        models.build_model(cfg, vocab_size=VOCAB, seq_len=SEQ_LEN, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="unknown model"):
        models.init_params(config("rnn"), jax.random.key(0), **SIZES)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_one_hot_embedding_equals_a_gather_values_and_gradient(dtype):
    graphdef, state = nnx.split(decoder.embed(257, 16, dtype, nnx.Rngs(params=0)))
    ids_BxL = jax.random.randint(jax.random.key(1), (4, 32), 0, 257)
    cotangent_BxLxD = jax.random.normal(jax.random.key(2), (4, 32, 16))

    def one_hot(table_VxD):
        new_state = jax.tree.map(lambda _: table_VxD, state)
        return nnx.merge(graphdef, new_state)(ids_BxL)

    def gather(table_VxD):
        return jnp.take(table_VxD.astype(dtype), ids_BxL, axis=0)

    def loss(embed_fn, table_VxD):
        return jnp.sum(embed_fn(table_VxD).astype(jnp.float32) * cotangent_BxLxD)

    table_VxD = jax.tree.leaves(state)[0]
    assert one_hot(table_VxD).dtype == gather(table_VxD).dtype == dtype
    np.testing.assert_array_equal(
        one_hot(table_VxD).astype(jnp.float32), gather(table_VxD).astype(jnp.float32)
    )
    grad_one_hot = jax.grad(functools.partial(loss, one_hot))(table_VxD)
    grad_gather = jax.grad(functools.partial(loss, gather))(table_VxD)
    tolerance = 1e-6 if dtype == jnp.float32 else 2e-2  # bf16 cotangents, summed in any order
    np.testing.assert_allclose(grad_one_hot, grad_gather, rtol=tolerance, atol=tolerance)


def test_cudnn_attention_is_refused_off_gpu_or_in_float32():
    # Off GPU the backend is refused; on a GPU, float32 compute is.
    with pytest.raises(ConfigError, match="attention='cudnn' needs"):
        init("gpt", attention="cudnn", compute_dtype="float32")
    with pytest.raises(ConfigError, match="'xla' or 'cudnn'"):
        init("gpt", attention="flash")

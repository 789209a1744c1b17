"""The model registry, builders, pure apply and accounting helpers.

Models are registered as builders ``(cfg, *, vocab_size, seq_len, image_shape, rngs)
-> nnx.Module``; adding a model is a new file with one ``@MODELS.register`` line
plus an import in ``seqmia_jax/models/__init__.py``.

Ensemble code works with ``(graphdef, params)`` pairs: ``init_params`` with a
batch of S keys returns params whose leaves carry a leading S axis, and
``apply`` is the pure function to jit/vmap over them.

Shape legend: S shadow models, B batch, L positions, D width, V vocabulary.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from seqmia_jax.config import ModelConfig
from seqmia_jax.registry import Registry

ModelBuilder = Callable[..., nnx.Module]
MODELS: Registry[ModelBuilder] = Registry("model")


def build_model(
    cfg: ModelConfig,
    *,
    vocab_size: int,
    seq_len: int,
    image_shape: tuple[int, int, int] | None = None,
    rngs: nnx.Rngs,
) -> nnx.Module:
    """Builds the registered model ``cfg.name`` for one (unbatched) model."""
    return MODELS.get(cfg.name)(
        cfg, vocab_size=vocab_size, seq_len=seq_len, image_shape=image_shape, rngs=rngs
    )


def init_params(
    cfg: ModelConfig,
    key: jax.Array,
    *,
    vocab_size: int,
    seq_len: int,
    image_shape: tuple[int, int, int] | None = None,
) -> tuple[nnx.GraphDef, nnx.State]:
    """Initialises one model, or S models if ``key`` is a batch of S keys.

    Returns ``(graphdef, params)``; with S keys every params leaf has a leading S
    axis (the models are initialised under jax.vmap, so they differ).
    The graphdef comes from an abstract (shape-only) build and is shared by all S.
    """
    kwargs = {"vocab_size": vocab_size, "seq_len": seq_len, "image_shape": image_shape}

    def params_of(one_key: jax.Array) -> nnx.State:
        model = build_model(cfg, **kwargs, rngs=nnx.Rngs(params=one_key))
        return nnx.state(model, nnx.Param)

    abstract = nnx.eval_shape(lambda: build_model(cfg, **kwargs, rngs=nnx.Rngs(params=0)))
    graphdef, _ = nnx.split(abstract, nnx.Param)
    key_shape = jnp.shape(key)
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        batched = len(key_shape) == 1
    else:  # raw uint32 keys: (2,) is one key, (S, 2) a batch
        batched = len(key_shape) == 2
    params = jax.vmap(params_of)(key) if batched else params_of(key)
    return graphdef, params


def apply(graphdef: nnx.GraphDef, params: nnx.State, tokens_BxL: jax.Array) -> jax.Array:
    """Pure forward pass for one model: logits_BxLxV (float32); jit/vmap/grad over it."""
    return nnx.merge(graphdef, params)(tokens_BxL)


def num_params(state: nnx.State) -> int:
    """Total number of parameter entries in ``state`` (S times one model for a stacked state)."""
    return int(sum(leaf.size for leaf in jax.tree.leaves(state)))


def count_flops_per_token(cfg: ModelConfig, vocab_size: int, seq_len: int) -> float:
    """Forward + backward training FLOPs per token, for MFU.

    The PaLM / Chinchilla count ``6 N + 12 num_layers embed_dim seq_len``: N counts
    the matmul weights (per layer 4 D^2 for q, k, v and output plus
    2 mlp_ratio D^2 for the MLP, and D V for the head), not embedding lookups,
    biases or norms. The attention term counts the full L x L score and value
    products (2 L D each forward, times 3 for forward + backward), not halved for
    the causal mask, because the masked entries are computed anyway.
    """
    d = cfg.embed_dim
    matmul_params = cfg.num_layers * (4 + 2 * cfg.mlp_ratio) * d * d + d * vocab_size
    return float(6 * matmul_params + 12 * cfg.num_layers * d * seq_len)

"""The model registry, builders, pure apply and accounting helpers.

Models are registered as builders ``(cfg, *, vocab_size, seq_len, image_shape, rngs)
-> nnx.Module``; adding a model is a new file with one ``@MODELS.register`` line
plus an import in ``seqmia_jax/models/__init__.py``.

Everything here is for ONE model: ``init_params`` and ``apply`` work on
``(graphdef, params)`` pairs, and the ensemble axis is added elsewhere, in one
place (``seqmia_jax.ensemble.lift``).

Shape legend: S shadow models, B batch, L positions, D width, V vocabulary.
"""

import dataclasses
import functools
from collections.abc import Callable

import jax
from flax import nnx

from seqmia_jax.config import ConfigError, ModelConfig
from seqmia_jax.models import decoder
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
    check_attention(cfg)
    return MODELS.get(cfg.name)(
        cfg, vocab_size=vocab_size, seq_len=seq_len, image_shape=image_shape, rngs=rngs
    )


def check_attention(cfg: ModelConfig) -> None:
    """cuDNN's fused attention needs a GPU and 16-bit compute; say so before XLA does."""
    if cfg.attention not in decoder.ATTENTION_IMPLS:
        raise ConfigError(f"model.attention must be 'xla' or 'cudnn'; got {cfg.attention!r}")
    if cfg.attention == "cudnn":
        if jax.default_backend() != "gpu":
            raise ConfigError(
                f"model.attention='cudnn' needs a GPU; this backend is {jax.default_backend()}"
            )
        if cfg.compute_dtype not in ("bfloat16", "float16"):
            raise ConfigError(
                "model.attention='cudnn' needs model.compute_dtype='bfloat16' (or float16); "
                f"got {cfg.compute_dtype!r}"
            )


def _init_param_state(
    cfg: ModelConfig,
    key: jax.Array,
    *,
    vocab_size: int,
    seq_len: int,
    image_shape: tuple[int, int, int] | None,
) -> nnx.State:
    model = build_model(
        cfg,
        vocab_size=vocab_size,
        seq_len=seq_len,
        image_shape=image_shape,
        rngs=nnx.Rngs(params=key),
    )
    return nnx.state(model, nnx.Param)


@functools.cache
def _jitted_init(backend: str) -> Callable[..., nnx.State]:
    # Init runs once, so on CPU trade code quality for compile time: the unrolled
    # threefry hashes compile about 3x faster without LLVM optimization, and the
    # values are identical.
    options = {"xla_backend_optimization_level": 0} if backend == "cpu" else None
    return jax.jit(
        _init_param_state,
        static_argnames=("cfg", "vocab_size", "seq_len", "image_shape"),
        compiler_options=options,
    )


def init_params(
    cfg: ModelConfig,
    key: jax.Array,
    *,
    vocab_size: int,
    seq_len: int,
    image_shape: tuple[int, int, int] | None = None,
) -> tuple[nnx.GraphDef, nnx.State]:
    """Initialises one model from one key: ``(graphdef, params)``.

    The graphdef comes from an abstract (shape-only) build. Initialisation is
    jitted: eager init compiles every random op separately, which is slow on CPU.
    """
    image_shape = None if image_shape is None else tuple(int(n) for n in image_shape)
    kwargs = {"vocab_size": vocab_size, "seq_len": seq_len, "image_shape": image_shape}
    abstract = nnx.eval_shape(lambda: build_model(cfg, **kwargs, rngs=nnx.Rngs(params=0)))
    graphdef, _ = nnx.split(abstract, nnx.Param)
    # Params are float32 and drawn in the same order whatever the compute dtype,
    # remat or attention kernel, so one compiled initialiser serves every variant
    # (the abstract build above has checked the attention setting).
    param_cfg = dataclasses.replace(cfg, compute_dtype="float32", remat=False, attention="xla")
    params = _jitted_init(jax.default_backend())(param_cfg, key, **kwargs)
    return graphdef, params


def apply(graphdef: nnx.GraphDef, params: nnx.State, tokens_BxL: jax.Array) -> jax.Array:
    """Pure forward pass for one model: logits_BxLxV (float32); jit/vmap/grad over it."""
    return merge(graphdef, params)(tokens_BxL)


def merge(graphdef: nnx.GraphDef, params, frozen=None) -> nnx.Module:
    """One model from its parameters.

    ``params`` is a State, or under LoRA a pair ``(adapters, frozen)`` (the
    frozen base weights possibly wrapped in ``lift.Shared``); ``frozen`` may
    also be passed on its own. The graphdef must come from the same split.
    """
    if isinstance(params, tuple):
        params, frozen = params
    frozen = getattr(frozen, "value", frozen)
    return nnx.merge(graphdef, params) if frozen is None else nnx.merge(graphdef, params, frozen)


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

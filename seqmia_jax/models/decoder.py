"""The pre-LayerNorm causal transformer decoder shared by every model.

Written for one model: the ensemble axis S is added elsewhere with nnx.split
and jax.vmap. There is no dropout: shadow models are trained without it, so
the audited models are deterministic functions of their parameters.

Parameters are float32; matmuls run in ``compute_dtype`` (float32 or bfloat16),
while attention softmax, LayerNorm statistics and the final logits stay float32.
Attention is XLA's einsum-softmax-einsum, or cuDNN's fused kernel
(``model.attention="cudnn"``, GPUs with bfloat16 compute). Small vocabularies
embed by a one-hot matmul (``OneHotEmbed``).

Shape legend: B batch, L positions, D width, H heads, K head width (D / H),
V vocabulary (output classes).
"""

import jax
import jax.numpy as jnp
from flax import nnx

# GPT-2 style small init; biases start at zero.
INIT_STD = 0.02
normal_init = nnx.initializers.normal(stddev=INIT_STD)
LAYERNORM_EPSILON = 1e-5
ATTENTION_IMPLS = ("xla", "cudnn")
# Vocabularies up to this size embed by a one-hot matmul instead of a gather.
ONE_HOT_MAX_VOCAB = 4096


def layer_norm(embed_dim: int, dtype: jnp.dtype, rngs: nnx.Rngs) -> nnx.LayerNorm:
    """LayerNorm with float32 params; statistics are computed in float32 by flax."""
    return nnx.LayerNorm(
        embed_dim,
        epsilon=LAYERNORM_EPSILON,
        dtype=dtype,
        param_dtype=jnp.float32,
        use_fast_variance=False,
        rngs=rngs,
    )


def linear(in_features: int, out_features: int, dtype: jnp.dtype, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(
        in_features,
        out_features,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=normal_init,
        bias_init=nnx.initializers.zeros_init(),
        rngs=rngs,
    )


class CausalSelfAttention(nnx.Module):
    """Multi-head self-attention where position l attends to positions <= l."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dtype: jnp.dtype,
        attention: str = "xla",
        *,
        rngs: nnx.Rngs,
    ):
        if embed_dim % num_heads:
            raise ValueError(
                f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})"
            )
        if attention not in ATTENTION_IMPLS:
            raise ValueError(f"attention must be one of {ATTENTION_IMPLS}; got {attention!r}")
        self.num_heads = num_heads
        self.dtype = dtype
        self.attention = attention
        self.qkv = linear(embed_dim, 3 * embed_dim, dtype, rngs)
        self.out = linear(embed_dim, embed_dim, dtype, rngs)

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        batch, length, embed_dim = x_BxLxD.shape
        head_dim = embed_dim // self.num_heads
        qkv_BxLx3xHxK = self.qkv(x_BxLxD).reshape(batch, length, 3, self.num_heads, head_dim)
        q_BxLxHxK, k_BxLxHxK, v_BxLxHxK = (qkv_BxLx3xHxK[:, :, i] for i in range(3))
        if self.attention == "cudnn":  # fused; softmax in float32 inside the kernel
            attended_BxLxHxK = jax.nn.dot_product_attention(
                q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, is_causal=True, implementation="cudnn"
            )
            return self.out(attended_BxLxHxK.reshape(batch, length, embed_dim))
        # Scores and softmax in float32 even under bfloat16 compute.
        scores_BxHxLxL = jnp.einsum(
            "bqhk,bshk->bhqs", q_BxLxHxK, k_BxLxHxK, preferred_element_type=jnp.float32
        ) / jnp.sqrt(jnp.float32(head_dim))
        causal_LxL = jnp.tril(jnp.ones((length, length), dtype=bool))
        scores_BxHxLxL = jnp.where(causal_LxL, scores_BxHxLxL, jnp.finfo(jnp.float32).min)
        probs_BxHxLxL = jax.nn.softmax(scores_BxHxLxL, axis=-1).astype(self.dtype)
        attended_BxLxHxK = jnp.einsum("bhqs,bshk->bqhk", probs_BxHxLxL, v_BxLxHxK)
        return self.out(attended_BxLxHxK.reshape(batch, length, embed_dim))


class Mlp(nnx.Module):
    """Two-layer GELU MLP of hidden width mlp_ratio * D."""

    def __init__(self, embed_dim: int, mlp_ratio: int, dtype: jnp.dtype, *, rngs: nnx.Rngs):
        self.up = linear(embed_dim, mlp_ratio * embed_dim, dtype, rngs)
        self.down = linear(mlp_ratio * embed_dim, embed_dim, dtype, rngs)

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        return self.down(jax.nn.gelu(self.up(x_BxLxD)))


class Block(nnx.Module):
    """Pre-LayerNorm block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        mlp_ratio: int,
        dtype: jnp.dtype,
        attention: str = "xla",
        *,
        rngs: nnx.Rngs,
    ):
        self.attn_norm = layer_norm(embed_dim, dtype, rngs)
        self.attn = CausalSelfAttention(embed_dim, num_heads, dtype, attention, rngs=rngs)
        self.mlp_norm = layer_norm(embed_dim, dtype, rngs)
        self.mlp = Mlp(embed_dim, mlp_ratio, dtype, rngs=rngs)

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        x_BxLxD = x_BxLxD + self.attn(self.attn_norm(x_BxLxD))
        return x_BxLxD + self.mlp(self.mlp_norm(x_BxLxD))


def _apply_block(graphdef: nnx.GraphDef, state: nnx.State, x_BxLxD: jax.Array) -> jax.Array:
    return nnx.merge(graphdef, state)(x_BxLxD)


# The graphdef is static (hashable); only the block state and activations are traced.
_remat_block = jax.checkpoint(_apply_block, static_argnums=(0,))


class Decoder(nnx.Module):
    """A stack of ``num_layers`` blocks and a final LayerNorm.

    With ``remat`` each block is rematerialized in the backward pass: jax.checkpoint
    is applied to a pure function of the block's state, which behaves the same in
    every flax version (nnx.remat's signature has moved between releases).
    """

    def __init__(
        self,
        num_layers: int,
        embed_dim: int,
        num_heads: int,
        mlp_ratio: int,
        dtype: jnp.dtype,
        remat: bool = False,
        attention: str = "xla",
        *,
        rngs: nnx.Rngs,
    ):
        self.remat = remat
        self.blocks = nnx.List(
            [
                Block(embed_dim, num_heads, mlp_ratio, dtype, attention, rngs=rngs)
                for _ in range(num_layers)
            ]
        )
        self.final_norm = layer_norm(embed_dim, dtype, rngs)

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        for block in self.blocks:
            if self.remat:
                graphdef, state = nnx.split(block)
                x_BxLxD = _remat_block(graphdef, state, x_BxLxD)
            else:
                x_BxLxD = block(x_BxLxD)
        return self.final_norm(x_BxLxD)


def decoder_from_config(cfg, dtype: jnp.dtype, rngs: nnx.Rngs) -> "Decoder":
    """The decoder stack sized by a ModelConfig (shared by every model)."""
    return Decoder(
        cfg.num_layers,
        cfg.embed_dim,
        cfg.num_heads,
        cfg.mlp_ratio,
        dtype,
        remat=cfg.remat,
        attention=cfg.attention,
        rngs=rngs,
    )


class AutoregressiveModel(nnx.Module):
    """Shared next-token convention of every model in this package.

    ``model(tokens_BxL) -> logits_BxLxV`` (float32), where ``logits[:, l]`` predicts
    ``tokens[:, l]`` from ``tokens[:, :l]``. The inputs are shifted right inside the
    model and a learned BOS embedding fills position 0, so all L positions are
    predicted and position 0 is predicted from BOS alone.

    Subclasses set ``token_embed`` (an nnx.Embed with V + 1 rows, row V being BOS),
    ``decoder``, ``head``, ``num_classes`` and implement ``embed_positions``.
    """

    def embed_positions(self, length: int) -> jax.Array:
        """Returns pos_LxD, the embedding of the position being predicted."""
        raise NotImplementedError

    def embed_tokens(self, tokens_BxL: jax.Array) -> jax.Array:
        """Token embeddings tok_BxLxD of the (unshifted) inputs."""
        return self.token_embed(tokens_BxL)

    def logits_from_token_embeddings(self, tok_BxLxD: jax.Array) -> jax.Array:
        """Shifts the token embeddings right behind BOS and runs the decoder and head.

        Shifting embeddings (not ids) lets tests differentiate with respect to each
        input token's embedding.
        """
        batch, length, _ = tok_BxLxD.shape
        bos_Bx1 = jnp.full((batch, 1), self.num_classes, dtype=jnp.int32)
        bos_Bx1xD = self.token_embed(bos_Bx1).astype(tok_BxLxD.dtype)
        x_BxLxD = jnp.concatenate([bos_Bx1xD, tok_BxLxD[:, :-1]], axis=1)
        pos_1xLxD = self.embed_positions(length).astype(x_BxLxD.dtype)[None]
        x_BxLxD = x_BxLxD + pos_1xLxD
        return self.head(self.decoder(x_BxLxD)).astype(jnp.float32)

    def __call__(self, tokens_BxL: jax.Array) -> jax.Array:
        return self.logits_from_token_embeddings(self.embed_tokens(tokens_BxL))


class OneHotEmbed(nnx.Embed):
    """An nnx.Embed that looks up small vocabularies with a one-hot matmul.

    Same parameters and outputs as a gather (each output is one table row, so
    the product is exact at HIGHEST precision), but the gradient is a matmul
    instead of a scatter-add, whose atomic updates serialize on frequent
    tokens (a byte vocabulary under vmap over S models).
    """

    def __call__(self, inputs: jax.Array) -> jax.Array:
        if self.num_embeddings > ONE_HOT_MAX_VOCAB:
            return super().__call__(inputs)
        (table_VxD,) = self.promote_dtype((self.embedding[...],), dtype=self.dtype, inexact=False)
        one_hot = jax.nn.one_hot(inputs, self.num_embeddings, dtype=table_VxD.dtype)
        return jnp.dot(one_hot, table_VxD, precision=jax.lax.Precision.HIGHEST)


def embed(num_embeddings: int, embed_dim: int, dtype: jnp.dtype, rngs: nnx.Rngs) -> nnx.Embed:
    return OneHotEmbed(
        num_embeddings,
        embed_dim,
        dtype=dtype,
        param_dtype=jnp.float32,
        embedding_init=normal_init,
        rngs=rngs,
    )


def output_head(embed_dim: int, num_classes: int, dtype: jnp.dtype, rngs: nnx.Rngs) -> nnx.Linear:
    """Untied head; accumulates in float32 so logits keep full precision under bf16."""
    return nnx.Linear(
        embed_dim,
        num_classes,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=normal_init,
        bias_init=nnx.initializers.zeros_init(),
        preferred_element_type=jnp.float32,
        rngs=rngs,
    )

"""GPT: a causal transformer language model over token ids.

Token embedding of V + 1 rows (row V is BOS), learned absolute positions, the
shared decoder and an untied head to V classes. See ``AutoregressiveModel`` for
the shift/BOS convention: logits[:, l] predicts tokens[:, l] from tokens[:, :l].

Shape legend: B batch, L positions, D width, V vocabulary.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from seqmia_jax.config import ModelConfig
from seqmia_jax.models import decoder
from seqmia_jax.models.build import MODELS


class GPT(decoder.AutoregressiveModel):
    """Causal LM: ``model(tokens_BxL) -> logits_BxLxV`` (float32)."""

    def __init__(self, cfg: ModelConfig, *, vocab_size: int, seq_len: int, rngs: nnx.Rngs):
        dtype = jnp.dtype(cfg.compute_dtype)
        self.num_classes = vocab_size
        self.seq_len = seq_len
        self.token_embed = decoder.embed(vocab_size + 1, cfg.embed_dim, dtype, rngs)
        self.position_embed = decoder.embed(seq_len, cfg.embed_dim, dtype, rngs)
        self.decoder = decoder.decoder_from_config(cfg, dtype, rngs)
        self.head = decoder.output_head(cfg.embed_dim, vocab_size, dtype, rngs)

    def embed_positions(self, length: int) -> jax.Array:
        if length > self.seq_len:
            raise ValueError(f"sequence of length {length} exceeds seq_len={self.seq_len}")
        return self.position_embed(jnp.arange(length))


@MODELS.register("gpt")
def build_gpt(
    cfg: ModelConfig,
    *,
    vocab_size: int,
    seq_len: int,
    image_shape: tuple[int, int, int] | None = None,
    rngs: nnx.Rngs,
) -> GPT:
    del image_shape  # positions are 1-D
    return GPT(cfg, vocab_size=vocab_size, seq_len=seq_len, rngs=rngs)

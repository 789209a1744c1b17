"""PixelModel: an ImageGPT-style autoregressive model over quantized intensities.

An image of shape (H, W, C) is read in raster order with the channel fastest, so
position l holds row l // (W C), column (l // C) % W and channel l % C. The
embedding is an intensity-level embedding (levels + 1 rows, the last is BOS)
plus row, column and channel embeddings of the position being predicted; the
decoder and shift/BOS convention are shared with GPT and the head outputs
``levels`` classes.

Shape legend: B batch, L positions (H W C), D width, V intensity levels.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from seqmia_jax.config import ModelConfig
from seqmia_jax.models import decoder
from seqmia_jax.models.build import MODELS


class PixelModel(decoder.AutoregressiveModel):
    """Pixel LM: ``model(levels_BxL) -> logits_BxLxV`` (float32), V = levels."""

    def __init__(
        self,
        cfg: ModelConfig,
        *,
        levels: int,
        seq_len: int,
        image_shape: tuple[int, int, int],
        rngs: nnx.Rngs,
    ):
        height, width, channels = (int(n) for n in image_shape)
        if height * width * channels != seq_len:
            raise ValueError(
                f"image_shape {tuple(image_shape)} has H*W*C = {height * width * channels} "
                f"sub-pixels but seq_len is {seq_len}; they must be equal"
            )
        dtype = jnp.dtype(cfg.compute_dtype)
        self.num_classes = levels
        self.image_shape = (height, width, channels)
        self.token_embed = decoder.embed(levels + 1, cfg.embed_dim, dtype, rngs)
        self.row_embed = decoder.embed(height, cfg.embed_dim, dtype, rngs)
        self.column_embed = decoder.embed(width, cfg.embed_dim, dtype, rngs)
        self.channel_embed = decoder.embed(channels, cfg.embed_dim, dtype, rngs)
        self.decoder = decoder.decoder_from_config(cfg, dtype, rngs)
        self.head = decoder.output_head(cfg.embed_dim, levels, dtype, rngs)

    def embed_positions(self, length: int) -> jax.Array:
        height, width, channels = self.image_shape
        if length > height * width * channels:
            raise ValueError(f"sequence of length {length} exceeds H*W*C of {self.image_shape}")
        position_L = jnp.arange(length)
        return (
            self.row_embed(position_L // (width * channels))
            + self.column_embed((position_L // channels) % width)
            + self.channel_embed(position_L % channels)
        )


@MODELS.register("pixel")
def build_pixel(
    cfg: ModelConfig,
    *,
    vocab_size: int,
    seq_len: int,
    image_shape: tuple[int, int, int] | None = None,
    rngs: nnx.Rngs,
) -> PixelModel:
    if image_shape is None:
        raise ValueError("the pixel model needs image_shape=(H, W, C) with H*W*C == seq_len")
    return PixelModel(cfg, levels=vocab_size, seq_len=seq_len, image_shape=image_shape, rngs=rngs)

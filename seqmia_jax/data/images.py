"""Image datasets as token sequences, and the embedded scikit-learn digits.

Legend: N samples, L = H*W*C sub-pixels per sample, H, W, C image height,
width and channels, M all images in a dataset.

An image becomes a sequence in raster order with the channel fastest (the C
order of an H x W x C array), each sub-pixel quantized to one of ``levels``
intensity levels, as in ImageGPT.
"""

import functools

import numpy as np

from seqmia_jax.config import ConfigError, DataConfig
from seqmia_jax.data.base import DATASETS, Dataset, check_image_seq_len, make_dataset, pool_indices

DIGITS_SHAPE = (8, 8, 1)
DIGITS_LEVELS = 17  # load_digits counts 0..16 set pixels per 4x4 block


def check_levels(cfg: DataConfig) -> None:
    """Quantizing uint8 intensities needs 2 <= levels <= 256."""
    if not 2 <= cfg.levels <= 256:
        raise ConfigError(f"data.levels must be in [2, 256] for uint8 images; got {cfg.levels}")


def quantize(images_NxHxWxC: np.ndarray, levels: int) -> np.ndarray:
    """uint8 intensities -> int32 levels floor(x * levels / 256), flattened to N x L."""
    pixels_NxL = images_NxHxWxC.reshape(images_NxHxWxC.shape[0], -1).astype(np.int32)
    return pixels_NxL * levels // 256


@functools.lru_cache(maxsize=1)
def _digits_MxL() -> np.ndarray:
    from sklearn.datasets import load_digits

    tokens_MxL = load_digits().data.astype(np.int32)
    tokens_MxL.setflags(write=False)
    return tokens_MxL


@DATASETS.register("digits")
def load_digits_dataset(cfg: DataConfig) -> Dataset:
    """scikit-learn's 1,797 8x8 digits; always 17 levels (``cfg.levels`` is ignored)."""
    check_image_seq_len("digits", DIGITS_SHAPE, cfg)
    tokens_MxL = _digits_MxL()
    index_N = pool_indices(len(tokens_MxL), cfg, "images in digits")
    return make_dataset(
        "digits",
        tokens_MxL[index_N],
        cfg,
        vocab_size=DIGITS_LEVELS,
        kind="image",
        image_shape=DIGITS_SHAPE,
        levels=DIGITS_LEVELS,
    )

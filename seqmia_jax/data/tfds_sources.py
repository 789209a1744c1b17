"""Datasets read through tensorflow-datasets' random-access ``tfds.data_source``.

Legend: N samples, L tokens per sample, H, W, C image height, width and
channels.

``tfds.data_source`` needs no TensorFlow, and tensorflow_datasets is imported
only when one of these datasets is loaded. Nothing is downloaded here: a
dataset must already be prepared (in the array_record format) under
``data.data_dir``. Only the records the pool needs are read.

Registering another tfds dataset is one line at the bottom of this file.
"""

import numpy as np

from seqmia_jax.config import ConfigError, DataConfig
from seqmia_jax.data.base import DATASETS, Dataset, check_image_seq_len, make_dataset, pool_indices
from seqmia_jax.data.images import check_levels, quantize
from seqmia_jax.data.text import byte_windows_dataset


def open_source(name: str, cfg: DataConfig):
    """``tfds.data_source(name, split, data_dir)`` without downloading, or a ConfigError."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ConfigError(
            f"dataset {name} needs tensorflow-datasets (pip install tensorflow-datasets)"
        ) from e
    try:
        return tfds.data_source(name, split=cfg.split, data_dir=cfg.data_dir, download=False)
    # tfds signals a missing or unusable preparation with many exception types.
    except Exception as e:
        raise ConfigError(_unavailable_message(tfds, name, cfg, e)) from e


def _unavailable_message(tfds, name: str, cfg: DataConfig, error: Exception) -> str:
    try:
        builder = tfds.builder(name, data_dir=cfg.data_dir)
    except ValueError:  # DatasetNotFoundError: the original error names the problem.
        return f"tfds cannot open dataset {name!r}: {type(error).__name__}: {error}"
    how = (
        f"Prepare it once on a machine with network access:\n"
        f"  tfds build {name} --file_format=array_record"
        + (f" --data_dir={cfg.data_dir}" if cfg.data_dir else "")
        + "\nthen copy the data directory here and point data.data_dir at it."
    )
    if not builder.is_prepared():
        return f"tfds dataset {name!r} is not prepared in {builder.data_dir}. {how}"
    return (
        f"tfds dataset {name!r} (split {cfg.split!r}) in {builder.data_dir} cannot be read "
        f"with random access: {type(error).__name__}: {error}\n{how}"
    )


def _image_shape(source, image_key: str) -> tuple[int, int, int]:
    try:
        shape = tuple(source.dataset_info.features[image_key].shape)
    except (AttributeError, KeyError, TypeError):
        shape = ()
    if len(shape) != 3 or None in shape:  # Unknown or variable: look at the first record.
        shape = np.asarray(source[0][image_key]).shape
    return tuple(int(d) for d in shape)


def tfds_image_dataset(name: str, cfg: DataConfig, image_key: str = "image") -> Dataset:
    """Quantized images of a tfds dataset as token sequences (see ``images.quantize``)."""
    check_levels(cfg)
    source = open_source(name, cfg)
    image_shape = _image_shape(source, image_key)
    check_image_seq_len(name, image_shape, cfg)
    index_N = pool_indices(len(source), cfg, f"images in {name} split {cfg.split!r}")
    images = [np.asarray(source[int(i)][image_key]) for i in index_N]
    if any(image.shape != image_shape for image in images):
        raise ConfigError(f"{name} images do not all have shape {image_shape}")
    images_NxHxWxC = np.stack(images).astype(np.uint8)
    return make_dataset(
        name,
        quantize(images_NxHxWxC, cfg.levels),
        cfg,
        vocab_size=cfg.levels,
        kind="image",
        image_shape=image_shape,
        levels=cfg.levels,
        split=cfg.split,
    )


def _record_bytes(text) -> bytes:
    if isinstance(text, np.ndarray):
        text = text.item()
    return text if isinstance(text, bytes) else str(text).encode("utf-8")


def tfds_text_dataset(name: str, cfg: DataConfig, text_key: str = "text") -> Dataset:
    """Byte windows over the split's records joined by newlines.

    For "first" selection records are read only until N*L bytes are there;
    "random" selection needs the whole split to count the windows.
    """
    source = open_source(name, cfg)
    needed = cfg.num_samples * cfg.seq_len if cfg.selection == "first" else None
    pieces, size = [], -1  # -1: no separator before the first record
    for i in range(len(source)):
        pieces.append(_record_bytes(source[i][text_key]))
        size += len(pieces[-1]) + 1
        if needed is not None and size >= needed:
            break
    corpus = b"\n".join(pieces)
    return byte_windows_dataset(name, corpus, cfg, split=cfg.split)


def register_tfds_images(name: str, image_key: str = "image") -> None:
    """Registers tfds image dataset ``name`` under the same name."""
    DATASETS.register(name)(lambda cfg: tfds_image_dataset(name, cfg, image_key))


def register_tfds_text(name: str, text_key: str = "text") -> None:
    """Registers tfds text dataset ``name`` under the same name."""
    DATASETS.register(name)(lambda cfg: tfds_text_dataset(name, cfg, text_key))


register_tfds_images("mnist")
register_tfds_images("fashion_mnist")
register_tfds_images("cifar10")
register_tfds_text("tiny_shakespeare")

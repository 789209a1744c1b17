"""Audit pools of fixed-length token sequences, behind one registry.

Importing this package registers every dataset in ``DATASETS``:

- text, byte-level (vocab 256): ``kjv`` (embedded KJV bible), ``pydoc``
  (stdlib help topics, a tiny fixture) and tfds ``tiny_shakespeare``;
- images, quantized sub-pixels in raster order (vocab = levels): ``digits``
  (embedded, 17 levels) and tfds ``mnist``, ``fashion_mnist``, ``cifar10``.

Use ``load_dataset(cfg.data)``. To add a dataset, write a loader
``fn(cfg: DataConfig) -> Dataset`` in a new module, decorate it with
``@DATASETS.register("name")`` and import the module here.
"""

from seqmia_jax.data import images, text, tfds_sources  # noqa: F401  (registration)
from seqmia_jax.data.base import (
    DATASETS,
    Dataset,
    load_dataset,
    make_dataset,
    pool_indices,
    training_copies,
)

__all__ = [
    "DATASETS",
    "Dataset",
    "load_dataset",
    "make_dataset",
    "pool_indices",
    "training_copies",
]

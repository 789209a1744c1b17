"""Audit pools of fixed-length token sequences, behind one registry.

Importing this package registers every dataset in ``DATASETS``:

- text, byte-level (vocab 256) or, with ``data.tokenizer="bpe:<V>"``, a
  byte-level BPE learned outside the pool (``seqmia_jax.data.tokenizer``):
  ``kjv`` (embedded KJV bible), ``pydoc`` (stdlib help topics, a tiny
  fixture) and tfds ``tiny_shakespeare``;
- images, quantized sub-pixels in raster order (vocab = levels): ``digits``
  (embedded, 17 levels) and tfds ``mnist``, ``fashion_mnist``, ``cifar10``.

Use ``load_dataset(cfg.data)``; ``load_base_corpus(cfg.data)`` gives a text
dataset's public text outside the pool (kjv, pydoc). To add a dataset, write a loader
``fn(cfg: DataConfig) -> Dataset`` in a new module, decorate it with
``@DATASETS.register("name")`` and import the module here.
"""

from seqmia_jax.data import images, text, tfds_sources  # noqa: F401  (registration)
from seqmia_jax.data.base import (
    BASE_CORPORA,
    DATASETS,
    BaseCorpus,
    Dataset,
    load_base_corpus,
    load_dataset,
    make_dataset,
    pool_indices,
    training_copies,
)
from seqmia_jax.data.tokenizer import Tokenizer, parse_tokenizer, train_bpe

__all__ = [
    "BASE_CORPORA",
    "DATASETS",
    "BaseCorpus",
    "Dataset",
    "Tokenizer",
    "load_base_corpus",
    "load_dataset",
    "make_dataset",
    "parse_tokenizer",
    "pool_indices",
    "train_bpe",
    "training_copies",
]

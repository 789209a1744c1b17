"""The dataset type, the dataset registry and audit-pool selection.

Legend: N samples in the audit pool, L tokens per sample (bytes or BPE tokens
for text, quantized sub-pixels for images), H, W, C image height, width and
channels, W windows of a base corpus, M bytes of the longest sample.

A loader is a function registered in ``DATASETS``::

    loader(cfg: DataConfig) -> Dataset

It may return the selected pool (N rows, via ``pool_indices``) or every
window it has; ``load_dataset`` selects the pool in the second case, plants
the canaries (``data.canary_tokens``), then checks the result against the config.

A text dataset may also register its base corpus in ``BASE_CORPORA``
(``loader(cfg: DataConfig) -> BaseCorpus``): the text outside the audit pool
that a base model is pretrained on (``load_base_corpus``).
"""

import dataclasses
import hashlib
from collections.abc import Callable

import numpy as np

from seqmia_jax.config import ConfigError, DataConfig
from seqmia_jax.data import secrets as secret_mode
from seqmia_jax.data.tokenizer import BYTES, BYTES_SPEC, Tokenizer, parse_tokenizer
from seqmia_jax.registry import Registry

# Fingerprint keys that every dataset carries; anything else is a loader option.
_BASE_KEYS = (
    "name",
    "num_samples",
    "seq_len",
    "selection",
    "seed",
    "sha256",
    "canary_tokens",
    "secrets",
)
# Fingerprint keys that ``make_dataset`` derives from a BPE tokenizer.
_TOKENIZER_KEYS = ("tokenizer", "tokenizer_sha256")
# Text canaries are secret digit strings, like a PIN or a phone number in a document.
TEXT_CANARY_ALPHABET = np.frombuffer(b"0123456789", dtype=np.uint8).astype(np.int32)


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """An audit pool of N fixed-length token sequences.

    Attributes:
      name: registered dataset name.
      tokens_NxL: int32 tokens in [0, vocab_size), read-only.
      vocab_size: number of token values (256 for byte text, V for "bpe:V", levels
        for images).
      kind: "text" or "image".
      image_shape: (H, W, C) for images with L == H*W*C in raster order, channel
        fastest; None for text.
      fingerprint: name, num_samples, seq_len, selection (and seed if random),
        sha256 of the tokens as little-endian int32, plus loader options (a BPE
        text dataset adds "tokenizer" and "tokenizer_sha256").
      secrets: where each sample's secret sits, with ``data.secret_symbols``
        (``seqmia_jax.data.secrets``); None otherwise.
      tokenizer: how text tokens map to bytes (``BYTES`` for byte text); None
        for images.
    """

    name: str
    tokens_NxL: np.ndarray
    vocab_size: int
    kind: str
    image_shape: tuple[int, int, int] | None
    fingerprint: dict
    secrets: secret_mode.SecretLayout | None = None
    tokenizer: Tokenizer | None = None

    @property
    def num_samples(self) -> int:
        return self.tokens_NxL.shape[0]

    @property
    def seq_len(self) -> int:
        return self.tokens_NxL.shape[1]

    def decode(self, tokens_L: np.ndarray) -> str | np.ndarray:
        """Text: the decoded bytes as str (invalid UTF-8 replaced); image: uint8 H x W x C."""
        tokens_L = np.asarray(tokens_L)
        if self.kind == "text":
            return self._text_tokenizer().decode(tokens_L)
        # Level k maps to round(255 k / (levels - 1)): 0 -> black, top level -> white.
        scaled_L = np.round(tokens_L.astype(np.float64) * 255.0 / (self.vocab_size - 1))
        return scaled_L.astype(np.uint8).reshape(self.image_shape)

    def raw_bytes(self, n: int) -> bytes:
        """Sample n as raw bytes (for zlib): the decoded text, or the image levels as uint8."""
        if self.kind == "text":
            return self._text_tokenizer().decode_bytes(self.tokens_NxL[n])
        return self.tokens_NxL[n].astype(np.uint8).tobytes()

    def text_bytes(self) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 N x M, right-padded with zeros; int64 lengths_N): each sample's bytes.

        The layout of ``text_bytes.npy`` and ``text_lengths.npy``; for byte text
        it is ``tokens_NxL`` as uint8 with every length L.
        """
        if self.kind != "text":
            raise ValueError(f"text_bytes() needs a text dataset; {self.name} is {self.kind}")
        tokenizer = self._text_tokenizer()
        if tokenizer.spec == BYTES_SPEC:
            lengths_N = np.full(self.num_samples, self.seq_len, dtype=np.int64)
            return self.tokens_NxL.astype(np.uint8), lengths_N
        samples = [tokenizer.decode_bytes(tokens_L) for tokens_L in self.tokens_NxL]
        lengths_N = np.array([len(sample) for sample in samples], dtype=np.int64)
        text_NxM = np.zeros((self.num_samples, int(lengths_N.max(initial=0))), dtype=np.uint8)
        for n, sample in enumerate(samples):
            text_NxM[n, : len(sample)] = np.frombuffer(sample, np.uint8)
        return text_NxM, lengths_N

    def _text_tokenizer(self) -> Tokenizer:
        return BYTES if self.tokenizer is None else self.tokenizer


@dataclasses.dataclass(frozen=True, eq=False)
class BaseCorpus:
    """The public text of a dataset: W windows outside (and overlapping no window of) the pool.

    Attributes:
      tokens_WxL: int32 windows of L tokens, read-only.
      sha256: of ``tokens_WxL`` as little-endian int32.
      description: what the windows are, e.g. "7,400 windows of kjv outside the audit pool".
      pool_spans_Nx2: int64 [start, end) byte offsets in the corpus of each pool sample.
      spans_Wx2: int64 [start, end) byte offsets in the corpus of each window.
      tokenizer: the tokenizer of the tokens (the pool's).
    """

    tokens_WxL: np.ndarray
    sha256: str
    description: str
    pool_spans_Nx2: np.ndarray
    spans_Wx2: np.ndarray
    tokenizer: Tokenizer

    @property
    def num_windows(self) -> int:
        return self.tokens_WxL.shape[0]

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size


def make_base_corpus(
    tokens_WxL: np.ndarray,
    spans_Wx2: np.ndarray,
    pool_spans_Nx2: np.ndarray,
    tokenizer: Tokenizer,
    description: str,
) -> BaseCorpus:
    """A read-only ``BaseCorpus``; its windows must not overlap a pool span (checked)."""
    tokens_WxL = np.array(tokens_WxL, dtype=np.int32)
    spans_Wx2 = np.array(spans_Wx2, dtype=np.int64).reshape(-1, 2)
    pool_spans_Nx2 = np.array(pool_spans_Nx2, dtype=np.int64).reshape(-1, 2)
    if tokens_WxL.ndim != 2 or len(tokens_WxL) != len(spans_Wx2):
        raise ValueError(f"base corpus: {tokens_WxL.shape} tokens for {len(spans_Wx2)} spans")
    if not len(tokens_WxL):
        raise ConfigError(f"no base-corpus windows ({description}); lower data.num_samples")
    # The membership invariant of a fine-tuned audit: the base saw no pool text.
    # Pool spans are disjoint, so sorted by start they are sorted by end too.
    order_N = np.argsort(pool_spans_Nx2[:, 0], kind="stable")
    starts_N, ends_N = pool_spans_Nx2[order_N, 0], pool_spans_Nx2[order_N, 1]
    last_W = np.searchsorted(starts_N, spans_Wx2[:, 1], side="left") - 1  # last start < end
    overlap_W = (last_W >= 0) & (np.append(ends_N, 0)[last_W] > spans_Wx2[:, 0])
    if overlap_W.any():
        raise ValueError(f"base window {int(np.argmax(overlap_W))} overlaps an audit-pool sample")
    for array in (tokens_WxL, spans_Wx2, pool_spans_Nx2):
        array.setflags(write=False)
    return BaseCorpus(
        tokens_WxL=tokens_WxL,
        sha256=hashlib.sha256(np.ascontiguousarray(tokens_WxL, "<i4").tobytes()).hexdigest(),
        description=description,
        pool_spans_Nx2=pool_spans_Nx2,
        spans_Wx2=spans_Wx2,
        tokenizer=tokenizer,
    )


DATASETS: Registry[Callable[[DataConfig], Dataset]] = Registry("dataset")
BASE_CORPORA: Registry[Callable[[DataConfig], BaseCorpus]] = Registry("base corpus")


def pool_indices(total: int, cfg: DataConfig, available: str) -> np.ndarray:
    """Sorted indices of the N pool samples among ``total`` candidates.

    Args:
      total: number of candidate windows or images.
      cfg: data config; ``selection`` is "first" (indices 0..N-1) or "random"
        (``default_rng(seed).choice(total, N, replace=False)``, sorted).
      available: what the candidates are, for the error message, e.g.
        "non-overlapping 64-byte windows in kjv".
    """
    n = cfg.num_samples
    if n > total:
        raise ConfigError(
            f"data.num_samples={n} is more than the {total} {available}; "
            f"lower data.num_samples (or data.seq_len for text)"
        )
    if cfg.selection == "first":
        return np.arange(n)
    if cfg.selection == "random":
        return np.sort(np.random.default_rng(cfg.seed).choice(total, n, replace=False))
    raise ConfigError(f"data.selection must be 'first' or 'random'; got {cfg.selection!r}")


def make_fingerprint(name: str, tokens_NxL: np.ndarray, cfg: DataConfig, **options) -> dict:
    """The provenance record of a pool: what was selected and a hash of its tokens."""
    tokens_NxL = np.ascontiguousarray(tokens_NxL, dtype="<i4")
    fingerprint = {
        "name": name,
        "num_samples": int(tokens_NxL.shape[0]),
        "seq_len": int(tokens_NxL.shape[1]),
        "selection": cfg.selection,
    }
    if cfg.selection == "random":
        fingerprint["seed"] = int(cfg.seed)
    if cfg.canary_tokens:
        fingerprint["canary_tokens"] = int(cfg.canary_tokens)
    if cfg.secret_symbols:
        fingerprint.update(secret_mode.fingerprint_options(cfg))
    fingerprint["sha256"] = hashlib.sha256(tokens_NxL.tobytes()).hexdigest()
    fingerprint.update(options)
    return fingerprint


def make_dataset(
    name: str,
    tokens_NxL: np.ndarray,
    cfg: DataConfig,
    *,
    vocab_size: int,
    kind: str,
    image_shape: tuple[int, int, int] | None = None,
    tokenizer: Tokenizer | None = None,
    **options,
) -> Dataset:
    """Builds a read-only ``Dataset`` and its fingerprint; ``options`` go into the fingerprint.

    ``tokenizer`` defaults to ``BYTES`` for text (images have none); any other
    adds its spec and sha256 to the fingerprint ("tokenizer", "tokenizer_sha256").
    """
    tokens_NxL = np.array(tokens_NxL, dtype=np.int32)  # a private copy, safe to freeze
    tokens_NxL.setflags(write=False)
    if kind == "text" and tokenizer is None:
        tokenizer = BYTES
    if tokenizer is not None and tokenizer.spec != BYTES_SPEC:
        options.update(tokenizer=tokenizer.spec, tokenizer_sha256=tokenizer.sha256)
    return Dataset(
        name=name,
        tokens_NxL=tokens_NxL,
        vocab_size=int(vocab_size),
        kind=kind,
        image_shape=None if image_shape is None else tuple(int(d) for d in image_shape),
        fingerprint=make_fingerprint(name, tokens_NxL, cfg, **options),
        tokenizer=tokenizer,
    )


def _with_tokens(dataset: Dataset, tokens_NxL: np.ndarray, cfg: DataConfig) -> Dataset:
    """``dataset`` with other tokens (a selection, planted canaries), loader options kept."""
    options = {
        k: v
        for k, v in dataset.fingerprint.items()
        if k not in _BASE_KEYS and k not in _TOKENIZER_KEYS
    }
    return make_dataset(
        dataset.name,
        tokens_NxL,
        cfg,
        vocab_size=dataset.vocab_size,
        kind=dataset.kind,
        image_shape=dataset.image_shape,
        tokenizer=dataset.tokenizer,
        **options,
    )


def canary_spans(cfg: DataConfig) -> np.ndarray:
    """Start offset of each sample's canary run, int64 N; positions start..start+k-1.

    Seeded by ``data.seed`` alone, so the spans (and the canary tokens drawn
    after them from the same generator) are a pure function of the config.
    """
    k = cfg.canary_tokens
    rng = np.random.default_rng([cfg.seed, 0xCA])
    return rng.integers(0, cfg.seq_len - k + 1, size=cfg.num_samples)


def training_copies(cfg: DataConfig) -> np.ndarray:
    """Copies of each sample in a training set that holds it, int64 N.

    ``cfg.duplicated_samples`` samples, a seeded random subset (``data.seed``),
    get ``cfg.duplicates`` copies, as web-scale corpora repeat documents; the
    rest one. A pure function of the config.
    """
    rng = np.random.default_rng([cfg.seed, 0xD0])
    copies_N = np.ones(cfg.num_samples, dtype=np.int64)
    copies_N[rng.permutation(cfg.num_samples)[: cfg.duplicated_samples]] = cfg.duplicates
    return copies_N


def plant_canaries(dataset: Dataset, cfg: DataConfig) -> Dataset:
    """Replaces a run of ``cfg.canary_tokens`` tokens in every sample by random ones.

    The memorization signal of a canary sits on k known-rare positions, the
    setting where a per-token attack should beat one on the mean loss. Text
    canaries are uniform decimal digits; image canaries uniform levels.
    """
    k = cfg.canary_tokens
    if k == 0:
        return dataset
    start_N = canary_spans(cfg)
    rng = np.random.default_rng([cfg.seed, 0xCA, 1])
    alphabet = TEXT_CANARY_ALPHABET if dataset.kind == "text" else np.arange(dataset.vocab_size)
    tokens_NxL = np.array(dataset.tokens_NxL)
    rows_Nx1 = np.arange(dataset.num_samples)[:, None]
    tokens_NxL[rows_Nx1, start_N[:, None] + np.arange(k)] = rng.choice(
        alphabet, size=(dataset.num_samples, k)
    )
    return _with_tokens(dataset, tokens_NxL, cfg)


def check_image_seq_len(name: str, image_shape: tuple[int, ...], cfg: DataConfig) -> None:
    """Image datasets fix L = H*W*C; a different data.seq_len is a config error."""
    length = int(np.prod(image_shape))
    if cfg.seq_len != length:
        raise ConfigError(
            f"data.seq_len={cfg.seq_len} but {name} images are {tuple(image_shape)} "
            f"(H, W, C); image datasets fix L = H*W*C = {length}, so set data.seq_len={length}"
        )


def _check_config(cfg: DataConfig) -> None:
    """The checks of ``cfg`` that need no data."""
    if cfg.name not in DATASETS:
        raise ConfigError(f"unknown dataset {cfg.name!r}; known: {', '.join(DATASETS.names())}")
    if cfg.seq_len < 1:
        raise ConfigError(f"data.seq_len must be >= 1; got {cfg.seq_len}")
    if cfg.num_samples < 1:
        raise ConfigError(f"data.num_samples must be >= 1; got {cfg.num_samples}")
    if cfg.selection not in ("first", "random"):
        raise ConfigError(f"data.selection must be 'first' or 'random'; got {cfg.selection!r}")
    if not 0 <= cfg.canary_tokens <= cfg.seq_len:
        raise ConfigError(
            f"data.canary_tokens must be in [0, seq_len={cfg.seq_len}]; got {cfg.canary_tokens}"
        )
    kind, _ = parse_tokenizer(cfg.tokenizer)
    # Secrets and canaries are byte values planted as token ids, so they need byte tokens.
    for field in ("secret_symbols", "canary_tokens"):
        if kind != BYTES_SPEC and getattr(cfg, field):
            raise ConfigError(
                f"data.{field} plants byte values as token ids, so it needs "
                f"data.tokenizer='bytes'; got {cfg.tokenizer!r}"
            )


def load_dataset(cfg: DataConfig) -> Dataset:
    """Loads the audit pool named by ``cfg.name``, selected and checked against ``cfg``."""
    _check_config(cfg)
    dataset = DATASETS.get(cfg.name)(cfg)
    if dataset.kind != "text" and cfg.tokenizer != BYTES_SPEC:
        raise ConfigError(
            f"data.tokenizer={cfg.tokenizer!r} is for text; {cfg.name} is {dataset.kind} "
            f"(its tokens are quantized levels), so use data.tokenizer='bytes'"
        )
    total = dataset.tokens_NxL.shape[0]
    if total > cfg.num_samples:  # The loader returned every window: select the pool here.
        index_N = pool_indices(total, cfg, f"samples in {cfg.name}")
        dataset = _with_tokens(dataset, dataset.tokens_NxL[index_N], cfg)
    _check(dataset, cfg)
    if cfg.secret_symbols:
        return plant_secrets(dataset, cfg)
    return plant_canaries(dataset, cfg)


def load_base_corpus(cfg: DataConfig) -> BaseCorpus:
    """The base corpus of ``cfg.name``: its text outside the pool that ``load_dataset`` selects."""
    _check_config(cfg)
    if cfg.name not in BASE_CORPORA:
        raise ConfigError(
            f"dataset {cfg.name} has no base corpus (public text outside the audit pool); "
            f"datasets with one: {', '.join(BASE_CORPORA.names())}"
        )
    return BASE_CORPORA.get(cfg.name)(cfg)


def plant_secrets(dataset: Dataset, cfg: DataConfig) -> Dataset:
    """The pool with a template and a distinct secret in every sample (``data.secrets``)."""
    if dataset.kind != "text":
        raise ConfigError(f"data.secret_symbols needs a text dataset; {cfg.name} is {dataset.kind}")
    symbols = secret_mode.alphabet_bytes(cfg.secret_alphabet)
    if symbols.max() >= dataset.vocab_size:
        raise ConfigError(
            f"the {cfg.secret_alphabet} alphabet is not in the {cfg.name} vocabulary "
            f"({dataset.vocab_size} tokens)"
        )
    tokens_NxL, layout = secret_mode.plant_secrets(dataset.tokens_NxL, cfg)
    return dataclasses.replace(_with_tokens(dataset, tokens_NxL, cfg), secrets=layout)


def _check(dataset: Dataset, cfg: DataConfig) -> None:
    tokens_NxL = dataset.tokens_NxL
    if tokens_NxL.shape[0] < cfg.num_samples:
        raise ConfigError(
            f"data.num_samples={cfg.num_samples} is more than the {tokens_NxL.shape[0]} "
            f"samples in {cfg.name}"
        )
    if tokens_NxL.shape[1] != cfg.seq_len:
        raise ConfigError(
            f"dataset {cfg.name} has sequences of length {tokens_NxL.shape[1]}, "
            f"but data.seq_len={cfg.seq_len}"
        )
    # The rest are loader contract violations, not user errors.
    if tokens_NxL.dtype != np.int32 or tokens_NxL.ndim != 2:
        raise ValueError(f"loader {cfg.name} returned {tokens_NxL.dtype} {tokens_NxL.shape}")
    if tokens_NxL.size and (tokens_NxL.min() < 0 or tokens_NxL.max() >= dataset.vocab_size):
        raise ValueError(f"loader {cfg.name} returned tokens outside [0, {dataset.vocab_size})")
    if dataset.kind not in ("text", "image"):
        raise ValueError(f"loader {cfg.name} returned kind {dataset.kind!r}")
    if dataset.kind == "image" and np.prod(dataset.image_shape) != tokens_NxL.shape[1]:
        raise ValueError(f"loader {cfg.name}: image_shape {dataset.image_shape} != L")

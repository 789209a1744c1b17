"""Tests of the dataset layer: embedded corpora, tfds (mocked), selection and errors.

Legend: N samples, L tokens per sample, W windows in a corpus.
"""

import dataclasses
from pydoc_data.topics import topics

import numpy as np
import pytest
import tensorflow_datasets as tfds

from seqmia_jax.config import ConfigError, DataConfig
from seqmia_jax.data import DATASETS, Dataset, load_dataset, make_dataset

PYDOC_BYTES = "".join(topics[key] for key in sorted(topics)).encode("utf-8")


def _pydoc_windows_WxL(seq_len: int) -> np.ndarray:
    num_windows = len(PYDOC_BYTES) // seq_len
    flat = np.frombuffer(PYDOC_BYTES[: num_windows * seq_len], np.uint8)
    return flat.reshape(num_windows, seq_len).astype(np.int32)


def test_registry_lists_every_dataset():
    expected = {"kjv", "pydoc", "digits", "mnist", "fashion_mnist", "cifar10", "tiny_shakespeare"}
    assert expected <= set(DATASETS.names())


def test_kjv_loads_in_canonical_order():
    dataset = load_dataset(DataConfig(name="kjv", seq_len=64, num_samples=300))
    assert dataset.tokens_NxL.dtype == np.int32
    assert dataset.tokens_NxL.shape == (300, 64)
    assert (dataset.vocab_size, dataset.kind, dataset.image_shape) == (256, "text", None)
    # Genesis 1:1, then a newline, then the start of Genesis 1:2.
    first = "In the beginning God created the heaven and the earth.\nAnd the e"
    assert dataset.decode(dataset.tokens_NxL[0]) == first
    assert dataset.raw_bytes(0) == first.encode()
    assert not dataset.tokens_NxL.flags.writeable


def test_kjv_random_pool_picks_seeded_windows():
    from seqmia_jax.data.text import kjv_corpus

    corpus = kjv_corpus()
    assert 4_000_000 < len(corpus) < 4_300_000
    num_windows = len(corpus) // 32
    cfg = DataConfig(name="kjv", seq_len=32, num_samples=50, selection="random", seed=3)
    dataset = load_dataset(cfg)
    index_N = np.sort(np.random.default_rng(3).choice(num_windows, 50, replace=False))
    for n, index in enumerate(index_N):
        assert dataset.raw_bytes(n) == corpus[index * 32 : (index + 1) * 32]


def test_pydoc_windows_match_corpus_and_decode_round_trips():
    seq_len = 128
    windows_WxL = _pydoc_windows_WxL(seq_len)
    dataset = load_dataset(DataConfig(name="pydoc", seq_len=seq_len, num_samples=len(windows_WxL)))
    np.testing.assert_array_equal(dataset.tokens_NxL, windows_WxL)
    joined = b"".join(dataset.raw_bytes(n) for n in range(dataset.num_samples))
    assert joined == PYDOC_BYTES[: len(joined)]
    ascii_rows = [n for n in range(dataset.num_samples) if dataset.tokens_NxL[n].max() < 128]
    assert ascii_rows
    for n in ascii_rows[:50]:
        assert dataset.decode(dataset.tokens_NxL[n]).encode("utf-8") == dataset.raw_bytes(n)


def test_random_selection_matches_seeded_choice():
    seq_len, num_samples = 64, 40
    windows_WxL = _pydoc_windows_WxL(seq_len)
    cfg = DataConfig(name="pydoc", seq_len=seq_len, num_samples=num_samples, selection="random")
    dataset = load_dataset(dataclasses.replace(cfg, seed=7))
    index_N = np.random.default_rng(7).choice(len(windows_WxL), num_samples, replace=False)
    np.testing.assert_array_equal(dataset.tokens_NxL, windows_WxL[np.sort(index_N)])


def test_fingerprint_is_stable_and_tracks_selection():
    cfg = DataConfig(name="pydoc", seq_len=64, num_samples=20)
    base = load_dataset(cfg).fingerprint
    assert base == load_dataset(cfg).fingerprint
    assert {"name", "num_samples", "seq_len", "selection", "sha256"} <= set(base)
    assert (base["name"], base["num_samples"], base["seq_len"]) == ("pydoc", 20, 64)
    random_cfg = dataclasses.replace(cfg, selection="random", seed=0)
    variants = [
        load_dataset(random_cfg).fingerprint,
        load_dataset(dataclasses.replace(random_cfg, seed=1)).fingerprint,
        load_dataset(dataclasses.replace(cfg, num_samples=21)).fingerprint,
        load_dataset(dataclasses.replace(cfg, seq_len=65)).fingerprint,
    ]
    hashes = {base["sha256"]} | {fp["sha256"] for fp in variants}
    assert len(hashes) == 5
    assert variants[1]["seed"] == 1 and "seed" not in base
    assert load_dataset(random_cfg).fingerprint == variants[0]


def test_digits_load_and_decode():
    from sklearn.datasets import load_digits

    # levels is ignored for digits: always 17.
    dataset = load_dataset(DataConfig(name="digits", seq_len=64, num_samples=100, levels=4))
    assert dataset.tokens_NxL.dtype == np.int32
    assert dataset.tokens_NxL.shape == (100, 64)
    assert (dataset.vocab_size, dataset.kind, dataset.image_shape) == (17, "image", (8, 8, 1))
    assert dataset.fingerprint["levels"] == 17
    images = load_digits().images[:100]
    np.testing.assert_array_equal(dataset.tokens_NxL, images.reshape(100, 64))
    image_HxWxC = dataset.decode(dataset.tokens_NxL[0])
    assert image_HxWxC.shape == (8, 8, 1) and image_HxWxC.dtype == np.uint8
    np.testing.assert_array_equal(image_HxWxC[..., 0], np.round(images[0] * 255 / 16))
    assert dataset.raw_bytes(0) == bytes(images[0].astype(np.uint8).ravel())
    random_pool = load_dataset(
        DataConfig(name="digits", seq_len=64, num_samples=1797, selection="random", seed=5)
    )
    np.testing.assert_array_equal(random_pool.tokens_NxL, load_digits().data)


@pytest.mark.parametrize(
    "name, shape",
    [("mnist", (28, 28, 1)), ("fashion_mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))],
)
@pytest.mark.parametrize("selection", ["first", "random"])
def test_tfds_images_quantize_in_raster_order(name, shape, selection):
    seq_len, levels, num_samples = int(np.prod(shape)), 16, 4
    cfg = DataConfig(name=name, seq_len=seq_len, num_samples=num_samples, levels=levels)
    cfg = dataclasses.replace(cfg, selection=selection, seed=2)
    with tfds.testing.mock_data(num_examples=10):
        dataset = load_dataset(cfg)
        source = tfds.data_source(name, split="train", download=False)
        index_N = np.arange(4)
        if selection == "random":
            index_N = np.sort(np.random.default_rng(2).choice(10, 4, replace=False))
        images = np.stack([source[int(i)]["image"] for i in index_N])
    assert dataset.tokens_NxL.dtype == np.int32
    assert dataset.tokens_NxL.shape == (num_samples, seq_len)
    assert (dataset.vocab_size, dataset.kind, dataset.image_shape) == (levels, "image", shape)
    expected_NxL = np.floor(images.astype(np.float64) * levels / 256).reshape(num_samples, -1)
    np.testing.assert_array_equal(dataset.tokens_NxL, expected_NxL)
    # Raster order with the channel fastest: token 1 is channel 1 (or pixel 1 in gray).
    assert dataset.tokens_NxL[0, 1] == int(images[0].reshape(-1)[1]) * levels // 256
    assert dataset.fingerprint["levels"] == levels and dataset.fingerprint["split"] == "train"
    assert dataset.decode(dataset.tokens_NxL[0]).shape == shape


def test_tiny_shakespeare_byte_windows():
    with tfds.testing.mock_data(num_examples=6):
        source = tfds.data_source("tiny_shakespeare", split="train", download=False)
        corpus = "\n".join(source[i]["text"] for i in range(6)).encode()
        first = load_dataset(DataConfig(name="tiny_shakespeare", seq_len=8, num_samples=5))
        cfg = DataConfig(name="tiny_shakespeare", seq_len=8, num_samples=3, selection="random")
        picked = load_dataset(cfg)
    assert (first.vocab_size, first.kind, first.tokens_NxL.shape) == (256, "text", (5, 8))
    assert first.decode(first.tokens_NxL[0]) == corpus[:8].decode()
    windows_WxL = np.frombuffer(corpus[: len(corpus) // 8 * 8], np.uint8).reshape(-1, 8)
    np.testing.assert_array_equal(first.tokens_NxL, windows_WxL[:5])
    index_N = np.sort(np.random.default_rng(0).choice(len(windows_WxL), 3, replace=False))
    np.testing.assert_array_equal(picked.tokens_NxL, windows_WxL[index_N])


def test_load_dataset_selects_when_loader_returns_every_window(monkeypatch):
    def loader(cfg):
        tokens_WxL = np.arange(40, dtype=np.int32).reshape(10, 4) % 7
        return make_dataset("every", tokens_WxL, cfg, vocab_size=7, kind="text", flavour="x")

    monkeypatch.setitem(DATASETS._entries, "every", loader)
    cfg = DataConfig(name="every", seq_len=4, num_samples=3, selection="random", seed=1)
    dataset = load_dataset(cfg)
    assert isinstance(dataset, Dataset)
    index_N = np.sort(np.random.default_rng(1).choice(10, 3, replace=False))
    np.testing.assert_array_equal(dataset.tokens_NxL, (np.arange(40).reshape(10, 4) % 7)[index_N])
    assert dataset.fingerprint["num_samples"] == 3 and dataset.fingerprint["flavour"] == "x"
    assert dataset.fingerprint["seed"] == 1


@pytest.mark.parametrize(
    "cfg, match",
    [
        (DataConfig(name="nope"), r"unknown dataset 'nope'; known: .*kjv.*pydoc"),
        (DataConfig(name="pydoc", seq_len=10**6), r"longer than the whole pydoc corpus"),
        (DataConfig(name="pydoc", seq_len=1000, num_samples=10**4), r"more than the 466 "),
        (DataConfig(name="digits", seq_len=32), r"fix L = H\*W\*C = 64"),
        (DataConfig(name="digits", num_samples=2000), r"more than the 1797 images"),
        (DataConfig(name="pydoc", selection="shuffled"), r"'first' or 'random'"),
        (DataConfig(name="pydoc", num_samples=0), r"num_samples must be >= 1"),
    ],
)
def test_bad_config_raises(cfg, match):
    with pytest.raises(ConfigError, match=match):
        load_dataset(cfg)


def test_tfds_config_errors(tmp_path):
    with tfds.testing.mock_data(num_examples=3):
        with pytest.raises(ConfigError, match=r"L = H\*W\*C = 3072"):
            load_dataset(DataConfig(name="cifar10", seq_len=784))
        with pytest.raises(ConfigError, match=r"more than the 3 images in mnist"):
            load_dataset(DataConfig(name="mnist", seq_len=784, num_samples=4))
        with pytest.raises(ConfigError, match=r"levels must be in \[2, 256\]"):
            load_dataset(DataConfig(name="mnist", seq_len=784, levels=300))
    # No mock: nothing is prepared in an empty data_dir, and nothing is downloaded.
    cfg = DataConfig(name="mnist", seq_len=784, num_samples=2, data_dir=str(tmp_path))
    with pytest.raises(ConfigError, match=r"(?s)not prepared .*tfds build mnist"):
        load_dataset(cfg)

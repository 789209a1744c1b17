"""Tests of the tokenizers, BPE text pools and the base corpus.

Legend: N samples, L tokens per sample, W windows of a corpus or base corpus,
M bytes of the longest sample.
"""

import dataclasses
import hashlib
import json

import numpy as np
import pytest

from seqmia_jax.config import ConfigError, DataConfig
from seqmia_jax.data import load_base_corpus, load_dataset, parse_tokenizer, train_bpe
from seqmia_jax.data import text as text_data
from seqmia_jax.data.text import BPE_BYTES_PER_TOKEN, kjv_corpus, pydoc_corpus
from seqmia_jax.data.tokenizer import BYTES, Tokenizer, TokenizerFileError
from seqmia_jax.report import leakage

BPE_CFG = DataConfig(
    name="pydoc", seq_len=16, num_samples=60, selection="random", seed=5, tokenizer="bpe:512"
)
SAMPLES = [
    b"",
    b"In the beginning God created the heaven and the earth.\n",
    "naïve café – ünïcödé, 日本語 and emoji 🙂".encode(),
    "日本".encode()[:4],  # the second character cut in half
    "🙂".encode()[1:],  # a character without its lead byte
    bytes(range(256)) * 2,
    np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes(),
]


@pytest.fixture(scope="module")
def bpe():
    corpus = pydoc_corpus()
    return train_bpe([corpus[i : i + 4096] for i in range(0, len(corpus), 4096)], 512)


def _windows_WxL(corpus: bytes, seq_len: int) -> np.ndarray:
    num_windows = len(corpus) // seq_len
    flat = np.frombuffer(corpus, np.uint8, count=num_windows * seq_len)
    return flat.reshape(num_windows, seq_len).astype(np.int32)


def _overlaps(spans_Wx2: np.ndarray, pool_spans_Nx2: np.ndarray) -> bool:
    """Whether any [start, end) of the first overlaps any of the second (brute force)."""
    starts_WxN = np.maximum(spans_Wx2[:, None, 0], pool_spans_Nx2[None, :, 0])
    ends_WxN = np.minimum(spans_Wx2[:, None, 1], pool_spans_Nx2[None, :, 1])
    return bool((starts_WxN < ends_WxN).any())


@pytest.mark.parametrize("data", SAMPLES)
def test_bpe_round_trips_any_bytes_exactly(bpe, data):
    tokens_L = bpe.encode(data)
    assert tokens_L.dtype == np.int32 and (tokens_L < bpe.vocab_size).all()
    assert bpe.decode_bytes(tokens_L) == data
    assert bpe.decode(tokens_L) == data.decode("utf-8", errors="replace")
    assert b"".join(bpe.token_bytes(tokens_L)) == data
    np.testing.assert_array_equal(
        bpe.token_lengths(tokens_L), [len(p) for p in bpe.token_bytes(tokens_L)]
    )


def test_bpe_merges_and_keeps_the_bytes_as_ids_0_to_255(bpe):
    assert (bpe.spec, bpe.vocab_size) == ("bpe:512", 512)
    for b in range(256):
        np.testing.assert_array_equal(bpe.encode(bytes([b])), [b])
    text = b"The return statement leaves the current function call"
    assert len(bpe.encode(text)) < len(text) / 2  # merges learned from pydoc


def test_bpe_training_is_deterministic(bpe):
    corpus = pydoc_corpus()
    again = train_bpe([corpus[i : i + 4096] for i in range(0, len(corpus), 4096)], 512)
    assert again.to_json() == bpe.to_json() and again.sha256 == bpe.sha256
    other = train_bpe([corpus[i : i + 4096] for i in range(0, len(corpus), 4096)], 600)
    assert other.sha256 != bpe.sha256


def test_bytes_tokenizer_is_the_identity():
    data = bytes(range(256))
    np.testing.assert_array_equal(BYTES.encode(data), np.arange(256))
    assert BYTES.decode_bytes(np.arange(256)) == data and BYTES.vocab_size == 256
    with pytest.raises(ValueError, match=r"outside \[0, 256\)"):
        BYTES.decode_bytes(np.array([256]))


def test_kjv_bytes_pool_is_todays():
    cfg = DataConfig(name="kjv", seq_len=48, num_samples=200, selection="random", seed=2)
    dataset = load_dataset(cfg)
    windows_WxL = _windows_WxL(kjv_corpus(), 48)
    index_N = np.sort(np.random.default_rng(2).choice(len(windows_WxL), 200, replace=False))
    np.testing.assert_array_equal(dataset.tokens_NxL, windows_WxL[index_N])
    expected = hashlib.sha256(windows_WxL[index_N].astype("<i4").tobytes()).hexdigest()
    assert dataset.fingerprint == {
        "name": "kjv",
        "num_samples": 200,
        "seq_len": 48,
        "selection": "random",
        "seed": 2,
        "sha256": expected,
    }
    assert dataset.tokenizer is BYTES and dataset.vocab_size == 256


def test_bpe_pool_is_the_start_of_its_documents():
    dataset = load_dataset(BPE_CFG)
    assert dataset.tokens_NxL.shape == (60, 16) and dataset.tokens_NxL.dtype == np.int32
    assert dataset.tokens_NxL.max() < 512 and dataset.vocab_size == 512
    tokenizer = dataset.tokenizer
    assert dataset.fingerprint["tokenizer"] == "bpe:512"
    assert dataset.fingerprint["tokenizer_sha256"] == tokenizer.sha256
    corpus, size = pydoc_corpus(), BPE_BYTES_PER_TOKEN * 16
    index_N = np.sort(np.random.default_rng(5).choice(len(corpus) // size, 60, replace=False))
    for n, d in enumerate(index_N):
        document = corpus[d * size : (d + 1) * size]
        np.testing.assert_array_equal(dataset.tokens_NxL[n], tokenizer.encode(document)[:16])
        assert document.startswith(dataset.raw_bytes(n))
    # Trained on the documents outside the pool, and only on those.
    outside = [corpus[d * size : (d + 1) * size] for d in range(len(corpus) // size)]
    outside = [document for d, document in enumerate(outside) if d not in set(index_N)]
    assert train_bpe(outside, 512).sha256 == tokenizer.sha256
    # Stages share one trained tokenizer per process.
    assert load_dataset(BPE_CFG).tokenizer is tokenizer
    assert load_dataset(dataclasses.replace(BPE_CFG, seed=6)).tokenizer.sha256 != tokenizer.sha256


@pytest.mark.parametrize("tokenizer", ["bytes", "bpe:512"])
def test_text_bytes_decode_like_decode(tokenizer):
    dataset = load_dataset(dataclasses.replace(BPE_CFG, tokenizer=tokenizer))
    text_NxM, lengths_N = dataset.text_bytes()
    assert text_NxM.dtype == np.uint8 and lengths_N.dtype == np.int64
    assert text_NxM.shape == (60, lengths_N.max())
    for n in range(dataset.num_samples):
        row = text_NxM[n, : lengths_N[n]].tobytes()
        assert row == dataset.raw_bytes(n)
        assert row.decode("utf-8", errors="replace") == dataset.decode(dataset.tokens_NxL[n])
        assert not text_NxM[n, lengths_N[n] :].any()
    if tokenizer == "bytes":
        np.testing.assert_array_equal(text_NxM, dataset.tokens_NxL.astype(np.uint8))
        assert (lengths_N == 16).all()
    else:
        assert lengths_N.mean() > 16  # subwords: more than a byte per token


def test_bytes_base_corpus_is_every_window_outside_the_pool():
    cfg = dataclasses.replace(BPE_CFG, tokenizer="bytes")
    corpus, pool = load_base_corpus(cfg), load_dataset(cfg)
    windows_WxL = _windows_WxL(pydoc_corpus(), 16)
    index_N = np.sort(np.random.default_rng(5).choice(len(windows_WxL), 60, replace=False))
    outside_W = np.setdiff1d(np.arange(len(windows_WxL)), index_N)
    np.testing.assert_array_equal(corpus.tokens_WxL, windows_WxL[outside_W])
    np.testing.assert_array_equal(corpus.spans_Wx2[:, 0], outside_W * 16)
    np.testing.assert_array_equal(corpus.pool_spans_Nx2[:, 0], index_N * 16)
    assert not _overlaps(corpus.spans_Wx2, corpus.pool_spans_Nx2)
    for n, (start, end) in enumerate(corpus.pool_spans_Nx2):
        assert pool.raw_bytes(n) == pydoc_corpus()[start:end]
    assert corpus.sha256 == hashlib.sha256(corpus.tokens_WxL.astype("<i4").tobytes()).hexdigest()
    assert (
        corpus.description
        == f"{len(outside_W):,} windows of 16 bytes of pydoc outside the audit pool"
    )
    assert corpus.tokenizer is BYTES and not corpus.tokens_WxL.flags.writeable


def test_bpe_base_corpus_is_disjoint_from_the_pool():
    corpus, pool = load_base_corpus(BPE_CFG), load_dataset(BPE_CFG)
    text = pydoc_corpus()
    assert corpus.tokenizer is pool.tokenizer and corpus.tokens_WxL.shape[1] == 16
    assert corpus.tokens_WxL.max() < 512 and corpus.tokens_WxL.dtype == np.int32
    assert corpus.num_windows > 1000
    assert not _overlaps(corpus.spans_Wx2, corpus.pool_spans_Nx2)
    for n, (start, end) in enumerate(corpus.pool_spans_Nx2):
        assert pool.raw_bytes(n) == text[start:end]
    for w in range(0, corpus.num_windows, 97):  # spans locate each window's own text
        start, end = corpus.spans_Wx2[w]
        assert corpus.tokenizer.decode_bytes(corpus.tokens_WxL[w]) == text[start:end]
    assert (np.diff(corpus.spans_Wx2[:, 0]) > 0).all()
    assert (corpus.spans_Wx2[:-1, 1] <= corpus.spans_Wx2[1:, 0]).all()  # non-overlapping


def test_save_load_round_trip_and_refusals(bpe, tmp_path):
    path = tmp_path / "sub" / "tokenizer.json"
    bpe.save(path)
    bpe.save(path)  # identical content: fine
    loaded = Tokenizer.load(path, sha256=bpe.sha256)
    assert (loaded.spec, loaded.sha256, loaded.to_json()) == (bpe.spec, bpe.sha256, bpe.to_json())
    for data in SAMPLES:
        np.testing.assert_array_equal(loaded.encode(data), bpe.encode(data))
    assert [p.name for p in path.parent.iterdir()] == ["tokenizer.json"]  # no temp file left
    with pytest.raises(TokenizerFileError, match="holds another tokenizer; not replacing it"):
        BYTES.save(path)
    assert path.read_text() == bpe.to_json()
    with pytest.raises(TokenizerFileError, match="is not the expected"):
        Tokenizer.load(path, sha256=BYTES.sha256)
    BYTES.save(tmp_path / "bytes.json")
    assert Tokenizer.load(tmp_path / "bytes.json").sha256 == BYTES.sha256


@pytest.mark.parametrize(
    "edit",
    [
        lambda doc: "{" + doc,
        lambda doc: doc.replace('"spec":"bpe:512"', '"spec":"bpe:600"'),
        lambda doc: doc.replace('"format":"seqmia_jax.tokenizer/1"', '"format":"x"'),
        lambda doc: doc.replace('"decoder":{', '"decoder":{"x":1,'),
        lambda doc: json.dumps({**json.loads(doc), "spec": "bytes"}),
    ],
)
def test_load_refuses_a_corrupt_file_in_one_line(bpe, tmp_path, edit):
    path = tmp_path / "tokenizer.json"
    path.write_text(edit(bpe.to_json()))
    with pytest.raises(TokenizerFileError, match="not a readable tokenizer file") as info:
        Tokenizer.load(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "spec", ["bpe", "bpe:", "bpe:256", "bpe:65537", "bpe:-300", "bpe:2k", "BPE:512", "bytes "]
)
def test_bad_specs_are_config_errors(spec):
    with pytest.raises(ConfigError, match="data.tokenizer must be 'bytes' or 'bpe:<V>'"):
        parse_tokenizer(spec)
    with pytest.raises(ConfigError, match="data.tokenizer must be"):
        load_dataset(dataclasses.replace(BPE_CFG, tokenizer=spec))


def test_good_specs_parse():
    assert parse_tokenizer("bytes") == ("bytes", 256)
    assert parse_tokenizer("bpe:257") == ("bpe", 257)
    assert parse_tokenizer("bpe:65536") == ("bpe", 65536)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"canary_tokens": 4}, "data.canary_tokens plants byte values"),
        ({"secret_symbols": 4}, "data.secret_symbols plants byte values"),
        ({"name": "digits", "seq_len": 64, "levels": 17}, "is for text; digits is image"),
        ({"num_samples": 10_000}, "documents .8 x data.seq_len. in pydoc"),
    ],
)
def test_bpe_config_errors(change, message):
    with pytest.raises(ConfigError, match=message):
        load_dataset(dataclasses.replace(BPE_CFG, **change))


def test_short_document_and_no_base_corpus_are_config_errors(monkeypatch):
    with pytest.raises(ConfigError, match="dataset digits has no base corpus"):
        load_base_corpus(DataConfig(name="digits", seq_len=64, levels=17))
    with pytest.raises(ConfigError, match="only yields"):
        train_bpe([b"abab"], 512)
    monkeypatch.setattr(text_data, "BPE_BYTES_PER_TOKEN", 1)  # L-byte documents
    with pytest.raises(ConfigError, match=r"pydoc document \d+ \(bytes \d+-\d+\) has only"):
        load_dataset(BPE_CFG)


def test_leakage_pieces_follow_the_tokens():
    bytes_dataset = load_dataset(dataclasses.replace(BPE_CFG, tokenizer="bytes"))
    dataset = load_dataset(BPE_CFG)
    for ds in (bytes_dataset, dataset):
        for n in range(10):
            tokens_L = ds.tokens_NxL[n]
            spans = leakage._char_spans(tokens_L, ds)
            assert "".join(text for text, _ in spans) == ds.decode(tokens_L)
            assert [p for _, positions in spans for p in positions] == list(range(16))
    # A BPE piece is whole tokens: its text is those tokens' bytes, decoded.
    tokens_L = dataset.tokens_NxL[0]
    for text, positions in leakage._char_spans(tokens_L, dataset):
        assert text == dataset.decode(tokens_L[positions[0] : positions[-1] + 1])
    assert len(leakage._char_spans(tokens_L, dataset)) < len(dataset.decode(tokens_L))

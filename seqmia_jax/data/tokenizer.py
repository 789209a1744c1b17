"""Text tokenizers: the identity on bytes, and a byte-level BPE trained offline.

Legend: L tokens, V vocabulary, T texts.

``data.tokenizer`` names one: "bytes" (vocab 256, token = byte) or "bpe:<V>",
a BPE vocabulary of V tokens learned with Hugging Face ``tokenizers``.

The BPE works on bytes, not on Unicode text, so every byte string, valid
UTF-8 or not (a window may cut a character in half), encodes and decodes back
exactly. Each byte becomes the Latin-1 character of the same code point
before it reaches the HF model, so a model "character" *is* a byte: the
initial alphabet is the 256 bytes (token ids 0..255 are the bytes
themselves), every token is a byte string, and decoding maps the tokens'
characters back through Latin-1. HF's ByteLevel pre-tokenizer is not used: it
would re-encode those characters as UTF-8, so a byte >= 0x80 would become two
symbols that a merge could separate, and its decoder decodes lossily. A Split
pre-tokenizer with a GPT-2-like pattern cuts words, numbers, punctuation and
whitespace apart instead, counting bytes >= 0x80 as letters so that
multi-byte characters stay inside their words. Split keeps every byte, so the
pattern only decides which merges may exist, never what decodes back.

A tokenizer is stored as one JSON document (``to_json``; HF's tokenizer JSON
inside, which holds data only: loading one cannot run code), and identified
by the sha256 of that document.
"""

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from seqmia_jax.config import ConfigError

BYTES_SPEC = "bytes"
BYTE_VOCAB = 256
# 257 = the 256 byte tokens plus at least one merge. 65536 keeps ids in uint16
# and is well beyond what the embedded corpora (a few MB) can fill with merges.
MIN_BPE_VOCAB = BYTE_VOCAB + 1
MAX_BPE_VOCAB = 65536

_FORMAT = "seqmia_jax.tokenizer/1"
_DOCUMENT_KEYS = {"format", "spec", "hf_tokenizer"}
_WHITESPACE = r"\t\n\x0b\x0c\r "
# GPT-2's pre-tokenization pattern over bytes: contractions, words (bytes
# >= 0x80 count as letters), numbers, punctuation runs, whitespace runs.
PRETOKENIZE_PATTERN = (
    r"'(?:[sdmt]|ll|ve|re)| ?[A-Za-z\x{80}-\x{FF}]+| ?[0-9]+"
    rf"| ?[^{_WHITESPACE}A-Za-z0-9\x{{80}}-\x{{FF}}]+"
    rf"|[{_WHITESPACE}]+(?![^{_WHITESPACE}])|[{_WHITESPACE}]+"
)


class TokenizerFileError(ValueError):
    """A tokenizer file that cannot be read, or that would overwrite a different one."""


def parse_tokenizer(spec: str) -> tuple[str, int]:
    """("bytes", 256) or ("bpe", V) for a ``data.tokenizer`` spec; ConfigError otherwise."""
    if spec == BYTES_SPEC:
        return BYTES_SPEC, BYTE_VOCAB
    kind, _, size = str(spec).partition(":")
    if kind == "bpe" and size.isdigit() and MIN_BPE_VOCAB <= int(size) <= MAX_BPE_VOCAB:
        return "bpe", int(size)
    raise ConfigError(
        f"data.tokenizer must be 'bytes' or 'bpe:<V>' with {MIN_BPE_VOCAB} <= V <= "
        f"{MAX_BPE_VOCAB} (256 byte tokens plus merges; ids fit uint16); got {spec!r}"
    )


def _canonical(document: dict) -> str:
    """One byte-stable text per document: sorted keys, ASCII only, no spaces."""
    return json.dumps(document, sort_keys=True, ensure_ascii=True, separators=(",", ":"))


def _hf_template():
    """An untrained HF tokenizer with this module's pre-tokenizer and decoder."""
    from tokenizers import Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Split(Regex(PRETOKENIZE_PATTERN), behavior="isolated")
    hf.decoder = decoders.Fuse()
    return hf


class Tokenizer:
    """A text tokenizer: bytes <-> int32 token ids in [0, vocab_size).

    Attributes:
      spec: "bytes" or "bpe:<V>".
      vocab_size: 256, or V.
      sha256: hex digest of ``to_json()``.
    """

    __slots__ = ("_hf", "_json", "_lengths_V", "_pieces", "sha256", "spec", "vocab_size")

    def __init__(self, spec: str, hf=None, document: dict | None = None):
        """Use ``BYTES`` or ``train_bpe``/``load``; ``hf`` is the HF tokenizer of a BPE."""
        kind, vocab_size = parse_tokenizer(spec)
        if (kind == "bpe") != (hf is not None):
            raise ValueError(f"tokenizer {spec}: an HF tokenizer goes with bpe specs only")
        if hf is not None and hf.get_vocab_size() != vocab_size:
            raise ValueError(f"tokenizer {spec} has {hf.get_vocab_size()} tokens")
        if hf is None:
            pieces = tuple(bytes([b]) for b in range(BYTE_VOCAB))
        else:
            pieces = tuple(hf.id_to_token(i).encode("latin-1") for i in range(vocab_size))
        if pieces[:BYTE_VOCAB] != tuple(bytes([b]) for b in range(BYTE_VOCAB)):
            raise ValueError(f"tokenizer {spec}: ids 0..255 are not the 256 bytes")
        if document is None:
            document = {"format": _FORMAT, "spec": spec}
            if hf is not None:
                document["hf_tokenizer"] = json.loads(hf.to_str())
        self.spec, self.vocab_size, self._hf, self._pieces = spec, vocab_size, hf, pieces
        self._json = _canonical(document)
        self.sha256 = hashlib.sha256(self._json.encode("ascii")).hexdigest()
        self._lengths_V = np.array([len(piece) for piece in pieces], dtype=np.int64)

    def __repr__(self) -> str:
        return f"Tokenizer({self.spec!r}, sha256={self.sha256[:12]})"

    def encode(self, data: bytes) -> np.ndarray:
        """The int32 token ids of a byte string (any bytes, not only UTF-8)."""
        return self.encode_batch([data])[0]

    def encode_batch(self, texts: list[bytes]) -> list[np.ndarray]:
        """``encode`` of each text (HF encodes a batch on its thread pool)."""
        if self._hf is None:
            return [np.frombuffer(bytes(data), np.uint8).astype(np.int32) for data in texts]
        encodings = self._hf.encode_batch([bytes(data).decode("latin-1") for data in texts])
        return [np.asarray(encoding.ids, dtype=np.int32) for encoding in encodings]

    def _check_range(self, tokens_L: np.ndarray) -> np.ndarray:
        tokens_L = np.asarray(tokens_L).ravel()
        if tokens_L.size and (tokens_L.min() < 0 or tokens_L.max() >= self.vocab_size):
            raise ValueError(f"tokens outside [0, {self.vocab_size}) for tokenizer {self.spec}")
        return tokens_L

    def token_bytes(self, tokens_L: np.ndarray) -> list[bytes]:
        """The bytes of each token (one byte each for "bytes")."""
        return [self._pieces[token] for token in self._check_range(tokens_L).tolist()]

    def token_lengths(self, tokens_L: np.ndarray) -> np.ndarray:
        """int64 L: how many bytes each token decodes to."""
        return self._lengths_V[self._check_range(tokens_L)]

    def decode_bytes(self, tokens_L: np.ndarray) -> bytes:
        """The exact bytes of a token sequence."""
        if self._hf is None:
            return self._check_range(tokens_L).astype(np.uint8).tobytes()
        return b"".join(self.token_bytes(tokens_L))

    def decode(self, tokens_L: np.ndarray) -> str:
        """The bytes as str, invalid UTF-8 (e.g. a character cut in half) replaced."""
        return self.decode_bytes(tokens_L).decode("utf-8", errors="replace")

    def to_json(self) -> str:
        """The canonical JSON document of the tokenizer (what ``sha256`` hashes)."""
        return self._json

    def save(self, path: str | os.PathLike) -> None:
        """Writes ``to_json()`` atomically; an existing different file is an error, not replaced."""
        path = Path(path)
        if path.exists():
            if path.read_bytes() == self._json.encode("ascii"):
                return
            raise TokenizerFileError(f"{path} holds another tokenizer; not replacing it")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(self._json)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike, sha256: str | None = None) -> "Tokenizer":
        """Reads a ``save``d tokenizer; ``sha256``, if given, must match its digest."""
        path = Path(path)
        try:
            document = json.loads(path.read_text(encoding="ascii"))
            spec = document["spec"]
            if document.get("format") != _FORMAT or set(document) - _DOCUMENT_KEYS:
                raise ValueError("not a seqmia_jax tokenizer document")
            tokenizer = cls(spec, _hf_from_document(document), document)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            message = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise TokenizerFileError(f"{path}: not a readable tokenizer file: {message}") from None
        if sha256 is not None and tokenizer.sha256 != sha256:
            raise TokenizerFileError(
                f"{path}: tokenizer sha256 {tokenizer.sha256[:12]}... is not the expected "
                f"{sha256[:12]}..."
            )
        return tokenizer


def _hf_from_document(document: dict):
    """The HF tokenizer of a BPE document (None for bytes), checked against the template."""
    kind, _ = parse_tokenizer(document["spec"])
    if kind == BYTES_SPEC:
        if "hf_tokenizer" in document:
            raise ValueError("a bytes tokenizer holds no HF tokenizer")
        return None
    from tokenizers import Tokenizer as HFTokenizer

    hf_document = document["hf_tokenizer"]
    template = json.loads(_hf_template().to_str())
    for key in ("normalizer", "pre_tokenizer", "post_processor", "decoder", "added_tokens"):
        if hf_document.get(key) != template.get(key):
            raise ValueError(f"its HF {key} is not this module's")
    if not isinstance(hf_document.get("model"), dict) or hf_document["model"].get("type") != "BPE":
        raise ValueError("its HF model is not a BPE")
    return HFTokenizer.from_str(json.dumps(hf_document))


BYTES = Tokenizer(BYTES_SPEC)


def train_bpe(texts: list[bytes], vocab_size: int) -> Tokenizer:
    """A "bpe:<vocab_size>" tokenizer trained on ``texts`` (bytes, in the order given).

    Deterministic: the same texts in the same order give the same JSON. HF's
    BPE trainer counts pairs in parallel but sums the counts, and breaks ties
    between equally frequent pairs by their ids, which follow the sorted
    alphabet; tests/test_tokenizer.py trains twice and compares, and the same
    JSON came out across processes and with RAYON_NUM_THREADS=1.
    Too little text to learn ``vocab_size - 256`` merges is a ConfigError.
    """
    from tokenizers import trainers

    spec = f"bpe:{vocab_size}"
    parse_tokenizer(spec)
    hf = _hf_template()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        show_progress=False,
        initial_alphabet=[chr(b) for b in range(BYTE_VOCAB)],
    )
    hf.train_from_iterator([bytes(data).decode("latin-1") for data in texts], trainer=trainer)
    if hf.get_vocab_size() != vocab_size:
        raise ConfigError(
            f"data.tokenizer={spec}: the training text ({sum(len(t) for t in texts)} bytes) "
            f"only yields {hf.get_vocab_size()} tokens; lower V"
        )
    return Tokenizer(spec, hf)

"""Secrets in ordinary text: each audit sample is a carrier window plus a secret of m symbols.

Legend: S shadow models, N audit samples, L tokens per sample, m secret
symbols, A alphabet size, r repetitions, T rows of a training table.

The design (``data.secret_symbols`` > 0) makes IN and OUT models differ only
in whether they saw *this sample's* secret:

- every model trains on every carrier, r times per epoch;
- an IN model sees the carrier with the sample's own secret (the audit sample);
- an OUT model sees the same carrier with a fresh secret of its own, drawn
  for that (model, sample) pair and different from the sample's secret.

So the carrier, and the fact that a secret sits in it, is the same for IN and
OUT; only the symbols differ. The positions before the secret see identical
contexts and identical training data in distribution, so they carry no
membership signal at all; positions after it (``secret_at="random"``) may, a
little, through their context.

Everything is a pure function of the config: the secrets and their places are
drawn from ``data.seed``, the fresh secrets from ``data.seed`` and the model.
"""

import dataclasses

import numpy as np

from seqmia_jax.config import ConfigError, DataConfig

ALPHABETS = {
    "digits": "0123456789",
    "hex": "0123456789abcdef",
    "letters": "abcdefghijklmnopqrstuvwxyz",
}
# Secrets are numbered as base-A integers below A^m; int64 must hold A^m.
_MAX_CANDIDATES = 2**62


def alphabet_bytes(name: str) -> np.ndarray:
    """The alphabet's symbols as byte tokens, int32 A."""
    if name not in ALPHABETS:
        raise ConfigError(
            f"data.secret_alphabet must be one of {', '.join(ALPHABETS)}; got {name!r}"
        )
    return np.frombuffer(ALPHABETS[name].encode("ascii"), np.uint8).astype(np.int32)


@dataclasses.dataclass(frozen=True, eq=False)
class SecretLayout:
    """Where each sample's secret sits and what it is.

    Attributes:
      alphabet_A: the alphabet's symbols as tokens, int32 A.
      start_N: first position of each sample's secret, int64 N (positions
        start..start+m-1; the template, if any, ends at start).
      secrets_Nxm: each sample's secret as symbol indices in [0, A), int32.
      repeats: copies of each carrier (with its secret) per epoch of training.
      seed: ``data.seed``, which also seeds the OUT models' fresh secrets.
    """

    alphabet_A: np.ndarray
    start_N: np.ndarray
    secrets_Nxm: np.ndarray
    repeats: int
    seed: int

    @property
    def num_symbols(self) -> int:
        return self.secrets_Nxm.shape[1]

    @property
    def num_candidates(self) -> int:
        """A^m: every possible secret."""
        return len(self.alphabet_A) ** self.num_symbols

    def positions_Nxm(self) -> np.ndarray:
        return self.start_N[:, None] + np.arange(self.num_symbols)

    def mask_NxL(self, seq_len: int) -> np.ndarray:
        """True at each sample's secret positions, bool N x L (not a membership feature)."""
        mask = np.zeros((len(self.start_N), seq_len), dtype=bool)
        np.put_along_axis(mask, self.positions_Nxm(), True, axis=1)
        return mask

    def secret_tokens_Nxm(self) -> np.ndarray:
        return self.alphabet_A[self.secrets_Nxm]

    def fresh_secrets_SxNxm(self, num_models: int) -> np.ndarray:
        """Each (model, sample)'s own secret for OUT training, never the sample's secret."""
        rng = np.random.default_rng([self.seed, 0x5EC, 2])
        size = (num_models, *self.secrets_Nxm.shape)
        fresh = rng.integers(0, len(self.alphabet_A), size=size, dtype=np.int32)
        # A^m >= 2 (checked), so a redraw of the rare exact collisions terminates.
        while True:
            same_SxN = np.all(fresh == self.secrets_Nxm[None], axis=-1)
            if not same_SxN.any():
                return fresh
            fresh[same_SxN] = rng.integers(
                0, len(self.alphabet_A), size=(int(same_SxN.sum()), self.num_symbols)
            )

    def training_data(
        self, tokens_NxL: np.ndarray, keep_SxN: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The training table and each model's rows in it: ``(tokens_TxL, rows_SxM)``.

        Rows 0..N-1 are the audit samples (carrier + own secret); then one row
        per OUT (model, sample) pair, the carrier with that model's fresh secret.
        Model s trains on N carriers, each ``repeats`` times: M = N r.
        """
        num_models, num_samples = keep_SxN.shape
        out_s, out_n = np.nonzero(~keep_SxN)  # row order: model-major, sample-minor
        fresh_Pxm = self.alphabet_A[self.fresh_secrets_SxNxm(num_models)[out_s, out_n]]
        fresh_PxL = np.array(tokens_NxL[out_n], dtype=np.int32)
        np.put_along_axis(fresh_PxL, self.positions_Nxm()[out_n], fresh_Pxm, axis=1)
        table_TxL = np.concatenate([np.asarray(tokens_NxL, np.int32), fresh_PxL])
        rows_SxN = np.broadcast_to(np.arange(num_samples), keep_SxN.shape).copy()
        rows_SxN[out_s, out_n] = num_samples + np.arange(len(out_s))
        rows_SxM = np.repeat(rows_SxN, self.repeats, axis=1).astype(np.int32)
        return table_TxL, rows_SxM


def check_secrets(cfg: DataConfig) -> None:
    """Refuses secret settings that cannot be realized, with the field to change."""
    template = template_tokens(cfg)
    m, seq_len = cfg.secret_symbols, cfg.seq_len
    size = len(alphabet_bytes(cfg.secret_alphabet))
    if cfg.secret_repeats < 1:
        raise ConfigError(f"data.secret_repeats must be >= 1; got {cfg.secret_repeats}")
    if len(template) + m > seq_len:
        raise ConfigError(
            f"the template ({len(template)} tokens) and a secret of data.secret_symbols={m} do "
            f"not fit in data.seq_len={seq_len}"
        )
    if m * np.log2(size) >= np.log2(_MAX_CANDIDATES):
        raise ConfigError(
            f"{size}^{m} candidate secrets do not fit in int64; lower data.secret_symbols"
        )
    if size**m < 2 * cfg.num_samples:
        raise ConfigError(
            f"{size}^{m} = {size**m} possible secrets are too few for data.num_samples="
            f"{cfg.num_samples} distinct ones (need A^m >= 2N); raise data.secret_symbols"
        )
    if cfg.secret_at not in ("end", "random"):
        raise ConfigError(f"data.secret_at must be 'end' or 'random'; got {cfg.secret_at!r}")
    if cfg.canary_tokens or cfg.duplicated_samples:
        raise ConfigError(
            "data.secret_symbols cannot be combined with data.canary_tokens or "
            "data.duplicated_samples (secrets repeat with data.secret_repeats)"
        )


def template_tokens(cfg: DataConfig) -> np.ndarray:
    return np.frombuffer(cfg.secret_template.encode("utf-8"), np.uint8).astype(np.int32)


def plant_secrets(tokens_NxL: np.ndarray, cfg: DataConfig) -> tuple[np.ndarray, SecretLayout]:
    """Writes the template and a distinct seeded secret into every sample.

    Returns the audit samples (carrier + own secret), int32 N x L, and the layout.
    """
    check_secrets(cfg)
    template = template_tokens(cfg)
    alphabet = alphabet_bytes(cfg.secret_alphabet)
    num_samples, seq_len = tokens_NxL.shape
    m, size = cfg.secret_symbols, len(alphabet)
    rng = np.random.default_rng([cfg.seed, 0x5EC])
    # Distinct secrets: N distinct integers below A^m, written in base A (most significant first).
    numbers_N = rng.choice(size**m, size=num_samples, replace=False).astype(np.int64)
    digits_Nxm = (numbers_N[:, None] // size ** np.arange(m - 1, -1, -1)) % size
    lo = len(template)
    if cfg.secret_at == "end":
        start_N = np.full(num_samples, seq_len - m, dtype=np.int64)
    else:
        start_N = rng.integers(lo, seq_len - m + 1, size=num_samples).astype(np.int64)
    layout = SecretLayout(
        alphabet_A=alphabet,
        start_N=start_N,
        secrets_Nxm=digits_Nxm.astype(np.int32),
        repeats=cfg.secret_repeats,
        seed=cfg.seed,
    )
    out = np.array(tokens_NxL, dtype=np.int32)
    if lo:
        np.put_along_axis(out, start_N[:, None] - lo + np.arange(lo), template[None], axis=1)
    np.put_along_axis(out, layout.positions_Nxm(), layout.secret_tokens_Nxm(), axis=1)
    return out, layout


def fingerprint_options(cfg: DataConfig) -> dict:
    """What enters the dataset fingerprint (the tokens' hash covers the secrets themselves)."""
    return {
        "secrets": {
            "symbols": cfg.secret_symbols,
            "alphabet": cfg.secret_alphabet,
            "repeats": cfg.secret_repeats,
            "template": cfg.secret_template,
            "at": cfg.secret_at,
        }
    }

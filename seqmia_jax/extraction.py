"""Exposure and extraction of memorized text (Carlini et al. 2019, 2021).

Legend: S shadow models, N samples, K audited samples (or decoded tokens), B
batch, L positions, V vocabulary, m secret symbols, A alphabet size, R rows
scored at once, C candidate secrets.

- Extraction: greedy decoding from a prefix, compared with the true
  continuation. The same decoder serves secrets (start = the secret's first
  position, m tokens) and ordinary text (start = k prefix tokens, n tokens).
- Exposure (Carlini et al. 2019): log2(A^m) - log2(rank of the true secret
  among all A^m candidates, by the model's likelihood). Exact where every
  candidate can be scored; above ``exact_limit`` candidates, estimated from a
  skew-normal fitted to sampled candidates' log-perplexities.

Candidates are numbered in base A, most significant symbol first:
c = sum_j d_j A^(m-1-j), as ``data.secrets`` numbers the secrets.

Every model is causal: ``logits[:, l]`` depends only on ``tokens[:, :l]``. So
one row holding a candidate's first m-1 symbols gives the log-probabilities of
all A candidates that share them, and the decoder may run the full-length
forward pass at every step: the junk after the written position never reaches
the logits it reads.
"""

import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx
from jax.sharding import Mesh
from scipy import special, stats

from seqmia_jax.data.secrets import SecretLayout
from seqmia_jax.ensemble import lift, sharding
from seqmia_jax.models.build import merge


def _check_window(start_N: np.ndarray, num_tokens: int, seq_len: int) -> None:
    if num_tokens < 1:
        raise ValueError(f"num_tokens must be >= 1; got {num_tokens}")
    if len(start_N) and (start_N.min() < 0 or start_N.max() + num_tokens > seq_len):
        raise ValueError(
            f"positions start..start+{num_tokens - 1} must lie in 0..{seq_len - 1}; starts span "
            f"{start_N.min()}..{start_N.max()}"
        )


def make_greedy_decoder(graphdef: nnx.GraphDef, mesh: Mesh, strategy: str, num_tokens: int):
    """Returns ``decode(params_S, tokens_BxL, start_B) -> int32 S x B x num_tokens``.

    Each model writes its argmax (over the full vocabulary) into positions
    start_b .. start_b + num_tokens - 1 of its own copy of the rows, one token
    per full forward pass, and returns the written tokens. Tokens at and after
    start_b are ignored.
    """

    def one_model(params, tokens_BxL, start_B):
        rows_B = jnp.arange(tokens_BxL.shape[0])

        def step(j, tokens):
            logits_BxLxV = merge(graphdef, params)(tokens).astype(jnp.float32)
            next_B = jnp.argmax(logits_BxLxV[rows_B, start_B + j], axis=-1).astype(jnp.int32)
            return tokens.at[rows_B, start_B + j].set(next_B)

        # Step 0 runs outside the loop so the carry already depends on the params:
        # under shard_map a carry that enters replicated and leaves per-model is a
        # type error.
        tokens_BxL = step(0, tokens_BxL.astype(jnp.int32))
        tokens_BxL = jax.lax.fori_loop(1, num_tokens, step, tokens_BxL)
        positions_BxK = start_B[:, None] + jnp.arange(num_tokens)[None]
        return jnp.take_along_axis(tokens_BxL, positions_BxK, axis=1)

    lifted = lift.over_models(one_model, mesh, strategy, in_axes=(0, None, None))

    def decode(params_S, tokens_BxL, start_B):
        start_B = np.asarray(start_B, np.int32)
        _check_window(start_B, num_tokens, np.shape(tokens_BxL)[1])
        tokens = sharding.put_replicated(np.asarray(tokens_BxL, np.int32), mesh)
        return lifted(params_S, tokens, sharding.put_replicated(start_B, mesh))

    return decode


def extraction(
    graphdef: nnx.GraphDef,
    params_S,
    mesh: Mesh,
    strategy: str,
    tokens_NxL: np.ndarray,
    start_N: np.ndarray,
    num_tokens: int,
    batch: int,
) -> dict[str, np.ndarray]:
    """Greedy extraction of every sample's tokens start_n .. start_n + num_tokens - 1.

    Returns:
      ``decoded_SxNxK`` (int32, K = num_tokens), ``matched_SxN`` (int64: positions
      where the decoded token is the true one) and ``exact_SxN`` (bool: all matched).
    """
    tokens_NxL = np.asarray(tokens_NxL, np.int32)
    start_N = np.asarray(start_N, np.int64)
    num_samples, seq_len = tokens_NxL.shape
    if num_samples == 0 or len(start_N) != num_samples:
        raise ValueError(
            f"need one start per sample (N >= 1); got {len(start_N)} for N={num_samples}"
        )
    _check_window(start_N, num_tokens, seq_len)
    decode = make_greedy_decoder(graphdef, mesh, strategy, num_tokens)
    batch = max(1, min(batch, num_samples))
    parts = []
    for lo in range(0, num_samples, batch):
        hi = min(lo + batch, num_samples)
        # Pad the last batch to the full size, so one compiled program serves every batch.
        tokens_BxL = np.zeros((batch, seq_len), np.int32)
        start_B = np.zeros(batch, np.int32)
        tokens_BxL[: hi - lo] = tokens_NxL[lo:hi]
        start_B[: hi - lo] = start_N[lo:hi]
        parts.append(sharding.to_host(decode(params_S, tokens_BxL, start_B))[:, : hi - lo])
    decoded_SxNxK = np.concatenate(parts, axis=1).astype(np.int32)
    truth_NxK = np.take_along_axis(tokens_NxL, start_N[:, None] + np.arange(num_tokens), axis=1)
    matched_SxN = (decoded_SxNxK == truth_NxK[None]).sum(axis=-1)
    return {
        "decoded_SxNxK": decoded_SxNxK,
        "matched_SxN": matched_SxN,
        "exact_SxN": matched_SxN == num_tokens,
    }


def index_digits(index_C: np.ndarray, alphabet_size: int, m: int) -> np.ndarray:
    """Candidate numbers as base-A digits, most significant first: int64 C x m."""
    powers_m = alphabet_size ** np.arange(m - 1, -1, -1, dtype=np.int64)
    return (np.asarray(index_C, np.int64)[..., None] // powers_m) % alphabet_size


def digits_index(digits_Cxm: np.ndarray, alphabet_size: int) -> np.ndarray:
    """Base-A digits (most significant first) as candidate numbers: int64 C."""
    digits_Cxm = np.asarray(digits_Cxm, np.int64)
    m = digits_Cxm.shape[-1]
    return digits_Cxm @ (alphabet_size ** np.arange(m - 1, -1, -1, dtype=np.int64))


def symbol_rows(tokens_L: np.ndarray, start: int, symbols_CxJ: np.ndarray) -> np.ndarray:
    """Copies of one sample with positions start..start+J-1 holding each row's symbols: int32 C x L."""
    rows_CxL = np.repeat(np.asarray(tokens_L, np.int32)[None], len(symbols_CxJ), axis=0)
    rows_CxL[:, start : start + symbols_CxJ.shape[1]] = symbols_CxJ
    return rows_CxL


def candidate_rows(tokens_L: np.ndarray, start: int, alphabet_A: np.ndarray, m: int) -> np.ndarray:
    """Every combination of the first m-1 symbols at start..start+m-2: int32 A^(m-1) x L.

    Row r holds the base-A digits of r (most significant first); its
    log-probabilities at start..start+m-1 score candidates r A .. r A + A - 1.
    """
    alphabet_A = np.asarray(alphabet_A, np.int32)
    digits_Rxj = index_digits(np.arange(len(alphabet_A) ** (m - 1)), len(alphabet_A), m - 1)
    return symbol_rows(tokens_L, start, alphabet_A[digits_Rxj])


def make_candidate_scorer(graphdef: nnx.GraphDef, mesh: Mesh, strategy: str):
    """Returns ``score(params_S, rows_RxL, start, alphabet_A, m) -> float32 S x R x m x A``.

    The log-softmax over the full vocabulary at positions start..start+m-1,
    gathered at the alphabet's tokens. ``start`` is traced (it differs from
    sample to sample), so there is one compiled program per (R, L, m).
    """

    def one_model(params, rows_RxL, start, alphabet_A, *, m):
        logits_RxLxV = merge(graphdef, params)(rows_RxL).astype(jnp.float32)
        window_RxmxV = jax.lax.dynamic_slice_in_dim(logits_RxLxV, start, m, axis=1)
        return jax.nn.log_softmax(window_RxmxV, axis=-1)[..., alphabet_A]

    @functools.cache
    def lifted(m):
        fn = functools.partial(one_model, m=m)
        return lift.over_models(fn, mesh, strategy, in_axes=(0, None, None, None))

    def score(params_S, rows_RxL, start, alphabet_A, m):
        rows = np.asarray(rows_RxL, np.int32)
        _check_window(np.array([start]), m, rows.shape[1])
        args = (rows, np.int32(start), np.asarray(alphabet_A, np.int32))
        return lifted(int(m))(params_S, *(sharding.put_replicated(x, mesh) for x in args))

    return score


def _score_in_chunks(score, params_S, rows_RxL, start, alphabet_A, m, batch_rows) -> np.ndarray:
    """``score`` over R rows, batch_rows at a time (the last chunk padded): float32 S x R x m x A."""
    num_rows = len(rows_RxL)
    chunk = max(1, min(batch_rows, num_rows))
    parts = []
    for lo in range(0, num_rows, chunk):
        hi = min(lo + chunk, num_rows)
        rows = np.repeat(rows_RxL[:1], chunk, axis=0)  # padding rows: any valid tokens
        rows[: hi - lo] = rows_RxL[lo:hi]
        parts.append(sharding.to_host(score(params_S, rows, start, alphabet_A, m))[:, : hi - lo])
    return np.concatenate(parts, axis=1)


def exact_log_likelihoods(logp_SxRxmxA: np.ndarray, m: int) -> np.ndarray:
    """Log-likelihood of every candidate from ``candidate_rows``' scores: float64 S x A^m."""
    logp = np.asarray(logp_SxRxmxA, np.float64)
    num_models, num_rows, _, size = logp.shape
    digits_Rxj = index_digits(np.arange(num_rows), size, m - 1)
    prefix_SxR = full_log_likelihoods(logp[:, :, : m - 1], digits_Rxj)
    # Candidate r A + d: row r's prefix, then symbol d at the last position.
    return (prefix_SxR[..., None] + logp[:, :, m - 1]).reshape(num_models, num_rows * size)


def full_log_likelihoods(logp_SxCxmxA: np.ndarray, digits_Cxm: np.ndarray) -> np.ndarray:
    """Log-likelihood of candidates scored on rows that hold all their m symbols: float64 S x C."""
    logp = np.asarray(logp_SxCxmxA, np.float64)
    own_SxCxm = np.take_along_axis(logp, np.asarray(digits_Cxm)[None, ..., None], axis=-1)
    return own_SxCxm[..., 0].sum(axis=-1)


def ranks(logliks_SxC: np.ndarray, true_index: int) -> np.ndarray:
    """Rank of candidate ``true_index``: 1 + candidates with strictly higher likelihood, int64 S."""
    true_Sx1 = logliks_SxC[:, true_index, None]
    return 1 + np.sum(logliks_SxC > true_Sx1, axis=1)


def exposure_from_rank(rank, num_candidates: int) -> np.ndarray:
    """Exposure log2(num_candidates) - log2(rank), in bits (float64)."""
    return math.log2(num_candidates) - np.log2(np.asarray(rank, np.float64))


def _skewnorm_log_cdf(x: float, shape: float, loc: float, scale: float) -> float:
    """log F(x) of a skew-normal, finite far into the left tail where scipy's underflows."""
    log_cdf = float(stats.skewnorm.logcdf(x, shape, loc, scale))
    if log_cdf > -600.0:
        return log_cdf
    return _skewnorm_left_tail_log_cdf((x - loc) / scale, shape)


def _skewnorm_left_tail_log_cdf(z: float, shape: float) -> float:
    """Asymptotic log F(z) of the standard skew-normal as z -> -inf.

    With g = log(2 phi(t) Phi(a t)) the log density, concave in t, F(z) ~
    exp(g(z)) / g'(z) (Mills' ratio), with relative error O(1 / g'(z)^2).
    """
    log_pdf = math.log(2.0) + stats.norm.logpdf(z) + special.log_ndtr(shape * z)
    slope = -z + shape * math.exp(stats.norm.logpdf(shape * z) - special.log_ndtr(shape * z))
    return float(log_pdf - math.log(slope))


def estimate_exposure(sampled_logliks_SxC: np.ndarray, true_loglik_S: np.ndarray) -> np.ndarray:
    """Estimated exposure, float64 S (Carlini et al. 2019's extrapolation; an estimate).

    Per model, a skew-normal is fitted (maximum likelihood) to the
    log-perplexities -loglik of C candidates sampled uniformly; its CDF at the
    true secret's log-perplexity estimates the fraction of all candidates more
    likely than it, and the exposure is -log2 of that fraction. It cannot
    resolve ranks finer than the fitted tail allows, and far beyond the samples
    it is an extrapolation of the fitted shape.
    """
    perplexity_SxC = -np.asarray(sampled_logliks_SxC, np.float64)
    true_S = -np.asarray(true_loglik_S, np.float64)
    out = np.empty(len(true_S))
    for s, (sample, x) in enumerate(zip(perplexity_SxC, true_S)):
        shape, loc, scale = stats.skewnorm.fit(sample)
        out[s] = -_skewnorm_log_cdf(x, shape, loc, scale) / math.log(2.0)
    return out


def exposures(
    graphdef: nnx.GraphDef,
    params_S,
    mesh: Mesh,
    strategy: str,
    tokens_NxL: np.ndarray,
    layout: SecretLayout,
    sample_idx,
    *,
    exact_limit: int = 100_000,
    num_sampled: int = 2048,
    batch_rows: int = 256,
    seed: int = 0,
) -> dict:
    """Exposure of the secrets of samples ``sample_idx`` under each of the S models.

    Exact (every candidate ranked) where A^m <= exact_limit, else the
    skew-normal estimate from ``num_sampled`` uniform candidates, drawn per
    sample from ``seed`` and the sample's index.

    Returns:
      ``exposure_SxK`` (float64 bits), ``rank_SxK`` (int64; -1 when estimated),
      ``loglik_SxK`` (float64 log-likelihood of the true secret), ``exact``
      (bool), ``method`` ("exact" or "skewnorm") and ``num_candidates``.
    """
    tokens_NxL = np.asarray(tokens_NxL, np.int32)
    sample_K = np.asarray(sample_idx, np.int64).reshape(-1)
    alphabet_A = np.asarray(layout.alphabet_A, np.int32)
    m, size, num_candidates = layout.num_symbols, len(alphabet_A), layout.num_candidates
    exact = num_candidates <= exact_limit
    score = make_candidate_scorer(graphdef, mesh, strategy)
    num_models = jax.tree.leaves(params_S)[0].shape[0]
    exposure_SxK = np.zeros((num_models, len(sample_K)))
    loglik_SxK = np.zeros((num_models, len(sample_K)))
    rank_SxK = np.full((num_models, len(sample_K)), -1, np.int64)
    t0 = time.time()
    for k, n in enumerate(sample_K):
        if k and (k % max(1, len(sample_K) // 8) == 0):
            logging.info(
                "exposure: %d/%d samples (%.1f s per sample)",
                k,
                len(sample_K),
                (time.time() - t0) / k,
            )
        start, secret_m = int(layout.start_N[n]), layout.secrets_Nxm[n]
        if exact:
            rows_RxL = candidate_rows(tokens_NxL[n], start, alphabet_A, m)
            logp = _score_in_chunks(score, params_S, rows_RxL, start, alphabet_A, m, batch_rows)
            logliks_SxC = exact_log_likelihoods(logp, m)
            true_index = int(digits_index(secret_m, size))
            rank_SxK[:, k] = ranks(logliks_SxC, true_index)
            exposure_SxK[:, k] = exposure_from_rank(rank_SxK[:, k], num_candidates)
            loglik_SxK[:, k] = logliks_SxC[:, true_index]
        else:
            rng = np.random.default_rng([seed, int(n)])
            # Uniform candidates (with replacement), then the true secret as the last row.
            digits_Cxm = np.concatenate(
                [rng.integers(0, size, size=(num_sampled, m)), secret_m[None]]
            )
            rows_CxL = symbol_rows(tokens_NxL[n], start, alphabet_A[digits_Cxm])
            logp = _score_in_chunks(score, params_S, rows_CxL, start, alphabet_A, m, batch_rows)
            logliks_SxC = full_log_likelihoods(logp, digits_Cxm)
            exposure_SxK[:, k] = estimate_exposure(logliks_SxC[:, :-1], logliks_SxC[:, -1])
            loglik_SxK[:, k] = logliks_SxC[:, -1]
    return {
        "exposure_SxK": exposure_SxK,
        "rank_SxK": rank_SxK,
        "loglik_SxK": loglik_SxK,
        "exact": exact,
        "method": "exact" if exact else "skewnorm",
        "num_candidates": num_candidates,
    }

"""Profile LiRA: LiRA on a token-weighted sequence mean, the weights learned across samples.

Legend: S shadow models, N samples, L positions, T targets, G profile bins.

The per-token models of ``seq`` estimate L mean shifts per sample from K/2
shadows a side, and that noise costs more than the per-token detail gives
(docs/study.md). This attack keeps the per-token structure but shares it
across samples: a token's expected membership shift and its noise variance
are taken to depend only on a feature of the token, its bin g(n, l). Option
``by`` picks the feature:

- ``difficulty`` (default): how hard the token is, its bin among ``bins``
  quantile bins of the statistic's mean over the shadows or, with
  ``difficulty=base``, of the pretrained base model's loss
  (``inputs.base_stats["loss"]``: how surprising the base finds the token);
- ``token``: the token id (position l holds the statistic of predicting
  token l): ``inputs.tokens_NxL`` (tokens.npy) when given, V = its largest id
  + 1 bins, else byte l of sample n's raw text (``inputs.text``), V = 256;
- ``position``: the position l, one bin per position;
- combinations joined by ``+`` in that order (``difficulty+token``,
  ``difficulty+position``, ...): the product of their bins, e.g.
  bin = difficulty bin * V + token id.

Under

    x[s, n, l] = mu[n, l] + member(s, n) * delta[g] + e,  e ~ N(0, var[g]) independent,

the likelihood ratio of member(s, n) depends on the data only through the
projection A[s, n] = sum_l w[n, l] x[s, n, l] / L with w = delta[g] / var[g]
(a matched filter), so the attack is univariate LiRA (``lira.py``, same
options and leave-one-out rule) on A. With delta and var constant it is
``lira`` on the plain mean.

Per target t, everything is fitted without model t: the difficulty bins use
the mean over the other S - 1 shadows (the base model's loss involves no
shadow, so its bins are the same for every target), delta[g] is the mean
over the bin's present tokens of (IN mean - OUT mean) and var[g] the mean of
the two sides' ddof=1 variances, both over the other shadows; empty bins get
weight 0. A projects every model's statistic, the target's included, with
the same weights, and LiRA's own fits then follow the equal-count rule. A is
oriented so that members score higher (w carries the sign of delta), so the
offline one-sided test needs no statistic-specific direction.

Evidence (``evidence=True``, for the leakage report): per target t,
e[n, l] = w[n, l] (x_t[n, l] - m[n, l]) / (L sd[n]), where m is the mean of
x over sample n's OUT shadows other than t and sd the ddof=1 standard
deviation of A over those shadows. It sums over l to z = (A_t - mean OUT A) /
sd, the target's projection in OUT standard deviations, which the LiRA fit
then scores; the weights are shared by a bin's tokens, so no single token's
tiny variance can dominate it.
"""

import dataclasses
import functools
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from seqmia_jax.attacks import blocks, common, gaussian, lira, loo
from seqmia_jax.attacks.base import (
    AttackInputError,
    AttackInputs,
    AttackOptions,
    AttackOutput,
    option,
    register_attack,
)

_BYTE_IDS = 256  # one token bin per byte value, when the tokens are the text's bytes
_DIAGNOSTIC_BINS = 64  # beyond this many bins, only nonempty bins are reported

_FEATURES = ("difficulty", "token", "position")
_BY = tuple(
    "+".join(f for i, f in enumerate(_FEATURES) if mask >> i & 1)
    for mask in range(1, 2 ** len(_FEATURES))
)


@dataclasses.dataclass(frozen=True)
class ProfileOptions(AttackOptions):
    statistic: lira.Statistic = "logit"
    bins: int = option(16, check=lambda bins: bins >= 1, rule=">= 1")  # difficulty bins
    by: str = option("difficulty", choices=lambda: _BY)  # token feature(s) of the profile
    difficulty: Literal["shadows", "base"] = "shadows"  # what the difficulty bins rank
    mode: lira.Mode = "online"
    variance: lira.Variance = "per_sample"
    offline_test: lira.OfflineTest = "one_sided"
    evidence: bool = False  # per-position terms of the standardized projection (see docstring)

    def base_statistics(self) -> tuple[str, ...]:
        uses_base = self.difficulty == "base" and "difficulty" in self.by.split("+")
        return ("loss",) if uses_base else ()

    def lira(self) -> lira.LiraOptions:
        """The options of the LiRA fit on the projected mean."""
        return lira.LiraOptions(self.statistic, self.mode, self.variance, self.offline_test)


_side_sums = jax.jit(common.side_sums)


def _weights(bins, by, num_tokens, sums, counts, x_t_NxL, on_in_N, mask_NxL, token_NxL, base_NxL):
    """w_NxL fitted without the target (row x_t, IN where on_in_N), and per-bin profile.

    ``base_NxL`` (or None: the shadows' mean) is the difficulty feature.
    """
    (total_in, mom_in), (total_out, mom_out) = (
        common.target_removed_moments(total, sumsq, count, x_t_NxL, on_N)
        for (total, sumsq), count, on_N in zip(sums, counts, (on_in_N, ~on_in_N))
    )
    mean_in, var_in = mom_in.mu_NxL, mom_in.var_NxL
    mean_out, var_out = mom_out.mu_NxL, mom_out.var_NxL
    num_others_N = counts[0] + counts[1] - 1
    feature_NxL = (total_in + total_out) / num_others_N[:, None] if base_NxL is None else base_NxL
    features, profile, bin_NxL, num_bins = by.split("+"), {}, 0, 1
    if "difficulty" in features:
        quantiles = jnp.linspace(0.0, 1.0, bins + 1)[1:-1]
        edges = jnp.nanquantile(jnp.where(mask_NxL, feature_NxL, jnp.nan), quantiles)
        bin_NxL = jnp.searchsorted(edges, feature_NxL, side="right")
        profile["edges"], num_bins = edges, bins
    if "token" in features:
        bin_NxL = bin_NxL * num_tokens + token_NxL
        num_bins *= num_tokens
    if "position" in features:
        length = feature_NxL.shape[1]
        bin_NxL = jnp.broadcast_to(bin_NxL * length + jnp.arange(length)[None], feature_NxL.shape)
        num_bins *= length
    present = mask_NxL.astype(feature_NxL.dtype)
    size_G = jnp.bincount(bin_NxL.ravel(), present.ravel(), length=num_bins)
    shift_G = jnp.bincount(
        bin_NxL.ravel(), (present * (mean_in - mean_out)).ravel(), length=num_bins
    )
    noise_NxL = 0.5 * (var_in + var_out)
    noise_G = jnp.bincount(bin_NxL.ravel(), (present * noise_NxL).ravel(), length=num_bins)
    safe_G = jnp.maximum(size_G, 1.0)
    delta_G, var_G = shift_G / safe_G, noise_G / safe_G
    weight_G = jnp.where(size_G > 0, delta_G / jnp.maximum(var_G, 1e-12), 0.0)
    weight_NxL = jnp.where(mask_NxL, weight_G[bin_NxL], 0.0)
    return weight_NxL, {"delta": delta_G, "var": var_G, "size": size_G, **profile}


def _token_ids(inputs: AttackInputs, by: str, mask_NxL: np.ndarray) -> tuple[np.ndarray, int]:
    """(token_NxL int32, V): tokens.npy's ids if given, else byte l of sample n's raw text."""
    num_samples, length = mask_NxL.shape
    if inputs.tokens_NxL is not None:
        tokens_NxL = np.asarray(inputs.tokens_NxL)  # a file's LazyArray is read here
        if tokens_NxL.shape != mask_NxL.shape or not np.issubdtype(tokens_NxL.dtype, np.integer):
            raise AttackInputError(
                f"profile:by={by}: tokens.npy must hold int ({num_samples}, {length}) token ids, "
                f"one per position; got {tokens_NxL.dtype} {tokens_NxL.shape}"
            )
        tokens_NxL = np.where(mask_NxL, tokens_NxL, 0)  # padding ids at absent positions: unused
        if tokens_NxL.min() < 0:
            raise AttackInputError(
                f"profile:by={by}: tokens.npy holds negative token ids at present positions"
            )
        return tokens_NxL.astype(np.int32), int(tokens_NxL.max()) + 1
    text = inputs.text
    if text is None or len(text) != num_samples or any(len(row) != length for row in text):
        raise AttackInputError(
            f"profile:by={by} needs the raw bytes of each sample (text_bytes.npy) with one byte "
            f"per position: {num_samples} rows of {length} bytes (give text_lengths.npy if rows "
            "end in zero bytes), or the token ids (tokens.npy)"
        )
    token_NxL = np.frombuffer(b"".join(text), np.uint8).reshape(num_samples, length)
    return token_NxL.astype(np.int32), _BYTE_IDS


def _summary(profile: dict) -> dict:
    """JSON-ready profile; past _DIAGNOSTIC_BINS bins only the nonempty ones, with their ids."""
    out = {k: np.asarray(v) for k, v in profile.items()}
    if out["size"].size > _DIAGNOSTIC_BINS:
        (out["bin"],) = np.nonzero(out["size"])
        for k in ("delta", "var", "size"):
            out[k] = out[k][out["bin"]]
    return {k: v.tolist() for k, v in out.items()}


@functools.partial(jax.jit, static_argnames=("bins", "by", "num_tokens"))
def _weights_block(
    bins, by, num_tokens, sums, counts, x_BxNxL, on_in_BxN, mask_NxL, token_NxL, base_NxL
):
    """``_weights`` of a block of targets."""

    def one(x_t_NxL, on_in_N):
        return _weights(
            bins, by, num_tokens, sums, counts, x_t_NxL, on_in_N, mask_NxL, token_NxL, base_NxL
        )

    return blocks.over_targets(one, x_BxNxL, on_in_BxN)


@jax.jit
def _project(x_SxNxL, weight_NxL):
    return jnp.einsum("snl,nl->sn", x_SxNxL, weight_NxL) / x_SxNxL.shape[2]


@jax.jit
def _evidence(x_SxNxL, weight_NxL, a_SxN, out_SxN, t):
    """e_NxL of target t (``out_SxN``: OUT shadows of each sample, without t)."""
    out = out_SxN.astype(x_SxNxL.dtype)
    k_N = out.sum(0)
    mean_NxL = jnp.einsum("sn,snl->nl", out, x_SxNxL) / k_N[:, None]
    mean_N = (out * a_SxN).sum(0) / k_N
    sd_N = jnp.sqrt((out * (a_SxN - mean_N[None]) ** 2).sum(0) / (k_N - 1.0))
    scale_N = x_SxNxL.shape[2] * jnp.maximum(sd_N, 1e-300)
    return weight_NxL * (x_SxNxL[t] - mean_NxL) / scale_N[:, None]


@register_attack("profile", ProfileOptions)
def profile(inputs: AttackInputs, targets_T: np.ndarray, opt: ProfileOptions) -> AttackOutput:
    """LiRA on the profile-weighted sequence mean (see module docstring)."""
    x = common.statistic(inputs, "profile", opt.statistic)
    keep_SxN = np.asarray(inputs.keep_SxN, dtype=bool)
    _, num_samples, length = x.shape
    mask_NxL = common.presence_mask(inputs.mask_NxL, num_samples, length)
    counts = (keep_SxN.sum(0), (~keep_SxN).sum(0))
    token_NxL, num_tokens = None, 1
    if "token" in opt.by.split("+"):
        token_NxL, num_tokens = _token_ids(inputs, opt.by, mask_NxL)
    base_NxL = None
    if opt.base_statistics():
        base_NxL = np.asarray(common.base_statistic(inputs, "profile", "loss"), np.float64)
    targets_T = np.asarray(targets_T, dtype=np.int64)
    for t in targets_T:
        if min((counts[0] - keep_SxN[t]).min(), (counts[1] - ~keep_SxN[t]).min()) < 2:
            raise AttackInputError(
                "profile: every sample needs at least 2 IN and 2 OUT shadows besides the target"
            )
    scores, evidence, first_profile = [], [], None
    block, _ = blocks.block_sizes(len(targets_T), 8 * num_samples * length, 1)
    with gaussian.float64_scope():
        x_dev = jnp.asarray(np.asarray(x, dtype=np.float64))
        keep_dev, mask_dev = jnp.asarray(keep_SxN), jnp.asarray(mask_NxL)
        token_dev = None if token_NxL is None else jnp.asarray(token_NxL)
        base_dev = None if base_NxL is None else jnp.asarray(base_NxL)
        sums = (_side_sums(x_dev, keep_dev), _side_sums(x_dev, ~keep_dev))
        counts_dev = tuple(jnp.asarray(c) for c in counts)
        for _, real, tb in blocks.target_blocks(targets_T, block):
            weight_BxNxL, prof = _weights_block(
                opt.bins,
                opt.by,
                num_tokens,
                sums,
                counts_dev,
                x_dev[tb],
                keep_dev[tb],
                mask_dev,
                token_dev,
                base_dev,
            )
            for i, t in enumerate(real):
                a_SxN = np.asarray(_project(x_dev, weight_BxNxL[i]))
                scores.append(lira.lira_on_mean(a_SxN, keep_SxN, np.array([t]), opt.lira(), 1.0)[0])
                if opt.evidence:
                    out_SxN = ~keep_SxN
                    out_SxN[t] = False  # the target is no shadow of itself
                    e_NxL = _evidence(x_dev, weight_BxNxL[i], a_SxN, out_SxN, int(t))
                    evidence.append(np.asarray(e_NxL, dtype=np.float32))
            if first_profile is None:
                first_profile = _summary(jax.tree.map(lambda v: v[0], prof))
    diagnostics = {
        "options": opt.as_dict(),
        "equal_count_rule": loo.equal_counts(keep_SxN),
        "profile_first_target": first_profile,
    }
    return AttackOutput(
        scores_TxN=np.stack(scores),
        evidence_TxNxL=np.stack(evidence) if opt.evidence else None,
        diagnostics=diagnostics,
    )

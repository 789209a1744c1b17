"""Baseline attacks that collapse a sequence to one number (numpy, float64).

Legend: S shadow models, N samples, L positions, T targets.

Every baseline reads ``stats["loss"]`` (-log p(x_l | x_<l), S x N x L) and
ignores absent positions (``mask_NxL`` False): they drop out of every mean and
every ranking, and are never zero-filled. Higher score = more likely a member.

- ``loss``: -(mean loss over present positions) (Yeom et al. 2018).
- ``zlib``: -(total loss in bits) / (zlib-compressed length of the raw bytes
  in bits) (Carlini et al. 2021, "Extracting Training Data from LLMs").
- ``mink``: Min-K% (Shi et al. 2024): the mean of the lowest ``k`` fraction of
  per-token log-probs, over int(k * present) >= 1 tokens.
- ``minkpp``: Min-K%++ (Zhang et al. 2024): the same over
  (log p(x_l) - mean_logp_l) / std_logp_l, with the moments of log p under
  the model's own predictive distribution (``stats["mean_logp"]`` and
  ``stats["std_logp"]``).
- ``refcal``: reference calibration (Watson et al. 2022): the mean OUT-shadow
  loss minus the target loss; the OUT shadows exclude the target row.
- ``rmia``: RMIA (Zarifzadeh et al. 2024), see ``rmia_attack``.

Only ``refcal`` and ``rmia`` use shadows; the others read the target's row.
"""

import dataclasses
import zlib
from typing import Literal

import numpy as np
from scipy.special import logsumexp

from seqmia_jax.attacks import common
from seqmia_jax.attacks.base import (
    AttackInputError,
    AttackInputs,
    AttackOptions,
    AttackOutput,
    NoOptions,
    option,
    register_attack,
)

_STD_FLOOR = 1e-6  # Min-K%++: a degenerate predictive distribution has std 0


def _mask(inputs: AttackInputs) -> np.ndarray:
    """The presence mask N x L (all True if none was given)."""
    return common.presence_mask(inputs.mask_NxL, *inputs.stats["loss"].shape[1:])


def _row(stat_SxNxL: np.ndarray, model: int) -> np.ndarray:
    """One model's statistic N x L as float64 (reads one row of a memmap)."""
    return np.asarray(stat_SxNxL[int(model)], dtype=np.float64)


def _masked_sum(values_NxL: np.ndarray, mask_NxL: np.ndarray) -> np.ndarray:
    return np.where(mask_NxL, values_NxL, 0.0).sum(axis=1)


def sequence_loss_sums(inputs: AttackInputs) -> np.ndarray:
    """Total loss over present positions for every model and sample: S x N, float64."""
    loss_SxNxL = inputs.stats["loss"]
    mask_NxL = _mask(inputs)
    return np.stack([_masked_sum(_row(loss_SxNxL, s), mask_NxL) for s in range(len(loss_SxNxL))])


def _lowest_fraction_mean(values_NxL: np.ndarray, mask_NxL: np.ndarray, k: float) -> np.ndarray:
    """Mean of the int(k * present) >= 1 lowest present values of each row."""
    present_N = mask_NxL.sum(axis=1)
    count_N = np.maximum(1, (k * present_N).astype(np.int64))
    if np.all(count_N == count_N[0]):  # the usual case: a partition, not a sort
        count = int(count_N[0])
        lowest_NxC = np.partition(np.where(mask_NxL, values_NxL, np.inf), count - 1, axis=1)
        return lowest_NxC[:, :count].sum(axis=1) / count
    sorted_NxL = np.sort(np.where(mask_NxL, values_NxL, np.inf), axis=1)
    # Absent positions sort last as +inf; count_N <= present_N never reaches them.
    cumsum_NxL = np.cumsum(np.where(np.isfinite(sorted_NxL), sorted_NxL, 0.0), axis=1)
    return np.take_along_axis(cumsum_NxL, (count_N - 1)[:, None], axis=1)[:, 0] / count_N


@dataclasses.dataclass(frozen=True)
class MinKOptions(AttackOptions):
    k: float = option(0.2, check=lambda k: 0.0 < k <= 1.0, rule="in (0, 1]")  # fraction of tokens


@register_attack("loss")
def loss_attack(inputs: AttackInputs, targets_T: np.ndarray, opt: NoOptions) -> AttackOutput:
    """LOSS: minus the mean per-token loss of the target model."""
    mask_NxL = _mask(inputs)
    present_N = mask_NxL.sum(axis=1)
    scores_TxN = np.stack(
        [-_masked_sum(_row(inputs.stats["loss"], t), mask_NxL) / present_N for t in targets_T]
    )
    return AttackOutput(scores_TxN)


def zlib_bits(text: list[bytes] | tuple[bytes, ...]) -> np.ndarray:
    """zlib-compressed length (default level) of each sample's raw bytes, in bits: N."""
    return 8.0 * np.array([len(zlib.compress(bytes(sample))) for sample in text], dtype=np.float64)


@register_attack("zlib")
def zlib_attack(inputs: AttackInputs, targets_T: np.ndarray, opt: NoOptions) -> AttackOutput:
    """zlib ratio: minus the target's total loss in bits over the zlib entropy in bits."""
    if inputs.text is None:
        raise AttackInputError(
            "attack 'zlib' needs the raw bytes of each sample (text.npy or text_bytes.npy in the "
            "work directory); none were given"
        )
    if len(inputs.text) != inputs.num_samples:
        raise AttackInputError(
            f"attack 'zlib': {len(inputs.text)} texts for {inputs.num_samples} samples"
        )
    bits_N = zlib_bits(inputs.text)
    mask_NxL = _mask(inputs)
    scores_TxN = np.stack(
        [
            -_masked_sum(_row(inputs.stats["loss"], t), mask_NxL) / np.log(2.0) / bits_N
            for t in targets_T
        ]
    )
    return AttackOutput(scores_TxN)


@register_attack("mink", MinKOptions)
def mink_attack(inputs: AttackInputs, targets_T: np.ndarray, opt: MinKOptions) -> AttackOutput:
    """Min-K%: the mean of the lowest k fraction of the target's per-token log-probs."""
    k = opt.k
    mask_NxL = _mask(inputs)
    scores_TxN = np.stack(
        [_lowest_fraction_mean(-_row(inputs.stats["loss"], t), mask_NxL, k) for t in targets_T]
    )
    return AttackOutput(scores_TxN, diagnostics={"k": k})


@register_attack("minkpp", MinKOptions)
def minkpp_attack(inputs: AttackInputs, targets_T: np.ndarray, opt: MinKOptions) -> AttackOutput:
    """Min-K%++: Min-K% over log-probs standardized by the model's own predictive moments."""
    k = opt.k
    mean_SxNxL = common.statistic(inputs, "minkpp", "mean_logp")
    std_SxNxL = common.statistic(inputs, "minkpp", "std_logp")
    mask_NxL = _mask(inputs)
    rows, floored = [], 0
    for t in targets_T:
        std_NxL = _row(std_SxNxL, t)
        floored += int(np.sum(mask_NxL & (std_NxL < _STD_FLOOR)))
        z_NxL = (-_row(inputs.stats["loss"], t) - _row(mean_SxNxL, t)) / np.maximum(
            std_NxL, _STD_FLOOR
        )
        rows.append(_lowest_fraction_mean(z_NxL, mask_NxL, k))
    diagnostics = {"k": k, "std_floor": _STD_FLOOR, "num_std_floored": floored}
    return AttackOutput(np.stack(rows), diagnostics=diagnostics)


def _out_counts(keep_SxN: np.ndarray, targets_T: np.ndarray, attack: str) -> None:
    """Raise if some target leaves a sample without OUT reference shadows."""
    out_N = (~keep_SxN).sum(axis=0)
    for t in targets_T:
        lacking = np.flatnonzero(out_N - ~keep_SxN[t] < 1)
        if lacking.size:
            raise AttackInputError(
                f"attack {attack!r}: target {t} leaves samples {lacking[:10].tolist()} without "
                "OUT shadows (membership.npy)"
            )


@register_attack("refcal")
def refcal_attack(inputs: AttackInputs, targets_T: np.ndarray, opt: NoOptions) -> AttackOutput:
    """Reference calibration: mean OUT-shadow loss minus the target loss (leave-one-out)."""
    keep_SxN = np.asarray(inputs.keep_SxN, dtype=bool)
    _out_counts(keep_SxN, targets_T, "refcal")
    mean_SxN = sequence_loss_sums(inputs) / _mask(inputs).sum(axis=1)
    out_SxN = ~keep_SxN
    out_sum_N = np.sum(mean_SxN * out_SxN, axis=0)
    out_count_N = out_SxN.sum(axis=0)
    rows = []
    for t in targets_T:
        # Remove the target's own share from the OUT sums (leave-one-out).
        ref_N = (out_sum_N - mean_SxN[t] * out_SxN[t]) / (out_count_N - out_SxN[t])
        rows.append(ref_N - mean_SxN[t])
    return AttackOutput(np.stack(rows))


@dataclasses.dataclass(frozen=True)
class RmiaOptions(AttackOptions):
    gamma: float = option(1.0, check=lambda gamma: gamma > 0.0, rule="> 0")
    mode: Literal["online", "offline"] = "online"
    a: float = option(0.3, check=lambda a: 0.0 <= a <= 1.0, rule="in [0, 1]")  # offline correction
    population: Literal["out", "all"] = "out"
    num_population: int = option(0, check=lambda n: n >= 0, rule=">= 0")  # 0: all
    seed: int = 0  # of the population subset


@register_attack("rmia", RmiaOptions)
def rmia_attack(inputs: AttackInputs, targets_T: np.ndarray, opt: RmiaOptions) -> AttackOutput:
    """RMIA (Zarifzadeh et al. 2024) on sequence probabilities p(x) = exp(-total loss).

    ratio(x) = log p(x | target) - log Pr(x), where Pr(x) averages p(x | s) over
    the reference models: online, every shadow but the target (IN and OUT);
    offline, the OUT shadows with the paper's linear correction
    Pr(x) = ((1 + a) Pr_OUT(x) + (1 - a)) / 2. All in log space.
    score(x) = the fraction of population samples z with
    ratio(x) - ratio(z) > log(gamma). The population is the audit samples that
    are OUT for the target (``population="out"``) or all N samples (``"all"``),
    optionally a seeded random subset of ``num_population`` of them (0 = all),
    and never x itself: were x its own reference, a non-member (always in the
    OUT population) could never reach the score 1 that a member reaches, and a
    threshold there would have no false positives whatever the model.

    Sequence probabilities are tiny (exp(-hundreds)), so the offline
    correction's constant (1 - a) / 2 dominates Pr(x) unless a is near 1, and
    offline RMIA then ranks like LOSS.
    """
    gamma, mode, a, population = opt.gamma, opt.mode, opt.a, opt.population
    num_population = opt.num_population
    keep_SxN = np.asarray(inputs.keep_SxN, dtype=bool)
    if mode == "offline":
        _out_counts(keep_SxN, targets_T, "rmia")
    logp_SxN = -sequence_loss_sums(inputs)
    rng = np.random.default_rng(opt.seed)
    rows = []
    for t in targets_T:
        reference_RxN = np.delete(logp_SxN, t, axis=0)
        if mode == "online":
            log_pr_N = logsumexp(reference_RxN, axis=0) - np.log(len(reference_RxN))
        else:
            out_RxN = ~np.delete(keep_SxN, t, axis=0)
            log_out_N = logsumexp(reference_RxN, axis=0, b=out_RxN) - np.log(out_RxN.sum(axis=0))
            with np.errstate(divide="ignore"):
                log_pr_N = np.logaddexp(np.log((1 + a) / 2) + log_out_N, np.log((1 - a) / 2))
        ratio_N = logp_SxN[t] - log_pr_N
        pool = np.flatnonzero(~keep_SxN[t]) if population == "out" else np.arange(len(ratio_N))
        if 0 < num_population < pool.size:
            pool = rng.choice(pool, size=num_population, replace=False)
        sorted_pool = np.sort(ratio_N[pool])
        dominated_N = np.searchsorted(sorted_pool, ratio_N - np.log(gamma), side="left")
        # Leave x out of its own population: it dominates itself only when gamma < 1.
        in_pool_N = np.zeros(len(ratio_N), dtype=bool)
        in_pool_N[pool] = True
        dominated_N = dominated_N - (in_pool_N & (gamma < 1.0))
        rows.append(dominated_N / np.maximum(pool.size - in_pool_N, 1))
    return AttackOutput(np.stack(rows), diagnostics={"mode": mode, "gamma": gamma})

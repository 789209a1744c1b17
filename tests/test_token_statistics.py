"""``scoring.token_statistics`` against an independent float64 numpy reference.

Every statistic the attacks consume comes from this one function, so each is
checked on random logits and on positions where the target token's probability
p is within e^-30 or e^-80 of 1 or of 0, where a naive log(1 - p) breaks.

Legend: B batch, L positions, V vocabulary.
"""

import jax
import numpy as np
import pytest
from scipy.special import logsumexp

from seqmia_jax.scoring import STATISTICS, token_statistics

B, L, V = 3, 6, 13


def reference_statistics(logits_BxLxV: np.ndarray, tokens_BxL: np.ndarray) -> dict:
    """The same statistics in float64, through different formulas than the library's."""
    logits = logits_BxLxV.astype(np.float64)
    correct_BxL = np.take_along_axis(logits, tokens_BxL[..., None], axis=-1)[..., 0]
    # log p = -log(1 + sum_{v != x} e^(l_v - l_x)): log1p keeps p close to 1 exact,
    # and with |logit gaps| < 700 the sum cannot overflow in float64.
    is_correct = np.arange(V) == tokens_BxL[..., None]
    ratio_sum_BxL = np.where(is_correct, 0.0, np.exp(logits - correct_BxL[..., None])).sum(-1)
    logp_BxL = -np.log1p(ratio_sum_BxL)
    # log(1 - p) from log p (Maechler's log1mexp): expm1 near p = 1, log1p near p = 0.
    with np.errstate(divide="ignore"):  # np.where evaluates both branches everywhere
        log1mp_BxL = np.where(
            logp_BxL > -np.log(2.0), np.log(-np.expm1(logp_BxL)), np.log1p(-np.exp(logp_BxL))
        )
    # Moments of log p(v) under the model's own distribution p(.), by definition.
    logp_BxLxV = logits - logsumexp(logits, axis=-1, keepdims=True)
    p_BxLxV = np.exp(logp_BxLxV)
    mean_BxL = (p_BxLxV * logp_BxLxV).sum(-1)
    var_BxL = (p_BxLxV * (logp_BxLxV - mean_BxL[..., None]) ** 2).sum(-1)
    return {
        "loss": -logp_BxL,
        "logit": logp_BxL - log1mp_BxL,
        "mean_logp": mean_BxL,
        "std_logp": np.sqrt(var_BxL),
    }


def make_inputs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random logits with rows b = 1, 2 pushed to p close to 1 and close to 0."""
    rng = np.random.default_rng(seed)
    logits_BxLxV = rng.normal(scale=2.0, size=(B, L, V))
    tokens_BxL = rng.integers(0, V, (B, L))
    is_correct_BxLxV = np.arange(V) == tokens_BxL[..., None]
    gaps_L = np.array([30.0, 80.0, 30.0, 80.0, 15.0, 50.0])
    # Row 1: the target token leads every other logit by the gap (p = 1 - O(e^-gap)).
    logits_BxLxV[1] += np.where(is_correct_BxLxV[1], gaps_L[:, None], 0.0)
    # Row 2: the target token trails by the gap; at even positions one rival takes
    # all the mass, at odd ones the rest stay spread out (p = O(e^-gap) either way).
    rival_L = (tokens_BxL[2] + 1) % V
    lead_LxV = np.where(np.arange(L)[:, None] % 2 == 0, np.arange(V) == rival_L[:, None], True)
    logits_BxLxV[2] += np.where(is_correct_BxLxV[2], -gaps_L[:, None], 0.0)
    logits_BxLxV[2] += np.where(lead_LxV & ~is_correct_BxLxV[2], 5.0, 0.0)
    return logits_BxLxV.astype(np.float32), tokens_BxL.astype(np.int32)


@pytest.mark.parametrize("seed", [0, 1])
def test_token_statistics_match_float64_reference(seed):
    logits_BxLxV, tokens_BxL = make_inputs(seed)
    got = jax.jit(token_statistics)(logits_BxLxV, tokens_BxL)
    want = reference_statistics(logits_BxLxV, tokens_BxL)
    assert set(got) == set(STATISTICS) == set(want)
    for name in STATISTICS:
        assert got[name].shape == (B, L) and got[name].dtype == np.float32, name
        assert np.all(np.isfinite(got[name])), name
    # The extreme rows really are extreme: their reference losses span 1e-34 to 90.
    assert np.all(want["loss"][1] < 1e-4) and np.all(want["loss"][2] > 15.0)
    assert want["logit"][1].min() > 10.0 and want["logit"][2].max() < -10.0

    # Float32 holds a loss of 1e-34 as 0 (p rounds to 1), hence the small atol;
    # everywhere else the errors are about 1e-7 relative.
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-6, atol=1e-6)
    # The logit keeps relative accuracy up to +-90, where 1 - p (or p) is about
    # e^-90: neither float32 nor float64 can hold 1 - p itself there.
    np.testing.assert_allclose(got["logit"], want["logit"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got["mean_logp"], want["mean_logp"], rtol=1e-6, atol=1e-6)
    # std_logp falls to about 1e-15 where p is close to 1, and stays relatively
    # accurate there: Min-K%++ divides by it.
    np.testing.assert_allclose(got["std_logp"], want["std_logp"], rtol=1e-5, atol=1e-12)


def test_logit_is_log_odds_on_moderate_logits():
    """Away from the extremes, the logit statistic is plainly log p - log(1 - p)."""
    rng = np.random.default_rng(2)
    logits_BxLxV = rng.normal(size=(B, L, V)).astype(np.float32)
    tokens_BxL = rng.integers(0, V, (B, L)).astype(np.int32)
    got = jax.jit(token_statistics)(logits_BxLxV, tokens_BxL)
    logp_BxLxV = logits_BxLxV - logsumexp(logits_BxLxV.astype(np.float64), -1, keepdims=True)
    p_BxL = np.exp(np.take_along_axis(logp_BxLxV, tokens_BxL[..., None], -1)[..., 0])
    np.testing.assert_allclose(got["loss"], -np.log(p_BxL), rtol=1e-5)
    np.testing.assert_allclose(got["logit"], np.log(p_BxL / (1.0 - p_BxL)), rtol=1e-5, atol=1e-5)
    # Min-K%++ standardizes log p with these moments; a uniform model has std 0.
    uniform = jax.jit(token_statistics)(np.zeros((1, 2, V), np.float32), tokens_BxL[:1, :2])
    np.testing.assert_allclose(uniform["mean_logp"], -np.log(V), rtol=1e-6)
    np.testing.assert_allclose(uniform["std_logp"], 0.0, atol=1e-6)

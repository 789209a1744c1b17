"""The diagnostics of docs/study.md recover structure planted in synthetic statistics."""

import numpy as np

from seqmia_jax import analysis
from tests.synthetic import balanced_keep, gaussian_stats


def test_correlation_is_recovered():
    rng = np.random.default_rng(0)
    keep = balanced_keep(rng, 32, 2000)
    report = analysis.diagnose(gaussian_stats(rng, 32, 2000, 16, rho=0.6), keep)
    for side in ("correlation_out", "correlation_in"):
        assert abs(report[side]["lag1"] - 0.6) < 0.03  # AR(1) with rho 0.6
        assert report[side]["top_eigenvalue"] > 3.0


def test_shift_snr_recovers_planted_per_token_shifts():
    # Independent positions: the noise correction assumes no residual correlation.
    rng = np.random.default_rng(0)
    keep = balanced_keep(rng, 32, 2000)
    drop = np.where(rng.random((2000, 16)) < 0.25, 0.6, 0.0)  # sparse per-token shifts
    x = gaussian_stats(rng, 32, 2000, 16, rho=0.0, drop_NxL=drop, keep_SxN=keep)
    snr = analysis.diagnose(x, keep)["shift_snr"]
    assert abs(snr["mean_shift"] - 0.15) < 0.01  # E[drop] = 0.25 * 0.6
    # The true within-sample spread of the shifts: var of drop minus its sample means.
    true_within = float((drop - drop.mean(1, keepdims=True)).var())
    assert abs(snr["within_sample_signal_var"] - true_within) < 0.1 * true_within
    assert 0.0 < snr["eb_weight"] < 1.0


def test_independent_noise_has_no_correlation_and_no_shift():
    rng = np.random.default_rng(1)
    keep = balanced_keep(rng, 16, 3000)
    x = gaussian_stats(rng, 16, 3000, 8, rho=0.0)
    report = analysis.diagnose(x, keep)
    assert abs(report["correlation_out"]["mean_offdiag"]) < 0.01
    assert report["correlation_out"]["top_eigenvalue"] < 1.1
    assert report["shift_snr"]["eb_weight"] < 0.05


def test_in_mixture_flags_all_or_nothing_membership_only():
    rng = np.random.default_rng(2)
    keep = balanced_keep(rng, 32, 3000)
    x = gaussian_stats(rng, 32, 3000, 8, rho=0.0)
    same = analysis.in_mixture(x, keep)
    assert abs(same["in"]["excess_kurtosis"] - same["out"]["excess_kurtosis"]) < 0.05
    # A quarter of the IN models memorize a sample (a large drop), the rest do not.
    memorized = keep & (rng.random(keep.shape) < 0.25)
    mixed = analysis.in_mixture(x - 3.0 * memorized[..., None], keep)
    assert mixed["in"]["skewness"] < -0.3 and abs(mixed["out"]["skewness"]) < 0.05
    assert mixed["in"]["excess_kurtosis"] > mixed["out"]["excess_kurtosis"] + 0.1

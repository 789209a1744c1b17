"""The diagnostics of docs/study.md recover structure planted in synthetic statistics."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from seqmia_jax import analysis, membership
from seqmia_jax.attacks import ATTACKS, AttackInputs
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


def test_population_tpr_matches_the_closed_form_for_equal_shifts():
    from scipy.stats import norm

    for d, fpr in ((1.0, 1e-3), (2.5, 1e-2), (4.0, 1e-4)):
        want = norm.sf(norm.isf(fpr) - d)  # one Gaussian test, threshold at the FPR quantile
        assert abs(analysis.population_tpr(np.full(500, d * d), fpr) - want) < 1e-9
    # Samples without a shift never fire: half of them halves the TPR of a strong test.
    d2 = np.r_[np.full(500, 100.0), np.zeros(500)]
    assert abs(analysis.population_tpr(d2, 1e-3) - 0.5 * norm.sf(norm.isf(2e-3) - 10.0)) < 1e-9


def _planted(drop_NxL, num_models=64, seed=0):
    """Statistics of S models with ``drop_NxL`` planted on members, and the membership."""
    rng = np.random.default_rng(seed)
    keep = membership.make_membership(num_models, drop_NxL.shape[0], seed=seed)
    x = gaussian_stats(rng, num_models, *drop_NxL.shape, rho=0.0, drop_NxL=drop_NxL, keep_SxN=keep)
    return x, keep


def _ceiling_case(drop_NxL, num_models=64, fpr=1e-2, seed=0):
    """The ceiling report on planted per-token shifts, and the true TPRs at ``fpr``."""
    report = analysis.per_token_ceiling(*_planted(drop_NxL, num_models, seed), fprs=(fpr,))
    true_d2 = {"per_token": (drop_NxL**2).sum(1), "mean": drop_NxL.sum(1) ** 2 / drop_NxL.shape[1]}
    true_tpr = {k: analysis.population_tpr(d2, fpr) for k, d2 in true_d2.items()}
    return report, true_tpr, true_d2


def test_ceiling_is_one_for_equal_shifts():
    report, _, _ = _ceiling_case(np.full((2000, 16), 0.3))
    got = report["tpr_at_0.01"]
    assert abs(got["ratio"] - 1.0) < 0.1 and abs(got["ratio_shrunk"] - 1.0) < 0.1
    assert abs(report["median_dprime_mean"] - 1.2) < 0.1  # sqrt(16) * 0.3, unit variance


def test_ceiling_recovers_sparse_shifts():
    # A quarter of the tokens carry the whole shift: the per-token test gains 2x in d'.
    sparse_NxL = np.where(np.random.default_rng(3).random((2000, 16)) < 0.25, 0.6, 0.0)
    report, true_tpr, true_d2 = _ceiling_case(sparse_NxL)
    got = report["tpr_at_0.01"]
    for k, d2 in true_d2.items():
        assert abs(report[f"median_dprime_{k}"] - np.sqrt(np.median(d2))) < 0.15
    want = true_tpr["per_token"] / true_tpr["mean"]
    assert want > 2.0
    assert abs(got["ratio"] - want) < 0.1 * want
    assert abs(got["ratio_shrunk"] - want) < 0.25 * want


def test_ceiling_noise_inflates_the_raw_tails_and_shrinkage_removes_it():
    # 16 models, weak sparse shifts: each sample's per-token d'^2 sums 64 noisy terms.
    sparse_NxL = np.where(np.random.default_rng(1).random((1000, 64)) < 0.1, 0.5, 0.0)
    report, true_tpr, _ = _ceiling_case(sparse_NxL, num_models=16, fpr=1e-3, seed=1)
    got = report["tpr_at_0.001"]
    assert got["per_token"] > 2.0 * true_tpr["per_token"]  # the raw tails are noise
    assert abs(got["per_token_shrunk"] - true_tpr["per_token"]) < 0.5 * true_tpr["per_token"]


def test_out_tails_match_student_t_and_see_heavier_ones():
    rng = np.random.default_rng(6)
    num_models, num_samples, length = 16, 2000, 8
    keep_SxN = membership.make_membership(num_models, num_samples, 3)
    x = rng.standard_normal((num_models, num_samples, length)) + rng.normal(size=length)
    heavy_NxL = np.zeros((num_samples, length), bool)
    heavy_NxL[:, :4] = True
    x[:, :, :4] = rng.standard_t(2, size=(num_models, num_samples, 4))
    gauss = analysis.out_tails(x, keep_SxN, ~heavy_NxL)
    assert gauss["t_dof"] == 6 and gauss["num_terms"] == 8 * num_samples * 4
    # 64,000 Gaussian terms: the t_6 rates (0.024 beyond 3, 0.0025 beyond 5) within 15%
    assert abs(gauss["beyond_3"] / gauss["beyond_3_t"] - 1) < 0.15
    assert abs(gauss["beyond_5"] / gauss["beyond_5_t"] - 1) < 0.15
    heavy = analysis.out_tails(x, keep_SxN, heavy_NxL)
    assert heavy["beyond_5"] > 2 * heavy["beyond_5_t"]
    few = membership.make_membership(4, 10, 3)
    assert "skipped" in analysis.out_tails(np.zeros((4, 10, 8)), few, np.ones((10, 8), bool))
    # loo_out_z against a two-pass float64 reference, entry by entry
    z_SxNxL = analysis.loo_out_z(x[:, :50], keep_SxN[:, :50])
    for s in range(num_models):
        for n in range(50):
            if keep_SxN[s, n]:
                assert np.all(np.isnan(z_SxNxL[s, n]))
                continue
            others = x[~keep_SxN[:, n] & (np.arange(num_models) != s), n]
            sd = others.std(0, ddof=1) * np.sqrt(1 + 1 / len(others))
            np.testing.assert_allclose(z_SxNxL[s, n], (x[s, n] - others.mean(0)) / sd, rtol=1e-9)


def test_secret_positions_find_a_shift_planted_on_the_secret_alone():
    rng = np.random.default_rng(5)
    num_models, num_samples, length, shift = 32, 400, 16, 1.5
    keep_SxN = membership.make_membership(num_models, num_samples, 3)
    secret_NxL = np.zeros((num_samples, length), bool)
    starts_N = rng.integers(0, length - 3, num_samples)
    for n, start in enumerate(starts_N):
        secret_NxL[n, start : start + 3] = True
    x = rng.standard_normal((num_models, num_samples, length))
    x += shift * (keep_SxN[:, :, None] & secret_NxL[None])  # unit noise: SNR = shift
    report = analysis.secret_positions(x, keep_SxN, secret_NxL)
    assert report["num_secret_positions"] == 3
    assert abs(report["mean_shift_over_sd_secret"] - shift) < 0.05
    assert abs(report["mean_shift_over_sd_carrier"]) < 0.02
    # Restricted to the secret, the mean test and the per-token test coincide (equal shifts).
    ceiling = report["ceiling_secret_positions_only"]["tpr_at_0.001"]
    assert abs(ceiling["ratio_shrunk"] - 1) < 0.1
    # And the whole-sequence ceiling says per-token weighting gains over the mean.
    whole = analysis.per_token_ceiling(x, keep_SxN)["tpr_at_0.001"]
    assert whole["per_token_shrunk"] > 1.5 * whole["mean_shrunk"]


def _secrets_like(rng, carrier_shift, num_models=8, num_samples=200, length=8):
    """Stats with a strong shift at the last 2 (secret) positions and ``carrier_shift`` elsewhere."""
    keep = membership.make_membership(num_models, num_samples, int(rng.integers(1 << 30)))
    secret_NxL = np.zeros((num_samples, length), bool)
    secret_NxL[:, -2:] = True
    drop_NxL = np.where(secret_NxL, 2.0, carrier_shift)
    x = gaussian_stats(rng, num_models, num_samples, length, drop_NxL=drop_NxL, keep_SxN=keep)
    return x, keep, secret_NxL


def test_carrier_relabel_null_sees_no_signal_where_only_the_secret_moves():
    rng = np.random.default_rng(11)
    x, keep, secret_NxL = _secrets_like(rng, 0.0)
    got = analysis.carrier_relabel_null(x, keep, secret_NxL, num_relabels=19)
    # The true AUC is the attack's own, on the carrier positions only.
    inputs = AttackInputs(stats={"logit": x}, keep_SxN=keep, mask_NxL=~secret_NxL)
    scores = ATTACKS.get("lira")(inputs, np.arange(8), variance="fixed").scores_TxN
    assert got["auc"] == pytest.approx(roc_auc_score(keep.ravel(), scores.ravel()), abs=1e-12)
    # The secret's shift (2 sd, which the whole sequence would show) does not leak in.
    assert got["p_two_sided"] > 0.1 and abs(got["auc"] - 0.5) < 3 * got["null_sd"], got
    assert got["num_null_below"] + got["num_null_above"] >= 19


def test_carrier_relabel_null_flags_a_carrier_shift():
    rng = np.random.default_rng(12)
    x, keep, secret_NxL = _secrets_like(rng, 0.3)
    got = analysis.carrier_relabel_null(x, keep, secret_NxL, num_relabels=19)
    assert got["num_null_below"] == 19 and got["num_null_above"] == 0, got
    assert got["p_two_sided"] == pytest.approx(2 / 20) and got["auc"] > got["null_mean"]


def test_carrier_relabel_null_redraws_poisson_membership_for_poisson_designs():
    rng = np.random.default_rng(13)
    keep = membership.make_poisson_membership(10, 150, 5)
    x = gaussian_stats(rng, 10, 150, 6)
    secret_NxL = np.zeros((150, 6), bool)
    secret_NxL[:, -1] = True
    got = analysis.carrier_relabel_null(x, keep, secret_NxL, num_relabels=9)
    assert abs(got["null_mean"] - 0.5) < 0.03 and got["p_two_sided"] > 0.1, got

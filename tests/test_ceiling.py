"""The covariance ceilings and the correlation excess recover planted Gaussian structure."""

import numpy as np
import pytest

from seqmia_jax import analysis, membership
from tests.synthetic import ar1_chol, gaussian_stats


def _correlated(rng, keep_SxN, chol_NxLxL, drop_NxL):
    """x = mu[n] + chol[n] e, members + drop[n]: sample n's covariance is chol chol^T."""
    num_models = keep_SxN.shape[0]
    num_samples, length = drop_NxL.shape
    e = np.einsum("nlm,snm->snl", chol_NxLxL, rng.normal(size=(num_models, num_samples, length)))
    return rng.normal(size=(num_samples, length)) + e + keep_SxN[..., None] * drop_NxL


def _low_variance_case(num_models=128, num_samples=500, length=8, seed=0):
    """Each sample's covariance I - 0.9 v v^T (v its own random direction), shift 0.3 v."""
    rng = np.random.default_rng(seed)
    keep = membership.make_membership(num_models, num_samples, seed=seed)
    v = rng.normal(size=(num_samples, length))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    cov = np.eye(length) - 0.9 * v[:, :, None] * v[:, None, :]
    drop = 0.3 * v
    x = _correlated(rng, keep, np.linalg.cholesky(cov), drop)
    true = {
        "full": np.full(num_samples, 0.09 / 0.1),  # d along the direction of variance 0.1
        "diag": (drop**2 / np.einsum("nll->nl", cov)).sum(1),
    }
    return x, keep, true


def test_full_ceiling_recovers_a_shift_along_a_low_variance_direction():
    x, keep, true = _low_variance_case()
    report = analysis.covariance_ceiling(x, keep)
    got, se = report["mean_dprime2"], report["mean_dprime2_se"]
    # Unshrunk and inverse-Wishart corrected: unbiased for d^T C^-1 d.
    assert abs(got["full_unbiased"] - 0.9) < 3 * se["full_unbiased"] + 0.02
    assert abs(got["diag_unbiased"] - true["diag"].mean()) < 3 * se["diag_unbiased"] + 0.01
    assert got["full_unbiased"] > 5 * got["diag_unbiased"]  # the diagonal ceiling misses it
    # Shrinkage toward the diagonal keeps part of the gain: conservative, above the diagonal.
    assert 1.5 * got["diag"] < got["full"] < 0.9
    # The directions differ from sample to sample, so a pooled correlation sees none of it.
    assert abs(got["pooled"] / got["diag"] - 1) < 0.05
    for fpr in (1e-3, 1e-4):
        want = analysis.population_tpr(true["full"], fpr)
        tpr = report[f"tpr_at_{fpr:g}"]
        assert abs(tpr["full_unbiased_posterior"] - want) < 0.3 * want
        assert tpr["full_unbiased_over_diag_unbiased"] > 2.0


def test_full_ceiling_equals_the_diagonal_one_for_independent_positions():
    # The default audit's regime: 16 models, 12 residual degrees of freedom for 64 positions.
    rng = np.random.default_rng(1)
    keep = membership.make_membership(16, 1000, seed=1)
    drop = np.where(rng.random((1000, 64)) < 0.25, 0.6, 0.0)
    x = gaussian_stats(rng, 16, 1000, 64, rho=0.0, drop_NxL=drop, keep_SxN=keep)
    report = analysis.covariance_ceiling(x, keep)
    assert report["full_shrinkage_median"] > 0.95 and "full_unbiased" not in report["mean_dprime2"]
    old = analysis.per_token_ceiling(x, keep, fprs=(1e-3, 1e-4))
    for fpr in (1e-3, 1e-4):
        tpr = report[f"tpr_at_{fpr:g}"]
        assert tpr["diag"] == pytest.approx(old[f"tpr_at_{fpr:g}"]["per_token"], rel=1e-9)
        assert tpr["mean"] == pytest.approx(old[f"tpr_at_{fpr:g}"]["mean"], rel=1e-9)
        assert abs(tpr["full_over_diag"] - 1) < 0.03
        assert abs(tpr["pooled_over_diag"] - 1) < 0.03
    # With enough models the unshrunk estimate agrees too.
    keep = membership.make_membership(128, 500, seed=2)
    x = gaussian_stats(rng, 128, 500, 8, rho=0.0, drop_NxL=drop[:500, :8], keep_SxN=keep)
    got = analysis.covariance_ceiling(x, keep)
    ratio = got["tpr_at_0.001"]["full_unbiased_over_diag_unbiased_posterior"]
    assert abs(ratio - 1) < 0.1


def _shared_ar1_case(rho=0.6, num_models=64, num_samples=1000, length=16, seed=3):
    """AR(1) correlation shared by all samples, shift 0.15 (-1)^l: along low-variance directions."""
    rng = np.random.default_rng(seed)
    keep = membership.make_membership(num_models, num_samples, seed=seed)
    drop = np.tile(0.15 * (-1.0) ** np.arange(length), (num_samples, 1))
    x = gaussian_stats(rng, num_models, num_samples, length, rho=rho, drop_NxL=drop, keep_SxN=keep)
    cov = ar1_chol(length, rho) @ ar1_chol(length, rho).T
    return x, keep, float(drop[0] @ np.linalg.solve(cov, drop[0])), float((drop[0] ** 2).sum())


def test_pooled_ceiling_matches_the_closed_form_for_a_shared_correlation():
    x, keep, want, diag = _shared_ar1_case()
    report = analysis.covariance_ceiling(x, keep)
    df = report["degrees_of_freedom"]
    got, se = report["mean_dprime2"], report["mean_dprime2_se"]
    # Plug-in per-sample variances carry E[1 / v_hat] = df / (df - 2) / v.
    assert abs(got["pooled"] * (df - 2) / df - want) < 3 * se["pooled"] + 0.02 * want
    assert abs(got["diag"] * (df - 2) / df - diag) < 3 * se["diag"] + 0.02 * diag
    assert want > 3 * diag
    for fpr in (1e-3, 1e-4):
        assert report[f"tpr_at_{fpr:g}"]["pooled_over_diag_posterior"] > 2.0
    # The decorrelated control keeps the shifts and removes the correlation: no gain left.
    control = report["decorrelated"]
    assert abs(control["mean_dprime2"]["pooled"] / control["mean_dprime2"]["diag"] - 1) < 0.05
    spread = control["mean_dprime2_se"]["full_unbiased"]
    assert abs(control["mean_dprime2"]["full_unbiased"] - got["diag_unbiased"]) < 4 * spread


def test_permuted_labels_carry_no_shift():
    x, keep, _, _ = _shared_ar1_case()
    report = analysis.covariance_ceiling(x, keep)
    null = report["null_labels"]
    for name, value in null["mean_dprime2"].items():
        if name == "mean":  # the alternating shift sums to 0: the mean has none to lose
            continue
        assert abs(value) < 4 * null["mean_dprime2_se"][name], name
        assert report["mean_dprime2"][name] > 5 * null["mean_dprime2_se"][name], name
    assert null["tpr_at_0.001"]["pooled_posterior"] < 0.1 * report["tpr_at_0.001"]["pooled"]


def test_shrinkage_intensity_is_one_without_correlation_and_small_with_it():
    rng = np.random.default_rng(4)
    z = rng.normal(size=(200, 12, 32))  # 200 matrices from 12 observations of 32 positions
    corr = np.einsum("xsl,xsm->xlm", z, z) / 12
    corr /= (
        np.sqrt(np.einsum("xll->xl", corr))[:, :, None]
        * np.sqrt(np.einsum("xll->xl", corr))[:, None]
    )
    _, lam = analysis.shrink_to_diagonal(corr, 12)
    assert np.median(lam) > 0.95
    strong = z[:, :, :1] + 0.3 * z  # one common factor: correlation about 0.9
    corr = np.einsum("xsl,xsm->xlm", strong, strong)
    corr /= (
        np.sqrt(np.einsum("xll->xl", corr))[:, :, None]
        * np.sqrt(np.einsum("xll->xl", corr))[:, None]
    )
    shrunk, lam = analysis.shrink_to_diagonal(corr, 12)
    assert np.median(lam) < 0.2
    assert np.allclose(np.einsum("xll->xl", shrunk), 1.0)


def test_correlation_excess_is_null_for_independent_positions():
    rng = np.random.default_rng(5)
    keep = membership.make_membership(16, 1000, seed=5)
    report = analysis.correlation_excess(gaussian_stats(rng, 16, 1000, 32, rho=0.0), keep)
    assert abs(report["excess_in_se"]) < 3
    assert abs(report["rms_corr"] - 1 / np.sqrt(7)) < 0.01  # 8 OUT shadows: E r^2 = 1/7


def test_correlation_excess_finds_per_sample_correlations_that_pooling_averages_away():
    rng = np.random.default_rng(6)
    num_samples, length = 1000, 32
    keep = membership.make_membership(16, num_samples, seed=6)
    # AR(1) with rho = 0.4, each position's sign flipped at random per sample: every
    # pair's correlation is +-rho^lag by sample, so the pooled correlation is about 0.
    signs_NxL = np.where(rng.random((num_samples, length)) < 0.5, 1.0, -1.0)
    chol = signs_NxL[:, :, None] * ar1_chol(length, 0.4)
    x = _correlated(rng, keep, chol, np.zeros((num_samples, length)))
    report = analysis.correlation_excess(x, keep)
    lags = np.abs(np.arange(length)[:, None] - np.arange(length)[None])
    true_r2 = (0.4 ** (2 * lags))[lags > 0].mean()
    assert report["excess_in_se"] > 20
    # 8 OUT shadows: E r^2 - E r0^2 is about rho^2 (1 - 2 / 7) for small rho.
    assert abs(report["excess_r2"] - true_r2 * (1 - 2 / 7)) < 0.15 * true_r2
    assert report["share_surviving_pooling"] < 0.05


def test_diagnose_reports_the_covariance_ceiling_and_the_correlation_excess():
    rng = np.random.default_rng(7)
    keep = membership.make_membership(16, 300, seed=7)
    x = gaussian_stats(rng, 16, 300, 8, rho=0.3)
    report = analysis.diagnose(x, keep)
    assert set(report["covariance_ceiling"]) >= {"tpr_at_0.001", "tpr_at_0.0001", "null_labels"}
    assert report["correlation_excess"]["excess_in_se"] > 5
    assert not report["covariance_ceiling"]["subsampled"]
    assert analysis.covariance_ceiling(x, keep, max_samples=100)["num_samples"] == 100
    poisson = rng.random((16, 300)) < 0.5
    assert "skipped" in analysis.covariance_ceiling(x, poisson)


def test_the_study_table_renders_every_statistic_and_fpr():
    from experiments.study import covariance_ceiling_table

    rng = np.random.default_rng(8)
    keep = membership.make_membership(16, 200, seed=8)
    report = {"loss": analysis.diagnose(gaussian_stats(rng, 16, 200, 8, rho=0.3), keep)}
    lines = list(covariance_ceiling_table.table_lines({"run": report}))
    ceiling_rows = [line for line in lines if line.startswith("| run | loss | 0.")]
    assert len(ceiling_rows) == 2 and all(len(r.split("|")) == 17 for r in ceiling_rows)
    assert any(line.startswith("| run | loss | 200 of 200 |") for line in lines)

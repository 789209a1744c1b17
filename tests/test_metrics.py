"""ROC, AUC, TPR at low FPR and bootstrap CIs against sklearn and hand-made cases."""

import numpy as np
import pytest
from sklearn import metrics as skm

from seqmia_jax.evaluation import metrics


def _random_case(seed: int, ties: bool):
    rng = np.random.default_rng(seed)
    size = int(rng.integers(20, 400))
    labels = rng.random(size) < rng.uniform(0.2, 0.8)
    labels[:2] = [True, False]
    if ties:
        scores = rng.integers(0, 6, size).astype(float) + labels * rng.integers(0, 2, size)
    else:
        scores = rng.normal(size=size) + labels
    return scores, labels


def _sk_tpr_at(scores, labels, fpr_max):
    fpr, tpr, _ = skm.roc_curve(labels, scores, drop_intermediate=False)
    return tpr[fpr <= fpr_max].max()


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [False, True])
def test_roc_matches_sklearn(seed, ties):
    scores, labels = _random_case(seed, ties)
    fpr, tpr, thresholds = metrics.roc_curve(scores, labels)
    sk_fpr, sk_tpr, sk_thresholds = skm.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_array_equal(thresholds[1:], sk_thresholds[1:])
    assert metrics.auc(fpr, tpr) == pytest.approx(skm.roc_auc_score(labels, scores))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [False, True])
def test_per_target_and_pooled_tpr_match_sklearn(seed, ties):
    scores, labels = _random_case(seed, ties)
    fprs = (0.3, 0.1, 0.02, 0.0)
    row = metrics.per_target_metrics(scores, labels, fprs)[0]
    assert row[0] == pytest.approx(skm.roc_auc_score(labels, scores))
    for k, f in enumerate(fprs):
        assert row[1 + k] == pytest.approx(_sk_tpr_at(scores, labels, f))
    result = metrics.evaluate(scores, labels, fprs=fprs, num_bootstrap=0)
    for f in fprs:
        assert result["tpr_at_fpr"][metrics.fpr_key(f)]["tpr"] == pytest.approx(
            _sk_tpr_at(scores, labels, f)
        )


@pytest.mark.parametrize("ties", [False, True])
def test_weighted_curves_equal_sklearn_on_repeated_points(ties):
    """Integer resampling weights are the same as repeating each point."""
    scores, labels = _random_case(7, ties)
    rng = np.random.default_rng(0)
    weights = rng.integers(0, 4, scores.size)
    weights[:2] = 1
    sorted_scores = metrics._SortedScores(scores, labels)
    row = sorted_scores.curves(
        weights[sorted_scores.pos_P][None].astype(np.int32),
        weights[sorted_scores.neg_Q][None].astype(np.int32),
        (0.1, 0.01),
    )[0]
    rep_scores, rep_labels = np.repeat(scores, weights), np.repeat(labels, weights)
    assert row[0] == pytest.approx(skm.roc_auc_score(rep_labels, rep_scores))
    assert row[1] == pytest.approx(_sk_tpr_at(rep_scores, rep_labels, 0.1))
    assert row[2] == pytest.approx(_sk_tpr_at(rep_scores, rep_labels, 0.01))


def test_perfect_separation_and_resolution():
    labels = np.r_[np.ones(500, bool), np.zeros(500, bool)]
    scores = np.r_[np.linspace(2, 3, 500), np.linspace(0, 1, 500)]
    result = metrics.evaluate(scores, labels, num_bootstrap=20)
    assert result["auc"] == 1.0
    at = result["tpr_at_fpr"]
    assert at["0.01"]["tpr"] == 1.0 and at["0.01"]["resolved"]
    assert at["0.001"]["tpr"] == 1.0 and not at["0.001"]["resolved"]
    assert not at["0.0001"]["resolved"]
    assert at["0.001"]["num_negatives"] == 500
    assert result["auc_ci"] == [1.0, 1.0]


def test_tie_block_is_excluded_whole():
    # One member ties with a non-member at the top: FPR jumps from 0 to 1/2.
    scores = np.array([5.0, 5.0, 1.0, 0.0])
    labels = np.array([True, False, True, False])
    fpr, tpr, _ = metrics.roc_curve(scores, labels)
    np.testing.assert_allclose(fpr, [0, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(tpr, [0, 0.5, 1.0, 1.0])
    assert metrics.tpr_at_fpr(fpr, tpr, 0.4) == 0.0
    assert metrics.tpr_at_fpr(fpr, tpr, 0.5) == 1.0
    assert metrics.auc(fpr, tpr) == pytest.approx(0.625)


def test_one_false_positive_at_the_boundary():
    # 100 negatives: one above every member is FPR exactly 1e-2, allowed at 1e-2.
    labels = np.r_[np.ones(10, bool), np.zeros(100, bool)]
    scores = np.r_[np.arange(10.0), 100.0, -np.ones(99)]
    result = metrics.evaluate(scores, labels, num_bootstrap=0)
    assert result["tpr_at_fpr"]["0.01"]["tpr"] == 1.0
    assert result["tpr_at_fpr"]["0.01"]["false_positives"] == 1
    assert result["tpr_at_fpr"]["0.001"]["tpr"] == 0.0
    assert np.isnan(result["auc_ci"][0])


def test_is_resolved():
    assert metrics.is_resolved(10_000, 1e-4) and not metrics.is_resolved(9_999, 1e-4)
    assert metrics.is_resolved(1_000, 1e-3) and metrics.is_resolved(100, 1e-2)


def test_bootstrap_ci_contains_estimate_and_is_seeded():
    rng = np.random.default_rng(1)
    labels_TxN = rng.random((4, 3000)) < 0.5
    scores_TxN = rng.normal(size=labels_TxN.shape) + 0.8 * labels_TxN
    for unit in ("sample", "pair"):
        result = metrics.evaluate(scores_TxN, labels_TxN, num_bootstrap=100, seed=3, unit=unit)
        lo, hi = result["auc_ci"]
        assert lo < result["auc"] < hi and hi - lo < 0.05
        lo, hi = result["tpr_at_fpr"]["0.01"]["ci"]
        assert lo <= result["tpr_at_fpr"]["0.01"]["tpr"] <= hi
        again = metrics.evaluate(scores_TxN, labels_TxN, num_bootstrap=100, seed=3, unit=unit)
        assert again == result


def test_sample_bootstrap_resamples_columns():
    """Duplicated identical targets: resampling samples gives the one-target replicates."""
    rng = np.random.default_rng(2)
    labels_N = rng.random(300) < 0.5
    scores_N = rng.normal(size=300) + labels_N
    one = metrics.bootstrap(scores_N, labels_N, num_bootstrap=30, seed=5, unit="sample")
    two = metrics.bootstrap(
        np.stack([scores_N, scores_N]), np.stack([labels_N, labels_N]), num_bootstrap=30, seed=5
    )
    np.testing.assert_allclose(one, two)
    assert np.std(one[:, 0]) > 0


def test_per_target_spread():
    rng = np.random.default_rng(3)
    labels_TxN = rng.random((3, 500)) < 0.5
    scores_TxN = rng.normal(size=labels_TxN.shape) + np.array([[0.0], [1.0], [2.0]]) * labels_TxN
    spread = metrics.evaluate(scores_TxN, labels_TxN, num_bootstrap=0)["per_target"]
    aucs = [skm.roc_auc_score(y, s) for y, s in zip(labels_TxN, scores_TxN)]
    assert spread["auc"]["mean"] == pytest.approx(np.mean(aucs))
    assert spread["auc"]["std"] == pytest.approx(np.std(aucs))
    assert spread["auc"]["min"] == pytest.approx(min(aucs))
    assert spread["auc"]["max"] == pytest.approx(max(aucs))
    assert set(spread["tpr@0.001"]) == {"mean", "std", "min", "max"}


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        metrics.roc_curve([0.0, np.nan], [True, False])
    with pytest.raises(ValueError, match="both"):
        metrics.roc_curve([0.0, 1.0], [True, True])
    with pytest.raises(ValueError, match="unit"):
        metrics.bootstrap([0.0, 1.0], [True, False], unit="target")

"""sparse: top-k and higher criticism of per-token evidence, against a float64 reference,
under the null, and on a signal that only a few positions carry."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from seqmia_jax.attacks import ATTACKS, AttackInputError, AttackInputs
from tests import reference_attacks as ref
from tests.synthetic import balanced_keep, gaussian_stats
from tests.test_lira import tpr_at_fpr

S, N, L = 8, 10, 25  # k = 0.28 of 25 present positions is 7 (rounded before ceil)


def _inputs(seed=0, masked=True):
    rng = np.random.default_rng(seed)
    keep = balanced_keep(rng, S, N)
    x = (rng.normal(size=(S, N, L)) * rng.gamma(2.0, 0.5, L) + rng.normal(size=L)).astype(
        np.float32
    )
    x = x + 0.7 * keep[..., None] * (rng.random((N, L)) < 0.1)
    mask = None
    if masked:
        mask = rng.random((N, L)) < 0.7
        mask[:, 0] = True
        mask[3, :] = False
        mask[3, 4] = True  # one present position
        mask[5, :] = True
    return AttackInputs(stats={"logit": x, "loss": -x}, keep_SxN=keep, mask_NxL=mask)


def _run(inputs, targets=(0, 3, 7), **options):
    return ATTACKS.get("sparse")(inputs, np.asarray(targets), **options).scores_TxN


CASES = [
    {},
    {"k": 0.28},
    {"k": 1.0, "variance": "fixed"},
    {"mode": "online"},
    {"mode": "online", "variance": "fixed", "k": 0.5},
    {"agg": "hc"},
    {"agg": "hc", "alpha": 0.2, "variance": "fixed"},
    {"agg": "mean", "mode": "online"},
    {"null": "empirical"},
    {"null": "empirical", "variance": "fixed", "k": 0.28},
    {"null": "empirical", "agg": "hc"},
    {"null": "empirical", "agg": "hc", "mode": "online", "variance": "fixed"},
]


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("statistic", ["logit", "loss"])
@pytest.mark.parametrize("options", CASES)
def test_sparse_matches_the_reference(masked, statistic, options):
    inputs = _inputs(masked=masked)
    got = _run(inputs, statistic=statistic, **options)
    full = {
        "mode": "offline",
        "variance": "per_sample",
        "agg": "topk",
        "k": 0.1,
        "alpha": 0.5,
        "null": "gaussian",
    }
    full.update(options)
    want = ref.sparse(
        inputs.stats[statistic], inputs.keep_SxN, inputs.mask_NxL, (0, 3, 7), statistic, **full
    )
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_topk_of_everything_is_the_mean():
    inputs = _inputs()
    np.testing.assert_allclose(
        _run(inputs, k=1.0, mode="online"), _run(inputs, agg="mean", mode="online"), rtol=1e-12
    )


@pytest.mark.parametrize("num_models,num_samples", [(8, 12500), (16, 6250)])
def test_null_calibration(num_models, num_samples):
    # No membership signal; per-sample means, a per-model shift and AR(1) correlation,
    # and absent positions, as in the LiRA null test. 100k pooled scores.
    rng = np.random.default_rng(num_models)
    keep = balanced_keep(rng, num_models, num_samples)
    x = gaussian_stats(rng, num_models, num_samples, 8, shift_std=0.3, rho=0.5)
    mask = rng.random((num_samples, 8)) < 0.8
    mask[:, 0] = True
    inputs = AttackInputs(stats={"logit": x, "loss": -x}, keep_SxN=keep, mask_NxL=mask)
    y = keep.reshape(-1)
    for options in [
        {},
        {"variance": "fixed", "statistic": "loss"},
        {"mode": "online", "k": 0.25},
        {"mode": "online", "variance": "fixed"},
        {"agg": "hc"},
        {"agg": "hc", "variance": "fixed"},
        {"null": "empirical"},
        {"null": "empirical", "variance": "fixed", "statistic": "loss"},
        {"null": "empirical", "agg": "hc", "mode": "online", "variance": "fixed"},
    ]:
        s = _run(inputs, np.arange(num_models), **options).reshape(-1)
        auc = roc_auc_score(y, s)
        assert abs(auc - 0.5) < 0.015, (options, auc)
        assert tpr_at_fpr(y, s, 1e-2) <= 0.02, options


def test_the_empirical_null_is_calibrated_with_few_samples():
    # Secrets-sized ensembles (S = 16, N = 128): each null leaves the query's own sample
    # out, since the other models' fits there hold the target's row. 40 draws, 81,920 scores.
    labels, scores = [], {0: [], 1: []}
    for rep in range(40):
        rng = np.random.default_rng(100 + rep)
        keep = balanced_keep(rng, 16, 128)
        x = gaussian_stats(rng, 16, 128, 16, shift_std=0.3, rho=0.5)
        inputs = AttackInputs(stats={"logit": x}, keep_SxN=keep)
        labels.append(keep.reshape(-1))
        for i, options in enumerate([{}, {"agg": "hc", "variance": "fixed"}]):
            got = _run(inputs, np.arange(16), null="empirical", **options)
            scores[i].append(got.reshape(-1))
    y = np.concatenate(labels)
    for i, parts in scores.items():
        s = np.concatenate(parts)
        assert abs(roc_auc_score(y, s) - 0.5) < 0.01, i
        assert tpr_at_fpr(y, s, 1e-2) <= 0.015, i


def test_a_few_shifted_positions_are_found_better_than_by_the_mean():
    # Members' logit rises by 3 sd on 2 of 64 positions (a secret in ordinary text).
    rng = np.random.default_rng(0)
    num_models, num_samples, length = 16, 2000, 64
    keep = balanced_keep(rng, num_models, num_samples)
    planted = np.zeros((num_samples, length))
    for n in range(num_samples):
        planted[n, rng.choice(length, 2, replace=False)] = 3.0
    x = gaussian_stats(
        rng, num_models, num_samples, length, rho=0.0, drop_NxL=planted, keep_SxN=keep
    )
    inputs = AttackInputs(stats={"logit": x}, keep_SxN=keep)
    y = keep.reshape(-1)
    auc = {}
    for name, options in {
        "mean": {"agg": "mean", "variance": "fixed"},
        "topk": {"k": 2 / 64, "variance": "fixed"},
        "hc": {"agg": "hc", "variance": "fixed"},
    }.items():
        auc[name] = roc_auc_score(y, _run(inputs, np.arange(num_models), **options).ravel())
    assert auc["topk"] > auc["mean"] + 0.05, auc
    assert auc["hc"] > auc["mean"] + 0.05, auc


def test_the_empirical_null_tames_heavy_tailed_positions():
    # A secret: members' logit rises by 2 sd at the last 4 of 64 positions; the other
    # 60 carry heavy-tailed noise (Student t, 2 dof), whose largest z-scores outrank
    # the secret's under a Gaussian null. Each position's empirical null does not.
    rng = np.random.default_rng(0)
    num_models, num_samples, length = 16, 1000, 64
    keep = balanced_keep(rng, num_models, num_samples)
    noise = rng.normal(size=(num_models, num_samples, length))
    noise[:, :, :60] = rng.standard_t(2, size=(num_models, num_samples, 60))
    x = rng.normal(size=(num_samples, length)) + noise
    x[:, :, 60:] += 2.0 * keep[..., None]
    inputs = AttackInputs(stats={"logit": x.astype(np.float32)}, keep_SxN=keep)
    y = keep.reshape(-1)
    for options in [{"variance": "fixed"}, {"agg": "hc", "variance": "fixed"}]:
        tpr = {}
        for null in ("gaussian", "empirical"):
            s = _run(inputs, np.arange(num_models), null=null, **options).reshape(-1)
            tpr[null] = tpr_at_fpr(y, s, 1e-2)
        assert tpr["empirical"] > tpr["gaussian"] + 0.1, (options, tpr)


def test_bad_options():
    inputs = _inputs()
    with pytest.raises(AttackInputError, match="needs mode='offline' or null='empirical'"):
        _run(inputs, agg="hc", mode="online")
    with pytest.raises(AttackInputError, match="k"):
        _run(inputs, k=0.0)
    with pytest.raises(AttackInputError, match="alpha"):
        _run(inputs, agg="hc", alpha=1.5)

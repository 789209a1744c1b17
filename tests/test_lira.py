"""Univariate LiRA (`lira`) and Carlini's plot.py transcription (`carlini`)."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from seqmia_jax.attacks import ATTACKS, AttackInputError, AttackInputs, loo
from tests import reference_attacks as ref
from tests.synthetic import balanced_keep, gaussian_stats


def tpr_at_fpr(y, s, fpr_max):
    fpr, tpr, _ = roc_curve(y, s)
    return tpr[fpr <= fpr_max].max()


def _random_inputs(seed, masked, num_models=8, num_samples=12, length=4):
    rng = np.random.default_rng(seed)
    keep = balanced_keep(rng, num_models, num_samples)
    x = (rng.normal(size=(num_models, num_samples, length)) + rng.normal(size=length)).astype(
        np.float32
    )
    mask = None
    if masked:
        mask = rng.random((num_samples, length)) > 0.3
        mask[:, 0] = True
    return x, keep, mask


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("mode", ["online", "offline"])
@pytest.mark.parametrize("variance", ["per_sample", "fixed"])
@pytest.mark.parametrize("offline_test", ["one_sided", "two_sided"])
@pytest.mark.parametrize("statistic", ["logit", "loss"])
def test_lira_matches_naive_refit(masked, mode, variance, offline_test, statistic):
    x, keep, mask = _random_inputs(0, masked)
    inputs = AttackInputs(stats={statistic: x}, keep_SxN=keep, mask_NxL=mask)
    targets = np.arange(8)
    got = ATTACKS.get("lira")(
        inputs,
        targets,
        statistic=statistic,
        mode=mode,
        variance=variance,
        offline_test=offline_test,
    ).scores_TxN
    want = ref.lira(
        x, keep, mask, targets, mode, variance, offline_test, 1.0 if statistic == "logit" else -1.0
    )
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("mode", ["online", "offline"])
@pytest.mark.parametrize("fix_variance", [False, True])
@pytest.mark.parametrize("bug", [False, True])
def test_carlini_matches_plot_py(masked, mode, fix_variance, bug):
    # Unbalanced membership exercises plot.py's truncation to the smallest count.
    rng = np.random.default_rng(1)
    x, _, mask = _random_inputs(1, masked, num_models=9)
    keep = rng.random((9, 12)) < 0.5
    keep[:2], keep[2:4] = True, False
    inputs = AttackInputs(stats={"logit": x}, keep_SxN=keep, mask_NxL=mask)
    targets = np.array([0, 3, 8])
    got = ATTACKS.get("carlini")(
        inputs, targets, mode=mode, fix_variance=fix_variance, fixed_variance_bug=bug
    ).scores_TxN
    want = ref.carlini(x, keep, mask, targets, mode, fix_variance, bug)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=0)


@pytest.mark.parametrize("num_models,num_samples", [(8, 12500), (16, 6250), (64, 1600)])
def test_null_calibration(num_models, num_samples):
    # No membership signal, but per-sample means, a per-model shift and AR(1)
    # correlation, as real shadow statistics have. >= 100k pooled scores.
    rng = np.random.default_rng(num_models)
    keep = balanced_keep(rng, num_models, num_samples)
    x = gaussian_stats(rng, num_models, num_samples, 4, shift_std=0.3, rho=0.5)
    inputs = AttackInputs(stats={"logit": x, "loss": -x}, keep_SxN=keep)
    y = keep.reshape(-1)
    for options in [
        {},
        {"variance": "fixed"},
        {"mode": "offline"},
        {"mode": "offline", "statistic": "loss"},
    ]:
        s = ATTACKS.get("lira")(inputs, np.arange(num_models), **options).scores_TxN.reshape(-1)
        auc = roc_auc_score(y, s)
        assert abs(auc - 0.5) < 0.015, (options, auc)
        assert tpr_at_fpr(y, s, 1e-2) <= 0.02, options


def test_naive_leave_one_out_is_miscalibrated():
    # The trap the equal-count rule avoids: a plain LOO fit scores members low.
    rng = np.random.default_rng(3)
    keep = balanced_keep(rng, 8, 20000)
    a = rng.normal(size=(8, 20000))
    scores = []
    for t in range(8):
        lp = {}
        for side, on in (("in", keep), ("out", ~keep)):
            use = on.copy()
            use[t] = False
            k = use.sum(0)
            mu = (a * use).sum(0) / k
            sd = np.sqrt((((a - mu) ** 2) * use).sum(0) / k)
            lp[side] = -0.5 * ((a[t] - mu) / sd) ** 2 - np.log(sd)
        scores.append(lp["in"] - lp["out"])
    assert roc_auc_score(keep.reshape(-1), np.reshape(scores, -1)) < 0.47


def permuted_designation(monkeypatch, keep, perm):
    """The equal-count rule's designated shadows are drawn per sample index;
    carry the original draw along with the permutation."""
    chosen = loo.designated_shadows(keep)
    monkeypatch.setattr(
        loo, "designated_shadows", lambda k, seed=0: {s: c[perm] for s, c in chosen.items()}
    )


def test_permuting_samples_permutes_scores(monkeypatch):
    x, keep, mask = _random_inputs(4, True, num_samples=20)
    perm = np.random.default_rng(0).permutation(20)
    cases = [("lira", {}), ("lira", {"mode": "offline"}), ("carlini", {})]
    base = [
        ATTACKS.get(n)(AttackInputs({"logit": x}, keep, mask), np.arange(8), **o).scores_TxN
        for n, o in cases
    ]
    permuted_designation(monkeypatch, keep, perm)
    for (name, options), want in zip(cases, base):
        moved = ATTACKS.get(name)(
            AttackInputs({"logit": x[:, perm]}, keep[:, perm], mask[perm]),
            np.arange(8),
            **options,
        ).scores_TxN
        np.testing.assert_allclose(moved, want[:, perm], rtol=1e-9, atol=1e-9)


def test_per_sample_constant_leaves_online_scores_unchanged():
    x, keep, mask = _random_inputs(5, True)
    shift = np.random.default_rng(1).normal(size=(1, 12, 1)).astype(np.float32) * 10
    for variance in ["per_sample", "fixed"]:
        a = ATTACKS.get("lira")(
            AttackInputs({"logit": x}, keep, mask), np.arange(8), variance=variance
        ).scores_TxN
        b = ATTACKS.get("lira")(
            AttackInputs({"logit": x + shift}, keep, mask), np.arange(8), variance=variance
        ).scores_TxN
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_bad_options_raise():
    x, keep, mask = _random_inputs(6, False)
    inputs = AttackInputs({"logit": x}, keep, mask)
    with pytest.raises(AttackInputError):
        ATTACKS.get("lira")(inputs, np.arange(2), mode="sideways")
    with pytest.raises(AttackInputError):
        ATTACKS.get("lira")(inputs, np.arange(2), bogus=1)
    with pytest.raises(AttackInputError):
        ATTACKS.get("carlini")(inputs, np.arange(2), statistic="loss")

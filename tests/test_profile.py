"""Profile LiRA against a naive float64 reference, lira itself, a planted profile, and the null."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from seqmia_jax.attacks import ATTACKS, AttackInputError, AttackInputs
from tests.synthetic import balanced_keep, gaussian_stats
from tests.test_lira import tpr_at_fpr


def _inputs(seed, num_models=8, num_samples=40, length=6, masked=False):
    rng = np.random.default_rng(seed)
    keep = balanced_keep(rng, num_models, num_samples)
    x = gaussian_stats(rng, num_models, num_samples, length, shift_std=0.2, rho=0.3)
    x = x - 0.3 * keep[..., None] * (rng.random((num_samples, length)) < 0.5)
    mask = rng.random((num_samples, length)) < 0.8 if masked else None
    if masked:
        mask[:, 0] = True
    return AttackInputs(stats={"logit": -x, "loss": x}, keep_SxN=keep, mask_NxL=mask)


def _naive_weights(x_SxNxL, keep_SxN, mask_NxL, t, bins):
    """Per-token moments by explicit loops over the other models, then per-bin means."""
    num_models, num_samples, length = x_SxNxL.shape
    others = [s for s in range(num_models) if s != t]
    feature = np.zeros((num_samples, length))
    shift = np.zeros((num_samples, length))
    noise = np.zeros((num_samples, length))
    for n in range(num_samples):
        ins = [s for s in others if keep_SxN[s, n]]
        outs = [s for s in others if not keep_SxN[s, n]]
        for position in range(length):
            values_in = np.array([x_SxNxL[s, n, position] for s in ins], dtype=np.float64)
            values_out = np.array([x_SxNxL[s, n, position] for s in outs], dtype=np.float64)
            feature[n, position] = np.concatenate([values_in, values_out]).mean()
            shift[n, position] = values_in.mean() - values_out.mean()
            noise[n, position] = 0.5 * (values_in.var(ddof=1) + values_out.var(ddof=1))
    edges = np.quantile(feature[mask_NxL], np.linspace(0, 1, bins + 1)[1:-1])
    bin_of = np.searchsorted(edges, feature, side="right")
    weights = np.zeros((num_samples, length))
    for g in range(bins):
        members = mask_NxL & (bin_of == g)
        if members.any():
            weights[members] = shift[members].mean() / noise[members].mean()
    return weights


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize(
    "options",
    [{}, {"bins": 3}, {"variance": "fixed"}, {"mode": "offline"}, {"statistic": "loss"}],
)
def test_profile_is_lira_on_the_naively_weighted_mean(masked, options):
    inputs = _inputs(1, masked=masked)
    statistic = options.get("statistic", "logit")
    x = np.asarray(inputs.stats[statistic], np.float64)
    mask = np.ones(x.shape[1:], bool) if inputs.mask_NxL is None else inputs.mask_NxL
    targets = np.array([0, 3, 7])
    got = ATTACKS.get("profile")(inputs, targets, **options).scores_TxN
    lira_options = {k: v for k, v in options.items() if k not in ("bins", "statistic")}
    for row, t in enumerate(targets):
        weights = _naive_weights(x, inputs.keep_SxN, mask, t, options.get("bins", 16))
        a_SxNx1 = (x * weights).sum(-1, keepdims=True) / x.shape[2]
        projected = AttackInputs(stats={"logit": a_SxNx1}, keep_SxN=inputs.keep_SxN)
        want = ATTACKS.get("lira")(projected, np.array([t]), **lira_options).scores_TxN[0]
        np.testing.assert_allclose(got[row], want, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("statistic", ["logit", "loss"])
@pytest.mark.parametrize("mode", ["online", "offline"])
def test_one_bin_is_lira_on_the_plain_mean(statistic, mode):
    # One bin: constant weights, a global rescaling (and sign) LiRA is invariant to.
    inputs = _inputs(2)
    targets = np.arange(8)
    got = ATTACKS.get("profile")(inputs, targets, bins=1, statistic=statistic, mode=mode)
    want = ATTACKS.get("lira")(inputs, targets, statistic=statistic, mode=mode)
    np.testing.assert_allclose(got.scores_TxN, want.scores_TxN, rtol=1e-6, atol=1e-8)


def test_a_shift_on_hard_tokens_is_found_better_than_by_the_plain_mean():
    # Members' loss drops only on the hardest fifth of the tokens: the regime the
    # profile models. The plain mean dilutes that drop over all L positions.
    rng = np.random.default_rng(5)
    num_models, num_samples, length = 16, 4000, 32
    keep = balanced_keep(rng, num_models, num_samples)
    difficulty = rng.gamma(2.0, 1.0, size=(num_samples, length))
    hard = difficulty > np.quantile(difficulty, 0.8)
    loss = difficulty + 0.5 * rng.normal(size=(num_models, num_samples, length))
    loss = loss - 0.25 * keep[..., None] * hard
    inputs = AttackInputs(stats={"loss": loss, "logit": -loss}, keep_SxN=keep)
    targets = np.arange(num_models)
    y = keep.reshape(-1)
    results = {}
    for name in ("profile", "lira"):
        s = ATTACKS.get(name)(inputs, targets, statistic="loss").scores_TxN.reshape(-1)
        results[name] = (roc_auc_score(y, s), tpr_at_fpr(y, s, 1e-2))
    assert results["profile"][0] > results["lira"][0] + 0.03, results
    assert results["profile"][1] > 1.5 * results["lira"][1], results


@pytest.mark.parametrize("num_models", [8, 16])
def test_null_calibration(num_models):
    rng = np.random.default_rng(num_models)
    keep = balanced_keep(rng, num_models, 12000)
    x = gaussian_stats(rng, num_models, 12000, 8, shift_std=0.3, rho=0.5)
    inputs = AttackInputs(stats={"logit": x, "loss": -x}, keep_SxN=keep)
    y = keep.reshape(-1)
    for options in [{}, {"variance": "fixed"}, {"mode": "offline"}]:
        s = ATTACKS.get("profile")(inputs, np.arange(num_models), **options).scores_TxN
        auc = roc_auc_score(y, s.reshape(-1))
        assert abs(auc - 0.5) < 0.015, (options, auc)


def test_bad_options_and_too_few_shadows():
    inputs = _inputs(3)
    with pytest.raises(AttackInputError, match="bins"):
        ATTACKS.get("profile")(inputs, np.array([0]), bins=0)
    with pytest.raises(AttackInputError, match="unknown option"):
        ATTACKS.get("profile")(inputs, np.array([0]), cov="diag")
    small = _inputs(4, num_models=4)  # 2 IN and 2 OUT per sample: 1 left on the target's side
    with pytest.raises(AttackInputError, match="at least 2 IN and 2 OUT"):
        ATTACKS.get("profile")(small, np.array([0]))

"""Profile LiRA against a naive float64 reference, lira itself, planted profiles, and the null."""

import dataclasses
import json
import re

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
    token = rng.integers(ord("0"), ord("9") + 1, size=(num_samples, length), dtype=np.uint8)
    text = [row.tobytes() for row in token]
    return AttackInputs(stats={"logit": -x, "loss": x}, keep_SxN=keep, mask_NxL=mask, text=text)


def _auc(inputs, **options):
    y = inputs.keep_SxN.reshape(-1)
    targets = np.arange(inputs.num_models)
    return roc_auc_score(y, ATTACKS.get("profile")(inputs, targets, **options).scores_TxN.ravel())


def _naive_weights(x_SxNxL, keep_SxN, mask_NxL, t, bins, token_NxL=None, by_position=False):
    """Per-token moments by explicit loops over the other models, then per-bin means.

    With token_NxL, a token's bin is its difficulty bin * 256 + its token id;
    with position, that bin * L + its position.
    """
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
    if token_NxL is not None:
        bin_of = 256 * bin_of + token_NxL
    if by_position:
        bin_of = length * bin_of + np.arange(length)
    weights = np.zeros((num_samples, length))
    for g in np.unique(bin_of[mask_NxL]):
        members = mask_NxL & (bin_of == g)
        weights[members] = shift[members].mean() / noise[members].mean()
    return weights


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"bins": 3},
        {"variance": "fixed"},
        {"mode": "offline"},
        {"statistic": "loss"},
        {"by": "token"},
        {"by": "token", "mode": "offline"},
        {"by": "difficulty+token", "bins": 3},
        {"by": "position"},
        {"by": "difficulty+position", "bins": 2},
        {"by": "difficulty+token+position", "bins": 2},
    ],
)
def test_profile_is_lira_on_the_naively_weighted_mean(masked, options):
    inputs = _inputs(1, masked=masked)
    statistic = options.get("statistic", "logit")
    by = options.get("by", "difficulty")
    x = np.asarray(inputs.stats[statistic], np.float64)
    mask = np.ones(x.shape[1:], bool) if inputs.mask_NxL is None else inputs.mask_NxL
    bins = options.get("bins", 16) if "difficulty" in by else 1
    token = np.array([list(row) for row in inputs.text]) if "token" in by else None
    position = "position" in by
    targets = np.array([0, 3, 7])
    got = ATTACKS.get("profile")(inputs, targets, **options).scores_TxN
    lira_options = {k: v for k, v in options.items() if k not in ("bins", "by", "statistic")}
    for row, t in enumerate(targets):
        weights = _naive_weights(x, inputs.keep_SxN, mask, t, bins, token, position)
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


@pytest.mark.parametrize("masked", [False, True])
def test_one_token_id_adds_nothing_to_difficulty(masked):
    inputs = _inputs(6, masked=masked)
    inputs = dataclasses.replace(inputs, text=[b"a" * 6] * inputs.num_samples)
    targets = np.arange(8)
    want = ATTACKS.get("profile")(inputs, targets, bins=4)
    got = ATTACKS.get("profile")(inputs, targets, bins=4, by="difficulty+token")
    np.testing.assert_allclose(got.scores_TxN, want.scores_TxN, rtol=1e-12, atol=1e-12)
    # 1024 bins: only the nonempty ones are reported, with their ids.
    profile, want_profile = (out.diagnostics["profile_first_target"] for out in (got, want))
    assert profile["bin"] == [256 * g + ord("a") for g in range(4)]
    np.testing.assert_allclose(profile["delta"], want_profile["delta"], rtol=1e-12)
    assert profile["size"] == want_profile["size"]
    json.dumps(got.diagnostics)


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


def test_a_shift_on_one_token_id_is_found_by_token_not_by_difficulty():
    # Members' loss drops only where the token is '7', at random positions: '7'
    # is as hard as any other digit, so no difficulty bin singles it out.
    rng = np.random.default_rng(7)
    num_models, num_samples, length = 16, 1000, 32
    keep = balanced_keep(rng, num_models, num_samples)
    token = rng.integers(ord("0"), ord("9") + 1, size=(num_samples, length), dtype=np.uint8)
    difficulty = rng.gamma(2.0, 1.0, size=(num_samples, length))
    loss = difficulty + 0.5 * rng.normal(size=(num_models, num_samples, length))
    loss = loss - 0.25 * keep[..., None] * (token == ord("7"))
    text = [row.tobytes() for row in token]
    inputs = AttackInputs(stats={"loss": loss, "logit": -loss}, keep_SxN=keep, text=text)
    auc = {by: _auc(inputs, statistic="loss", by=by) for by in ("difficulty", "token")}
    assert auc["token"] > auc["difficulty"] + 0.08, auc


@pytest.mark.parametrize("num_models", [8, 16])
def test_null_calibration(num_models):
    rng = np.random.default_rng(num_models)
    keep = balanced_keep(rng, num_models, 12000)
    x = gaussian_stats(rng, num_models, 12000, 8, shift_std=0.3, rho=0.5)
    text = [row.tobytes() for row in rng.integers(0, 256, size=(12000, 8), dtype=np.uint8)]
    inputs = AttackInputs(stats={"logit": x, "loss": -x}, keep_SxN=keep, text=text)
    for options in [{}, {"variance": "fixed"}, {"mode": "offline"}, {"by": "token"}]:
        auc = _auc(inputs, **options)
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


def test_by_token_needs_one_byte_per_position():
    inputs = _inputs(3)
    with pytest.raises(AttackInputError, match="option by="):
        ATTACKS.get("profile")(inputs, np.array([0]), by="position+token")
    for text in (None, [row[:-1] for row in inputs.text]):
        bad = dataclasses.replace(inputs, text=text)
        for by in ("token", "difficulty+token"):
            with pytest.raises(AttackInputError, match=re.escape(f"by={by} needs the raw bytes")):
                ATTACKS.get("profile")(bad, np.array([0]), by=by)
        ATTACKS.get("profile")(bad, np.array([0]))  # by=difficulty never reads the text

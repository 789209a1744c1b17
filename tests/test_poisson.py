"""Poisson inclusion membership: the draw, training on unequal training sets, and the
attacks' null calibration under it.

Legend: S shadow models, N samples, L positions, M rows per model.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from seqmia_jax import membership
from seqmia_jax.attacks import ATTACKS, AttackInputError, AttackInputs
from seqmia_jax.attacks.runner import resolve_attack, score_attacks
from seqmia_jax.config import ConfigError
from seqmia_jax.data import load_dataset
from seqmia_jax.ensemble import dp, sharding, steps
from seqmia_jax.ensemble.train import init_ensemble
from seqmia_jax.membership import PAD
from seqmia_jax.privacy import accounting
from tests import reference_attacks as ref
from tests.helpers import tiny_config
from tests.synthetic import gaussian_stats
from tests.test_sequence import MODELS

# --- the draw -----------------------------------------------------------------------------------


def test_poisson_membership_is_reproducible_from_its_seed_and_independent():
    keep_SxN = membership.make_poisson_membership(16, 2000, seed=3)
    assert keep_SxN.dtype == bool and keep_SxN.shape == (16, 2000)
    np.testing.assert_array_equal(keep_SxN, membership.make_poisson_membership(16, 2000, seed=3))
    assert not np.array_equal(keep_SxN, membership.make_poisson_membership(16, 2000, seed=4))
    assert keep_SxN.mean() == pytest.approx(0.5, abs=0.01)  # sd 0.003
    # Independent entries: IN counts are Binomial(16, 1/2) (variance 4; the balanced design's
    # is 0), and no two models' training sets are correlated (sd of a correlation 0.022).
    assert keep_SxN.sum(0).var() == pytest.approx(4.0, rel=0.15)
    corr_SxS = np.corrcoef(keep_SxN)
    assert np.abs(corr_SxS[~np.eye(16, dtype=bool)]).max() < 0.1
    # A stream of its own: it agrees with the balanced draw of the same seed half the time.
    balanced_SxN = membership.make_membership(16, 2000, seed=3)
    assert np.mean(keep_SxN == balanced_SxN) == pytest.approx(0.5, abs=0.02)
    np.testing.assert_array_equal(membership.draw_membership("poisson", 16, 2000, 3), keep_SxN)
    np.testing.assert_array_equal(membership.draw_membership("balanced", 16, 2000, 3), balanced_SxN)


def test_check_membership_accepts_the_poisson_design_only_where_named():
    keep_SxN = membership.make_poisson_membership(8, 50, seed=0)
    membership.check_membership(keep_SxN, design="poisson")
    with pytest.raises(ConfigError, match="not IN for exactly S/2 models"):
        membership.check_membership(keep_SxN)
    with pytest.raises(ConfigError, match="expected a 2-D bool array"):
        membership.check_membership(keep_SxN.astype(int), design="poisson")


def test_padded_rows_hold_each_model_s_samples_then_padding():
    keep_SxN = membership.make_poisson_membership(6, 40, seed=1)
    rows_SxM = membership.padded_in_indices(keep_SxN)
    assert rows_SxM.shape == (6, keep_SxN.sum(1).max()) and rows_SxM.dtype == np.int32
    assert membership.is_padded(rows_SxM)
    for s in range(6):
        size = int(keep_SxN[s].sum())
        np.testing.assert_array_equal(rows_SxM[s, :size], np.flatnonzero(keep_SxN[s]))
        assert np.all(rows_SxM[s, size:] == PAD)
    balanced_SxN = membership.make_membership(6, 40, seed=1)
    np.testing.assert_array_equal(
        membership.padded_in_indices(balanced_SxN), membership.in_indices(balanced_SxN)
    )
    assert not membership.is_padded(membership.in_indices(balanced_SxN))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({}, "membership='poisson' with seed=0: with target"),  # S = 8: samples lack shadows
        ({"num_shadow_models": 16, "attack.num_shadows": 4}, "complementary pairs of models"),
        ({"membership": "bernoulli"}, "membership must be one of balanced, poisson"),
    ],
)
def test_impossible_poisson_settings_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config("kjv_dp", **{"membership": "poisson", **overrides})


# --- training on unequal training sets ---------------------------------------------------------


def test_every_model_sees_each_of_its_samples_once_per_epoch_with_unequal_sets():
    keep_SxN = membership.make_poisson_membership(8, 64, seed=0)
    rows_SxM = membership.padded_in_indices(keep_SxN)
    sched = steps.Schedule(5, rows_SxM.shape[1], epochs=2, padded=True)
    assert sched.steps_per_epoch == -(-rows_SxM.shape[1] // 5)  # shared by every model
    sizes_S = keep_SxN.sum(1)
    key = jax.random.key(2)
    for s in (int(np.argmin(sizes_S)), int(np.argmax(sizes_S))):
        visits = []
        for epoch in range(2):
            order = steps.epoch_order(key, epoch, sched)
            seen = []
            for i in range(sched.steps_per_epoch):
                idx_B, weight_B = steps.batch_indices(
                    order, jnp.asarray(rows_SxM[s]), epoch * sched.steps_per_epoch + i, sched
                )
                idx_B, weight_B = np.asarray(idx_B), np.asarray(weight_B)
                assert np.all((0 <= idx_B) & (idx_B < 64))  # padding reads a real row
                seen += idx_B[weight_B > 0].tolist()
            assert sorted(seen) == np.flatnonzero(keep_SxN[s]).tolist()
            visits.append(seen)
        assert visits[0] != visits[1]


@pytest.fixture(scope="module")
def one_model():
    cfg = tiny_config()
    dataset = load_dataset(cfg.data)
    tx = optax.adam(1e-2)
    mesh = sharding.make_mesh(cfg.num_shadow_models, jax.devices()[:1])
    graphdef, state_S = init_ensemble(cfg, dataset, mesh, tx)
    state = jax.tree.map(lambda x: np.asarray(x)[0], state_S)
    return graphdef, tx, state, np.asarray(dataset.tokens_NxL, np.int32)


def test_a_batch_of_padding_only_leaves_the_model_unchanged(one_model):
    # Batch 1, one real row among four slots: one real step and three of padding, in a
    # random order. Adam on a zero gradient would still move the model (momentum, and its
    # step count changes the bias correction), so skipping them is what makes this equal
    # one step on the real row.
    graphdef, tx, state, tokens_NxL = one_model
    padded = steps.Schedule(1, 4, epochs=1, padded=True)
    single = steps.Schedule(1, 1, epochs=1)
    rows = np.array([5, PAD, PAD, PAD], np.int32)
    got, losses = jax.jit(steps.make_model_chunk(graphdef, tx, padded, 4))(
        tokens_NxL, state, rows, jnp.int32(0)
    )
    want, _ = jax.jit(steps.make_model_chunk(graphdef, tx, single, 1))(
        tokens_NxL, state, rows[:1], jnp.int32(0)
    )
    assert np.sum(np.asarray(losses) > 0) == 1  # three steps had no real row
    for a, b in zip(jax.tree.leaves(got["params"]), jax.tree.leaves(want["params"])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


def test_poisson_batches_never_include_padding():
    rows_M = jnp.asarray(np.r_[np.arange(100, 160), np.full(40, PAD)], jnp.int32)
    draw = jax.jit(lambda k: dp.poisson_batch(k, rows_M, 0.2, 40, padded=True))
    counts, sizes = np.zeros(60), []
    for i in range(400):
        rows_P, mask_P = draw(jax.random.key(i))
        rows_P, mask_P = np.asarray(rows_P), np.asarray(mask_P).astype(bool)
        assert np.all(rows_P >= 0)
        counts[rows_P[mask_P] - 100] += 1
        sizes.append(mask_P.sum())
    # Every real row at rate q: batches of Binomial(60, 0.2), mean 12 (sd 2 / sqrt(400)).
    assert np.mean(sizes) == pytest.approx(12.0, abs=0.4)
    assert counts.min() > 50 and counts.max() < 115  # each row about 80 times


def test_the_sample_rate_under_unequal_sets_is_batch_over_half_the_pool():
    cfg = tiny_config("kjv_dp", membership="poisson", num_shadow_models=16)
    total = 10
    settings, record = dp.settings_for(cfg.train, 37, total, nominal_rows=32.0)
    rate = cfg.train.batch_size / 32
    assert settings.sample_rate(37) == rate and record["sample_rate"] == rate
    assert record["nominal_rows"] == 32.0
    assert record["epsilon"] == pytest.approx(
        accounting.epsilon(record["noise_multiplier"], rate, total, cfg.train.dp_delta)
    )
    # The padded batch is sized for the largest training set at that rate.
    assert settings.padded_batch == dp.padded_batch(8, 37, total, settings.microbatch, rate)
    assert record["overflow_probability"] <= dp.OVERFLOW_PROBABILITY
    balanced, balanced_record = dp.settings_for(cfg.train, 32, total)
    assert balanced.rate == 0.0 and "nominal_rows" not in balanced_record


# --- attacks under unequal IN/OUT counts -------------------------------------------------------


def _unequal_keep(seed, num_models=10, num_samples=12):
    """A Poisson draw whose every sample keeps 3 IN and 3 OUT models (redrawn columns)."""
    rng = np.random.default_rng(seed)
    keep_SxN = rng.random((num_models, num_samples)) < 0.5
    for n in range(num_samples):
        while not 3 <= keep_SxN[:, n].sum() <= num_models - 3:
            keep_SxN[:, n] = rng.random(num_models) < 0.5
    assert len(set(keep_SxN.sum(0))) > 1
    return keep_SxN


def _target_only(keep_SxN, t, n):
    """Leave-one-out under independent inclusion: only the target leaves its side."""
    on = keep_SxN[:, n]
    return {
        "in": [s for s in np.flatnonzero(on) if s != t],
        "out": [s for s in np.flatnonzero(~on) if s != t],
    }


@pytest.mark.parametrize("mode", ["online", "offline"])
@pytest.mark.parametrize("variance", ["per_sample", "fixed"])
def test_lira_under_unequal_counts_matches_a_target_only_refit(monkeypatch, mode, variance):
    rng = np.random.default_rng(0)
    keep_SxN = _unequal_keep(0)
    x = rng.normal(size=(10, 12, 4)).astype(np.float32)
    out = ATTACKS.get("lira")(
        AttackInputs({"logit": x}, keep_SxN), np.arange(10), mode=mode, variance=variance
    )
    got = out.scores_TxN
    assert out.diagnostics["equal_count_rule"] is False  # results.json says which fit ran
    monkeypatch.setattr(ref, "side_sets", _target_only)
    want = ref.lira(x, keep_SxN, None, np.arange(10), mode, variance, "one_sided", 1.0)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", ["online", "offline"])
@pytest.mark.parametrize("variance", ["per_sample", "fixed"])
def test_a_sample_without_shadows_on_a_side_leaves_the_others_scores_finite(
    monkeypatch, mode, variance
):
    # Under poisson membership a sample can lose its only IN (or OUT) shadow to the
    # target. Its score is undefined (NaN), but it once made the pooled variance and
    # the variance floor NaN, and with them every score of that target.
    rng = np.random.default_rng(3)
    keep_SxN = _unequal_keep(3)
    keep_SxN[:, 0] = False
    keep_SxN[4, 0] = True  # sample 0: one IN model (4), so target 4 has no IN shadow for it
    keep_SxN[:, 1] = True
    keep_SxN[7, 1] = False  # sample 1: one OUT model (7)
    x = rng.normal(size=(10, 12, 4))
    with np.errstate(divide="ignore"):  # 1/k at k = 0
        got = ATTACKS.get("lira")(
            AttackInputs({"logit": x}, keep_SxN), np.arange(10), mode=mode, variance=variance
        ).scores_TxN
        monkeypatch.setattr(ref, "side_sets", _target_only)
        want = ref.lira(x, keep_SxN, None, np.arange(10), mode, variance, "one_sided", 1.0)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)  # NaN where both are NaN
    undefined = np.zeros_like(got, dtype=bool)
    if mode == "online":
        undefined[4, 0] = True
    undefined[7, 1] = True
    assert np.array_equal(np.isnan(got), undefined)


@pytest.mark.parametrize("cov,marginal", MODELS)
def test_seq_under_unequal_counts_matches_a_target_only_refit(monkeypatch, cov, marginal):
    rng = np.random.default_rng(1)
    keep_SxN = _unequal_keep(1)
    x = (rng.normal(size=(10, 12, 4)) + rng.normal(size=4)).astype(np.float32)
    out = ATTACKS.get("seq")(
        AttackInputs({"logit": x}, keep_SxN),
        np.arange(10),
        cov=cov,
        marginal=marginal,
        shrinkage="oas",
        cov_samples=8,
    )
    monkeypatch.setattr(ref, "side_sets", _target_only)
    scores, _ = ref.seq(x, keep_SxN, None, np.arange(10), cov=cov, marginal=marginal, cov_samples=8)
    np.testing.assert_allclose(out.scores_TxN, scores, rtol=0, atol=1e-6 * np.abs(scores).max())


def test_samples_without_enough_shadows_are_named():
    keep_SxN = membership.make_poisson_membership(8, 64, seed=0)
    rng = np.random.default_rng(0)
    inputs = AttackInputs({"loss": rng.normal(size=(8, 64, 4))}, keep_SxN)
    with pytest.raises(AttackInputError, match=r"samples \[.*keep fewer than 2 IN or 2 OUT"):
        score_attacks(inputs, "lira:statistic=loss", bootstrap=0)


NULL_SPECS = [
    "lira",
    "lira:variance=fixed",
    "lira:mode=offline",
    "seq:cov=diag",
    "seq:cov=pooled",
    "seq:cov=hetero",
    "seq:mode=gls",
    "profile",
    "refcal",
    "rmia",
    "loss",
]


@pytest.fixture(scope="module")
def poisson_null():
    # S = 20 and a seed whose draw leaves every sample 2 IN and 2 OUT shadows besides any
    # target, so no sample is dropped (dropping samples by their IN count would condition
    # the design). 120,000 pooled scores; statistics independent of membership.
    rng = np.random.default_rng(0)
    keep_SxN = rng.random((20, 6000)) < 0.5
    x = gaussian_stats(rng, 20, 6000, 4, shift_std=0.3, rho=0.5)
    return AttackInputs(stats={"logit": x, "loss": -x}, keep_SxN=keep_SxN)


@pytest.mark.parametrize("spec", NULL_SPECS)
def test_null_calibration_under_poisson_membership(poisson_null, spec):
    # Measured before loo.py dropped only the target under unequal counts (the
    # equal-count rule): AUC 0.511-0.526 for lira, seq and profile, TPR at FPR 1e-2 up to
    # 1.6x; after it, AUC within 0.002 of 0.5 and TPR 0.91-1.10x (rmia and refcal: 0.003).
    attack, opt = resolve_attack(spec)
    scores = attack.run(poisson_null, np.arange(20), opt).scores_TxN.reshape(-1)
    labels = poisson_null.keep_SxN.reshape(-1)
    assert abs(roc_auc_score(labels, scores) - 0.5) < 0.006, spec
    fpr, tpr, _ = roc_curve(labels, scores)
    for f, low, high in ((1e-2, 0.8, 1.2), (1e-3, 0.3, 2.0)):
        ratio = tpr[fpr <= f].max() / f
        assert low <= ratio <= high, (spec, f, ratio)

"""DP-SGD accounting against dp_accounting, and epsilon lower bounds on mechanisms of known epsilon.

Soundness tests simulate mechanisms whose exact privacy is known:
randomized response with flip probability 1 / (1 + e^eps) (pure eps-DP, and
the tightest eps-DP test, so a bound computed without confidence would exceed
eps about half the time), and the Gaussian mechanism with mean shift mu
(exactly mu-GDP, epsilon at delta from Dong, Roth, Su).
"""

import math

import dp_accounting
import numpy as np
import pytest
import scipy.optimize
import scipy.special
import scipy.stats
from dp_accounting import pld, rdp

from seqmia_jax.privacy import accounting, audit, bounds

DELTA = 1e-5


def _allowed_violations(reps: int, confidence: float = 0.95) -> int:
    """Exceedances of the true epsilon that a sound bound reaches with probability 1e-3 at most."""
    return int(scipy.stats.binom.ppf(0.999, reps, 1 - confidence))


# --- accounting ---------------------------------------------------------------------------------


def _direct(sigma, q, steps, delta, accountant):
    ledger = pld.PLDAccountant() if accountant == "pld" else rdp.RdpAccountant()
    step = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma))
    ledger.compose(dp_accounting.SelfComposedDpEvent(step, steps))
    return ledger.get_epsilon(delta)


@pytest.mark.parametrize("accountant", ["pld", "rdp"])
@pytest.mark.parametrize(
    "sigma, q, steps, delta",
    [(2.0, 1e-3, 10_000, 1e-5), (1.5, 0.02, 300, 1e-6), (1.2, 1.0, 5, 1e-5)],
)
def test_epsilon_matches_dp_accounting(accountant, sigma, q, steps, delta):
    got = accounting.epsilon(sigma, q, steps, delta, accountant=accountant)
    assert got == pytest.approx(_direct(sigma, q, steps, delta, accountant), rel=1e-12)
    assert 0.0 < got < math.inf


def test_pld_is_tighter_than_rdp_and_exact_without_subsampling():
    pld_eps = accounting.epsilon(1.5, 0.02, 300, 1e-6)
    assert pld_eps < accounting.epsilon(1.5, 0.02, 300, 1e-6, accountant="rdp")
    # Without subsampling, k steps at noise sigma are one Gaussian mechanism at
    # noise sigma / sqrt(k), whose epsilon dp_accounting computes analytically.
    full_batch = accounting.epsilon(1.2, 1.0, 5, DELTA)
    exact = dp_accounting.get_epsilon_gaussian(1.2 / math.sqrt(5), DELTA)
    assert exact <= full_batch <= exact * 1.01


def test_no_noise_is_infinite_epsilon():
    assert accounting.epsilon(0.0, 0.01, 10, DELTA) == math.inf
    assert accounting.epsilon(0.0, 0.01, 10, DELTA, accountant="rdp") == math.inf


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"sample_rate": 0.0}, "sample_rate"),
        ({"sample_rate": 1.5}, "sample_rate"),
        ({"steps": 0}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"delta": 0.0}, "delta"),
        ({"delta": 1.0}, "delta"),
        ({"accountant": "moments"}, "accountant"),
    ],
)
def test_impossible_inputs_name_their_field(kwargs, field):
    args = {"sample_rate": 0.01, "steps": 100, "delta": DELTA} | kwargs
    accountant = args.pop("accountant", "rdp")
    with pytest.raises(ValueError, match=field):
        accounting.epsilon(1.0, accountant=accountant, **args)
    with pytest.raises(ValueError, match=field):
        accounting.noise_for_epsilon(1.0, accountant=accountant, **args)


@pytest.mark.parametrize("target", [0.0, -1.0, math.inf])
def test_target_epsilon_must_be_positive(target):
    with pytest.raises(ValueError, match="target_epsilon"):
        accounting.noise_for_epsilon(target, 0.01, 100, DELTA)


@pytest.mark.parametrize(
    "target, q, steps, accountant",
    [
        (0.5, 0.01, 1000, "rdp"),
        (2.0, 0.01, 1000, "rdp"),
        (8.0, 0.1, 50, "rdp"),
        (0.3, 1e-3, 10_000, "pld"),
    ],
)
def test_noise_for_epsilon_round_trips(target, q, steps, accountant):
    sigma = accounting.noise_for_epsilon(target, q, steps, DELTA, accountant=accountant)
    reached = accounting.epsilon(sigma, q, steps, DELTA, accountant=accountant)
    assert target * (1 - 2e-3) <= reached <= target
    # The smallest such sigma: one tolerance step less already exceeds the target.
    tol = accounting.NOISE_TOLERANCE
    assert accounting.epsilon(sigma - 2 * tol, q, steps, DELTA, accountant=accountant) > target


# --- Clopper-Pearson and the CP bound -----------------------------------------------------------


def test_clopper_pearson_hand_cases():
    n, c = 20, 0.95
    lower, upper = bounds.clopper_pearson(0, n, c)
    assert lower == 0.0
    assert upper == pytest.approx(1 - (1 - c) ** (1 / n), rel=1e-10)
    lower, upper = bounds.clopper_pearson(n, n, c)
    assert lower == pytest.approx((1 - c) ** (1 / n), rel=1e-10)
    assert upper == 1.0


@pytest.mark.parametrize("k, n", [(7, 40), (1, 5), (333, 1000)])
def test_clopper_pearson_matches_scipy_binomtest(k, n):
    # Two one-sided bounds at 0.95 are the exact two-sided interval at 0.90.
    lower, upper = bounds.clopper_pearson(k, n, 0.95)
    ci = scipy.stats.binomtest(k, n).proportion_ci(confidence_level=0.90, method="exact")
    assert lower == pytest.approx(ci.low, rel=1e-9)
    assert upper == pytest.approx(ci.high, rel=1e-9)
    one_sided = scipy.stats.binomtest(k, n, alternative="greater").proportion_ci(0.95)
    assert lower == pytest.approx(one_sided.low, rel=1e-9)
    # Elementwise on arrays.
    lowers, _ = bounds.clopper_pearson(np.array([0, k, n]), n, 0.95)
    assert lowers[1] == pytest.approx(lower) and lowers[0] == 0.0


def _hand_cp(tp, num_pos, fp, num_neg, delta, confidence):
    side = (1 + confidence) / 2
    tpr_lo = scipy.stats.beta.ppf(1 - side, tp, num_pos - tp + 1) if tp > 0 else 0.0
    fpr_hi = scipy.stats.beta.ppf(side, fp + 1, num_neg - fp) if fp < num_neg else 1.0
    terms = [0.0]
    if tpr_lo > delta:
        terms.append(math.log((tpr_lo - delta) / fpr_hi))
    if 1 - fpr_hi > delta:
        terms.append(math.log((1 - fpr_hi - delta) / (1 - tpr_lo)))
    return max(terms), tpr_lo, fpr_hi


@pytest.mark.parametrize(
    "threshold, tp, fp",
    [(30.0, 30, 2), (0.5, 49, 20)],  # the first is won by the TPR/FPR term, the second by TNR/FNR
)
def test_cp_bound_equals_hand_formula(threshold, tp, fp):
    # 50 members, 40 non-members; exactly tp and fp of them score >= threshold.
    pos = np.r_[np.full(tp, threshold + 1.0), np.full(50 - tp, threshold - 1.0)]
    neg = np.r_[np.full(fp, threshold), np.full(40 - fp, threshold - 0.5)]  # ties count as "in"
    result = bounds.epsilon_lower_bound_cp(pos, neg, threshold, 1e-3, confidence=0.9)
    eps, tpr_lo, fpr_hi = _hand_cp(tp, 50, fp, 40, 1e-3, 0.9)
    assert (result["true_positives"], result["false_positives"]) == (tp, fp)
    assert (result["num_positives"], result["num_negatives"]) == (50, 40)
    assert result["tpr_lower"] == pytest.approx(tpr_lo, rel=1e-12)
    assert result["fpr_upper"] == pytest.approx(fpr_hi, rel=1e-12)
    assert result["epsilon"] == pytest.approx(eps, rel=1e-12)
    assert eps > 0.5


def _randomized_response(rng, eps, num_pos, num_neg):
    """Scores in {0, 1}: a member says 1 with probability e^eps / (1 + e^eps), a non-member 0."""
    keep = scipy.special.expit(eps)
    return (rng.random(num_pos) < keep).astype(float), (rng.random(num_neg) >= keep).astype(float)


def test_cp_bound_is_sound_on_randomized_response():
    eps_true, reps = 1.0, 200
    eps_R = np.empty(reps)
    for seed in range(reps):
        rng = np.random.default_rng(seed)
        threshold = bounds.choose_threshold(*_randomized_response(rng, eps_true, 500, 500), 0.0)
        pos, neg = _randomized_response(rng, eps_true, 2000, 2000)
        eps_R[seed] = bounds.epsilon_lower_bound_cp(pos, neg, threshold, 0.0)["epsilon"]
    # At most 5% may exceed eps at 95% confidence; point estimates would about half the time.
    assert np.sum(eps_R > eps_true) <= _allowed_violations(reps)
    assert eps_R.mean() > 0.8 * eps_true  # and the bound is not vacuous


def test_cp_bound_is_tight_on_randomized_response_with_many_trials():
    rng = np.random.default_rng(0)
    pos, neg = _randomized_response(rng, 2.0, 100_000, 100_000)
    result = bounds.epsilon_lower_bound_cp(pos, neg, 1.0, 0.0)
    assert 0.95 * 2.0 < result["epsilon"] <= 2.0


# --- GDP ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mu", [0.3, 1.0, 3.0])
def test_gdp_conversion_matches_gaussian_mechanism(mu):
    # mu-GDP is the Gaussian mechanism at noise 1 / mu (sensitivity 1).
    eps = bounds.gdp_epsilon(mu, DELTA)
    assert eps == pytest.approx(dp_accounting.get_epsilon_gaussian(1 / mu, DELTA), rel=1e-8)
    assert bounds.gdp_delta(mu, eps) == pytest.approx(DELTA, rel=1e-6)
    assert bounds.gdp_epsilon(0.0, DELTA) == 0.0


def _gaussian(rng, mu, num):
    return rng.normal(mu, 1.0, num), rng.normal(0.0, 1.0, num)


def test_cp_and_gdp_bounds_are_sound_on_the_gaussian_mechanism():
    mu, reps = 1.0, 60
    eps_true = bounds.gdp_epsilon(mu, DELTA)
    violations = {"cp": 0, "gdp": 0}
    for seed in range(reps):
        rng = np.random.default_rng(seed)
        val_pos, val_neg = _gaussian(rng, mu, 1000)
        pos, neg = _gaussian(rng, mu, 2000)
        for name, bound_fn in (
            ("cp", bounds.epsilon_lower_bound_cp),
            ("gdp", bounds.epsilon_lower_bound_gdp),
        ):
            threshold = bounds.choose_threshold(val_pos, val_neg, DELTA, bound=name)
            violations[name] += bound_fn(pos, neg, threshold, DELTA)["epsilon"] > eps_true
    assert violations["cp"] <= _allowed_violations(reps)
    assert violations["gdp"] <= _allowed_violations(reps)


def test_gdp_bound_is_close_to_the_true_epsilon_of_gaussian_scores():
    mu = 1.0
    eps_true = bounds.gdp_epsilon(mu, DELTA)
    rng = np.random.default_rng(1)
    threshold = bounds.choose_threshold(*_gaussian(rng, mu, 50_000), DELTA, bound="gdp")
    result = bounds.epsilon_lower_bound_gdp(*_gaussian(rng, mu, 200_000), threshold, DELTA)
    assert 0.95 * mu < result["mu"] <= mu
    assert 0.9 * eps_true < result["epsilon"] <= eps_true
    # CP at small delta sees only the (FPR, TPR) it measured, even at its own best threshold.
    cp_threshold = bounds.choose_threshold(*_gaussian(rng, mu, 50_000), DELTA, bound="cp")
    cp = bounds.epsilon_lower_bound_cp(*_gaussian(rng, mu, 200_000), cp_threshold, DELTA)
    assert 0.0 < cp["epsilon"] < 0.8 * result["epsilon"]


def test_gdp_bound_relies_on_the_gdp_shape():
    # Randomized response is not GDP-shaped: reading its one (FPR, TPR) point
    # through a GDP curve claims far more than its true epsilon.
    rng = np.random.default_rng(0)
    pos, neg = _randomized_response(rng, 1.0, 20_000, 20_000)
    assert bounds.epsilon_lower_bound_gdp(pos, neg, 1.0, DELTA)["epsilon"] > 2.0
    assert bounds.epsilon_lower_bound_cp(pos, neg, 1.0, DELTA)["epsilon"] <= 1.0


# --- audit_scores -------------------------------------------------------------------------------


def _ensemble_scores(seed, num_targets=8, num_samples=600, mu=1.5):
    rng = np.random.default_rng(seed)
    labels_TxN = rng.random((num_targets, num_samples)) < 0.5
    vulnerability_N = rng.uniform(0.0, 2.0 * mu, num_samples)  # per-sample, shared by all targets
    scores_TxN = rng.normal(size=labels_TxN.shape) + labels_TxN * vulnerability_N
    return scores_TxN, labels_TxN


def test_audit_scores_chooses_on_validation_and_bounds_held_out_pairs():
    scores_TxN, labels_TxN = _ensemble_scores(0)
    val, test = [0, 1, 2], [3, 4, 5, 6, 7]
    result = bounds.audit_scores(scores_TxN, labels_TxN, val, test, DELTA)
    val_s, val_l = scores_TxN[val].ravel(), labels_TxN[val].ravel()
    test_s, test_l = scores_TxN[test].ravel(), labels_TxN[test].ravel()
    for name, bound_fn in (
        ("cp", bounds.epsilon_lower_bound_cp),
        ("gdp", bounds.epsilon_lower_bound_gdp),
    ):
        threshold = bounds.choose_threshold(val_s[val_l], val_s[~val_l], DELTA, bound=name)
        expected = bound_fn(test_s[test_l], test_s[~test_l], threshold, DELTA)
        assert result[name] == expected
    assert result["num_val_pairs"] == 3 * 600 and result["num_test_pairs"] == 5 * 600
    assert result["gdp"]["epsilon"] > result["cp"]["epsilon"] > 0.5


def test_audit_scores_one_pair_per_sample():
    scores_TxN, labels_TxN = _ensemble_scores(1)
    test = [2, 5, 7]
    result = bounds.audit_scores(
        scores_TxN, labels_TxN, [0, 1], test, DELTA, one_pair_per_sample=True, seed=3
    )
    assert result["num_test_pairs"] == 600
    cp = result["cp"]
    assert cp["num_positives"] + cp["num_negatives"] == 600
    # The kept pair of each sample is one of its held-out pairs: the counts
    # lie between the per-sample minimum and maximum over held-out targets.
    hits_HxN = scores_TxN[test] >= cp["threshold"]
    assert hits_HxN.min(0).sum() <= cp["true_positives"] + cp["false_positives"]
    assert cp["true_positives"] + cp["false_positives"] <= hits_HxN.max(0).sum()
    again = bounds.audit_scores(
        scores_TxN, labels_TxN, [0, 1], test, DELTA, one_pair_per_sample=True, seed=3
    )
    assert again == result
    with pytest.raises(ValueError, match="overlap"):
        bounds.audit_scores(scores_TxN, labels_TxN, [0, 1], [1, 2], DELTA)


# --- one run ------------------------------------------------------------------------------------


def _one_run_randomized_response(rng, eps, num_canaries):
    included = rng.random(num_canaries) < 0.5  # Poisson inclusion
    keep = rng.random(num_canaries) < scipy.special.expit(eps)
    return np.where(keep, included, ~included).astype(float), included


def test_one_run_bound_is_sound_on_randomized_response():
    # Randomized response is the tightest eps-DP test: the number of correct
    # guesses is exactly Binomial(r, e^eps / (1 + e^eps)), so the bound exceeds
    # eps with probability just under 5%.
    eps_true, reps = 1.0, 200
    eps_R = np.empty(reps)
    for seed in range(reps):
        scores, included = _one_run_randomized_response(np.random.default_rng(seed), eps_true, 1000)
        pure = bounds.epsilon_lower_bound_one_run(scores, included, 100, 100, 0.0)
        approx = bounds.epsilon_lower_bound_one_run(scores, included, 100, 100, DELTA)
        eps_R[seed] = pure["epsilon"]
        assert approx["epsilon"] <= pure["epsilon"]  # delta only widens the null
        assert pure["num_guesses"] == 200
    assert np.sum(eps_R > eps_true) <= _allowed_violations(reps)
    assert eps_R.mean() > 0.5 * eps_true


def test_one_run_bound_grows_with_guesses_on_a_non_private_mechanism():
    included = np.random.default_rng(0).random(2000) < 0.5
    scores = included.astype(float)  # perfect scores
    previous = 0.0
    for guesses in (10, 100, 1000):
        pure = bounds.epsilon_lower_bound_one_run(scores, included, guesses // 2, guesses // 2, 0.0)
        assert pure["num_correct"] == guesses
        # All r guesses right: P[Binomial(r, q) = r] = q^r = 1 - confidence at the bound.
        expected = scipy.special.logit(0.05 ** (1 / guesses))
        assert pure["epsilon"] == pytest.approx(expected, rel=1e-9)
        approx = bounds.epsilon_lower_bound_one_run(
            scores, included, guesses // 2, guesses // 2, DELTA
        )
        assert previous < approx["epsilon"] <= pure["epsilon"]
        previous = approx["epsilon"]


def _theorem_p_value(m, r, v, eps, delta):
    """Steinke et al. 2023, main theorem, written out term by term."""

    def f(u):  # P[Binomial(r, e^eps / (1 + e^eps)) >= u]
        return scipy.stats.binom.sf(u - 1, r, scipy.special.expit(eps))

    slope = max((f(v - i) - f(v)) / i for i in range(1, m + 1))
    return f(v) + 2 * m * delta * slope


@pytest.mark.parametrize("delta", [0.0, 1e-4])
def test_one_run_bound_solves_the_theorem_at_its_confidence(delta):
    # 1000 canaries in score order; the top 100 hold 80 members, the bottom 100 hold 70 non-members.
    included = np.zeros(1000, bool)
    included[:80] = True
    included[100:900:2] = True
    included[900:930] = True
    scores = -np.arange(1000.0)
    result = bounds.epsilon_lower_bound_one_run(scores, included, 100, 100, delta, confidence=0.9)
    assert (result["num_guesses"], result["num_correct"]) == (200, 150)
    eps = result["epsilon"]
    assert eps > 0.3
    assert _theorem_p_value(1000, 200, 150, eps, delta) == pytest.approx(0.1, abs=1e-9)
    assert _theorem_p_value(1000, 200, 150, eps, delta) <= 0.1
    assert _theorem_p_value(1000, 200, 150, eps + 1e-6, delta) > 0.1


def test_one_run_p_value_equals_a_hand_computed_case():
    # m = 4 canaries, r = 2 guesses, v = 2 right, eps = 1, delta = 0.01. With q = e / (1 + e):
    # f(2) = q^2; f(1) - f(2) = P[B = 1] = 2 q (1 - q); (f(0) - f(2)) / 2 = (1 - q^2) / 2.
    q = math.e / (1 + math.e)
    slope = max(2 * q * (1 - q), (1 - q**2) / 2)
    want = q**2 + 2 * 4 * 0.01 * slope
    assert bounds._one_run_p_value(4, 2, 2, 1.0, 0.01) == pytest.approx(want, rel=1e-12)
    assert bounds._one_run_p_value(4, 2, 2, 1.0, 0.0) == pytest.approx(q**2, rel=1e-12)


def test_one_run_bound_solves_a_hand_computed_case():
    # 20 canaries; guess "in" for the top 5 and "out" for the bottom 5, 9 of 10 right.
    # Pure DP: P[Binomial(10, q) >= 9] = 10 q^9 (1 - q) + q^10 = 0.05 at the bound.
    included = np.zeros(20, bool)
    included[:4] = True  # top 5: 4 members (1 wrong)
    included[5:15:2] = True  # the middle: abstained
    scores = -np.arange(20.0)  # bottom 5 (15..19): non-members, all right
    result = bounds.epsilon_lower_bound_one_run(scores, included, 5, 5, 0.0)
    assert (result["num_guesses"], result["num_correct"]) == (10, 9)
    q = scipy.optimize.brentq(lambda q: 10 * q**9 * (1 - q) + q**10 - 0.05, 0.5, 1.0, xtol=1e-15)
    assert result["epsilon"] == pytest.approx(scipy.special.logit(q), abs=1e-9)


def test_one_run_bound_is_monotone():
    rng = np.random.default_rng(4)
    included = rng.random(400) < 0.5
    previous = -1.0
    for flips in (60, 40, 20, 0):  # fewer wrong guesses among the 100 guessed: a larger bound
        scores = included + 0.0
        scores[:flips] = 1.0 - scores[:flips]  # wrong labels on some canaries
        scores += 1e-3 * rng.random(400)
        eps = bounds.epsilon_lower_bound_one_run(scores, included, 50, 50, DELTA)["epsilon"]
        assert eps >= previous
        previous = eps
    scores = included + 0.3 * rng.normal(size=400)
    by_delta = [
        bounds.epsilon_lower_bound_one_run(scores, included, 50, 50, d)["epsilon"]
        for d in (0.0, 1e-6, 1e-4, 1e-3)
    ]
    assert by_delta == sorted(by_delta, reverse=True) and by_delta[0] > by_delta[-1]
    by_confidence = [
        bounds.epsilon_lower_bound_one_run(scores, included, 50, 50, DELTA, c)["epsilon"]
        for c in (0.5, 0.9, 0.95, 0.999)
    ]
    assert by_confidence == sorted(by_confidence, reverse=True)


# --- the attack stage's entry (privacy.audit) -------------------------------------------------


def test_guess_counts_are_a_fixed_grid_of_half_the_canaries():
    assert audit.guess_counts(64) == [1, 3, 10, 32]
    assert audit.guess_counts(1000) == [10, 50, 150, 500]
    assert audit.guess_counts(2) == [1]


def test_one_run_bound_is_the_largest_bonferroni_corrected_test():
    scores_TxN, labels_TxN = _ensemble_scores(2, num_samples=400)
    test = [4, 5, 6, 7]
    result = audit.one_run_bound(scores_TxN, labels_TxN, test, DELTA, 0.95)
    counts = audit.guess_counts(400)
    assert result["tests"] == 4 * len(counts)
    assert result["test_confidence"] == pytest.approx(1 - 0.05 / (4 * len(counts)))
    each = [
        bounds.epsilon_lower_bound_one_run(
            scores_TxN[t], labels_TxN[t], k, k, DELTA, result["test_confidence"]
        )["epsilon"]
        for t in test
        for k in counts
    ]
    assert result["epsilon"] == max(each) > 0.5
    assert result["target_row"] in test and result["num_canaries"] == 400


def test_one_run_entry_is_sound_on_randomized_response_over_targets():
    # Four eps-DP "targets" (randomized response on independent inclusion), bounded as the
    # attack stage does: the largest of 4 x 4 tests exceeds eps at most 5% of the time.
    eps_true, reps = 1.0, 100
    violations = 0
    for seed in range(reps):
        rng = np.random.default_rng(seed)
        pairs = [_one_run_randomized_response(rng, eps_true, 500) for _ in range(4)]
        scores_TxN = np.stack([p[0] for p in pairs]) + 1e-3 * rng.random((4, 500))
        labels_TxN = np.stack([p[1] for p in pairs])
        result = audit.one_run_bound(scores_TxN, labels_TxN, [0, 1, 2, 3], 0.0, 0.95)
        violations += result["epsilon"] > eps_true
    assert violations <= _allowed_violations(reps)


def test_attack_bounds_add_the_one_run_bound_only_under_poisson_membership():
    scores_TxN, labels_TxN = _ensemble_scores(3, num_samples=200)
    targets_T = np.arange(10, 18)
    kwargs = {"delta": DELTA, "confidence": 0.95, "seed": 0}
    for design in ("balanced", None):
        entry = audit.attack_bounds(
            "lira", scores_TxN, labels_TxN, targets_T, **kwargs, design=design
        )
        assert "one_run" not in entry and entry["membership"] == (design or "unknown")
    entry = audit.attack_bounds(
        "lira", scores_TxN, labels_TxN, targets_T, **kwargs, design="poisson"
    )
    want = audit.one_run_bound(scores_TxN, labels_TxN, np.arange(4, 8), DELTA, 0.95)
    assert entry["one_run"] == want["epsilon"] > 0
    assert entry["one_run_detail"]["target"] == targets_T[want["target_row"]]
    assert entry["held_out_targets"] == [14, 15, 16, 17]
    audited = bounds.audit_scores(scores_TxN, labels_TxN, range(4), range(4, 8), DELTA)
    assert entry["cp"] == audited["cp"]["epsilon"] and entry["gdp"] == audited["gdp"]["epsilon"]
    for spec, skipped in (
        ("rmia", True),
        ("rmia:population=out", True),
        ("rmia:population=all", False),
    ):
        entry = audit.attack_bounds(
            spec, scores_TxN, labels_TxN, targets_T, **kwargs, design="poisson"
        )
        assert ("one_run_skipped" in entry) == skipped and ("one_run" in entry) != skipped
        assert ("caveat" in entry) == skipped


# --- jax_privacy, when installed ----------------------------------------------------------------


def test_matches_jax_privacy_auditing():
    auditing = pytest.importorskip("jax_privacy.auditing")
    rng = np.random.default_rng(0)
    pos, neg = _gaussian(rng, 1.5, 3000)
    threshold = 1.2
    auditor = auditing.CanaryScoreAuditor(pos, neg)
    theirs = auditor.epsilon_clopper_pearson(
        0.05, DELTA, one_sided=False, threshold_strategy=auditing.Explicit(threshold)
    )
    ours = bounds.epsilon_lower_bound_cp(pos, neg, threshold, DELTA, confidence=0.95)
    assert ours["epsilon"] == pytest.approx(theirs, rel=1e-9)
    # One run, guessing "in" for the scores at or above the threshold only.
    scores = np.r_[pos, neg]
    included = np.r_[np.ones(pos.size, bool), np.zeros(neg.size, bool)]
    num_guesses = int(np.sum(scores >= threshold))
    theirs = auditor.epsilon_one_run(0.05, DELTA, threshold_strategy=auditing.Explicit(threshold))
    ours = bounds.epsilon_lower_bound_one_run(scores, included, num_guesses, 0, DELTA)
    assert ours["epsilon"] == pytest.approx(theirs, abs=1e-5)

"""Empirical lower bounds on epsilon from membership-inference scores (privacy auditing).

Legend: T targets, N samples, P members (positives), Q non-members
(negatives), C candidate thresholds.

An (epsilon, delta)-DP training mechanism bounds every membership test by the
hypothesis-testing inequalities (Kairouz et al. 2015)
    TPR <= e^eps FPR + delta   and   1 - FPR <= e^eps (1 - TPR) + delta.
A threshold test ("member" iff score >= threshold; higher = more likely a
member, as in seqmia_jax.evaluation.metrics) with an upper confidence bound on
its FPR and a lower one on its TPR therefore refutes every epsilon below
    max(log((TPR_lo - delta) / FPR_hi), log((1 - FPR_hi - delta) / (1 - TPR_lo)))
(Jagielski et al. 2020; Nasr et al. 2021). Each Clopper-Pearson bound is taken
at confidence (1 + c) / 2, so the pair, and the bound, hold jointly at c by a
union bound (jax_privacy's ``auditing`` does the same).

The GDP bound (Nasr et al. 2023) reads the same two confidence bounds through
the trade-off curve of mu-GDP, TPR = Phi(Phi^-1(FPR) + mu), and converts the
smallest consistent mu to (epsilon, delta) exactly (Dong, Roth, Su 2019).

The one-run bound (Steinke, Nasr, Jagielski 2023) needs canaries included
independently with probability 1/2 in one training run.

A threshold picked on the data that is then bounded inflates the bound; pick
it on validation scores (``choose_threshold``) and bound held-out ones.
"""

import numpy as np
import scipy.optimize
import scipy.special
import scipy.stats

BOUNDS: tuple[str, ...] = ("cp", "gdp")
_BISECTION_STEPS = 64  # halvings of the one-run epsilon bracket: far below float resolution


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _check_delta(delta: float) -> None:
    if not 0.0 <= delta < 1.0:
        raise ValueError(f"delta must be in [0, 1), got {delta}")


def _scores(scores, name: str) -> np.ndarray:
    scores_K = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores_K.size == 0:
        raise ValueError(f"{name} is empty")
    if np.isnan(scores_K).any():
        raise ValueError(f"{name}: {int(np.isnan(scores_K).sum())} scores are NaN")
    return scores_K


def clopper_pearson(successes, trials, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """One-sided Clopper-Pearson bounds (lower, upper) on a binomial proportion.

    Each bound holds on its own with probability >= ``confidence``: lower is
    the ``1 - confidence`` quantile of Beta(k, n - k + 1) (0 when k = 0), upper
    the ``confidence`` quantile of Beta(k + 1, n - k) (1 when k = n). Works
    elementwise on arrays.
    """
    _check_confidence(confidence)
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    if np.any(n < 1) or np.any(k < 0) or np.any(k > n) or np.any(k != np.round(k)):
        raise ValueError("successes must be integers in [0, trials] and trials >= 1")
    # Clamped shape parameters keep beta.ppf defined where the bound is 0 or 1.
    lower = np.where(k > 0, scipy.stats.beta.ppf(1 - confidence, np.maximum(k, 1), n - k + 1), 0.0)
    upper = np.where(k < n, scipy.stats.beta.ppf(confidence, k + 1, np.maximum(n - k, 1)), 1.0)
    return lower, upper


def _rate_bounds(tp, fp, num_pos: int, num_neg: int, confidence: float):
    """(TPR_lo, FPR_hi), each one-sided at (1 + confidence) / 2: jointly at ``confidence``."""
    per_side = 0.5 * (1.0 + confidence)
    tpr_lo, _ = clopper_pearson(tp, num_pos, per_side)
    _, fpr_hi = clopper_pearson(fp, num_neg, per_side)
    return tpr_lo, fpr_hi


def _cp_epsilon(tpr_lo, fpr_hi, delta: float) -> np.ndarray:
    """The CP epsilon bound from rate bounds, elementwise, clipped at 0."""
    with np.errstate(divide="ignore"):
        direct = np.log(np.maximum(tpr_lo - delta, 0.0)) - np.log(fpr_hi)
        complement = np.log(np.maximum(1.0 - fpr_hi - delta, 0.0)) - np.log1p(-tpr_lo)
    return np.maximum(np.maximum(direct, complement), 0.0)


def _gdp_mu(tpr_lo, fpr_hi) -> np.ndarray:
    """Smallest mu >= 0 whose trade-off curve reaches (FPR_hi, TPR_lo), elementwise."""
    # The GDP curve is symmetric: the complementary test (TNR against FNR) gives the same mu.
    mu = scipy.stats.norm.ppf(tpr_lo) - scipy.stats.norm.ppf(fpr_hi)
    return np.maximum(np.nan_to_num(mu, nan=0.0, neginf=0.0), 0.0)


def gdp_delta(mu: float, epsilon: float) -> float:
    """delta(epsilon) of mu-GDP: Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2)."""
    if mu <= 0:
        return 0.0
    log_a = scipy.stats.norm.logcdf(-epsilon / mu + mu / 2)
    log_b = epsilon + scipy.stats.norm.logcdf(-epsilon / mu - mu / 2)
    return float(np.exp(log_a) * -np.expm1(min(log_b - log_a, 0.0)))


def gdp_epsilon(mu: float, delta: float) -> float:
    """The smallest epsilon >= 0 at which mu-GDP is (epsilon, delta)-DP (Dong, Roth, Su 2019)."""
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1) for the GDP conversion, got {delta}")
    if mu <= 0 or gdp_delta(mu, 0.0) <= delta:
        return 0.0

    def log_gap(eps: float) -> float:
        # In logs: delta(eps) spans hundreds of orders of magnitude over the bracket.
        log_a = scipy.stats.norm.logcdf(-eps / mu + mu / 2)
        log_b = eps + scipy.stats.norm.logcdf(-eps / mu - mu / 2)
        with np.errstate(divide="ignore"):
            return log_a + np.log(-np.expm1(min(log_b - log_a, 0.0))) - np.log(delta)

    # delta(eps) < Phi(-eps/mu + mu/2), which equals delta here: an upper end.
    upper = mu * (mu / 2 + scipy.stats.norm.isf(delta))
    return float(scipy.optimize.brentq(log_gap, 0.0, upper, xtol=1e-12))


def _counts_at(scores_pos_P: np.ndarray, scores_neg_Q: np.ndarray, threshold: float):
    return int(np.sum(scores_pos_P >= threshold)), int(np.sum(scores_neg_Q >= threshold))


def _bound_at_threshold(scores_pos, scores_neg, threshold, delta, confidence) -> dict:
    _check_delta(delta)
    _check_confidence(confidence)
    scores_pos_P = _scores(scores_pos, "scores_pos")
    scores_neg_Q = _scores(scores_neg, "scores_neg")
    tp, fp = _counts_at(scores_pos_P, scores_neg_Q, threshold)
    tpr_lo, fpr_hi = _rate_bounds(tp, fp, scores_pos_P.size, scores_neg_Q.size, confidence)
    return {
        "threshold": float(threshold),
        "delta": float(delta),
        "confidence": float(confidence),
        "true_positives": tp,
        "num_positives": int(scores_pos_P.size),
        "false_positives": fp,
        "num_negatives": int(scores_neg_Q.size),
        "tpr_lower": float(tpr_lo),
        "fpr_upper": float(fpr_hi),
    }


def epsilon_lower_bound_cp(
    scores_pos, scores_neg, threshold: float, delta: float, confidence: float = 0.95
) -> dict:
    """Clopper-Pearson epsilon lower bound of the test "score >= threshold".

    Holds with probability >= ``confidence`` if the scores are independent
    trials (see ``audit_scores``) and ``threshold`` was chosen without them.

    Returns:
      {"epsilon", "threshold", "delta", "confidence", "true_positives",
       "num_positives", "false_positives", "num_negatives", "tpr_lower",
       "fpr_upper"}.
    """
    result = _bound_at_threshold(scores_pos, scores_neg, threshold, delta, confidence)
    eps = _cp_epsilon(result["tpr_lower"], result["fpr_upper"], delta)
    return {"epsilon": float(eps), **result}


def epsilon_lower_bound_gdp(
    scores_pos, scores_neg, threshold: float, delta: float, confidence: float = 0.95
) -> dict:
    """GDP epsilon lower bound of the test "score >= threshold", at ``delta`` > 0.

    Assumes the mechanism's trade-off curve is a mu-GDP one (true of the
    Gaussian mechanism, and approximately of DP-SGD with many steps): the
    confidence bounds at one threshold then fix mu everywhere, including the
    low-FPR tail that decides epsilon at small delta. That makes it much
    tighter than the CP bound but not assumption-free: a mechanism whose curve
    is not GDP-shaped (e.g. randomized response) can be given a bound above its
    true epsilon.

    Returns:
      The ``epsilon_lower_bound_cp`` fields plus "mu" (the smallest mu
      consistent with the rate bounds).
    """
    if not delta > 0:
        raise ValueError(f"delta must be in (0, 1) for the GDP bound, got {delta}")
    result = _bound_at_threshold(scores_pos, scores_neg, threshold, delta, confidence)
    mu = float(_gdp_mu(result["tpr_lower"], result["fpr_upper"]))
    return {"epsilon": gdp_epsilon(mu, delta), "mu": mu, **result}


def choose_threshold(
    scores_pos_val, scores_neg_val, delta: float, confidence: float = 0.95, *, bound: str = "cp"
) -> float:
    """The validation score whose threshold maximizes the ``bound`` ("cp" or "gdp") bound.

    Every distinct validation score is a candidate; ties go to the lowest one.
    """
    if bound not in BOUNDS:
        raise ValueError(f"bound must be one of {BOUNDS}, got {bound!r}")
    _check_delta(delta)
    _check_confidence(confidence)
    pos_P = np.sort(_scores(scores_pos_val, "scores_pos_val"))
    neg_Q = np.sort(_scores(scores_neg_val, "scores_neg_val"))
    candidates_C = np.unique(np.concatenate([pos_P, neg_Q]))
    tp_C = pos_P.size - np.searchsorted(pos_P, candidates_C, side="left")
    fp_C = neg_Q.size - np.searchsorted(neg_Q, candidates_C, side="left")
    tpr_lo_C, fpr_hi_C = _rate_bounds(tp_C, fp_C, pos_P.size, neg_Q.size, confidence)
    if bound == "cp":
        objective_C = _cp_epsilon(tpr_lo_C, fpr_hi_C, delta)
    else:  # epsilon grows with mu at any delta, so maximizing mu suffices
        objective_C = _gdp_mu(tpr_lo_C, fpr_hi_C)
    return float(candidates_C[int(np.argmax(objective_C))])


def audit_scores(
    scores_TxN,
    labels_TxN,
    val_targets,
    test_targets,
    delta: float,
    confidence: float = 0.95,
    *,
    one_pair_per_sample: bool = False,
    seed: int = 0,
) -> dict:
    """CP and GDP epsilon lower bounds: thresholds from validation targets, bounds on held-out ones.

    ``labels_TxN`` is ``keep_SxN[targets]`` (True = member); ``val_targets``
    and ``test_targets`` are disjoint row indices. Each bound picks its
    threshold with ``choose_threshold`` on the validation targets' pairs and is
    evaluated on the held-out targets' pairs.

    What the confidence covers. Clopper-Pearson assumes independent Bernoulli
    trials. That is exact in the classic design, one canary per training run
    with a coin-flip membership (Jagielski et al. 2020): the bound then holds
    for the training mechanism with probability >= ``confidence``. Pooled
    (target, sample) pairs are not such trials: a sample appears under every
    target and its scores are correlated across targets (a vulnerable sample
    is vulnerable in all of them), the pairs of one target share its training
    run, and LiRA scores of all targets share the shadow models. Counts then
    vary more than binomially, so with all pairs (the default) the intervals
    are too narrow and the confidence is nominal. The inequality being tested
    still holds for rates averaged over samples (it holds for each sample, and
    membership is assigned independently of the sample), so the bound aims at
    the right quantity; only its confidence is optimistic.

    ``one_pair_per_sample=True`` keeps, for each sample, one held-out pair,
    its target drawn uniformly with ``seed``. No sample is counted twice,
    which removes the correlation across targets. Given the trained models
    the only randomness left is that draw, so the trials are independent
    given the models and the confidence is honest for this ensemble's
    per-sample rates (averaged over the held-out targets; CP stays valid for
    unequal rates, Hoeffding 1956). It is still no exact statement about the
    training mechanism: samples drawn under one target share its run, and T
    models sample the training randomness only T times. Validation and
    held-out pairs also share samples, so the threshold is not chosen wholly
    independently of the held-out pairs.

    Returns:
      {"cp": epsilon_lower_bound_cp(...), "gdp": epsilon_lower_bound_gdp(...),
       "delta", "confidence", "one_pair_per_sample", "num_val_pairs",
       "num_test_pairs"}.
    """
    scores_TxN = np.atleast_2d(np.asarray(scores_TxN, dtype=np.float64))
    labels_TxN = np.atleast_2d(np.asarray(labels_TxN, dtype=bool))
    if scores_TxN.shape != labels_TxN.shape:
        raise ValueError(f"scores {scores_TxN.shape} and labels {labels_TxN.shape} differ in shape")
    num_targets, num_samples = scores_TxN.shape
    val_V = np.asarray(val_targets, dtype=np.intp).reshape(-1)
    test_H = np.asarray(test_targets, dtype=np.intp).reshape(-1)
    for name, rows in (("val_targets", val_V), ("test_targets", test_H)):
        if rows.size == 0 or rows.min() < -num_targets or rows.max() >= num_targets:
            raise ValueError(f"{name} must be non-empty row indices of the {num_targets} targets")
    if np.intersect1d(val_V % num_targets, test_H % num_targets).size:
        raise ValueError("val_targets and test_targets overlap")

    val_scores, val_labels = scores_TxN[val_V].ravel(), labels_TxN[val_V].ravel()
    if one_pair_per_sample:
        rows_N = test_H[np.random.default_rng(seed).integers(0, test_H.size, size=num_samples)]
        test_scores = scores_TxN[rows_N, np.arange(num_samples)]
        test_labels = labels_TxN[rows_N, np.arange(num_samples)]
    else:
        test_scores, test_labels = scores_TxN[test_H].ravel(), labels_TxN[test_H].ravel()
    for name, labels in (("validation", val_labels), ("held-out", test_labels)):
        if labels.all() or not labels.any():
            raise ValueError(f"the {name} pairs need both members and non-members")

    val_pos, val_neg = val_scores[val_labels], val_scores[~val_labels]
    test_pos, test_neg = test_scores[test_labels], test_scores[~test_labels]
    cp_threshold = choose_threshold(val_pos, val_neg, delta, confidence, bound="cp")
    gdp_threshold = choose_threshold(val_pos, val_neg, delta, confidence, bound="gdp")
    return {
        "cp": epsilon_lower_bound_cp(test_pos, test_neg, cp_threshold, delta, confidence),
        "gdp": epsilon_lower_bound_gdp(test_pos, test_neg, gdp_threshold, delta, confidence),
        "delta": float(delta),
        "confidence": float(confidence),
        "one_pair_per_sample": bool(one_pair_per_sample),
        "num_val_pairs": int(val_scores.size),
        "num_test_pairs": int(test_scores.size),
    }


def _one_run_p_value(num_canaries: int, guesses: int, correct: int, eps: float, delta: float):
    """P[at least ``correct`` right guesses] under (eps, delta)-DP: Steinke et al. 2023.

    f(v) = P[Binomial(r, e^eps / (1 + e^eps)) >= v] for pure DP, plus
    2 m delta max_{i=1..v} (f(v - i) - f(v)) / i for approximate DP.
    """
    q = scipy.special.expit(eps)
    tail = float(scipy.stats.binom.sf(correct - 1, guesses, q))
    if delta == 0 or correct == 0:
        return tail
    # f(v - i) - f(v) = P[v - i <= B < v]: cumulative pmf from v - 1 downwards.
    below_I = np.cumsum(scipy.stats.binom.pmf(np.arange(correct - 1, -1, -1), guesses, q))
    slope = float(np.max(below_I / np.arange(1, correct + 1)))
    return min(1.0, tail + 2 * num_canaries * delta * slope)


def epsilon_lower_bound_one_run(
    scores_N,
    included_N,
    num_guesses_pos: int,
    num_guesses_neg: int,
    delta: float,
    confidence: float = 0.95,
) -> dict:
    """Steinke, Nasr, Jagielski (2023) one-run epsilon lower bound over m = N canaries.

    Design: each canary is included in the one training run independently
    with probability 1/2 (Poisson inclusion), independently of everything
    else; the bound is invalid for a fixed-size or balanced split. The
    auditor guesses "in" for the ``num_guesses_pos`` highest scores and "out"
    for the ``num_guesses_neg`` lowest (ties by index), abstaining elsewhere.
    Under (eps, delta)-DP the number of correct guesses is dominated as in
    their main theorem (the p-value of their reference code): by
    Binomial(r, e^eps / (1 + e^eps)) for pure DP (delta = 0), plus their
    2 m delta term for delta > 0 (both implemented). The result is
    the largest eps whose p-value is below ``1 - confidence``, found by
    bisection that keeps the p-value below it. The guess counts must be fixed
    in advance; trying several needs a union bound over them.

    Returns:
      {"epsilon", "num_canaries", "num_guesses", "num_correct", "delta",
       "confidence"}.
    """
    _check_delta(delta)
    _check_confidence(confidence)
    scores_N = _scores(scores_N, "scores_N")
    included_N = np.asarray(included_N, dtype=bool).reshape(-1)
    num_canaries = scores_N.size
    if included_N.size != num_canaries:
        raise ValueError(f"scores ({num_canaries}) and included ({included_N.size}) differ in size")
    k_pos, k_neg = int(num_guesses_pos), int(num_guesses_neg)
    if k_pos < 0 or k_neg < 0 or k_pos + k_neg < 1 or k_pos + k_neg > num_canaries:
        raise ValueError(
            f"num_guesses_pos + num_guesses_neg must be in [1, {num_canaries}],"
            f" got {k_pos} + {k_neg}"
        )
    order_N = np.argsort(-scores_N, kind="stable")
    correct = int(included_N[order_N[:k_pos]].sum())
    correct += int((~included_N[order_N[num_canaries - k_neg :]]).sum()) if k_neg else 0
    guesses = k_pos + k_neg

    level = 1.0 - confidence
    low = 0.0  # invariant: p_value(low) <= level, so every eps <= low is refuted
    if _one_run_p_value(num_canaries, guesses, correct, low, delta) > level:
        eps = 0.0
    else:
        high = 1.0
        while _one_run_p_value(num_canaries, guesses, correct, high, delta) <= level:
            low, high = high, 2.0 * high
        for _ in range(_BISECTION_STEPS):
            middle = 0.5 * (low + high)
            if _one_run_p_value(num_canaries, guesses, correct, middle, delta) <= level:
                low = middle
            else:
                high = middle
        eps = low
    return {
        "epsilon": float(eps),
        "num_canaries": int(num_canaries),
        "num_guesses": guesses,
        "num_correct": correct,
        "delta": float(delta),
        "confidence": float(confidence),
    }

"""One attack's empirical epsilon lower bounds, as the attack stage reports them.

Legend: T targets, N samples (the canaries of one target), H held-out
targets, G guess counts.

``attack_bounds`` is an attack's ``epsilon_lower_bound`` entry in
``results.json``. Which bound needs which membership design
(``seqmia_jax.membership``):

- **Clopper-Pearson and GDP** (``bounds.audit_scores``): a threshold chosen
  on validation targets, the bound on held-out targets' (target, sample)
  pairs. They need only that membership is drawn before training, so they
  hold under both designs (with the nominal confidence ``audit_scores``
  describes).
- **One run** (Steinke, Nasr, Jagielski 2023): each canary is in the
  attacked model's training set independently with probability 1/2, and the
  guesses are a function of that model's outputs and of things independent
  of its inclusion. Only the poisson design gives that: under the balanced
  one a target's inclusion vector has exactly N/2 ones and is the
  complement of its partner's (a shadow the attack reads), so the bound is
  reported only for ``design == "poisson"``.

**The one-run bound here.** Each held-out target is one training run whose
N audit samples are its canaries. The guesses are fixed in advance, never
chosen on scores: "in" for the k highest scores and "out" for the k lowest,
for each k in a fixed grid (``GUESS_FRACTIONS`` of N/2). Every (target, k)
pair is one test at confidence 1 - (1 - c) / (H G) (Bonferroni), so the
largest of the H G bounds holds with probability >= c. The probability is
over the held-out targets' inclusion and training, given the other models:
under the poisson design those are independent of every other model, which
the attack reads as shadows.

**Attacks that read the target's own membership** (``rmia`` with its default
population, the target's OUT samples) are not post-processing of the model,
so no bound on them is an audit of the training: they get no one-run bound,
and their entry carries a ``caveat``. The effect is real: a non-member is in
its own population and never outranks itself, so only members reach the
score 1, and a threshold there has no false positives. On S = 32 DP models
at epsilon 1 (N = 64, poisson) 41 held-out members and no non-member scored
1, and rmia's CP and GDP bounds (1.01, 1.51) exceeded the accountant's 1,
while ``rmia:population=all`` gave 0.
"""

import numpy as np

from seqmia_jax.privacy import bounds

GUESS_FRACTIONS = (0.02, 0.1, 0.3, 1.0)  # k / (N/2): guesses per side, fixed before any score


def guess_counts(num_canaries: int, fractions=GUESS_FRACTIONS) -> list[int]:
    """The distinct guess counts per side, k = max(1, round(f N / 2)), in increasing order."""
    half = num_canaries // 2
    return sorted({min(half, max(1, round(f * half))) for f in fractions})


def one_run_bound(
    scores_TxN,
    labels_TxN,
    test_targets,
    delta: float,
    confidence: float = 0.95,
    fractions=GUESS_FRACTIONS,
) -> dict:
    """The largest one-run bound over held-out targets and guess counts, Bonferroni-corrected.

    ``labels_TxN`` is ``keep_SxN[targets]`` of a poisson design; ``test_targets``
    are row indices. Returns {"epsilon", "target_row", "num_guesses",
    "num_correct", "num_canaries", "tests", "test_confidence", "confidence"}.
    """
    scores_TxN = np.atleast_2d(np.asarray(scores_TxN, dtype=np.float64))
    labels_TxN = np.atleast_2d(np.asarray(labels_TxN, dtype=bool))
    rows_H = np.asarray(test_targets, dtype=np.intp).reshape(-1)
    counts_G = guess_counts(scores_TxN.shape[1], fractions)
    tests = len(rows_H) * len(counts_G)
    test_confidence = 1.0 - (1.0 - confidence) / tests
    best = None
    for row in rows_H:
        for k in counts_G:
            result = bounds.epsilon_lower_bound_one_run(
                scores_TxN[row], labels_TxN[row], k, k, delta, test_confidence
            )
            if best is None or result["epsilon"] > best[1]["epsilon"]:
                best = (int(row), result)
    row, result = best
    return {
        "epsilon": result["epsilon"],
        "target_row": row,
        "num_guesses": result["num_guesses"],
        "num_correct": result["num_correct"],
        "num_canaries": result["num_canaries"],
        "tests": tests,
        "test_confidence": test_confidence,
        "confidence": float(confidence),
    }


def reads_target_membership(spec: str) -> bool:
    """Whether an attack's scores read the target's own membership row (no one-run bound)."""
    from seqmia_jax.attacks.specs import parse_spec

    name, options = parse_spec(spec)
    return name == "rmia" and options.get("population", "out") == "out"


def attack_bounds(
    spec: str,
    scores_TxN,
    labels_TxN,
    targets_T,
    delta: float,
    confidence: float,
    *,
    design: str | None,
    seed: int = 0,
) -> dict:
    """The ``epsilon_lower_bound`` entry of one attack (``spec``) over targets ``targets_T``.

    Thresholds on the first half of the targets, bounds on the second half;
    ``design`` is the membership design (None: unknown). Under "poisson" the
    entry adds "one_run" (and "one_run_detail"), or "one_run_skipped".
    """
    targets_T = np.asarray(targets_T)
    half = len(targets_T) // 2
    val_T, test_T = np.arange(half), np.arange(half, len(targets_T))
    audit = bounds.audit_scores(scores_TxN, labels_TxN, val_T, test_T, delta, confidence, seed=seed)
    entry = {
        "cp": audit["cp"]["epsilon"],
        "gdp": audit["gdp"]["epsilon"],
        "delta": delta,
        "confidence": confidence,
        "validation_targets": targets_T[val_T].tolist(),
        "held_out_targets": targets_T[test_T].tolist(),
        "held_out_pairs": audit["num_test_pairs"],
        "membership": design or "unknown",
    }
    label_reading = reads_target_membership(spec)
    if label_reading:
        entry["caveat"] = (
            "its scores read the target's own membership (a non-member never outranks "
            "itself), so these bounds are no audit of the training"
        )
    if design != "poisson":
        return entry
    if label_reading:
        entry["one_run_skipped"] = "its scores read the target's own membership"
        return entry
    one_run = one_run_bound(scores_TxN, labels_TxN, test_T, delta, confidence)
    entry["one_run"] = one_run["epsilon"]
    target = int(targets_T[one_run.pop("target_row")])
    entry["one_run_detail"] = {"target": target, **one_run}
    return entry

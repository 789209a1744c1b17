"""Attack-stage timing on synthetic statistics, for the benchmark.

Legend: S shadow models, N samples, L positions.
"""

import time
from collections.abc import Sequence

import numpy as np

from seqmia_jax import membership
from seqmia_jax.attacks.base import AttackInputs
from seqmia_jax.attacks.runner import score_attacks


def synthetic_attack_inputs(
    num_models: int, num_samples: int, seq_len: int, seed: int = 0, effect: float = 0.1
) -> AttackInputs:
    """Random float32 statistics with a small planted membership effect (members' loss lower)."""
    rng = np.random.default_rng(seed)
    keep_SxN = membership.make_membership(num_models, num_samples, seed)
    shape = (num_models, num_samples, seq_len)
    base_NxL = rng.uniform(0.5, 3.0, size=(num_samples, seq_len))
    loss = base_NxL + 0.3 * rng.standard_normal(shape) - effect * keep_SxN[..., None]
    loss = np.maximum(loss, 1e-3)
    # The logit statistic log p - log(1 - p) of p = exp(-loss), computed stably.
    logit = -loss - np.log(-np.expm1(-loss))
    stats = {
        "loss": loss.astype(np.float32),
        "logit": logit.astype(np.float32),
        "mean_logp": (-base_NxL - 0.1 * rng.standard_normal(shape)).astype(np.float32),
        "std_logp": (0.5 + 0.1 * np.abs(rng.standard_normal(shape))).astype(np.float32),
    }
    text = [
        bytes(row) for row in rng.integers(32, 127, size=(num_samples, seq_len), dtype=np.uint8)
    ]
    return AttackInputs(stats=stats, keep_SxN=keep_SxN, text=text)


def time_attacks(
    shape: tuple[int, int, int],
    attacks: Sequence[str] | None,
    bootstrap: int,
    seed: int,
    repeats: int = 1,
) -> dict:
    """Seconds for the attack set, leave-one-out over every target, on synthetic statistics.

    ``seconds`` is the whole attack stage (fits, scores and the bootstrap
    metrics); ``per_attack_s`` the fits and scores alone. The first run
    includes compilation, as in an audit; repeats report the warm times too.
    """
    num_models, num_samples, seq_len = shape
    inputs = synthetic_attack_inputs(num_models, num_samples, seq_len, seed)
    runs = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        results, _, _ = score_attacks(
            inputs, None if attacks is None else list(attacks), None, bootstrap=bootstrap, seed=seed
        )
        per_attack = {spec: entry["seconds"] for spec, entry in results["attacks"].items()}
        runs.append((time.perf_counter() - start, per_attack))
    (seconds, per_attack_s), warm = runs[0], runs[1:]
    out = {
        "shape": [num_models, num_samples, seq_len],
        "num_targets": num_models,
        "bootstrap": bootstrap,
        "seconds": seconds,
        "per_attack_s": per_attack_s,
        "metrics_s": seconds - sum(per_attack_s.values()),
        "auc": {spec: entry["auc"] for spec, entry in results["attacks"].items()},
        "skipped": results["skipped"],
    }
    if warm:
        out["warm_seconds"], out["warm_per_attack_s"] = warm[-1]
    return out

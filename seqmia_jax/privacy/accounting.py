"""Privacy accounting of DP-SGD with Poisson subsampling, via dp_accounting.

One training step samples every example independently with probability
``sample_rate`` (q) and adds Gaussian noise of standard deviation
``noise_multiplier`` (sigma) times the clipping norm to the summed clipped
gradients. Its DP event is ``PoissonSampledDpEvent(q, GaussianDpEvent(sigma))``,
composed ``steps`` times. The neighbouring relation is add-or-remove-one, the
one Poisson subsampling amplifies.

Two accountants:
- ``"pld"`` (default): privacy loss distributions (Koskela et al. 2020,
  Doroshenko et al. 2022). Its epsilon is a pessimistic upper bound within the
  discretization of the loss values and is the tighter of the two.
- ``"rdp"``: Renyi DP (Mironov 2017) over dp_accounting's default orders;
  looser (often by 10-20%) but fast.
"""

import math

import dp_accounting
from dp_accounting import pld, rdp

ACCOUNTANTS: tuple[str, ...] = ("pld", "rdp")
NOISE_TOLERANCE = 1e-4  # absolute tolerance of noise_for_epsilon, in units of sigma


def _check_sampling(sample_rate: float, steps: int, delta: float) -> None:
    if not 0.0 < sample_rate <= 1.0:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps}")
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}")


def _make_accountant(accountant: str) -> dp_accounting.PrivacyAccountant:
    if accountant == "pld":
        return pld.PLDAccountant()
    if accountant == "rdp":
        return rdp.RdpAccountant()
    raise ValueError(f"accountant must be one of {ACCOUNTANTS}, got {accountant!r}")


def dp_sgd_event(noise_multiplier: float, sample_rate: float, steps: int) -> dp_accounting.DpEvent:
    """The DP event of ``steps`` Poisson-subsampled Gaussian steps."""
    step = dp_accounting.PoissonSampledDpEvent(
        sample_rate, dp_accounting.GaussianDpEvent(noise_multiplier)
    )
    return dp_accounting.SelfComposedDpEvent(step, int(steps))


def epsilon(
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    *,
    accountant: str = "pld",
) -> float:
    """Epsilon at ``delta`` of DP-SGD; inf when ``noise_multiplier`` is 0 (no noise)."""
    _check_sampling(sample_rate, steps, delta)
    if noise_multiplier < 0:
        raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier}")
    ledger = _make_accountant(accountant)
    if noise_multiplier == 0:
        return math.inf
    ledger.compose(dp_sgd_event(noise_multiplier, sample_rate, steps))
    return float(ledger.get_epsilon(delta))


def noise_for_epsilon(
    target_epsilon: float,
    sample_rate: float,
    steps: int,
    delta: float,
    *,
    accountant: str = "pld",
    tol: float = NOISE_TOLERANCE,
) -> float:
    """The smallest noise multiplier whose epsilon at ``delta`` is at most ``target_epsilon``.

    The result sigma satisfies ``epsilon(sigma, ...) <= target_epsilon`` under
    the same accountant, and is at most ``tol`` above the smallest such sigma
    (dp_accounting's calibrate_dp_mechanism: Brent's method, then a bisection
    fallback that keeps the constraint). Under PLD a search takes seconds, up to
    a minute at small sigma; RDP takes well under a second.
    """
    _check_sampling(sample_rate, steps, delta)
    if not target_epsilon > 0 or math.isinf(target_epsilon):
        raise ValueError(f"target_epsilon must be positive and finite, got {target_epsilon}")
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    _make_accountant(accountant)  # rejects an unknown name before any search

    def eps_of(sigma: float) -> float:
        return epsilon(sigma, sample_rate, steps, delta, accountant=accountant)

    # A finite bracket [low, high] with eps(low) > target >= eps(high): the
    # library's own bracket starts at sigma = 0, where epsilon is infinite,
    # which Brent's method cannot use. PLD evaluations cost up to seconds (more
    # at small sigma), so PLD starts from the RDP answer: RDP's epsilon is the
    # looser one, so its sigma nearly always meets the target under PLD too.
    if accountant == "pld":
        high = noise_for_epsilon(
            target_epsilon, sample_rate, steps, delta, accountant="rdp", tol=tol
        )
        shrink = 0.9
    else:
        high, shrink = 1.0, 0.5
    low = 0.0
    while eps_of(high) > target_epsilon:
        low, high = high, 2.0 * high
        if high > 2.0**30:
            raise ValueError(f"no noise multiplier below 2^30 reaches epsilon {target_epsilon}")
    if low == 0.0:  # eps(high) already meets the target: shrink down instead
        low = shrink * high
        while eps_of(low) <= target_epsilon:
            low, high = shrink * low, low
            if low < 2.0**-30:
                return high
    return float(
        dp_accounting.calibrate_dp_mechanism(
            lambda: _make_accountant(accountant),
            lambda sigma: dp_sgd_event(sigma, sample_rate, steps),
            target_epsilon,
            delta,
            bracket_interval=dp_accounting.ExplicitBracketInterval(low, high),
            tol=tol,
        )
    )

"""Differential privacy: accounting of DP-SGD (upper bounds on epsilon) and
empirical epsilon lower bounds from membership-inference scores (auditing)."""

from seqmia_jax.privacy.accounting import epsilon, noise_for_epsilon
from seqmia_jax.privacy.bounds import (
    audit_scores,
    choose_threshold,
    clopper_pearson,
    epsilon_lower_bound_cp,
    epsilon_lower_bound_gdp,
    epsilon_lower_bound_one_run,
    gdp_delta,
    gdp_epsilon,
)

__all__ = [
    "audit_scores",
    "choose_threshold",
    "clopper_pearson",
    "epsilon",
    "epsilon_lower_bound_cp",
    "epsilon_lower_bound_gdp",
    "epsilon_lower_bound_one_run",
    "gdp_delta",
    "gdp_epsilon",
    "noise_for_epsilon",
]

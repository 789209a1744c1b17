"""Membership-inference attacks over per-token statistics.

Importing this package registers every attack in ``ATTACKS``.
"""

from seqmia_jax.attacks import baselines, baseref, lira, profile, sequence, sparse  # noqa: F401  (registration)
from seqmia_jax.attacks.base import ATTACKS, AttackInputError, AttackInputs, AttackOutput

__all__ = ["ATTACKS", "AttackInputError", "AttackInputs", "AttackOutput"]

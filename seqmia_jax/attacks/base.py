"""Shared types for the attack library.

Legend: S shadow models, N samples, L positions, T targets.

An attack is a function registered in ``ATTACKS``::

    fn(inputs: AttackInputs, targets_T: np.ndarray, **options) -> AttackOutput

It scores every target model t in ``targets_T`` against all N samples using
leave-one-out: parameters fitted for target t never see row t of any
statistic. Higher scores mean "more likely a member".
"""

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from seqmia_jax.registry import Registry


class AttackInputError(ValueError):
    """Bad attack input: the message names the file or option and the problem."""


@dataclasses.dataclass(frozen=True)
class AttackInputs:
    """Everything an attack may read, as loaded from a work directory.

    Attributes:
      stats: statistic name -> float array S x N x L (``np.memmap`` is fine).
        Always holds ``loss``; ``logit``, ``mean_logp`` and ``std_logp``
        (Min-K%++ moments of log p under the model's own predictive
        distribution) when the scoring stage provided them.
      keep_SxN: bool membership matrix.
      mask_NxL: bool, False where a position is absent; None means all present.
      text: raw bytes of each sample (for zlib), or None.
    """

    stats: Mapping[str, np.ndarray]
    keep_SxN: np.ndarray
    mask_NxL: np.ndarray | None = None
    text: Sequence[bytes] | None = None

    @property
    def num_models(self) -> int:
        return self.keep_SxN.shape[0]

    @property
    def num_samples(self) -> int:
        return self.keep_SxN.shape[1]


@dataclasses.dataclass
class AttackOutput:
    """Scores of one attack.

    Attributes:
      scores_TxN: float64, higher = more likely a member of target t.
      evidence_TxNxL: optional per-position contributions to the score (for
        the leakage report); positions summing to the score where defined.
      diagnostics: free-form facts worth reporting (repairs made, shrinkage
        used, shadows dropped), JSON-serialisable.
    """

    scores_TxN: np.ndarray
    evidence_TxNxL: np.ndarray | None = None
    diagnostics: dict = dataclasses.field(default_factory=dict)


ATTACKS: Registry = Registry("attack")

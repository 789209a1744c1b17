"""The membership matrix ``keep_SxN``: which audit samples each shadow model trains on.

Legend: S shadow models, N audit samples, M rows per model (M = N/2 in the
balanced design, more with duplicated samples, see ``in_indices``).

Two designs (``ExperimentConfig.membership``):

- ``"balanced"`` (the default): every sample is IN for exactly S/2 models and
  every model trains on exactly N/2 samples. The second property lets all S
  models take the same number of optimizer steps per epoch and see each of
  their samples exactly once per epoch. It is built from complementary pairs:
  model ``pair[2p]`` gets a seeded random half of the samples and
  ``pair[2p+1]`` the other half, with the pairing itself a seeded random
  permutation of the models. With duplicated samples
  (``data.duplicated_samples``) each half takes exactly half of the duplicated
  samples too, so every training set has the same size.
- ``"poisson"``: each sample is in each model's training set independently
  with probability 1/2, so per-sample IN counts and per-model training-set
  sizes M_s vary. Independent inclusion is what Steinke et al.'s one-run
  bound needs (``seqmia_jax.privacy``): a model's training set then says
  nothing about any other model's. Training keeps shapes static by padding
  every model's rows to the largest M_s with ``PAD`` (``padded_in_indices``).
"""

from pathlib import Path

import numpy as np

from seqmia_jax.config import ConfigError
from seqmia_jax.workdir import read_json

DESIGNS = ("balanced", "poisson")
PAD = -1  # a padding slot in a model's rows (``padded_in_indices``): never a sample


def make_membership(
    num_models: int, num_samples: int, seed: int, copies_N: np.ndarray | None = None
) -> np.ndarray:
    """Returns a balanced bool ``keep_SxN`` drawn from ``seed``.

    ``copies_N`` (int N, ``data.base.training_copies``) marks the duplicated
    samples (copies > 1), which each half splits evenly; without any the draw
    is the plain one, so older work directories reproduce.
    """
    if num_models < 2 or num_models % 2:
        raise ConfigError(f"num_shadow_models must be even and >= 2; got {num_models}")
    if num_samples < 2 or num_samples % 2:
        raise ConfigError(
            f"data.num_samples must be even so that every model trains on exactly N/2 "
            f"samples; got {num_samples}"
        )
    rng = np.random.default_rng([seed, 0x6D656D62])  # "memb": independent of other streams
    models_S = rng.permutation(num_models)
    keep_SxN = np.zeros((num_models, num_samples), dtype=bool)
    strata = None
    if copies_N is not None and np.any(copies_N > 1):
        strata = [np.flatnonzero(copies_N > 1), np.flatnonzero(copies_N == 1)]
        if any(len(stratum) % 2 for stratum in strata):
            raise ConfigError("the number of duplicated samples must be even")
    for first, second in zip(models_S[0::2], models_S[1::2]):
        if strata is None:
            half = rng.permutation(num_samples)[: num_samples // 2]
        else:
            half = np.concatenate([rng.permutation(st)[: len(st) // 2] for st in strata])
        keep_SxN[first, half] = True
        keep_SxN[second] = ~keep_SxN[first]
    return keep_SxN


def make_poisson_membership(num_models: int, num_samples: int, seed: int) -> np.ndarray:
    """Returns a bool ``keep_SxN`` with every entry independently True with probability 1/2."""
    if num_models < 2 or num_samples < 1:
        raise ConfigError(
            f"poisson membership needs >= 2 models and >= 1 sample; got {num_models} x {num_samples}"
        )
    rng = np.random.default_rng([seed, 0x706F6973])  # "pois": independent of the balanced stream
    return rng.random((num_models, num_samples)) < 0.5


def draw_membership(
    design: str, num_models: int, num_samples: int, seed: int, copies_N: np.ndarray | None = None
) -> np.ndarray:
    """``keep_SxN`` of the named design (``DESIGNS``), drawn from ``seed``."""
    if design == "balanced":
        return make_membership(num_models, num_samples, seed, copies_N)
    if design == "poisson":
        return make_poisson_membership(num_models, num_samples, seed)
    raise ConfigError(f"membership must be one of {', '.join(DESIGNS)}; got {design!r}")


def in_indices(keep_SxN: np.ndarray, copies_N: np.ndarray | None = None) -> np.ndarray:
    """Returns the sorted IN sample indices of each model, int32 S x M.

    Sample n appears ``copies_N[n]`` times (default once, M = N/2), so a
    duplicated sample is seen that many times per epoch.
    """
    copies_N = np.ones(keep_SxN.shape[1], np.int64) if copies_N is None else copies_N
    size_S = keep_SxN.astype(np.int64) @ copies_N
    if not np.all(size_S == size_S[0]):
        raise ConfigError(
            "membership matrix is not balanced across models"
            + ("" if np.all(copies_N == 1) else " (nor across the duplicated samples)")
        )
    return np.stack([np.repeat(np.flatnonzero(row), copies_N[row]) for row in keep_SxN]).astype(
        np.int32
    )


def padded_in_indices(keep_SxN: np.ndarray, copies_N: np.ndarray | None = None) -> np.ndarray:
    """Each model's sorted IN sample indices, padded with ``PAD`` to the largest M_s: int32 S x M.

    For training sets of unequal size (the poisson design); a balanced
    ``keep_SxN`` gives ``in_indices`` exactly, with no padding.
    """
    copies_N = np.ones(keep_SxN.shape[1], np.int64) if copies_N is None else copies_N
    rows_S = [np.repeat(np.flatnonzero(row), copies_N[row]) for row in keep_SxN]
    width = max(len(rows) for rows in rows_S)
    rows_SxM = np.full((len(rows_S), width), PAD, np.int32)
    for s, rows in enumerate(rows_S):
        rows_SxM[s, : len(rows)] = rows
    return rows_SxM


def is_padded(rows_SxM: np.ndarray) -> bool:
    """Whether some model's rows end in ``PAD`` slots (training sets of unequal size)."""
    return bool(np.any(np.asarray(rows_SxM) == PAD))


def check_membership(
    keep_SxN: np.ndarray, where: str = "membership.npy", design: str = "balanced"
) -> None:
    """Raises a clear error unless ``keep_SxN`` is a bool matrix of ``design``.

    A balanced matrix has every sample IN for exactly S/2 models; a poisson
    one may have any counts (its draw is checked against the attacks'
    leave-one-out needs by ``validation``).
    """
    if keep_SxN.ndim != 2 or keep_SxN.dtype != bool:
        raise ConfigError(
            f"{where}: expected a 2-D bool array, got {keep_SxN.dtype} {keep_SxN.shape}"
        )
    if design == "poisson":
        return
    per_sample = keep_SxN.sum(axis=0)
    if not np.all(per_sample == keep_SxN.shape[0] // 2):
        bad = np.flatnonzero(per_sample != keep_SxN.shape[0] // 2)[:5]
        raise ConfigError(f"{where}: samples {bad.tolist()} are not IN for exactly S/2 models")


def complementary_pairs(keep_SxN: np.ndarray) -> np.ndarray:
    """The complementary model pairs of a balanced matrix, int P x 2 in a fixed order."""
    partner = {}
    rows = {row.tobytes(): s for s, row in enumerate(keep_SxN)}
    for s, row in enumerate(keep_SxN):
        other = rows.get((~row).tobytes())
        if other is None:
            raise ConfigError(f"model {s} has no complementary partner in the membership matrix")
        partner[s] = other
    return np.asarray(sorted({tuple(sorted((s, o))) for s, o in partner.items()}))


def shadow_subset(keep_SxN: np.ndarray, target: int, num_shadows: int) -> np.ndarray:
    """Models for evaluating ``target`` with ``num_shadows`` shadows: whole complementary pairs.

    Returns the target, its partner, then ``num_shadows / 2`` other pairs. Every
    sample is then IN for exactly half of the chosen models, as in the full
    design, so the attacks' leave-one-out fit for the target uses
    ``num_shadows / 2`` shadows on each side (one model per side is left out to
    keep the counts equal). At most S - 2 shadows are available.
    """
    pairs = complementary_pairs(keep_SxN)
    own = [p for p in pairs if target in p]
    others = [p for p in pairs if target not in p]
    if num_shadows % 2 or not 2 <= num_shadows <= 2 * len(others):
        raise ConfigError(
            f"num_shadows must be even and between 2 and {2 * len(others)} for "
            f"S={keep_SxN.shape[0]}; got {num_shadows}"
        )
    partner = [m for m in own[0] if m != target]
    chosen = np.concatenate(others[: num_shadows // 2])
    return np.concatenate([[target], partner, chosen]).astype(np.int64)


def recorded_design(workdir) -> str | None:
    """The membership design a work directory's models were trained with, from its config.json.

    "balanced" for a config.json older than the field; None without one
    (statistics brought from elsewhere), where the design is unknown.
    """
    path = Path(workdir) / "config.json"
    if not path.is_file():
        return None
    return read_json(path).get("config", {}).get("membership", "balanced")

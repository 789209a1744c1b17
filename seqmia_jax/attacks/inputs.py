"""Loading and checking attack inputs from a work directory.

Legend: S shadow models, N samples, L positions, T targets.

Inputs (docs/attack_format.md has the full format for users bringing their own
statistics):
- ``membership.npy``: bool S x N, True where sample n trained model s.
- ``stats/<statistic>.npy``: float S x N x L, memory-mapped. ``loss.npy`` is
  required; ``logit``, ``mean_logp`` and ``std_logp`` are optional. Every
  value must be finite, absent positions included (they are ignored).
- ``stats/mask.npy`` (optional): bool N x L, False where a position is absent.
- raw text for ``zlib`` (optional), either ``text.npy`` (N bytes or str
  objects) or ``text_bytes.npy`` (uint8 N x M, rows right-padded with zeros)
  with an optional ``text_lengths.npy`` (int N; without it trailing zero bytes
  are stripped).

Leave-one-out needs, for every target t and sample n, at least
``MIN_PER_SIDE`` IN and ``MIN_PER_SIDE`` OUT shadows among the models other
than t, and at least ``MIN_MODELS`` models in all. Every baseline and
shadow-based attack is checked against the same rule, so all attacks of a run
see the same targets.
"""

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seqmia_jax.attacks.base import AttackInputError, AttackInputs

MIN_MODELS = 4
MIN_PER_SIDE = 2
_CHUNK_ELEMENTS = 1 << 24  # finiteness checks read memmaps in blocks of about this many values


def _load(path: Path, *, mmap: bool = False, allow_pickle: bool = False) -> np.ndarray:
    if not path.is_file():
        raise AttackInputError(f"{path}: file not found")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=allow_pickle)
    except Exception as err:  # numpy raises several types for corrupt files
        raise AttackInputError(f"{path}: not a readable .npy array ({err})") from err


def _as_bool(array: np.ndarray, path: Path) -> np.ndarray:
    if array.dtype == bool:
        return np.asarray(array)
    if np.issubdtype(array.dtype, np.integer) and np.isin(array, (0, 1)).all():
        return np.asarray(array, dtype=bool)
    raise AttackInputError(f"{path}: expected a bool (or 0/1) array, got dtype {array.dtype}")


def _check_finite(stat: np.ndarray, path: Path) -> None:
    """Raise naming the count and first indices of NaN/Inf values, reading in chunks."""
    rows = max(1, _CHUNK_ELEMENTS // max(1, math.prod(stat.shape[1:])))
    num_nan = num_inf = 0
    first: list[tuple[int, ...]] = []
    for start in range(0, stat.shape[0], rows):
        chunk = np.asarray(stat[start : start + rows])
        bad = ~np.isfinite(chunk)
        if bad.any():
            num_nan += int(np.isnan(chunk).sum())
            num_inf += int(np.isinf(chunk).sum())
            for index in np.argwhere(bad)[: 5 - len(first)]:
                first.append((start + int(index[0]), *map(int, index[1:])))
    if num_nan or num_inf:
        raise AttackInputError(
            f"{path}: {num_nan} NaN and {num_inf} Inf values; first at (model, sample, "
            f"position) {', '.join(map(str, first))}. Every value must be finite, absent "
            "positions included (write any finite value there and mark them in stats/mask.npy)"
        )


def _load_text(workdir: Path, num_samples: int) -> list[bytes] | None:
    text_path, bytes_path = workdir / "text.npy", workdir / "text_bytes.npy"
    if text_path.exists() and bytes_path.exists():
        raise AttackInputError(f"{workdir}: give text.npy or text_bytes.npy, not both")
    if text_path.exists():
        # Object arrays need pickle: only load text.npy from a work directory you trust.
        text = _load(text_path, allow_pickle=True)
        if text.shape != (num_samples,):
            raise AttackInputError(f"{text_path}: shape {text.shape}, expected ({num_samples},)")
        out = []
        for n, item in enumerate(text):
            if isinstance(item, str):
                item = item.encode("utf-8")
            if not isinstance(item, (bytes, np.bytes_)):
                raise AttackInputError(
                    f"{text_path}: entry {n} is {type(item).__name__}, not bytes"
                )
            out.append(bytes(item))
        return out
    if bytes_path.exists():
        data = _load(bytes_path)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[0] != num_samples:
            raise AttackInputError(
                f"{bytes_path}: expected uint8 ({num_samples}, M), got {data.dtype} {data.shape}"
            )
        lengths_path = workdir / "text_lengths.npy"
        if lengths_path.exists():
            lengths = _load(lengths_path)
            if lengths.shape != (num_samples,) or not np.issubdtype(lengths.dtype, np.integer):
                raise AttackInputError(f"{lengths_path}: expected int ({num_samples},)")
            if lengths.min() < 0 or lengths.max() > data.shape[1]:
                raise AttackInputError(f"{lengths_path}: lengths outside [0, {data.shape[1]}]")
            return [row[:length].tobytes() for row, length in zip(data, lengths)]
        return [row.tobytes().rstrip(b"\0") for row in data]
    return None


def load_inputs(workdir: str | os.PathLike, *, check_finite: bool = True) -> AttackInputs:
    """Load and validate the attack inputs of a work directory (statistics memory-mapped)."""
    workdir = Path(workdir)
    keep_path = workdir / "membership.npy"
    keep = _load(keep_path)
    if keep.ndim != 2:
        raise AttackInputError(f"{keep_path}: expected a 2-D S x N array, got shape {keep.shape}")
    keep_SxN = _as_bool(keep, keep_path)
    num_models, num_samples = keep_SxN.shape
    if num_models < MIN_MODELS:
        raise AttackInputError(
            f"{keep_path}: {num_models} shadow models; leave-one-out attacks need at least "
            f"{MIN_MODELS}"
        )
    in_N = keep_SxN.sum(axis=0)
    lacking = np.flatnonzero((in_N < MIN_PER_SIDE) | (num_models - in_N < MIN_PER_SIDE))
    if lacking.size:
        raise AttackInputError(
            f"{keep_path}: samples {lacking[:10].tolist()} ({lacking.size} in all) have fewer "
            f"than {MIN_PER_SIDE} IN or {MIN_PER_SIDE} OUT shadow models"
        )

    stats_dir = workdir / "stats"
    if not (stats_dir / "loss.npy").is_file():
        raise AttackInputError(f"{stats_dir / 'loss.npy'}: file not found (loss is required)")
    stats: dict[str, np.ndarray] = {}
    for path in sorted(stats_dir.glob("*.npy")):
        if path.name == "mask.npy":
            continue
        stat = _load(path, mmap=True)
        if stat.ndim != 3 or stat.shape[:2] != (num_models, num_samples):
            raise AttackInputError(
                f"{path}: shape {stat.shape}, expected ({num_models}, {num_samples}, L) to match "
                f"{keep_path}"
            )
        if not np.issubdtype(stat.dtype, np.floating):
            raise AttackInputError(f"{path}: expected a float array, got dtype {stat.dtype}")
        stats[path.stem] = stat
    shape = stats["loss"].shape
    for name, stat in stats.items():
        if stat.shape != shape:
            raise AttackInputError(
                f"{stats_dir / (name + '.npy')}: shape {stat.shape} differs from "
                f"{stats_dir / 'loss.npy'} {shape}"
            )
        if check_finite:
            _check_finite(stat, stats_dir / f"{name}.npy")

    mask_NxL = None
    mask_path = stats_dir / "mask.npy"
    if mask_path.exists():
        mask_NxL = _as_bool(_load(mask_path), mask_path)
        if mask_NxL.shape != shape[1:]:
            raise AttackInputError(
                f"{mask_path}: shape {mask_NxL.shape}, expected {shape[1:]} to match "
                f"{stats_dir / 'loss.npy'}"
            )
        empty = np.flatnonzero(~mask_NxL.any(axis=1))
        if empty.size:
            raise AttackInputError(
                f"{mask_path}: samples {empty[:10].tolist()} ({empty.size} in all) have no "
                "present position"
            )
    text = _load_text(workdir, num_samples)
    return AttackInputs(stats=stats, keep_SxN=keep_SxN, mask_NxL=mask_NxL, text=text)


def subsample_models(inputs: AttackInputs, models: Sequence[int] | np.ndarray) -> AttackInputs:
    """Restrict the inputs to the shadow models ``models`` (for the number-of-shadows sweep).

    Model i of the result is ``models[i]``: targets passed to ``score_attacks``
    afterwards index the subset. A contiguous ascending range keeps memmaps lazy;
    any other selection is read into memory.
    """
    models_M = np.asarray(models, dtype=np.int64).reshape(-1)
    if models_M.size and (models_M.min() < 0 or models_M.max() >= inputs.num_models):
        raise AttackInputError(f"model indices must lie in [0, {inputs.num_models})")
    if np.unique(models_M).size != models_M.size:
        raise AttackInputError("model indices must be distinct")
    if models_M.size < MIN_MODELS:
        raise AttackInputError(f"{models_M.size} models; leave-one-out needs at least {MIN_MODELS}")
    if np.array_equal(models_M, np.arange(models_M[0], models_M[0] + models_M.size)):
        index = slice(int(models_M[0]), int(models_M[-1]) + 1)  # keeps memmaps lazy
    else:
        index = models_M
    stats = {name: stat[index] for name, stat in inputs.stats.items()}
    return dataclasses.replace(inputs, stats=stats, keep_SxN=inputs.keep_SxN[index])


def resolve_targets(targets: Sequence[int] | int | None, num_models: int) -> np.ndarray:
    """Target model indices: an explicit list, the first ``targets`` models, or all of them."""
    if targets is None:
        return np.arange(num_models)
    if isinstance(targets, (int, np.integer)):
        if not 1 <= targets <= num_models:
            raise AttackInputError(f"number of targets must be in [1, {num_models}], got {targets}")
        return np.arange(int(targets))
    targets_T = np.asarray(list(targets), dtype=np.int64)
    if targets_T.size == 0:
        raise AttackInputError("the list of targets is empty")
    if targets_T.min() < 0 or targets_T.max() >= num_models:
        raise AttackInputError(f"targets must lie in [0, {num_models}), got {targets_T.tolist()}")
    if np.unique(targets_T).size != targets_T.size:
        raise AttackInputError(f"targets must be distinct, got {targets_T.tolist()}")
    return targets_T


def check_membership(keep_SxN: np.ndarray, targets_T: np.ndarray) -> None:
    """Require MIN_PER_SIDE IN and OUT shadows per sample once each target is left out."""
    keep_SxN = np.asarray(keep_SxN, dtype=bool)
    in_N = keep_SxN.sum(axis=0)
    out_N = keep_SxN.shape[0] - in_N
    for t in targets_T:
        in_left_N = in_N - keep_SxN[t]
        out_left_N = out_N - ~keep_SxN[t]
        lacking = np.flatnonzero((in_left_N < MIN_PER_SIDE) | (out_left_N < MIN_PER_SIDE))
        if lacking.size:
            raise AttackInputError(
                f"membership.npy: with target {int(t)} left out, samples {lacking[:10].tolist()} "
                f"({lacking.size} in all) keep fewer than {MIN_PER_SIDE} IN or {MIN_PER_SIDE} OUT "
                f"shadows (first: {int(in_left_N[lacking[0]])} IN, {int(out_left_N[lacking[0]])} "
                "OUT); use more shadow models"
            )

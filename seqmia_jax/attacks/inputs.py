"""Loading and checking attack inputs from a work directory.

Legend: S shadow models, N samples, L positions, T targets.

Inputs (docs/attack_format.md has the full format for users bringing their own
statistics):
- ``membership.npy``: bool S x N, True where sample n trained model s.
- ``stats/<statistic>.npy``: float S x N x L, memory-mapped. ``loss.npy`` is
  required; ``logit``, ``mean_logp`` and ``std_logp`` are optional. Every
  value must be finite, absent positions included (they are ignored).
  ``loss`` is checked at load; any other statistic when an attack first reads
  it, so a bad file blocks only the attacks that need it.
- ``stats/mask.npy`` (optional): bool N x L, False where a position is absent.
- ``stats/secret_mask.npy`` (written with secrets): bool N x L, the secret
  positions. It is the same for IN and OUT, so no attack reads it; it is not
  a statistic.
- ``stats/base_loss.npy``, ``stats/base_logit.npy`` (optional, written when
  the shadows are fine-tuned from a pretrained base model): float N x L, the
  base model's statistics (one model: no S axis), read and checked (shape,
  dtype, finite) when an attack first reads ``inputs.base_stats``. They are
  not S x N x L statistics.
- ``tokens.npy`` (optional): int N x L token ids, position l holding the
  token whose prediction statistic l is (``profile:by=token`` prefers them to
  the text's bytes; a subword tokenizer's ids exceed one byte). Read when an
  attack first reads ``inputs.tokens_NxL``.
- raw text for ``zlib`` (optional), either ``text.npy`` (a fixed-width bytes
  or str array, dtype ``S`` or ``U``) or ``text_bytes.npy`` (uint8 N x M, rows
  right-padded with zeros) with an optional ``text_lengths.npy`` (int N;
  without it trailing zero bytes are stripped). It is read only when an attack
  reads ``inputs.text``.

Nothing is ever unpickled: every file is loaded with ``allow_pickle=False``,
so a work directory from someone else cannot run code.

Leave-one-out needs, for every target t and sample n, at least
``MIN_PER_SIDE`` IN and ``MIN_PER_SIDE`` OUT shadows among the models other
than t, and at least ``MIN_MODELS`` models in all. Every baseline and
shadow-based attack is checked against the same rule, so all attacks of a run
see the same targets.
"""

import dataclasses
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from seqmia_jax.attacks.base import AttackInputError, AttackInputs, BaseStats, LazyMapping

MIN_MODELS = 4
# The base model's statistics, stats/base_<name>.npy (N x L).
BASE_STATISTICS = ("loss", "logit")
# Files in stats/ that are not S x N x L statistics.
NOT_STATISTICS = ("mask.npy", "secret_mask.npy", *(f"base_{name}.npy" for name in BASE_STATISTICS))
MIN_PER_SIDE = 2
_CHUNK_ELEMENTS = 1 << 24  # finiteness checks read memmaps in blocks of about this many values


def _load(path: Path, *, mmap: bool = False) -> np.ndarray:
    if not path.is_file():
        raise AttackInputError(f"{path}: file not found")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic.startswith(b"PK\x03\x04"):  # np.load would open it as an archive
        raise AttackInputError(
            f"{path}: is an .npz archive (np.savez), not a .npy array; save it with np.save"
        )
    if magic != b"\x93NUMPY":  # np.load would try to unpickle it
        raise AttackInputError(f"{path}: not a readable .npy array (no NumPy header)")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as err:
        if "allow_pickle" in str(err):  # an object array: loading it would run pickle
            raise AttackInputError(
                f"{path}: holds Python objects, which would need pickle to load; pickle is "
                "never used on inputs (save plain numeric or fixed-width text arrays)"
            ) from None
        raise AttackInputError(f"{path}: not a readable .npy array ({err})") from None
    except Exception as err:  # numpy raises several types for corrupt files
        raise AttackInputError(f"{path}: not a readable .npy array ({err})") from err


def _as_bool(array: np.ndarray, path: Path) -> np.ndarray:
    if array.dtype == bool:
        return np.asarray(array)
    if np.issubdtype(array.dtype, np.integer):
        bad = np.setdiff1d(np.unique(array), (0, 1))
        if bad.size == 0:
            return np.asarray(array, dtype=bool)
        raise AttackInputError(
            f"{path}: must hold only 0/1 (or bool); found the value(s) {bad[:5].tolist()}"
        )
    raise AttackInputError(f"{path}: expected a bool (or 0/1) array, got dtype {array.dtype}")


def _check_finite(stat: np.ndarray, path: Path, axes: str = "model, sample, position") -> None:
    """Raise naming the count and first indices (over ``axes``) of NaN/Inf values, reading in chunks."""
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
            f"{path}: {num_nan} NaN and {num_inf} Inf values; first at ({axes}) "
            f"{', '.join(map(str, first))}. Every value must be finite, absent "
            "positions included (write any finite value there and mark them in stats/mask.npy)"
        )


def _text_source(workdir: Path) -> Path | None:
    """The text file to read, or None; both present is refused when the text is read."""
    text_path, bytes_path = workdir / "text.npy", workdir / "text_bytes.npy"
    return text_path if text_path.exists() else bytes_path if bytes_path.exists() else None


def _load_text(path: Path, num_samples: int) -> list[bytes]:
    if path.name == "text.npy" and (path.parent / "text_bytes.npy").exists():
        raise AttackInputError(f"{path.parent}: give text.npy or text_bytes.npy, not both")
    data = _load(path)
    if path.name == "text.npy":
        if data.shape != (num_samples,) or data.dtype.kind not in "SU":
            raise AttackInputError(
                f"{path}: expected a ({num_samples},) bytes or str array (dtype S or U), got "
                f"{data.dtype} {data.shape}"
            )
        return [item.encode("utf-8") if isinstance(item, str) else bytes(item) for item in data]
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[0] != num_samples:
        raise AttackInputError(
            f"{path}: expected uint8 ({num_samples}, M), got {data.dtype} {data.shape}"
        )
    lengths_path = path.parent / "text_lengths.npy"
    if lengths_path.exists():
        lengths = _load(lengths_path)
        if lengths.shape != (num_samples,) or not np.issubdtype(lengths.dtype, np.integer):
            raise AttackInputError(f"{lengths_path}: expected int ({num_samples},)")
        if lengths.min() < 0 or lengths.max() > data.shape[1]:
            raise AttackInputError(f"{lengths_path}: lengths outside [0, {data.shape[1]}]")
        return [row[:length].tobytes() for row, length in zip(data, lengths)]
    return [row.tobytes().rstrip(b"\0") for row in data]


class LazyText(Sequence):
    """The raw texts, read and checked on first use (only zlib and profile:by=token need them)."""

    def __init__(self, path: Path, num_samples: int):
        self._path, self._num_samples, self._texts = path, num_samples, None

    def _get(self) -> list[bytes]:
        if self._texts is None:
            self._texts = _load_text(self._path, self._num_samples)
        return self._texts

    def __len__(self) -> int:
        return self._num_samples

    def __getitem__(self, index):
        return self._get()[index]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._get())


class LazyArray:
    """A .npy file read on first ``np.asarray`` (tokens.npy: only profile:by=token reads it)."""

    def __init__(self, path: Path):
        self.path, self._array = path, None

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        if self._array is None:
            self._array = _load(self.path)
        return self._array if dtype is None else self._array.astype(dtype)


class LazyStats(LazyMapping):
    """Statistic name -> S x N x L memmap, each checked (shape, dtype, finite) on first read."""

    def view(self, index) -> "LazyStats":
        """The same statistics restricted to models ``index``, still lazy."""
        return LazyStats(lambda name: self[name][index], self._names)


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
    names = sorted(p.stem for p in stats_dir.glob("*.npy") if p.name not in NOT_STATISTICS)
    loss_shape: list[tuple[int, ...]] = []  # filled once loss is read

    def load_stat(name: str) -> np.ndarray:
        path = stats_dir / f"{name}.npy"
        stat = _load(path, mmap=True)
        if stat.ndim != 3 or stat.shape[:2] != (num_models, num_samples):
            raise AttackInputError(
                f"{path}: shape {stat.shape}, expected ({num_models}, {num_samples}, L) to match "
                f"{keep_path}"
            )
        if not np.issubdtype(stat.dtype, np.floating):
            raise AttackInputError(f"{path}: expected a float array, got dtype {stat.dtype}")
        if loss_shape and stat.shape != loss_shape[0]:
            raise AttackInputError(
                f"{path}: shape {stat.shape} differs from {stats_dir / 'loss.npy'} {loss_shape[0]}"
            )
        if check_finite:
            _check_finite(stat, path)
        return stat

    stats = LazyStats(load_stat, names)
    shape = stats["loss"].shape  # the required statistic is checked now
    loss_shape.append(shape)

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

    def load_base(name: str) -> np.ndarray:
        path = stats_dir / f"base_{name}.npy"
        stat = _load(path, mmap=True)
        if stat.shape != shape[1:]:
            raise AttackInputError(
                f"{path}: shape {stat.shape}, expected {shape[1:]} (N x L: one base model) to "
                f"match {stats_dir / 'loss.npy'}"
            )
        if not np.issubdtype(stat.dtype, np.floating):
            raise AttackInputError(f"{path}: expected a float array, got dtype {stat.dtype}")
        if check_finite:
            _check_finite(stat, path, "sample, position")
        return stat

    base_names = [name for name in BASE_STATISTICS if (stats_dir / f"base_{name}.npy").exists()]
    source = _text_source(workdir)
    text = None if source is None else LazyText(source, num_samples)
    tokens_path = workdir / "tokens.npy"
    return AttackInputs(
        stats=stats,
        keep_SxN=keep_SxN,
        mask_NxL=mask_NxL,
        text=text,
        base_stats=BaseStats(load_base, base_names),
        tokens_NxL=LazyArray(tokens_path) if tokens_path.exists() else None,
    )


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
    if isinstance(inputs.stats, LazyStats):
        stats = inputs.stats.view(index)
    else:
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

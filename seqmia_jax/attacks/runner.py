"""The attack stage: load a work directory, run attacks, evaluate, write results/.

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

Outputs, under ``results/`` (or ``out_dir``): ``results.json`` (schema in
``run_attacks``), ``results.md``, ``targets.npy``, ``scores/<safe>.npy``
(float64 T x N) and ``evidence/<safe>.npy`` (float32 T x N x L) for the
evidence attack.
"""

import dataclasses
import inspect
import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from absl import logging

from seqmia_jax.attacks.base import ATTACKS, AttackInputError, AttackInputs
from seqmia_jax.attacks.specs import DEFAULT_ATTACKS, parse_spec, safe_name
from seqmia_jax.evaluation.metrics import DEFAULT_FPRS, evaluate

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


def _resolve_attack(spec: str):
    """The registered function of a spec and its options, checked against its signature."""
    name, options = parse_spec(spec)
    if name not in ATTACKS:
        raise AttackInputError(
            f"unknown attack {name!r} in spec {spec!r}; known: {', '.join(ATTACKS.names())}"
        )
    fn = ATTACKS.get(name)
    params = list(inspect.signature(fn).parameters.values())[2:]
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        known = [p.name for p in params]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise AttackInputError(
                f"attack {name!r} (spec {spec!r}): unknown option(s) {', '.join(unknown)}; "
                f"known: {', '.join(known) or 'none'}"
            )
    return fn, options


def _supports_evidence(fn) -> bool:
    """Whether an attack takes ``evidence=True`` (declared by a ``supports_evidence`` attribute)."""
    return getattr(fn, "supports_evidence", False) or "evidence" in inspect.signature(fn).parameters


def score_attacks(
    inputs: AttackInputs,
    attacks: Sequence[str] | None,
    targets: Sequence[int] | int | None = None,
    *,
    bootstrap: int = 200,
    seed: int = 0,
    evidence_attack: str | None = None,
) -> tuple[dict, dict[str, np.ndarray], np.ndarray | None]:
    """Run and evaluate attacks in memory (no files).

    ``attacks=None`` runs ``DEFAULT_ATTACKS`` and skips, with a logged note,
    those that are not registered or whose inputs are absent; named attacks
    fail instead.

    Returns:
      (results, scores, evidence): the results.json dict without file names,
      spec -> scores T x N, and the evidence T x N x L of ``evidence_attack``.
    """
    explicit = attacks is not None
    specs = list(attacks) if explicit else list(DEFAULT_ATTACKS)
    if len(set(specs)) != len(specs):
        raise AttackInputError(f"attack specs repeat: {specs}")
    if evidence_attack is not None and evidence_attack not in specs:
        raise AttackInputError(f"evidence attack {evidence_attack!r} is not among {specs}")
    targets_T = resolve_targets(targets, inputs.num_models)
    check_membership(inputs.keep_SxN, targets_T)
    resolved, skipped = {}, {}
    for spec in specs:
        try:
            resolved[spec] = _resolve_attack(spec)
        except AttackInputError as err:
            if explicit or parse_spec(spec)[0] in ATTACKS:
                raise
            skipped[spec] = str(err)
            logging.info("skipping %s: not registered", spec)

    labels_TxN = np.asarray(inputs.keep_SxN, dtype=bool)[targets_T]
    results = {
        "num_models": inputs.num_models,
        "num_samples": inputs.num_samples,
        "seq_len": int(inputs.stats["loss"].shape[2]),
        "targets": targets_T.tolist(),
        "statistics": sorted(inputs.stats),
        "fprs": list(DEFAULT_FPRS),
        "bootstrap": {"num": bootstrap, "unit": "sample", "seed": seed},
        "attacks": {},
        "skipped": skipped,
    }
    all_scores, evidence = {}, None
    for spec, (fn, options) in resolved.items():
        start = time.perf_counter()
        if spec == evidence_attack and _supports_evidence(fn):
            options = {**options, "evidence": True}  # only this attack pays for evidence
        try:
            output = fn(inputs, targets_T, **options)
        except AttackInputError as err:
            if explicit:
                raise
            skipped[spec] = str(err)
            logging.info("skipping %s: %s", spec, err)
            continue
        seconds = time.perf_counter() - start
        scores_TxN = np.asarray(output.scores_TxN, dtype=np.float64)
        if scores_TxN.shape != labels_TxN.shape:
            raise RuntimeError(
                f"attack {spec!r} returned scores {scores_TxN.shape}, expected {labels_TxN.shape}"
            )
        diagnostics = dict(output.diagnostics)
        num_nan = int(np.isnan(scores_TxN).sum())
        if num_nan:
            # Rank NaN scores lowest (never a member) and say so, rather than fail the run.
            logging.warning("attack %s: %d NaN scores, ranked lowest", spec, num_nan)
            diagnostics["num_nan_scores"] = num_nan
            scores_TxN = np.where(np.isnan(scores_TxN), -np.inf, scores_TxN)
        metrics = evaluate(scores_TxN, labels_TxN, num_bootstrap=bootstrap, seed=seed)
        results["attacks"][spec] = {**metrics, "seconds": seconds, "diagnostics": diagnostics}
        all_scores[spec] = scores_TxN
        if spec == evidence_attack:
            if output.evidence_TxNxL is None:
                logging.warning("evidence attack %s produced no evidence", spec)
            else:
                evidence = np.asarray(output.evidence_TxNxL, dtype=np.float32)
        logging.info("%s: AUC %.4f in %.2f s", spec, metrics["auc"], seconds)
    return results, all_scores, evidence


def _json_ready(value):
    """Plain JSON types; NaN and Inf become null."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run_attacks(
    workdir: str | os.PathLike,
    attacks: Sequence[str] | None = None,
    targets: Sequence[int] | int | None = None,
    *,
    bootstrap: int = 200,
    evidence_attack: str | None = None,
    out_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    seed: int = 0,
) -> dict:
    """Run attacks on a work directory, evaluate them and write ``results/``.

    results.json: {"num_models", "num_samples", "seq_len", "targets",
    "statistics", "fprs", "bootstrap", "skipped": {spec: reason},
    "attacks": {spec: {"auc", "auc_ci", "num_positives", "num_negatives",
    "tpr_at_fpr": {"0.01": {"tpr", "ci", "num_negatives", "false_positives",
    "resolved"}, "0.001": ..., "0.0001": ...}, "per_target": {"auc": {"mean",
    "std", "min", "max"}, "tpr@0.001": {...}}, "seconds", "diagnostics",
    "scores_file", ["evidence_file"]}}}. NaN is written as null.

    Raises:
      AttackInputError: bad inputs, attack names or options.
      FileExistsError: results exist and ``overwrite`` is False.
    """
    out = Path(out_dir) if out_dir is not None else Path(workdir) / "results"
    owned = ["results.json", "results.md", "targets.npy", "scores", "evidence"]
    existing = [name for name in owned if (out / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{out}: results exist ({', '.join(existing)}); pass overwrite=True (--overwrite) "
            "to replace them"
        )
    inputs = load_inputs(workdir)
    results, all_scores, evidence = score_attacks(
        inputs, attacks, targets, bootstrap=bootstrap, seed=seed, evidence_attack=evidence_attack
    )
    for name in existing:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    (out / "scores").mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    for spec, scores_TxN in all_scores.items():
        stem = safe_name(spec)
        while stem in used:  # distinct specs may sanitize to one name
            stem += "_"
        used.add(stem)
        np.save(out / "scores" / f"{stem}.npy", scores_TxN)
        results["attacks"][spec]["scores_file"] = f"scores/{stem}.npy"
        if spec == evidence_attack and evidence is not None:
            (out / "evidence").mkdir(exist_ok=True)
            np.save(out / "evidence" / f"{stem}.npy", evidence)
            results["attacks"][spec]["evidence_file"] = f"evidence/{stem}.npy"
    np.save(out / "targets.npy", np.asarray(results["targets"], dtype=np.int64))
    results = _json_ready(results)
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(out / "results.json")
    (out / "results.md").write_text(results_table_markdown(results))
    return results


def _fmt(value: float | None, digits: int) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _with_ci(value: float | None, ci: Sequence[float | None], digits: int) -> str:
    lo, hi = ci if ci else (None, None)
    if lo is None or hi is None:
        return _fmt(value, digits)
    return f"{_fmt(value, digits)} [{_fmt(lo, digits)}, {_fmt(hi, digits)}]"


def results_table_markdown(results: dict) -> str:
    """A markdown table: one row per attack, AUC and TPR at each FPR with 95% CIs."""
    attacks = results.get("attacks", {})
    if not attacks:
        return "No attack results.\n"
    fpr_keys = sorted(next(iter(attacks.values()))["tpr_at_fpr"], key=float, reverse=True)
    header = ["attack", "AUC [95% CI]"] + [f"TPR@{key} [95% CI]" for key in fpr_keys] + ["s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    unresolved = False
    for spec, entry in attacks.items():
        cells = [f"`{spec}`", _with_ci(entry["auc"], entry.get("auc_ci"), 3)]
        for key in fpr_keys:
            point = entry["tpr_at_fpr"][key]
            cell = _with_ci(point["tpr"], point.get("ci"), 4)
            if not point["resolved"]:
                cell += " †"
                unresolved = True
            cells.append(cell)
        cells.append(_fmt(entry.get("seconds"), 2))
        lines.append("| " + " | ".join(cells) + " |")
    first = next(iter(attacks.values()))
    negatives = first["tpr_at_fpr"][fpr_keys[0]]["num_negatives"]
    lines.append("")
    lines.append(
        f"{negatives} negatives (non-member target/sample pairs) over "
        f"{len(results.get('targets', []))} targets; TPR@f is resolved only with at least 1/f."
    )
    if unresolved:
        lines.append("† unresolved: fewer than 1/f negatives, so one false positive exceeds f.")
    for spec, reason in results.get("skipped", {}).items():
        lines.append(f"Skipped `{spec}`: {reason}")
    return "\n".join(lines) + "\n"

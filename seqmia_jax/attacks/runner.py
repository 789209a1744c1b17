"""The attack stage: run attacks on loaded inputs, evaluate, write results/.

Legend: S shadow models, N samples, L positions, T targets.

Inputs are loaded and checked by ``seqmia_jax.attacks.inputs`` (re-exported
here). Outputs, under ``results/`` (or ``out_dir``): ``results.json`` (schema
in ``run_attacks``), ``results.md``, ``targets.npy``, ``scores/<safe>.npy``
(float64 T x N) and ``evidence/<safe>.npy`` (float32 T x N x L) for the
evidence attack.
"""

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from absl import logging

from seqmia_jax import membership
from seqmia_jax.attacks import common
from seqmia_jax.attacks.base import ATTACKS, Attack, AttackInputError, AttackInputs, AttackOptions
from seqmia_jax.attacks.inputs import (  # noqa: F401  (re-exported)
    MIN_MODELS,
    MIN_PER_SIDE,
    check_membership,
    load_inputs,
    resolve_targets,
    subsample_models,
)
from seqmia_jax.attacks.specs import DEFAULT_ATTACKS, parse_spec, safe_name, split_specs
from seqmia_jax.evaluation import memorization
from seqmia_jax.evaluation.metrics import DEFAULT_FPRS, evaluate
from seqmia_jax.report.table import epsilon_table_markdown, results_table_markdown
from seqmia_jax.workdir import (
    json_ready,
    read_json,
    recover_swap,
    replacing,
    sha256_of,
    write_json,
)

# What the attack stage writes into its results directory (everything else there
# belongs to other stages and is kept).
OWNED = ("results.json", "results.md", "targets.npy", "scores", "evidence")
STAGE_MARKER = "attack_stage.json"  # the pipeline's record of what produced the results
BOUND_CONFIDENCE = 0.95  # of the empirical epsilon lower bounds
NON_DP_DELTA = 1e-5  # delta of the lower bounds when the shadows are not DP-trained


def resolve_attack(spec: str) -> tuple[Attack, AttackOptions]:
    """The registered attack of a spec and its parsed, checked options."""
    name, options = parse_spec(spec)
    if name not in ATTACKS:
        raise AttackInputError(
            f"unknown attack {name!r} in spec {spec!r}; known: {', '.join(ATTACKS.names())}"
        )
    attack = ATTACKS.get(name)
    return attack, attack.parse(options)


def score_attacks(
    inputs: AttackInputs,
    attacks: Sequence[str] | str | None,
    targets: Sequence[int] | int | None = None,
    *,
    bootstrap: int = 200,
    seed: int = 0,
    evidence_attack: str | None = None,
) -> tuple[dict, dict[str, np.ndarray], np.ndarray | None]:
    """Run and evaluate attacks in memory (no files).

    ``attacks`` is a list of specs or one ";"-separated string. ``attacks=None``
    runs ``DEFAULT_ATTACKS`` and skips, with a logged note,
    those that are not registered or whose inputs are absent; named attacks
    fail instead. Without any base-model statistics, the default set leaves
    out the attacks that read them, unlisted.

    Returns:
      (results, scores, evidence): the results.json dict without file names,
      spec -> scores T x N, and the evidence T x N x L of ``evidence_attack``.
    """
    explicit = attacks is not None
    if isinstance(attacks, str):  # "lira;profile" as on the command line
        attacks = split_specs(attacks)
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
            resolved[spec] = resolve_attack(spec)
        except AttackInputError as err:
            if explicit or parse_spec(spec)[0] in ATTACKS:
                raise
            skipped[spec] = str(err)
            logging.info("skipping %s: not registered", spec)
    if not explicit and not inputs.base_stats:
        # No base model (a from-scratch run): attacks against it do not apply, so they are
        # left out rather than listed as skipped, and such a run's results stay as they were.
        for spec in [s for s, (_, opt) in resolved.items() if opt.base_statistics()]:
            del resolved[spec]
            logging.info("leaving out %s: no base-model statistics (a from-scratch run)", spec)
    fallbacks = _check_statistics(inputs, resolved, skipped, explicit)

    labels_TxN = np.asarray(inputs.keep_SxN, dtype=bool)[targets_T]
    results = {
        "num_models": inputs.num_models,
        "num_samples": inputs.num_samples,
        "seq_len": int(inputs.stats["loss"].shape[2]),
        "targets": targets_T.tolist(),
        "statistics": sorted(inputs.stats),
        **({"base_statistics": sorted(inputs.base_stats)} if inputs.base_stats else {}),
        "fprs": list(DEFAULT_FPRS),
        "bootstrap": {"num": bootstrap, "unit": "sample", "seed": seed},
        "attacks": {},
        "skipped": skipped,
    }
    all_scores, evidence = {}, None
    for spec, (attack, opt) in resolved.items():
        start = time.perf_counter()
        if spec == evidence_attack and attack.evidence:
            opt = dataclasses.replace(opt, evidence=True)  # only this attack pays for evidence
        try:
            output = attack.run(inputs, targets_T, opt)
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
        diagnostics = {**dict(output.diagnostics), **fallbacks.get(spec, {})}
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


def _check_statistics(inputs: AttackInputs, resolved: dict, skipped: dict, explicit: bool):
    """Reads (and so checks) every statistic an attack will use, before any attack runs.

    A spec that does not name its statistic and defaults to ``logit`` runs on
    the ``loss`` where stats/logit.npy is absent, and its diagnostics say so.
    A statistic (or base-model statistic) that is missing or bad fails a
    named attack now, not after the attacks before it have run; from the
    default set it is skipped. Returns spec -> the diagnostics of the
    fallback it took.
    """
    fallbacks = {}
    for spec, (attack, opt) in list(resolved.items()):
        name = getattr(opt, "statistic", None)
        if name is None and not opt.base_statistics():
            continue
        if name == "logit" and name not in inputs.stats and "statistic" not in parse_spec(spec)[1]:
            resolved[spec] = (attack, dataclasses.replace(opt, statistic="loss"))
            fallbacks[spec] = {"statistic": "loss (stats/logit.npy is absent)"}
            logging.info("%s: stats/logit.npy is absent; running it on the loss", spec)
            name = "loss"
        try:
            if name is not None:
                common.statistic(inputs, attack.name, name)
            for base_name in resolved[spec][1].base_statistics():
                common.base_statistic(inputs, attack.name, base_name)
        except AttackInputError as err:
            if explicit:
                raise
            skipped[spec] = str(err)
            del resolved[spec]
            logging.info("skipping %s: %s", spec, err)
    return fallbacks


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
    stage_marker: dict | None = None,
) -> dict:
    """Run attacks on a work directory, evaluate them and write ``results/``.

    results.json: {"num_models", "num_samples", "seq_len", "targets",
    "statistics", ["base_statistics"], "fprs", "bootstrap", "skipped": {spec: reason},
    "attacks": {spec: {"auc", "auc_ci", "num_positives", "num_negatives",
    "tpr_at_fpr": {"0.01": {"tpr", "ci", "num_negatives", "false_positives",
    "resolved"}, "0.001": ..., "0.0001": ...}, "per_target": {"auc": {"mean",
    "std", "min", "max"}, "tpr@0.001": {...}}, "seconds", "diagnostics",
    "scores_file", ["evidence_file"], "epsilon_lower_bound": {"cp", "gdp", "delta",
    "confidence", "membership", ..., ["one_run", "one_run_detail"]}}}, ["exposure": ..., "extraction": {"secret":
    ..., "text": ...}]} (``seqmia_jax.evaluation.memorization``, present when the
    score stage measured them), ["dp": train_done.json's DP-SGD record], ["finetune": its fine-tuning record]}. NaN is
    written as null.

    ``stage_marker`` (the pipeline's record of the inputs and settings) is
    written as ``attack_stage.json``, with the new results.json's SHA-256,
    inside the same swap, so results and marker are replaced together.

    Raises:
      AttackInputError: bad inputs, attack names or options.
      FileExistsError: results exist and ``overwrite`` is False.
    """
    out = Path(out_dir) if out_dir is not None else Path(workdir) / "results"
    recover_swap(out, writer=True)
    existing = [name for name in OWNED if (out / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{out}: results exist ({', '.join(existing)}); pass overwrite=True (--overwrite) "
            "to replace them"
        )
    if bootstrap < 0:
        raise AttackInputError(f"bootstrap must be >= 0; got {bootstrap}")
    inputs = load_inputs(workdir)
    results, all_scores, evidence = score_attacks(
        inputs, attacks, targets, bootstrap=bootstrap, seed=seed, evidence_attack=evidence_attack
    )
    # Exposure and extraction of every model, when the score stage measured them.
    results.update(memorization.sections(workdir, inputs.keep_SxN, bootstrap=bootstrap, seed=seed))
    # The accountant's (epsilon, delta) of DP-trained shadows; the base and memory
    # of fine-tuned ones.
    for key in ("dp", "finetune"):
        record = _training_record(Path(workdir), key)
        if record is not None:
            results[key] = record
    design = membership.recorded_design(workdir)
    add_epsilon_lower_bounds(results, all_scores, inputs.keep_SxN, seed=seed, design=design)
    # The new results are built beside the old ones and swapped in whole, so a
    # crash at any point leaves the complete old results or the complete new ones.
    owned = OWNED + (STAGE_MARKER,) * (stage_marker is not None)
    with replacing(out, lambda name: name in owned) as stage:
        written = _write_results(stage, results, all_scores, evidence, evidence_attack)
        if stage_marker is not None:
            sha = sha256_of(stage / "results.json")
            write_json(stage / STAGE_MARKER, {**stage_marker, "results_sha256": sha})
    return written


def add_epsilon_lower_bounds(
    results: dict,
    all_scores: dict,
    keep_SxN: np.ndarray,
    *,
    seed: int = 0,
    design: str | None = None,
) -> None:
    """Each attack's empirical epsilon lower bounds (``seqmia_jax.privacy.audit``), in place.

    The threshold is chosen on the first half of the targets and the bound is
    evaluated on the second half, so choosing it does not inflate the bound.
    Delta is the DP run's delta, or ``NON_DP_DELTA``. The confidence (95%)
    is nominal over pooled (target, sample) pairs; ``audit_scores`` says why.
    ``design`` is the membership design (None: unknown); the one-run bound
    is added only under "poisson".
    """
    from seqmia_jax.privacy import audit

    targets_T = np.asarray(results["targets"])
    if len(targets_T) < 2:
        results["epsilon_lower_bound_skipped"] = "needs at least 2 targets (validation, held out)"
        return
    delta = results.get("dp", {}).get("delta", NON_DP_DELTA)
    labels_TxN = np.asarray(keep_SxN, bool)[targets_T]
    for spec, scores_TxN in all_scores.items():
        results["attacks"][spec]["epsilon_lower_bound"] = audit.attack_bounds(
            spec,
            scores_TxN,
            labels_TxN,
            targets_T,
            delta,
            BOUND_CONFIDENCE,
            design=design,
            seed=seed,
        )


def _training_record(workdir: Path, key: str) -> dict | None:
    """``train_done.json``'s ``dp`` (DP-SGD) or ``finetune`` record, if it has one."""
    path = workdir / "train_done.json"
    return read_json(path).get(key) if path.is_file() else None  # corrupt: one-line error


def _write_results(out: Path, results: dict, all_scores: dict, evidence, evidence_attack) -> dict:
    """Writes scores/, evidence/, targets.npy, results.md and results.json into ``out``."""
    (out / "scores").mkdir()
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
    results = json_ready(results)
    (out / "results.md").write_text(
        results_table_markdown(results) + epsilon_table_markdown(results)
    )
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return results

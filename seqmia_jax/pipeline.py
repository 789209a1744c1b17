"""The whole audit: [pretrain ->] train -> score -> attack -> report, each stage skipped
when complete (pretrain only for configs with a base, ``seqmia_jax.pretrain``).

Every stage reads and writes the work directory (see ``seqmia_jax.workdir``).
A stage that is complete and whose inputs are unchanged is skipped; one whose
inputs changed is refused with a message; completed results are replaced only
with ``overwrite=True``. A crash in any stage leaves the earlier stages'
outputs intact.
"""

import time
from pathlib import Path

import jax
from absl import logging

from seqmia_jax.attacks import runner
from seqmia_jax.attacks.specs import DEFAULT_ATTACKS, split_specs
from seqmia_jax.config import ExperimentConfig, parse_targets
from seqmia_jax.data import Dataset, load_dataset
from seqmia_jax.ensemble.train import train
from seqmia_jax.pretrain import pretrain
from seqmia_jax.scoring import score
from seqmia_jax.workdir import (
    Workdir,
    WorkdirError,
    holds_lock,
    read_json,
    recover_swap,
    sha256_of,
)

# The attack whose per-position evidence shades the leakage view: profile's per-token
# terms share their weights across a difficulty bin, so they are stable; seq's divide by
# per-sample variances from a few shadows and pile up on single near-certain tokens.
EVIDENCE_ATTACK = "profile"


def attack_settings(cfg: ExperimentConfig) -> dict:
    """The attack stage's inputs from the config: specs, targets, bootstrap.

    No specs means the default set, from which attacks whose inputs are absent
    (zlib without text, say) are skipped rather than failed.
    """
    specs = split_specs(cfg.attack.attacks) or None
    profiles = [s for s in specs or DEFAULT_ATTACKS if s.partition(":")[0] == EVIDENCE_ATTACK]
    return {
        "attacks": specs,
        "targets": parse_targets(cfg.attack.targets),
        "bootstrap": cfg.attack.bootstrap,
        # The plain spec if it runs, else the first variant of it (none: an unshaded view).
        "evidence_attack": EVIDENCE_ATTACK
        if EVIDENCE_ATTACK in profiles
        else next(iter(profiles), None),
    }


def run_attack_stage(
    cfg: ExperimentConfig, workdir: str | Path, *, overwrite: bool = False
) -> dict:
    """Runs the attacks on complete statistics, unless already done with the same inputs."""
    with Workdir(workdir).lock(collective=False):  # process 0 alone runs the attacks
        return _attack_stage(cfg, Workdir(workdir), overwrite)


def _attack_stage(cfg: ExperimentConfig, wd: Workdir, overwrite: bool) -> dict:
    stats_done = wd.stats / "done.json"
    if not stats_done.exists():
        raise WorkdirError(f"statistics are not complete in {wd.stats}; run the score stage first")
    stage = {"stats": read_json(stats_done), "settings": attack_settings(cfg)}
    recover_swap(wd.results, writer=True)  # a crash between the renames of an earlier swap
    marker, results_json = wd.results / "attack_stage.json", wd.results / "results.json"
    current = sha256_of(results_json)
    if not overwrite and current is not None:
        old = read_json(marker) if marker.exists() else None
        # The marker names the results.json this stage wrote; results written
        # (or replaced) by experiments.attack are not this audit's.
        if old is None or old.get("results_sha256", current) != current:
            raise WorkdirError(
                f"{results_json} was written by another command (experiments.attack), not by "
                "this audit; pass --overwrite to replace it"
            )
        if {k: old.get(k) for k in stage} != stage:
            changed = [
                k for k in stage["settings"] if old["settings"].get(k) != stage["settings"][k]
            ]
            raise WorkdirError(
                f"{wd.results} holds results for different "
                + (f"attack settings ({', '.join(changed)})" if changed else "statistics")
                + "; pass --overwrite to replace them"
            )
        logging.info("attack results already complete in %s: nothing to do", wd.results)
        return read_json(results_json)
    settings = stage["settings"]
    results = runner.run_attacks(
        wd.path,
        settings["attacks"],
        settings["targets"],
        bootstrap=settings["bootstrap"],
        evidence_attack=settings["evidence_attack"],
        overwrite=True,  # refused above unless asked for, or nothing is there to replace
        stage_marker=stage,  # written inside the swap: results and marker land together
    )
    return results


def run_report_stage(wd: Workdir, dataset: Dataset, *, overwrite: bool) -> dict:
    """Writes the report unless one for the current results.json already exists."""
    from seqmia_jax.report import write_report
    from seqmia_jax.report.writer import MARKER

    marker = wd.results / MARKER
    current = sha256_of(wd.results / "results.json")
    if marker.exists() and not overwrite and read_json(marker).get("results_sha256") == current:
        logging.info("report already written in %s: nothing to do", wd.results)
        return read_json(marker)
    # New attack results make the old report stale: it is replaced, not refused.
    paths = write_report(wd.path, dataset, overwrite=True)
    return {k: str(v) for k, v in paths.items()}


@holds_lock
def run_audit(cfg: ExperimentConfig, workdir: str | Path, *, overwrite: bool = False) -> dict:
    """Runs every stage that is not yet complete; returns results.json and stage timings."""
    wd = Workdir(workdir)
    dataset = load_dataset(cfg.data)
    seconds = {}
    if cfg.base.source != "none":  # reused when it exists; checked against the config
        t = time.time()
        pretrain(cfg, wd.path, dataset=dataset)
        seconds["pretrain"] = time.time() - t
    t = time.time()
    train(cfg, wd.path, dataset=dataset)
    seconds["train"] = time.time() - t
    t = time.time()
    score(cfg, wd.path, dataset=dataset)
    seconds["score"] = time.time() - t
    if jax.process_index() != 0:  # attacks and report are host numpy over process 0's files
        return {"results": None, "seconds": seconds}
    t = time.time()
    results = run_attack_stage(cfg, wd.path, overwrite=overwrite)
    seconds["attack"] = time.time() - t
    t = time.time()
    run_report_stage(wd, dataset, overwrite=overwrite)
    seconds["report"] = time.time() - t
    logging.info("stage seconds: %s", {k: round(v, 1) for k, v in seconds.items()})
    return {"results": results, "seconds": seconds}

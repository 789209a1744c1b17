"""Sweeps: many audit variants from one config, reusing trained shadows wherever possible.

A config file's ``get_sweep(arg)`` returns a list of points, each a dict of
dotted overrides (``{"train.epochs": 5}``, ``{"attack.attacks": "lira"}``).
Points whose training identity is equal share one trained and scored work
directory, ``<sweep>/train-<hash>``, so a sweep over attack options never
retrains. The special override ``attack.num_shadows`` (K) evaluates each target
against only K shadow models (whole complementary pairs, see
``membership.shadow_subset``), computed from the cached statistics.

Every point writes ``<sweep>/<point>/results.json``; the sweep writes
``sweep.csv`` (one row per point and attack) and ``sweep.png``.
"""

import copy
import csv
import dataclasses
import hashlib
import json
import re
from pathlib import Path

import numpy as np
from absl import logging

from seqmia_jax import membership
from seqmia_jax.attacks import runner
from seqmia_jax.config import ConfigError, from_config_dict, to_dict
from seqmia_jax.ensemble.train import train
from seqmia_jax.evaluation import metrics
from seqmia_jax.pipeline import attack_settings
from seqmia_jax.pretrain import pretrain
from seqmia_jax.scoring import score
from seqmia_jax.workdir import identity, json_ready, read_json, write_json


def apply_overrides(config_dict, overrides: dict):
    """A copy of an ml_collections ConfigDict with dotted overrides applied."""
    out = copy.deepcopy(config_dict)
    if hasattr(out, "unlock"):
        out.unlock()  # config_flags locks the ConfigDict; sweeps may add attack.* keys
    for key, value in overrides.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            if p not in node:
                raise ConfigError(f"sweep override {key!r}: no config section {p!r}")
            node = node[p]
        if leaf not in node and parents != ["attack"]:
            raise ConfigError(f"sweep override {key!r}: no such config field")
        node[leaf] = value
    return out


def point_name(overrides: dict) -> str:
    """A deterministic, filesystem-safe directory name for a sweep point."""
    if not overrides:
        return "base"
    text = ",".join(f"{k}={overrides[k]}" for k in sorted(overrides))
    safe = re.sub(r"[^A-Za-z0-9_.=,-]+", "_", text)
    if len(safe) > 80:
        safe = safe[:60] + "-" + hashlib.sha256(text.encode()).hexdigest()[:12]
    return safe


def training_dir(sweep_dir: Path, cfg) -> Path:
    """The shared work directory of every point with this training identity."""
    ident = json.dumps(identity(to_dict(cfg)), sort_keys=True, default=str)
    return sweep_dir / f"train-{hashlib.sha256(ident.encode()).hexdigest()[:12]}"


def _evaluate_subsampled(train_dir: Path, settings: dict, num_shadows: int) -> dict:
    """Each target against ``num_shadows`` shadows only; scores pooled over targets."""
    inputs = runner.load_inputs(train_dir)
    targets_T = runner.resolve_targets(settings["targets"], inputs.num_models)
    pooled: dict[str, list[np.ndarray]] = {}
    diagnostics = {}
    for t in targets_T:
        models = membership.shadow_subset(inputs.keep_SxN, int(t), num_shadows)
        sub = runner.subsample_models(inputs, models)
        res, scores, _ = runner.score_attacks(sub, settings["attacks"], [0], bootstrap=0)
        diagnostics.update(res.get("skipped", {}))
        for spec, s_1xN in scores.items():
            pooled.setdefault(spec, []).append(s_1xN[0])
    labels_TxN = np.asarray(inputs.keep_SxN, bool)[targets_T]
    attacks = {
        spec: metrics.evaluate(np.stack(rows), labels_TxN, num_bootstrap=settings["bootstrap"])
        for spec, rows in pooled.items()
    }
    return {
        "num_models": num_shadows + 2,
        "num_shadows": num_shadows,
        "num_samples": inputs.num_samples,
        "targets": targets_T.tolist(),
        "attacks": attacks,
        "skipped": diagnostics,
    }


def base_dir_name(cfg) -> str:
    """``base-<hash>`` of what a pretrained base depends on (data, model, base, seed)."""
    what = {
        "data": to_dict(cfg)["data"],
        "model": to_dict(cfg)["model"],
        "base": {k: v for k, v in to_dict(cfg)["base"].items() if k != "dir"},
        "seed": cfg.seed,
    }
    text = json.dumps(what, sort_keys=True, default=str)
    return "base-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def run_point(config_dict, overrides: dict, sweep_dir: Path) -> dict:
    """Trains/scores (if needed) and attacks one sweep point; returns its results.json."""
    point_cfg = apply_overrides(config_dict, overrides)
    cfg = from_config_dict(point_cfg)
    num_shadows = cfg.attack.num_shadows
    train_dir = training_dir(sweep_dir, cfg)
    if cfg.base.source == "pretrain":
        if not cfg.base.dir:  # points that need the same base share it
            shared = str(sweep_dir / base_dir_name(cfg))
            cfg = dataclasses.replace(cfg, base=dataclasses.replace(cfg.base, dir=shared))
        pretrain(cfg, train_dir)
    train(cfg, train_dir)
    score(cfg, train_dir)
    settings = {**attack_settings(cfg), "evidence_attack": None, "num_shadows": num_shadows}
    stage = {"stats": read_json(train_dir / "stats" / "done.json"), "settings": settings}
    out = sweep_dir / point_name(overrides)
    out.mkdir(parents=True, exist_ok=True)
    marker = out / "point.json"
    if marker.exists() and read_json(marker) == {**stage, "overrides": overrides}:
        logging.info("sweep point %s already complete", out.name)
        return read_json(out / "results.json")
    if num_shadows:
        results = json_ready(_evaluate_subsampled(train_dir, settings, num_shadows))
        write_json(out / "results.json", results)
    else:
        results = runner.run_attacks(
            train_dir,
            settings["attacks"],
            settings["targets"],
            bootstrap=settings["bootstrap"],
            out_dir=out,
            overwrite=True,
        )
    write_json(marker, {**stage, "overrides": overrides})
    return results


def _rows(name: str, overrides: dict, results: dict) -> list[dict]:
    rows = []
    for spec, r in results["attacks"].items():
        row = {"point": name, **{k: overrides[k] for k in sorted(overrides)}, "attack": spec}
        row["num_models"] = results.get("num_models")
        row["auc"] = r["auc"]
        row["auc_lo"], row["auc_hi"] = (r.get("auc_ci") or [None, None])[:2]
        for fpr_key, point in r["tpr_at_fpr"].items():
            row[f"tpr@{fpr_key}"] = point["tpr"]
            row[f"tpr@{fpr_key}_lo"], row[f"tpr@{fpr_key}_hi"] = (point.get("ci") or [None, None])[
                :2
            ]
            row[f"negatives@{fpr_key}"] = point["num_negatives"]
            row[f"resolved@{fpr_key}"] = point["resolved"]
        rows.append(row)
    return rows


def swept_keys(row: dict) -> list[str]:
    """The override columns of a sweep.csv row (``_rows``), in order; not the metrics."""
    fixed = {"point", "attack", "num_models", "auc", "auc_lo", "auc_hi"}
    return [
        k for k in row if k not in fixed and not k.startswith(("tpr@", "negatives@", "resolved@"))
    ]


def plot_sweep(rows: list[dict], path: Path, fprs: tuple[str, ...] = ("0.001", "0.0001")) -> None:
    """TPR at each FPR in ``fprs`` (columns) against the numeric swept variable, per attack.

    Other swept variables (the target half of a study, say) get one row of
    panels per value. TPRs are drawn on a log axis; zeros sit on its floor
    (1e-4). A panel whose FPR needs more negatives than a point has says so.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    swept = swept_keys(rows[0])
    numeric = [k for k in swept if all(isinstance(r.get(k), (int, float)) for r in rows)]
    xkey = numeric[0] if numeric else "point"
    others = [k for k in swept if k != xkey]
    groups = list(dict.fromkeys(tuple(r.get(k) for k in others) for r in rows))
    fprs = tuple(f for f in fprs if f"tpr@{f}" in rows[0])
    floor = 1e-4
    fig = Figure(figsize=(6 * len(fprs), 4 * len(groups)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(groups), len(fprs), squeeze=False)
    attacks = list(dict.fromkeys(r["attack"] for r in rows))
    styles = ["-", "--", ":", "-."]
    for gi, group in enumerate(groups):
        members = [r for r in rows if tuple(r.get(k) for k in others) == group]
        for fi, fpr in enumerate(fprs):
            ax = axes[gi][fi]
            for ai, attack in enumerate(attacks):
                pts = sorted(
                    ((r[xkey], r[f"tpr@{fpr}"]) for r in members if r["attack"] == attack),
                    key=lambda p: p[0] if numeric else str(p[0]),
                )
                xs = [p[0] if numeric else str(p[0]) for p in pts]
                ys = [np.nan if p[1] is None else max(p[1], floor) for p in pts]
                ax.plot(
                    xs,
                    ys,
                    marker="o",
                    linestyle=styles[(ai // 10) % 4],
                    label=attack,
                    color=f"C{ai % 10}",
                )
            if numeric:
                ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_ylim(floor * 0.8, 1.05)
            ax.set_xlabel(xkey)
            ax.set_ylabel(f"TPR at FPR {fpr}")
            title = ", ".join(f"{k}={v}" for k, v in zip(others, group))
            if any(str(r.get(f"resolved@{fpr}")) in ("False", "0") for r in members):
                title += f" (FPR {fpr} unresolved: too few negatives)"
            ax.set_title(title, fontsize=8)
            ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run_sweep(config_dict, sweep: list[dict], sweep_dir: str | Path) -> list[dict]:
    """Runs every point of ``sweep``; writes ``sweep.csv`` and ``sweep.png``; returns the rows."""
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    names = [point_name(p) for p in sweep]
    if len(set(names)) != len(names):
        raise ConfigError(f"sweep points repeat: {names}")
    rows = []
    for overrides, name in zip(sweep, names):
        logging.info("sweep point %s", name)
        rows += _rows(name, overrides, run_point(config_dict, overrides, sweep_dir))
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with (sweep_dir / "sweep.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    if rows:
        plot_sweep(rows, sweep_dir / "sweep.png")
    return rows

"""LoRA against full fine-tuning, side by side: memory, speed, loss gap and TPR per sweep point.

    python -m experiments.sweep --config=configs/kjv_finetune.py --workdir=runs/finetune_sweep
    python -m experiments.study.finetune_table runs/finetune_sweep

Reads every ``<sweep>/<point>/point.json`` and ``results.json`` and the trained
ensemble each point used (the ``train-*`` directory whose ``train_done.json``
the point records). Per point: the fine-tuning mode, the ensemble's parameter
plus optimizer bytes (the frozen base counted once) beside what full
fine-tuning of the same base holds, the steady training tokens/s, the mean
train (IN) and test (OUT) loss per token, and TPR at FPR 1e-3 per attack, with
the unresolved mark.
"""

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from seqmia_jax.report.summary import loss_gap

FPR = "0.001"
ATTACKS = (
    "lira",
    "lira:variance=fixed",
    "lira:statistic=loss,variance=fixed",
    "seq:cov=pooled",
    "profile:variance=fixed",
    "rmia",
    "baseref",
    "loss",
)


def _train_dir(sweep: Path, done: dict) -> Path | None:
    """The ``train-*`` directory whose ``train_done.json`` is ``done``."""
    for d in sorted(sweep.glob("train-*")):
        path = d / "train_done.json"
        if path.exists() and json.loads(path.read_text()) == done:
            return d
    return None


def _gap(train_dir: Path) -> dict:
    loss = np.load(train_dir / "stats" / "loss.npy", mmap_mode="r")
    return loss_gap(loss, np.load(train_dir / "membership.npy"))


def table_lines(sweep: Path) -> Iterator[str]:
    points = sorted(p.parent for p in sweep.glob("*/point.json"))
    if not points:
        raise SystemExit(f"no <point>/point.json under {sweep}")
    rows = []
    for point in points:
        done = json.loads((point / "point.json").read_text())["stats"]["train"]
        results = json.loads((point / "results.json").read_text())
        tune = done.get("finetune")
        if tune is None:
            raise SystemExit(f"{point}: its ensemble is not fine-tuned (no train_done finetune)")
        train_dir = _train_dir(sweep, done)
        gap = _gap(train_dir) if train_dir is not None else None
        rows.append((point.name, tune, done, results, gap))
    specs = [s for s in ATTACKS if all(s in r[3]["attacks"] for r in rows)]
    yield (
        "| point | mode | params + optimizer bytes | full fine-tuning bytes | tokens/s | "
        "train / test loss (gap) | " + " | ".join(f"TPR@1e-3 `{s}`" for s in specs) + " |"
    )
    yield "|" + "---|" * (6 + len(specs))
    for name, tune, done, results, gap in rows:
        memory = tune["memory_bytes"]
        loss = (
            "n/a"
            if gap is None
            else (f"{gap['train_loss']:.4f} / {gap['test_loss']:.4f} ({gap['gap_pct']:+.1f}%)")
        )
        tprs = []
        for spec in specs:
            point = results["attacks"][spec]["tpr_at_fpr"][FPR]
            tprs.append(f"{point['tpr']:.4f}" + ("" if point["resolved"] else " †"))
        speed = done.get("tokens_per_s")
        yield (
            f"| {name} | {tune['mode']} | {memory['ensemble']:,} | {memory['full_finetune']:,} | "
            f"{'n/a' if speed is None else f'{speed:,.0f}'} | {loss} | " + " | ".join(tprs) + " |"
        )
    yield ""
    yield "† unresolved TPR (fewer than 1/FPR negatives)."


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m experiments.study.finetune_table SWEEP_DIR")
    for line in table_lines(Path(argv[0])):
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])

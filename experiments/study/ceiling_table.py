"""The per-token ceiling (seqmia_jax.analysis.per_token_ceiling) of scored ensembles, as a table.

    python -m experiments.study.ceiling_table runs/study_*/train-* runs/kjv_gpt

For each work directory: its setting, the train/test loss gap, and per
statistic the best TPR at FPR 1e-3 of a test on the sequence mean and of a
per-token test, both with exact parameters, and their ratio; each from the
raw per-sample estimates (noise inflates their tails) / from their shrunk
posterior means (under-dispersed). Directories without stats/loss.npy are
left out.
"""

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from seqmia_jax import analysis
from seqmia_jax.report import loss_gap


def setting(cfg: dict) -> str:
    """One line naming an ensemble from its config.json ``config`` section."""
    data, model = cfg["data"], cfg["model"]
    parts = [
        f"{data['name']} S={cfg['num_shadow_models']} N={data['num_samples']} L={data['seq_len']}",
        f"{model['num_layers']}x{model['embed_dim']} {cfg['train']['epochs']} ep",
    ]
    if data.get("canary_tokens"):
        parts.append(f"canaries {data['canary_tokens']}")
    if data.get("duplicated_samples"):
        parts.append(f"{data['duplicated_samples']} dup x{data['duplicates']}")
    return ", ".join(parts)


def ceiling_cells(tpr: dict) -> list[str]:
    """Markdown cells "raw / shrunk" for the mean, the per-token test and their ratio."""
    return [
        f"{tpr[k]:{fmt}} / {tpr[k + '_shrunk']:{fmt}}"
        for k, fmt in (("mean", ".3f"), ("per_token", ".3f"), ("ratio", ".2f"))
    ]


def table_lines(paths: list[str]) -> Iterator[str]:
    """The markdown lines of the table, header first, one row per directory and statistic."""
    yield "| ensemble | gap | statistic | mean (raw / shrunk) | per-token | ratio |"
    yield "|---|---|---|---|---|---|"
    for path in map(Path, paths):
        if not (path / "stats" / "loss.npy").exists():
            continue
        cfg = json.loads((path / "config.json").read_text())["config"]
        keep = np.load(path / "membership.npy")
        loss = np.load(path / "stats" / "loss.npy", mmap_mode="r")
        gap = loss_gap(loss, keep)["gap_pct"]
        for stat in ("loss", "logit"):
            x = np.load(path / "stats" / f"{stat}.npy", mmap_mode="r")
            ceiling = analysis.per_token_ceiling(x, keep, fprs=(1e-3,))
            if "skipped" in ceiling:
                yield f"| {setting(cfg)} | {gap:.1f}% | {stat} | {ceiling['skipped']} | | |"
                continue
            cells = ceiling_cells(ceiling["tpr_at_0.001"])
            yield f"| {setting(cfg)} | {gap:.1f}% | {stat} | {' | '.join(cells)} |"


def main(paths: list[str]) -> None:
    for line in table_lines(paths):
        print(line, flush=True)  # each row as soon as it is computed


if __name__ == "__main__":
    main(sys.argv[1:])

"""experiments.study.heldout_table on a hand-made sweep.csv: choice on validation, report held out."""

import csv

import pytest

from experiments.study import heldout_table
from experiments.study.baseline_table import FPRS

# (epochs, targets, attack): (TPR at 1e-3, TPR at 1e-4). On the validation half
# `profile` wins among the sequence-aware attacks and `lira:variance=fixed`
# among the LiRAs; held out, `seq:cov=pooled` and `lira:statistic=loss` are
# higher, and must not be chosen.
TPRS = {
    ("8", "0:8", "lira"): (0.10, 0.01),
    ("8", "0:8", "lira:variance=fixed"): (0.30, 0.10),
    ("8", "0:8", "lira:statistic=loss"): (0.20, 0.05),
    ("8", "0:8", "profile"): (0.40, 0.20),
    ("8", "0:8", "seq:cov=pooled"): (0.35, 0.10),
    ("8", "8:16", "lira"): (0.10, 0.02),
    ("8", "8:16", "lira:variance=fixed"): (0.20, 0.05),
    ("8", "8:16", "lira:statistic=loss"): (0.50, 0.20),
    ("8", "8:16", "profile"): (0.60, 0.20),
    ("8", "8:16", "seq:cov=pooled"): (0.90, 0.30),
}
NEGATIVES = 8_000  # resolves 1e-3, not 1e-4


def _write(path, tprs=TPRS):
    fields = ["point", "attack.targets", "train.epochs", "attack", "num_models", "auc"]
    for fpr in FPRS:
        fields += [f"tpr@{fpr}", f"tpr@{fpr}_lo", f"tpr@{fpr}_hi"]
        fields += [f"negatives@{fpr}", f"resolved@{fpr}"]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for (epochs, targets, attack), values in tprs.items():
            row = {"point": f"{targets},{epochs}", "attack.targets": targets}
            row |= {"train.epochs": epochs, "attack": attack, "num_models": 16, "auc": 0.9}
            for fpr, tpr in zip(FPRS, values):
                row |= {f"tpr@{fpr}": tpr, f"tpr@{fpr}_lo": tpr * 0.8, f"tpr@{fpr}_hi": tpr * 1.1}
                row[f"negatives@{fpr}"] = NEGATIVES
                row[f"resolved@{fpr}"] = NEGATIVES * float(fpr) >= 1
            writer.writerow(row)


def test_chooses_on_validation_and_reports_held_out(tmp_path, capsys):
    _write(tmp_path / "sweep.csv")
    heldout_table.main([str(tmp_path / "sweep.csv")])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| train.epochs | FPR | held-out negatives |")
    at_1e3 = [c.strip() for c in lines[2].strip("| ").split(" | ")]
    assert at_1e3[:3] == ["8", "0.001", "8,000"]
    assert at_1e3[3] == "0.1000 [0.0800, 0.1100]"  # plain lira, held out
    assert at_1e3[4] == "0.2000 [0.1600, 0.2200] `lira:variance=fixed`"
    assert at_1e3[5] == "0.6000 [0.4800, 0.6600] `profile`"
    assert at_1e3[6:] == ["6.00x", "3.00x", "apart"]
    at_1e4 = [c.strip() for c in lines[3].strip("| ").split(" | ")]
    assert at_1e4[4].endswith("`lira:variance=fixed`") and "†" in at_1e4[4]
    assert at_1e4[5] == "0.2000 [0.1600, 0.2200] † `profile`"
    assert at_1e4[6:] == ["10x †", "4.00x †", "apart"]


def test_needs_two_halves(tmp_path):
    _write(tmp_path / "sweep.csv", {k: v for k, v in TPRS.items() if k[1] == "0:8"})
    with pytest.raises(SystemExit, match="two attack.targets halves"):
        heldout_table.main([str(tmp_path / "sweep.csv")])
    _write(
        tmp_path / "sweep.csv",
        {(e, "8" if t == "0:8" else t, a): v for (e, t, a), v in TPRS.items()},
    )
    with pytest.raises(SystemExit, match="halves a:b"):
        heldout_table.main([str(tmp_path / "sweep.csv")])

"""experiments.study.baseline_table on a hand-made sweep.csv."""

import csv

from experiments.study import baseline_table

# (K, attack): (TPR at 1e-3, TPR at 1e-4). K = 4 has too few negatives for 1e-4.
TPRS = {
    (4, "lira"): (0.004, 0.002),
    (4, "lira:variance=fixed"): (0.5, 0.4),
    (4, "seq:cov=pooled,tied=true"): (0.2, 0.1),
    (4, "seq:cov=diag"): (0.4, 0.0),
    (4, "rmia"): (0.6, 0.5),
    (16, "lira"): (0.3, 0.2),
    (16, "lira:statistic=loss,variance=fixed"): (0.6, 0.1),
    (16, "lira:variance=fixed"): (0.4, 0.15),
    (16, "seq:cov=pooled,tied=true"): (0.3, 0.0),
    (16, "seq:cov=diag"): (0.9, 0.25),
    (16, "rmia"): (0.6, 0.5),
}
NEGATIVES = {4: 2_000, 16: 64_000}


def _write(path):
    fields = ["point", "attack.num_shadows", "attack"]
    for fpr in baseline_table.FPRS:
        fields += [f"tpr@{fpr}", f"tpr@{fpr}_lo", f"tpr@{fpr}_hi"]
        fields += [f"negatives@{fpr}", f"resolved@{fpr}"]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for (k, attack), tprs in TPRS.items():
            row = {"point": f"attack.num_shadows={k}", "attack.num_shadows": k, "attack": attack}
            for fpr, tpr in zip(baseline_table.FPRS, tprs):
                row |= {f"tpr@{fpr}": tpr, f"tpr@{fpr}_lo": tpr / 2, f"tpr@{fpr}_hi": tpr}
                row[f"negatives@{fpr}"] = NEGATIVES[k]
                row[f"resolved@{fpr}"] = NEGATIVES[k] * float(fpr) >= 1
            writer.writerow(row)


def _cells(lines, start, attack):
    """The K cells of ``attack``'s row in the first table at or after line ``start``."""
    row = next(line for line in lines[start:] if f"| `{attack}` |" in line)
    return [c.strip() for c in row.strip("| ").split(" | ")[2:]]


def test_groups_ratios_and_unresolved_marks(tmp_path, capsys):
    _write(tmp_path / "sweep.csv")
    baseline_table.main([str(tmp_path / "sweep.csv")])
    lines = capsys.readouterr().out.splitlines()
    tpr_1e3 = lines.index("TPR at FPR 0.001 [95% CI]:")
    rows = lines[tpr_1e3 + 4 : tpr_1e3 + 10]
    order = [line.split(" | ")[1] for line in rows]
    # Baseline first, then variance pooling (file order kept), structure, other.
    assert order == [
        "`lira`",
        "`lira:variance=fixed`",
        "`seq:cov=pooled,tied=true`",
        "`lira:statistic=loss,variance=fixed`",
        "`seq:cov=diag`",
        "`rmia`",
    ]
    assert rows[2].startswith("| variance pooling |") and rows[4].startswith("| per-token")
    assert _cells(lines, tpr_1e3, "lira:statistic=loss,variance=fixed") == [
        "-",
        "0.6000 [0.3000, 0.6000]",
    ]
    assert "| | negatives | 2,000 | 64,000 |" in lines

    ratios_1e3 = next(i for i, line in enumerate(lines) if line.startswith("Sequence-aware TPR"))
    assert (
        "| | best univariate TPR | 0.5000 (`lira:variance=fixed`) | 0.6000 (`lira:"
        in (lines[ratios_1e3 + 5])
    )
    # 0.4 / 0.004 = 100x to lira, 0.4 / 0.5 to the best; 0.9 / 0.3, 0.9 / 0.6.
    assert _cells(lines, ratios_1e3, "seq:cov=diag") == ["100x / 0.80x", "3.00x / 1.50x"]
    assert _cells(lines, ratios_1e3, "seq:cov=pooled,tied=true") == ["50x / 0.40x", "1.00x / 0.50x"]
    tpr_1e4 = lines.index("TPR at FPR 0.0001 [95% CI]:")
    ratio_rows = [line.split(" | ")[1] for line in lines[ratios_1e3 + 6 : tpr_1e4 - 1]]
    assert ratio_rows == ["`seq:cov=pooled,tied=true`", "`seq:cov=diag`"]  # sequence-aware only
    assert _cells(lines, tpr_1e4, "lira")[0].endswith(" †")  # 2,000 < 10,000 negatives
    assert not _cells(lines, tpr_1e4, "lira")[1].endswith("†")
    ratios_1e4 = next(
        i for i, line in enumerate(lines) if i > tpr_1e4 and line.startswith("Sequence-aware")
    )
    # K = 4: 0 / 0.002 unresolved; K = 16: best univariate is lira (0.2): 0.25 / 0.2.
    assert _cells(lines, ratios_1e4, "seq:cov=diag") == ["0.00x / 0.00x †", "1.25x / 1.25x"]
    assert _cells(lines, ratios_1e4, "seq:cov=pooled,tied=true")[1] == "0.00x / 0.00x"
    assert lines[-1].startswith("†")


def test_summary_separates_variance_pooling_from_the_best_sequence_aware_attack(tmp_path):
    _write(tmp_path / "sweep.csv")
    lines = list(baseline_table.table_lines(str(tmp_path / "sweep.csv")))
    summary = [line.split(" | ") for line in lines[4:8]]
    # FPR, K, negatives, lira, pooling gain, best univariate, best sequence-aware, ratios.
    assert summary[0][:3] == ["| 0.001", "4", "2,000"]
    assert summary[0][4] == "125x (`lira:variance=fixed`)"  # 0.5 / 0.004
    assert summary[0][6] == "0.4000 [0.2000, 0.4000] `seq:cov=diag`"
    assert summary[0][7:] == ["100x", "0.80x |"]
    assert summary[1][4] == "2.00x (`lira:statistic=loss,variance=fixed`)"  # 0.6 / 0.3
    assert summary[1][7:] == ["3.00x", "1.50x |"]
    # FPR 1e-4 at K = 4: every TPR unresolved; K = 16: the best univariate is plain lira.
    assert summary[2][3] == "0.0020 [0.0010, 0.0020] †"
    assert summary[3][5] == "0.2000 [0.1000, 0.2000] `lira`"
    assert summary[3][6].startswith("0.2500") and summary[3][7:] == ["1.25x", "1.25x |"]

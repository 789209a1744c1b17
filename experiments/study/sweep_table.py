"""A study table from a sweep's sweep.csv: one row per attack, one column per value of a key.

    python -m experiments.study.sweep_table runs/study_shadows_weak/sweep.csv \\
        attack.num_shadows attack.targets=8:16

Cells: TPR at FPR 1e-3 [95% CI] (AUC). Extra KEY=VALUE arguments filter the
rows (here: the held-out targets).
"""

import csv
import sys
from collections.abc import Iterator


def table_lines(path: str, column: str, filters: list[str]) -> Iterator[str]:
    """The markdown lines of the table, header first; a missing (attack, value) cell is "-"."""
    wanted = dict(f.split("=", 1) for f in filters)
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if all(r[k] == v for k, v in wanted.items())]
    # Shorter first, so numeric values sort as numbers: "16" before "128".
    values = sorted({r[column] for r in rows}, key=lambda v: (len(v), v))
    attacks = list(dict.fromkeys(r["attack"] for r in rows))
    cell = {(r["attack"], r[column]): r for r in rows}
    yield f"| attack | {' | '.join(f'{column} = {v}' for v in values)} |"
    yield "|---|" + "---|" * len(values)
    for attack in attacks:
        cells = []
        for v in values:
            r = cell.get((attack, v))
            cells.append(
                "-"
                if r is None
                else f"{float(r['tpr@0.001']):.3f} [{float(r['tpr@0.001_lo']):.3f}, "
                f"{float(r['tpr@0.001_hi']):.3f}] ({float(r['auc']):.3f})"
            )
        yield f"| `{attack}` | {' | '.join(cells)} |"


def main(path: str, column: str, filters: list[str]) -> None:
    for line in table_lines(path, column, filters):
        print(line)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])

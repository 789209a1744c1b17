"""Choose on the validation targets, report on the held-out ones: sequence-aware against LiRA.

    python -m experiments.study.heldout_table runs/study_onset/sweep.csv

Reads a sweep.csv whose points split the targets in two halves
(``attack.targets``, e.g. ``0:8`` and ``8:16``; the half that starts first is
the validation half). Other swept keys (``train.epochs``, say) make groups.
Per group and FPR (1e-3, 1e-4), the best univariate LiRA (``lira*``) and the
best sequence-aware attack (``seq*``, ``profile*``, ``sparse*``) are chosen
by their TPR on the validation half; the table gives their TPRs [95% CI] on
the held-out half, next to plain ``lira`` there, the ratios, and whether the
two CIs are apart. † marks a TPR, or a ratio involving one, with fewer than
1/FPR held-out negatives.
"""

import csv
import sys
from collections.abc import Iterator

from experiments.study.baseline_table import (
    FPRS,
    is_sequence_aware,
    is_univariate_lira,
    ratio_text,
    resolved,
    tpr_text,
)
from seqmia_jax.sweep import swept_keys


def _halves(rows: list[dict]) -> tuple[str, str]:
    """The two ``attack.targets`` ranges a:b, the one that starts first first."""
    values = sorted({r["attack.targets"] for r in rows})
    starts = [(v.split(":")[0] or "0") if v.count(":") == 1 else "" for v in values]
    if len(values) != 2 or not all(x.isdigit() for x in starts):
        raise SystemExit(f"need exactly two attack.targets halves a:b, found {values}")
    (_, first), (_, second) = sorted(zip(map(int, starts), values))
    return first, second


def _best(rows: dict, fpr: str, attacks: list[str]) -> str | None:
    return max(attacks, key=lambda a: float(rows[a][f"tpr@{fpr}"]), default=None)


def _apart(a: dict, b: dict, fpr: str) -> str:
    lo_a, hi_a = float(a[f"tpr@{fpr}_lo"]), float(a[f"tpr@{fpr}_hi"])
    lo_b, hi_b = float(b[f"tpr@{fpr}_lo"]), float(b[f"tpr@{fpr}_hi"])
    return "apart" if lo_a > hi_b or lo_b > hi_a else "overlap"


def table_lines(path: str) -> Iterator[str]:
    """The markdown lines: one row per group and FPR."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "attack.targets" not in rows[0]:
        raise SystemExit(f"{path}: no attack.targets column (a validation / held-out sweep)")
    validation, held_out = _halves(rows)
    keys = [k for k in swept_keys(rows[0]) if k != "attack.targets"]
    groups = list(dict.fromkeys(tuple(r[k] for k in keys) for r in rows))
    label = ", ".join(keys) or "group"
    yield (
        f"| {label} | FPR | held-out negatives | `lira` | best univariate LiRA | "
        "best sequence-aware | / `lira` | / best univariate | CIs |"
    )
    yield "|---|---|---|---|---|---|---|---|---|"
    for group in groups:
        half = {}
        for targets in (validation, held_out):
            half[targets] = {
                r["attack"]: r
                for r in rows
                if r["attack.targets"] == targets and tuple(r[k] for k in keys) == group
            }
        common = [a for a in half[validation] if a in half[held_out]]
        for fpr in FPRS:
            uni = _best(half[validation], fpr, [a for a in common if is_univariate_lira(a)])
            seq = _best(half[validation], fpr, [a for a in common if is_sequence_aware(a)])
            lira = half[held_out].get("lira")
            if uni is None or seq is None or lira is None:
                continue
            u, s = half[held_out][uni], half[held_out][seq]
            tpr = {name: float(r[f"tpr@{fpr}"]) for name, r in (("u", u), ("s", s), ("l", lira))}
            mark = "" if resolved(s, fpr) and resolved(u, fpr) else " †"
            yield (
                f"| {', '.join(group) or '-'} | {float(fpr):g} | "
                f"{int(s[f'negatives@{fpr}']):,} | {tpr_text(lira, fpr, ci=True)} | "
                f"{tpr_text(u, fpr, ci=True)} `{uni}` | {tpr_text(s, fpr, ci=True)} `{seq}` | "
                f"{ratio_text(tpr['s'], tpr['l'])}"
                f"{'' if resolved(lira, fpr) and resolved(s, fpr) else ' †'} | "
                f"{ratio_text(tpr['s'], tpr['u'])}{mark} | {_apart(s, u, fpr)} |"
            )


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m experiments.study.heldout_table SWEEP_CSV")
    for line in table_lines(argv[0]):
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])

"""The baseline study's tables: TPR per shadow count K, and sequence-aware / univariate ratios.

    python -m experiments.study.baseline_table runs/study_baseline/sweep.csv

Reads the sweep.csv of ``configs/study_baseline.py`` (one row per K and
attack). Per FPR (1e-3 and 1e-4) it prints:

- TPR [95% CI] of every attack (rows, grouped) at each K (columns), and the
  number of negatives per K;
- for every sequence-aware attack (``seq:*``, ``profile*``) at each K, its
  TPR divided by plain ``lira`` (per-sample variance, the paper's likely
  baseline) and by the best univariate LiRA at that K and FPR (the best of
  the ``lira*`` variants there).

Groups: the per-sample-variance baseline (``lira``, ``lira:statistic=loss``);
variance pooling (LiRA with ``variance=fixed`` and ``seq`` with
``tied=true``); per-token structure (the other ``seq`` models and
``profile``); other attacks. † marks a TPR, or a ratio involving one, that is
unresolved: fewer than 1/FPR negatives.
"""

import csv
import math
import sys
from collections.abc import Iterator

FPRS = ("0.001", "0.0001")
GROUPS = (
    "per-sample variance (baseline)",
    "variance pooling",
    "per-token structure",
    "other",
)


def _options(spec: str) -> tuple[str, dict[str, str]]:
    name, _, rest = spec.partition(":")
    return name, dict(kv.split("=", 1) for kv in rest.split(",") if kv)


def group(spec: str) -> str:
    """The presentation group of an attack spec (one of GROUPS)."""
    name, opts = _options(spec)
    if name == "lira":
        return GROUPS[1] if opts.get("variance") == "fixed" else GROUPS[0]
    if name == "seq" and opts.get("tied") == "true":
        return GROUPS[1]
    if is_sequence_aware(spec):
        return GROUPS[2]
    return GROUPS[3]


def is_sequence_aware(spec: str) -> bool:
    return _options(spec)[0] in ("seq", "profile")


def is_univariate_lira(spec: str) -> bool:
    return _options(spec)[0] == "lira"


def _resolved(row: dict, fpr: str) -> bool:
    flag = row.get(f"resolved@{fpr}")
    if flag in ("True", "False"):
        return flag == "True"
    return int(row[f"negatives@{fpr}"]) * float(fpr) >= 1


def _ratio(num: float, den: float) -> str:
    if den == 0:
        return "∞" if num > 0 else "-"
    r = num / den
    return f"{r:.0f}x" if r >= 10 else f"{r:.2f}x"


def read_rows(path: str) -> dict[tuple[int, str], dict]:
    """sweep.csv rows keyed by (K, attack)."""
    with open(path, newline="") as f:
        return {(int(r["attack.num_shadows"]), r["attack"]): r for r in csv.DictReader(f)}


def table_lines(path: str) -> Iterator[str]:
    """The markdown lines: one TPR table and one ratio table per FPR."""
    rows = read_rows(path)
    counts = sorted({k for k, _ in rows})
    attacks = list(dict.fromkeys(a for _, a in rows))
    attacks.sort(key=lambda a: GROUPS.index(group(a)))  # stable: file order within a group
    header = "| group | attack | " + " | ".join(f"K = {k}" for k in counts) + " |"
    rule = "|---|---|" + "---|" * len(counts)
    for fpr in FPRS:
        yield f"TPR at FPR {float(fpr):g} [95% CI]:"
        yield ""
        yield header
        yield rule
        for a in attacks:
            cells = []
            for k in counts:
                r = rows.get((k, a))
                if r is None:
                    cells.append("-")
                    continue
                mark = "" if _resolved(r, fpr) else " †"
                cells.append(
                    f"{float(r[f'tpr@{fpr}']):.4f} [{float(r[f'tpr@{fpr}_lo']):.4f}, "
                    f"{float(r[f'tpr@{fpr}_hi']):.4f}]{mark}"
                )
            yield f"| {group(a)} | `{a}` | " + " | ".join(cells) + " |"
        negatives = []
        for k in counts:
            r = next(rows[(k, a)] for a in attacks if (k, a) in rows)
            negatives.append(f"{int(r[f'negatives@{fpr}']):,}")
        yield "| | negatives | " + " | ".join(negatives) + " |"
        yield ""
        yield from _ratio_lines(rows, counts, attacks, fpr)
        yield ""
    yield "† unresolved: fewer than 1/FPR negatives."


def _ratio_lines(rows, counts, attacks, fpr: str) -> Iterator[str]:
    yield (
        f"Sequence-aware TPR at FPR {float(fpr):g} / `lira` and / the best univariate "
        "LiRA at that K (cells: to `lira` / to the best):"
    )
    yield ""
    yield "| group | attack | " + " | ".join(f"K = {k}" for k in counts) + " |"
    yield "|---|---|" + "---|" * len(counts)
    best, best_cells, lira_cells = {}, [], []
    for k in counts:
        uni = [
            (float(rows[(k, a)][f"tpr@{fpr}"]), a)
            for a in attacks
            if is_univariate_lira(a) and (k, a) in rows
        ]
        best[k] = max(uni) if uni else (math.nan, "-")
        best_cells.append(f"{best[k][0]:.4f} (`{best[k][1]}`)")
        lira = rows.get((k, "lira"))
        lira_cells.append("-" if lira is None else f"{float(lira[f'tpr@{fpr}']):.4f}")
    yield "| | `lira` TPR | " + " | ".join(lira_cells) + " |"
    yield "| | best univariate TPR | " + " | ".join(best_cells) + " |"
    for a in attacks:
        if not is_sequence_aware(a):
            continue
        cells = []
        for k in counts:
            r, lira = rows.get((k, a)), rows.get((k, "lira"))
            if r is None or lira is None:
                cells.append("-")
                continue
            tpr = float(r[f"tpr@{fpr}"])
            resolved = _resolved(r, fpr) and _resolved(lira, fpr)
            to_lira = _ratio(tpr, float(lira[f"tpr@{fpr}"]))
            to_best = _ratio(tpr, best[k][0])
            cells.append(f"{to_lira} / {to_best}" + ("" if resolved else " †"))
        yield f"| {group(a)} | `{a}` | " + " | ".join(cells) + " |"


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m experiments.study.baseline_table SWEEP_CSV")
    for line in table_lines(argv[0]):
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])

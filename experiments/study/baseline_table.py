"""The baseline study's tables: TPR per shadow count K, and sequence-aware / univariate ratios.

    python -m experiments.study.baseline_table runs/study_baseline/sweep.csv

Reads the sweep.csv of ``configs/study_baseline.py`` (one row per K and
attack). First a summary, one row per FPR and K: plain ``lira``, what
pooling the variance gives a univariate LiRA (the best ``variance=fixed``
variant / ``lira``), and the best sequence-aware attack with its ratios to
``lira`` and to the best univariate LiRA. The best attacks are chosen on the
same targets they are reported on, which favours the sequence-aware side
(more candidates) slightly. Then, per FPR (1e-3 and 1e-4):

- TPR [95% CI] of every attack (rows, grouped) at each K (columns), and the
  number of negatives per K;
- for every sequence-aware attack (``seq:*``, ``profile*``, ``sparse*``) at each K, its
  TPR divided by plain ``lira`` (per-sample variance, the paper's likely
  baseline) and by the best univariate LiRA at that K and FPR (the best of
  the ``lira*`` variants there).

Groups: the per-sample-variance baseline (``lira``, ``lira:statistic=loss``);
variance pooling (LiRA with ``variance=fixed`` and ``seq`` with
``tied=true``); per-token structure (the other ``seq`` models and
``profile``, ``sparse``); other attacks. † marks a TPR, or a ratio involving one, that is
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
    return _options(spec)[0] in ("seq", "profile", "sparse")


def is_univariate_lira(spec: str) -> bool:
    return _options(spec)[0] == "lira"


def resolved(row: dict, fpr: str) -> bool:
    flag = row.get(f"resolved@{fpr}")
    if flag in ("True", "False"):
        return flag == "True"
    return int(row[f"negatives@{fpr}"]) * float(fpr) >= 1


def ratio_text(num: float, den: float) -> str:
    if den == 0:
        return "∞" if num > 0 else "-"
    r = num / den
    return f"{r:.0f}x" if r >= 10 else f"{r:.2f}x"


def read_rows(path: str) -> dict[tuple[int, str], dict]:
    """sweep.csv rows keyed by (K, attack)."""
    with open(path, newline="") as f:
        return {(int(r["attack.num_shadows"]), r["attack"]): r for r in csv.DictReader(f)}


def tpr_text(row: dict, fpr: str, ci: bool = False) -> str:
    text = f"{float(row[f'tpr@{fpr}']):.4f}"
    if ci:
        text += f" [{float(row[f'tpr@{fpr}_lo']):.4f}, {float(row[f'tpr@{fpr}_hi']):.4f}]"
    return text + ("" if resolved(row, fpr) else " †")


def _best(rows: dict, k: int, fpr: str, attacks: list[str]) -> str | None:
    present = [a for a in attacks if (k, a) in rows]
    return max(present, key=lambda a: float(rows[(k, a)][f"tpr@{fpr}"]), default=None)


def summary_lines(rows: dict, counts: list[int], attacks: list[str]) -> Iterator[str]:
    """One row per FPR and K: lira, the variance-pooling gain, the best sequence-aware attack."""
    univariate = [a for a in attacks if is_univariate_lira(a)]
    pooled = [a for a in univariate if _options(a)[1].get("variance") == "fixed"]
    sequence = [a for a in attacks if is_sequence_aware(a)]
    yield (
        "| FPR | K | negatives | `lira` | best `variance=fixed` LiRA / `lira` | "
        "best univariate LiRA | best sequence-aware | / `lira` | / best univariate |"
    )
    yield "|---|---|---|---|---|---|---|---|---|"
    for fpr in FPRS:
        for k in counts:
            lira = rows.get((k, "lira"))
            uni, pool, seq = (
                _best(rows, k, fpr, group) for group in (univariate, pooled, sequence)
            )
            if lira is None or uni is None or pool is None or seq is None:
                continue
            tpr = {a: float(rows[(k, a)][f"tpr@{fpr}"]) for a in (uni, pool, seq, "lira")}
            yield (
                f"| {float(fpr):g} | {k} | {int(lira[f'negatives@{fpr}']):,} | "
                f"{tpr_text(lira, fpr, ci=True)} | {ratio_text(tpr[pool], tpr['lira'])} (`{pool}`) | "
                f"{tpr_text(rows[(k, uni)], fpr, ci=True)} `{uni}` | "
                f"{tpr_text(rows[(k, seq)], fpr, ci=True)} `{seq}` | "
                f"{ratio_text(tpr[seq], tpr['lira'])} | {ratio_text(tpr[seq], tpr[uni])} |"
            )


def table_lines(path: str) -> Iterator[str]:
    """The markdown lines: the summary, then one TPR table and one ratio table per FPR."""
    rows = read_rows(path)
    counts = sorted({k for k, _ in rows})
    attacks = list(dict.fromkeys(a for _, a in rows))
    attacks.sort(key=lambda a: GROUPS.index(group(a)))  # stable: file order within a group
    yield "Summary (TPR [95% CI]; best attacks chosen at each K and FPR):"
    yield ""
    yield from summary_lines(rows, counts, attacks)
    yield ""
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
                cells.append("-" if r is None else tpr_text(r, fpr, ci=True))
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
    univariate = [a for a in attacks if is_univariate_lira(a)]
    for k in counts:
        uni = _best(rows, k, fpr, univariate)
        best[k] = (math.nan, "-") if uni is None else (float(rows[(k, uni)][f"tpr@{fpr}"]), uni)
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
            both = resolved(r, fpr) and resolved(lira, fpr)
            to_lira = ratio_text(tpr, float(lira[f"tpr@{fpr}"]))
            to_best = ratio_text(tpr, best[k][0])
            cells.append(f"{to_lira} / {to_best}" + ("" if both else " †"))
        yield f"| {group(a)} | `{a}` | " + " | ".join(cells) + " |"


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m experiments.study.baseline_table SWEEP_CSV")
    for line in table_lines(argv[0]):
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])

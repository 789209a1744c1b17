"""The DP study's table: accountant epsilon, empirical lower bounds and TPR per sweep point.

    python -m experiments.study.dp_table runs/study_dp

Reads every ``<sweep>/<point>/results.json`` (``configs/study_dp.py``). Per
point: the accountant's epsilon (infinity without DP-SGD), the best
Clopper-Pearson and GDP lower bounds over the attacks whose bound carries no
caveat (``rmia``'s default population reads the target's labels; each chooses its
threshold on the validation targets and is evaluated on the held-out ones),
and every attack's TPR at FPR 1e-3 on all targets, with its unresolved mark.
"""

import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path

FPR = "0.001"


def _best(attacks: dict, kind: str) -> tuple[float, str]:
    """The best bound over the attacks whose bound carries no caveat (``privacy.audit``)."""
    bounds = {
        s: e["epsilon_lower_bound"][kind]
        for s, e in attacks.items()
        if "caveat" not in e["epsilon_lower_bound"]
    }
    spec = max(bounds, key=bounds.get)
    return bounds[spec], spec


def table_lines(sweep: Path) -> Iterator[str]:
    points = sorted(
        p for p in sweep.glob("*/results.json") if not p.parent.name.startswith("train-")
    )
    if not points:
        raise SystemExit(f"no <point>/results.json under {sweep}")
    results = [json.loads(p.read_text()) for p in points]
    specs = list(results[0]["attacks"])
    yield (
        "| point | accountant epsilon | best CP bound | best GDP bound | "
        + " | ".join(f"TPR@1e-3 `{s}`" for s in specs)
        + " |"
    )
    yield "|" + "---|" * (4 + len(specs))
    order = sorted(
        range(len(points)), key=lambda i: results[i].get("dp", {}).get("epsilon", math.inf)
    )
    for i in order:
        res, attacks = results[i], results[i]["attacks"]
        eps = res.get("dp", {}).get("epsilon")
        cp, cp_spec = _best(attacks, "cp")
        gdp, gdp_spec = _best(attacks, "gdp")
        tprs = []
        for spec in specs:
            point = attacks[spec]["tpr_at_fpr"][FPR]
            tprs.append(f"{point['tpr']:.4f}" + ("" if point["resolved"] else " †"))
        yield (
            f"| {points[i].parent.name} | {'∞ (no DP)' if eps is None else f'{eps:.3g}'} | "
            f"{cp:.3f} (`{cp_spec}`) | {gdp:.3f} (`{gdp_spec}`) | " + " | ".join(tprs) + " |"
        )
    first = next(iter(results[0]["attacks"].values()))["epsilon_lower_bound"]
    yield ""
    yield (
        f"Lower bounds at delta {first['delta']:g}, {100 * first['confidence']:.0f}% nominal "
        f"confidence, thresholds from targets {first['validation_targets']}, bounds on "
        f"{first['held_out_targets']}. † unresolved TPR (fewer than 1/FPR negatives)."
    )


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m experiments.study.dp_table SWEEP_DIR")
    for line in table_lines(Path(argv[0])):
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])

"""The results table of an attack run (results.md), one row per attack.

Legend: T targets, N samples.

The attack stage writes this table to ``results/results.md``; the report
stage prefixes it with a header (``summary.header_markdown``).
"""

import math
from collections.abc import Sequence


def fmt(value: float | None, digits: int) -> str:
    """A number with ``digits`` decimals, or an en dash when it is missing or not finite."""
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def accountant_epsilon(dp: dict) -> str:
    """The accountant's epsilon of a DP record; infinite (stored as null) without noise."""
    eps = dp.get("epsilon")
    if eps is None or not math.isfinite(eps):
        return "infinity (noise multiplier 0: no privacy guarantee)"
    return f"{eps:.3g}"


def _with_ci(value: float | None, ci: Sequence[float | None], digits: int) -> str:
    lo, hi = ci if ci else (None, None)
    if lo is None or hi is None:
        return fmt(value, digits)
    return f"{fmt(value, digits)} [{fmt(lo, digits)}, {fmt(hi, digits)}]"


def results_table_markdown(results: dict) -> str:
    """A markdown table: one row per attack, AUC and TPR at each FPR with 95% CIs."""
    attacks = results.get("attacks", {})
    if not attacks:
        return "No attack results.\n"
    fpr_keys = sorted(next(iter(attacks.values()))["tpr_at_fpr"], key=float, reverse=True)
    header = ["attack", "AUC [95% CI]"] + [f"TPR@{key} [95% CI]" for key in fpr_keys] + ["s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    unresolved = False
    for spec, entry in attacks.items():
        cells = [f"`{spec}`", _with_ci(entry["auc"], entry.get("auc_ci"), 3)]
        for key in fpr_keys:
            point = entry["tpr_at_fpr"][key]
            cell = _with_ci(point["tpr"], point.get("ci"), 4)
            if not point["resolved"]:
                cell += " †"
                unresolved = True
            cells.append(cell)
        cells.append(fmt(entry.get("seconds"), 2))
        lines.append("| " + " | ".join(cells) + " |")
    first = next(iter(attacks.values()))
    negatives = first["tpr_at_fpr"][fpr_keys[0]]["num_negatives"]
    lines.append("")
    lines.append(
        f"{negatives} negatives (non-member target/sample pairs) over "
        f"{len(results.get('targets', []))} targets; TPR@f is resolved only with at least 1/f."
    )
    if unresolved:
        lines.append("† unresolved: fewer than 1/f negatives, so one false positive exceeds f.")
    for spec, reason in results.get("skipped", {}).items():
        lines.append(f"Skipped `{spec}`: {reason}")
    return "\n".join(lines) + "\n"


def epsilon_table_markdown(results: dict) -> str:
    """The empirical epsilon lower bounds of each attack, beside the accountant's epsilon."""
    attacks = {s: e for s, e in results.get("attacks", {}).items() if "epsilon_lower_bound" in e}
    if not attacks:
        return ""
    first = next(iter(attacks.values()))["epsilon_lower_bound"]
    lines = ["", "## Empirical epsilon lower bounds", ""]
    dp = results.get("dp")
    if dp:
        lines.append(
            f"The shadows were trained with DP-SGD at epsilon {accountant_epsilon(dp)}, delta "
            f"{dp['delta']:g} ({dp['accountant']}); an empirical bound above it would mean a "
            "broken implementation or analysis."
        )
    else:
        lines.append("The shadows were trained without DP; the bounds say how far from private.")
    # The one-run bound exists only under poisson membership (seqmia_jax.privacy.audit).
    one_run = first.get("membership") == "poisson"
    lines += [
        "",
        "| attack | epsilon >= (Clopper-Pearson) | epsilon >= (GDP) |"
        + (" epsilon >= (one run) |" if one_run else ""),
        "|---|---|---|" + ("---|" if one_run else ""),
    ]
    lines += [
        f"| `{spec}` | {fmt(e['epsilon_lower_bound']['cp'], 3)} | "
        f"{fmt(e['epsilon_lower_bound']['gdp'], 3)} |"
        + (f" {fmt(e['epsilon_lower_bound'].get('one_run'), 3)} |" if one_run else "")
        for spec, e in attacks.items()
    ]
    note = (
        f"At delta {first['delta']:g}, {100 * first['confidence']:.0f}% confidence (nominal: "
        "pooled target/sample pairs are not independent trials). Thresholds chosen on "
        f"targets {first['validation_targets']}, bounds on held-out targets "
        f"{first['held_out_targets']} ({first['held_out_pairs']} pairs). The GDP bound assumes "
        "a Gaussian-shaped trade-off curve."
    )
    if one_run:
        note += (
            " One run (Steinke et al. 2023, poisson membership): the largest bound over the "
            "held-out targets and a fixed grid of guess counts, each test at a Bonferroni-"
            f"corrected confidence, so the largest holds at {100 * first['confidence']:.0f}%; "
            "– where an attack's scores read the target's own membership."
        )
    lines += ["", note]
    return "\n".join(lines) + "\n"

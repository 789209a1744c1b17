"""The covariance ceilings and the correlation excess of diagnosed runs, as markdown tables.

    python -m experiments.study.covariance_ceiling_table runs/kjv_gpt /tmp/ft_diagnostics.json

Each argument is a work directory (its results/diagnostics.json) or a
diagnostics file written by ``experiments.diagnose --output``. Per run and
statistic and FPR: the TPR of the optimal Gaussian test with exact
parameters for the sequence mean, independent positions (diag), a pooled
correlation and each sample's own shrunk covariance (full), raw / posterior
(``analysis.covariance_ceiling``); full / diag and pooled / diag; the same
ratios under the decorrelated control; the full TPR under permuted labels
(the noise floor); the median per-sample shrinkage intensity; and, where
S - 4 > L + 3, the unshrunk unbiased full / diag; and the ratios of the
mean d'^2 over samples (unbiased for the plug-in, and free of the TPR's
saturation near 1). The second
table gives ``analysis.correlation_excess``. docs/ceiling.md reads them.
"""

import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path


def _pair(tpr: Mapping, key: str, fmt: str) -> str:
    raw, post = tpr.get(key), tpr.get(f"{key}_posterior")
    if raw is None and post is None:
        return "-"
    return " / ".join("-" if v is None else f"{v:{fmt}}" for v in (raw, post))


def ceiling_rows(run: str, stat: str, ceiling: Mapping) -> Iterator[str]:
    """Markdown rows of one statistic's ``covariance_ceiling`` report, one per FPR."""
    if "skipped" in ceiling:
        yield f"| {run} | {stat} | skipped: {ceiling['skipped']} |"
        return
    fprs = sorted((k for k in ceiling if k.startswith("tpr_at_")), key=lambda k: -float(k[7:]))
    for key in fprs:
        tpr, dec = ceiling[key], ceiling["decorrelated"][key]
        null = ceiling["null_labels"][key]
        cells = [
            run,
            stat,
            key[7:],
            *(_pair(tpr, k, ".3f") for k in ("mean", "diag", "pooled", "full")),
            *(_pair(tpr, k, ".3f") for k in ("full_over_diag", "pooled_over_diag")),
            *(_pair(dec, k, ".3f") for k in ("full_over_diag", "pooled_over_diag")),
            _pair(null, "full", ".3f"),
            f"{ceiling['full_shrinkage_median']:.2f}",
        ]
        cells.append(_pair(tpr, "full_unbiased_over_diag_unbiased", ".3f"))
        d2 = ceiling["mean_dprime2"]
        cells.append(f"{d2['full'] / d2['diag']:.3f} / {d2['pooled'] / d2['diag']:.3f}")
        yield "| " + " | ".join(cells) + " |"


def table_lines(reports: Mapping[str, Mapping]) -> Iterator[str]:
    """Both tables for ``reports``: run name -> diagnostics (statistic -> ``diagnose`` report)."""
    yield (
        "| run | statistic | FPR | mean | diag | pooled | full | full / diag | pooled / diag "
        "| decorrelated full / diag | decorrelated pooled / diag | null full | shrinkage "
        "| unbiased full / diag | mean d'^2: full / diag, pooled / diag |"
    )
    yield "|---" * 15 + "|"
    for run, diagnostics in reports.items():
        for stat, report in diagnostics.items():
            yield from ceiling_rows(run, stat, report["covariance_ceiling"])
    yield ""
    yield (
        "| run | statistic | samples | RMS corr | null RMS | excess r^2 (SE) | excess in SE "
        "| excess RMS | share surviving pooling |"
    )
    yield "|---" * 9 + "|"
    for run, diagnostics in reports.items():
        for stat, report in diagnostics.items():
            e = report["correlation_excess"]
            if "skipped" in e:
                yield f"| {run} | {stat} | skipped: {e['skipped']} |"
                continue
            share = e["share_surviving_pooling"]
            yield (
                f"| {run} | {stat} | {e['num_samples']} of {e['of_samples']} | {e['rms_corr']:.4f} "
                f"| {e['null_rms_corr']:.4f} | {e['excess_r2']:.5f} ({e['excess_se']:.5f}) "
                f"| {e['excess_in_se']:.1f} | {e['excess_rms_corr']:.4f} "
                f"| {'-' if share is None else f'{share:.3f}'} |"
            )


def load(path: str) -> dict:
    """The diagnostics of a work directory or of a diagnostics file."""
    p = Path(path)
    return json.loads((p / "results" / "diagnostics.json" if p.is_dir() else p).read_text())


def main(argv: list[str]) -> None:
    print("\n".join(table_lines({path: load(path) for path in argv})))


if __name__ == "__main__":
    main(sys.argv[1:])

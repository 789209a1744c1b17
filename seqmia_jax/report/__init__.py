"""The report stage: results.md, a log-log ROC plot and the leakage view of a run.

Use ``write_report(workdir, dataset)`` after the attack stage, and
``print_summary(results)`` for a compact table on stdout.
"""

from seqmia_jax.report.summary import loss_gap, print_summary
from seqmia_jax.report.writer import write_report

__all__ = ["loss_gap", "print_summary", "write_report"]

"""The report stage: results.md, a log-log ROC plot and the leakage view of a run.

Use ``write_report(workdir, dataset)`` after the attack stage, and
``summary_text(results)`` for a compact table on stdout.
"""

from seqmia_jax.report.summary import loss_gap, summary_text
from seqmia_jax.report.writer import write_report

__all__ = ["loss_gap", "summary_text", "write_report"]

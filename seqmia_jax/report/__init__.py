"""The report stage: index.html, results.md, plots, samples.csv and the leakage view of a run.

Use ``write_report(workdir, dataset)`` after the attack stage,
``summary_text(results)`` for a compact table on stdout and
``audit_summary(results, results_dir)`` for the headline sentences.
"""

from seqmia_jax.report.summary import audit_summary, loss_gap, summary_text
from seqmia_jax.report.writer import write_report

__all__ = ["audit_summary", "loss_gap", "summary_text", "write_report"]

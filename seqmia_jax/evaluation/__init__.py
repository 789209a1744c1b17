"""Evaluation of attack scores: ROC, AUC, TPR at low FPR, bootstrap CIs."""

from seqmia_jax.evaluation.metrics import (
    DEFAULT_FPRS,
    auc,
    bootstrap,
    evaluate,
    fpr_key,
    is_resolved,
    per_target_metrics,
    roc_curve,
    tpr_at_fpr,
)

__all__ = [
    "DEFAULT_FPRS",
    "auc",
    "bootstrap",
    "evaluate",
    "fpr_key",
    "is_resolved",
    "per_target_metrics",
    "roc_curve",
    "tpr_at_fpr",
]

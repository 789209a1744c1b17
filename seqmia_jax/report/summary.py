"""Text summaries of an attack run: the results.md header, the loss gap and the CLI table.

Legend: S shadow models, N samples, L positions, T targets.
"""

import json
import math
from pathlib import Path

import numpy as np

from seqmia_jax.report.table import accountant_epsilon, fmt

_CHUNK_ELEMENTS = 1 << 24  # the loss gap reads the S x N x L memmap in blocks of about this size


def loss_gap(
    loss_SxNxL: np.ndarray, keep_SxN: np.ndarray, mask_NxL: np.ndarray | None = None
) -> dict[str, float]:
    """Mean train (IN) and test (OUT) loss and their gap, streaming over models.

    A sample's loss is its mean over present positions; each model averages its
    IN and its OUT samples, and the result is the mean over models that have
    both. ``gap_pct`` is how much higher the test loss is, in % of the train loss.
    """
    num_models, num_samples, seq_len = loss_SxNxL.shape
    if keep_SxN.shape != (num_models, num_samples):
        raise ValueError(f"membership {keep_SxN.shape} does not match loss {loss_SxNxL.shape}")
    weight_NxL = np.ones((num_samples, seq_len)) if mask_NxL is None else mask_NxL.astype(float)
    weight_NxL = weight_NxL / np.maximum(weight_NxL.sum(axis=1, keepdims=True), 1.0)
    rows = max(1, _CHUNK_ELEMENTS // max(1, num_samples * seq_len))
    train, test = [], []
    for start in range(0, num_models, rows):
        chunk_SxNxL = np.asarray(loss_SxNxL[start : start + rows], dtype=np.float64)
        sample_SxN = np.einsum("snl,nl->sn", chunk_SxNxL, weight_NxL)
        for sample_N, keep_N in zip(sample_SxN, keep_SxN[start : start + rows]):
            if keep_N.any() and not keep_N.all():
                train.append(sample_N[keep_N].mean())
                test.append(sample_N[~keep_N].mean())
    if not train:
        raise ValueError("no model has both IN and OUT samples")
    train_loss, test_loss = float(np.mean(train)), float(np.mean(test))
    gap_pct = 100.0 * (test_loss - train_loss) / train_loss if train_loss else math.nan
    return {
        "train_loss": train_loss,
        "test_loss": test_loss,
        "gap": test_loss - train_loss,
        "gap_pct": gap_pct,
        "num_models": len(train),
    }


def _negatives(results: dict) -> tuple[int | None, int | None]:
    for entry in results.get("attacks", {}).values():
        return entry.get("num_positives"), entry.get("num_negatives")
    return None, None


def _targets_text(targets: list[int]) -> str:
    if len(targets) > 1 and targets == list(range(targets[0], targets[0] + len(targets))):
        return f"{len(targets)} ({targets[0]}–{targets[-1]})"
    shown = ", ".join(map(str, targets[:16])) + (", …" if len(targets) > 16 else "")
    return f"{len(targets)} ({shown})"


def header_facts(results: dict, gap: dict | None, loss_path: Path | None = None) -> list[str]:
    """The run's facts, one sentence each: size, targets, negatives, CIs and the loss gap."""
    num_pos, num_neg = _negatives(results)
    facts = [
        (
            f"Shadow models S = {results['num_models']}, samples N = "
            f"{results['num_samples']}, positions L = {results['seq_len']}"
        ),
        (
            f"Targets: {_targets_text(list(results.get('targets', [])))}; each scored "
            "against the other models (leave-one-out)"
        ),
        f"Pooled (target, sample) pairs: {num_pos} members, {num_neg} non-members (negatives)",
    ]
    boot = results.get("bootstrap", {})
    if boot.get("num"):
        facts.append(
            f"95% CIs: {boot['num']} bootstrap replicates over {boot.get('unit', 'sample')}s"
        )
    if gap is not None:
        facts.append(
            f"Mean loss per token: train (IN) {gap['train_loss']:.4f}, test (OUT) "
            f"{gap['test_loss']:.4f}; gap {gap['gap']:+.4f} ({gap['gap_pct']:+.1f}% of train), "
            f"mean over {gap['num_models']} models"
        )
    elif loss_path is not None:
        facts.append(f"No train/test loss: {loss_path} not found")
    dp = results.get("dp")
    if dp:
        facts.append(
            f"DP-SGD: accountant epsilon {accountant_epsilon(dp)} at delta {dp['delta']:g} "
            f"({dp['accountant']}; noise multiplier {dp['noise_multiplier']:.3g}, clip norm "
            f"{dp['clip_norm']:g}, sample rate {dp['sample_rate']:.3g}, {dp['steps']} steps)"
        )
    tune = results.get("finetune")
    if tune:
        memory = tune["memory_bytes"]
        facts.append(
            f"Fine-tuned ({tune['mode']}) from base {tune['base']} (loss per token: "
            f"{tune['base_train_loss']:.4f} on its corpus, {tune['base_test_loss']:.4f} on the "
            f"audit pool); parameters + optimizer state {memory['ensemble']:,} bytes "
            f"(full fine-tuning: {memory['full_finetune']:,})"
        )
    return facts


def header_markdown(results: dict, gap: dict | None, loss_path: Path | None = None) -> str:
    """The results.md header: run size, targets, negatives and, if known, the loss gap."""
    lines = ["# Membership-inference results", ""]
    lines += [f"- {fact}" for fact in header_facts(results, gap, loss_path)]
    return "\n".join(lines) + "\n"


def summary_text(results: dict) -> str:
    """A compact plain-text table of the attacks (AUC, TPR at each FPR) for stdout."""
    attacks = results.get("attacks", {})
    if not attacks:
        return "No attack results.\n"
    keys = sorted(next(iter(attacks.values()))["tpr_at_fpr"], key=float, reverse=True)
    header = ["attack", "AUC"] + [f"TPR@{float(key):.0e}" for key in keys]
    rows = []
    unresolved = False
    for spec, entry in attacks.items():
        cells = [spec, fmt(entry.get("auc"), 3)]
        for key in keys:
            point = entry["tpr_at_fpr"][key]
            mark = "" if point.get("resolved", True) else "†"
            unresolved |= bool(mark)
            cells.append(fmt(point.get("tpr"), 4) + mark)
        rows.append(cells)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells):
        first = cells[0].ljust(widths[0])
        return "  ".join([first] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])])

    out = [line(header), "  ".join("-" * w for w in widths), *map(line, rows)]
    _, num_neg = _negatives(results)
    out.append(f"{num_neg} negatives over {len(results.get('targets', []))} targets")
    if unresolved:
        out.append("† unresolved: fewer than 1/FPR negatives")
    for spec in results.get("skipped", {}):
        out.append(f"skipped: {spec}")
    return "\n".join(out) + "\n"


def audit_summary(results: dict, results_dir: Path | None = None) -> str:
    """The headline comparisons and, from a written report.json, the exposed-sample count."""
    from seqmia_jax.report.headline import headline  # headline imports table, as this does

    lines = list(headline(results).sentences)
    marker = None if results_dir is None else Path(results_dir) / "report.json"
    if marker is not None and marker.is_file():
        report = json.loads(marker.read_text())
        ranked = report.get("ranked_by")
        exposure = (report.get("exposure") or {}).get(ranked)
        if exposure:
            lines.append(
                f"{exposure['exposed']} of {exposure['num_samples']} samples are individually "
                f"exposed under {ranked} (Benjamini-Hochberg, {100 * exposure['fdr']:.0f}% FDR)."
            )
    return "\n".join(lines).replace("`", "")

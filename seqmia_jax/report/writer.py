"""The report stage: turn an attack run's results/ into a readable report.

Legend: S shadow models, N samples, L positions, T targets, K exposed samples.

Reads, from the work directory: ``membership.npy``, ``stats/loss.npy`` and
``stats/mask.npy`` (both optional), and the attack stage's ``results/``
(``results.json``, ``targets.npy``, ``scores/*.npy`` and the evidence file the
results name). Writes into ``results/``:

- ``results.md``: a header (S, N, L, targets, negatives, train/test loss gap)
  and the attack stage's table. It replaces the attack stage's results.md,
  which holds the same table without the header.
- ``roc.png``: log-log ROC curves of every attack.
- ``leakage.html`` (text) or ``leakage.png`` (images): the most exposed
  members and the positions that carry the evidence.
- ``report.json``: the files written and the results they describe. Its
  presence marks the directory as reported.
"""

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from seqmia_jax.attacks.specs import parse_spec
from seqmia_jax.data.base import Dataset
from seqmia_jax.report import leakage, roc, summary
from seqmia_jax.report.table import results_table_markdown

MARKER = "report.json"
_REPORT_FILES = ("roc.png", "leakage.html", "leakage.png", MARKER)


def _load_results(results_dir: Path) -> tuple[dict, str]:
    path = results_dir / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run the attack stage first")
    text = path.read_text()
    return json.loads(text), hashlib.sha256(text.encode()).hexdigest()


def _check_overwrite(results_dir: Path, results_sha256: str, overwrite: bool) -> None:
    existing = [name for name in _REPORT_FILES if (results_dir / name).exists()]
    if not existing or overwrite:
        return
    stale = ""
    marker = results_dir / MARKER
    if marker.exists():
        try:
            if json.loads(marker.read_text()).get("results_sha256") != results_sha256:
                stale = " (made from earlier results: the attack stage has run since)"
        except (json.JSONDecodeError, AttributeError):
            pass
    raise FileExistsError(
        f"{results_dir}: a report exists{stale} ({', '.join(existing)}); pass overwrite=True "
        "(--overwrite) to replace it"
    )


def _ranking_attack(attacks: dict) -> tuple[str | None, str | None]:
    """(spec whose evidence to show, its evidence file), or the spec that ranks samples."""
    for spec, entry in attacks.items():
        if entry.get("evidence_file"):
            return spec, entry["evidence_file"]
    for spec in attacks:
        if parse_spec(spec)[0] == "seq":
            return spec, None
    return next(iter(attacks), None), None


def _optional_mask(workdir: Path, num_samples: int, seq_len: int) -> np.ndarray | None:
    path = workdir / "stats" / "mask.npy"
    if not path.is_file():
        return None
    mask_NxL = np.load(path).astype(bool)
    if mask_NxL.shape != (num_samples, seq_len):
        raise ValueError(f"{path}: shape {mask_NxL.shape}, expected {(num_samples, seq_len)}")
    return mask_NxL


def write_report(
    workdir: str | os.PathLike,
    dataset: Dataset,
    *,
    num_exposed: int = 12,
    overwrite: bool = False,
    results_dir: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """Write results.md, roc.png and the leakage view of an attacked work directory.

    Args:
      workdir: the work directory (membership.npy, stats/, results/).
      dataset: the audit pool the statistics were computed on (same N and L).
      num_exposed: K, how many of the most exposed member samples to show.
      overwrite: replace an existing report (report.json, roc.png, leakage.*).
      results_dir: the attack stage's output directory; default ``workdir/results``.

    Returns:
      name -> path of every file written: "results.md", "roc.png", "report.json"
      and, when the evidence file exists, "leakage.html" (text) or "leakage.png".

    Raises:
      FileNotFoundError: results.json, targets.npy or membership.npy is missing.
      FileExistsError: a report exists and ``overwrite`` is False.
      ValueError: the dataset or files disagree with results.json.
    """
    workdir = Path(workdir)
    out = Path(results_dir) if results_dir is not None else workdir / "results"
    results, results_sha256 = _load_results(out)
    _check_overwrite(out, results_sha256, overwrite)
    num_samples, seq_len = results["num_samples"], results["seq_len"]
    if (dataset.num_samples, dataset.seq_len) != (num_samples, seq_len):
        raise ValueError(
            f"dataset {dataset.name} is {dataset.num_samples} x {dataset.seq_len} but the "
            f"results are for N = {num_samples}, L = {seq_len}"
        )
    keep_SxN = np.load(workdir / "membership.npy").astype(bool)
    targets_T = np.load(out / "targets.npy")
    if keep_SxN.shape != (results["num_models"], num_samples):
        raise ValueError(f"membership.npy {keep_SxN.shape} does not match results.json")
    if targets_T.tolist() != results["targets"]:
        raise ValueError(f"{out / 'targets.npy'} does not match the targets in results.json")
    labels_TxN = keep_SxN[targets_T]
    mask_NxL = _optional_mask(workdir, num_samples, seq_len)

    for name in _REPORT_FILES:  # old views must not outlive an overwrite
        (out / name).unlink(missing_ok=True)
    written: dict[str, Path] = {}
    attacks = results.get("attacks", {})
    scores = {spec: np.load(out / entry["scores_file"]) for spec, entry in attacks.items()}

    if attacks:
        num_pos, num_neg = int(labels_TxN.sum()), int((~labels_TxN).sum())
        curves = {spec: roc.roc_on_grid(s, labels_TxN) for spec, s in scores.items()}
        labels = {spec: roc.legend_label(spec, entry) for spec, entry in attacks.items()}
        title = f"{dataset.name}: S={results['num_models']}, {len(targets_T)} targets"
        roc.plot_roc(curves, labels, num_neg, num_pos, out / "roc.png", title)
        written["roc.png"] = out / "roc.png"

    notes, exposed = [], []
    spec, evidence_file = _ranking_attack(attacks)
    if spec is not None:
        exposed = leakage.most_exposed(scores[spec], labels_TxN, targets_T, num_exposed)
    if spec is None:
        notes.append("No leakage view: no attack results.")
    elif evidence_file is None:
        notes.append(
            "No leakage view: no attack recorded per-position evidence. Re-run the attack "
            "stage with --evidence_attack naming a `seq:...,evidence=true` spec."
        )
    elif not (out / evidence_file).is_file():
        notes.append(f"No leakage view: {out / evidence_file} is missing.")
    else:
        evidence = np.load(out / evidence_file, mmap_mode="r")
        if evidence.shape != (len(targets_T), num_samples, seq_len):
            raise ValueError(f"{out / evidence_file}: shape {evidence.shape}, expected T x N x L")
        index_T = np.array([item.target_index for item in exposed], dtype=np.intp)
        index_N = np.array([item.sample for item in exposed], dtype=np.intp)
        evidence_KxL = np.asarray(evidence[index_T, index_N], dtype=np.float64)
        if dataset.kind == "text":
            page = leakage.leakage_html(dataset, exposed, evidence_KxL, spec, mask_NxL)
            (out / "leakage.html").write_text(page, encoding="utf-8")
            written["leakage.html"] = out / "leakage.html"
        else:
            leakage.leakage_figure(dataset, exposed, evidence_KxL, spec, out / "leakage.png")
            written["leakage.png"] = out / "leakage.png"

    loss_path = workdir / "stats" / "loss.npy"
    gap = None
    if loss_path.is_file():
        gap = summary.loss_gap(np.load(loss_path, mmap_mode="r"), keep_SxN, mask_NxL)
    text = summary.header_markdown(results, gap, loss_path) + "\n" + results_table_markdown(results)
    if attacks:
        text += "\n![ROC curves](roc.png)\n"
    text += _exposed_markdown(exposed, spec, written, notes)
    (out / "results.md").write_text(text, encoding="utf-8")
    written["results.md"] = out / "results.md"

    marker = {
        "files": sorted([*written, MARKER]),
        "results_sha256": results_sha256,
        "ranked_by": spec,
        "evidence_file": evidence_file if any(k.startswith("leakage") for k in written) else None,
        "exposed": [vars(item) for item in exposed],
        "loss_gap": gap,
    }
    (out / MARKER).write_text(json.dumps(marker, indent=2))
    written[MARKER] = out / MARKER
    return written


def _exposed_markdown(exposed, spec, written, notes) -> str:
    lines = ["", "## Most exposed samples", ""]
    lines += notes
    if exposed:
        view = next((name for name in written if name.startswith("leakage")), None)
        if view:
            lines.append(f"Per-position evidence: [{view}]({view}).")
        lines += [
            "",
            f"Members with the highest score under `{spec}` (best target per sample):",
            "",
            "| rank | sample | target | score |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {k} | {item.sample} | {item.target} | {item.score:.4g} |"
            for k, item in enumerate(exposed, start=1)
        ]
    return "\n".join(lines) + "\n"

"""The report stage: turn an attack run's results/ into a readable report.

Legend: S shadow models, N samples, L positions, T targets, K samples shown.

Reads, from the work directory: ``membership.npy``, ``stats/loss.npy`` and
``stats/mask.npy`` (both optional), ``config.json``, ``train_done.json`` and
``stats/done.json`` (optional, for the run summary), and the attack stage's
``results/`` (``results.json``, ``targets.npy``, ``scores/*.npy`` and the
evidence file the results name). Writes into ``results/``:

- ``index.html``: the one page to open (``html``), self-contained.
- ``results.md``: a header (S, N, L, targets, negatives, train/test loss
  gap), the attack stage's table, the headline comparisons, the per-sample
  summary and the most vulnerable samples. It replaces the attack stage's
  results.md, which holds the same table without the rest.
- ``roc.png``: log-log ROC curves of every attack, coloured by family.
- ``tpr_intervals.png``: TPR at FPR 1e-3 (and 1e-4 where resolved) with CIs.
- ``samples.csv``: per-sample vulnerability under every attack (``samples``)
  and ``sample_auc.png``, the per-sample AUCs of the ranking attack.
- ``leakage.html`` (text) or ``leakage.png`` (images): the most vulnerable
  samples and the positions that carry the evidence (``leakage``).
- ``report.json``: the files written, the results they describe, the chosen
  attacks and the summaries. Its presence marks the directory as reported.

The attack that ranks samples is the strongest calibrated one
(``headline``); the attack whose evidence shades them is the one the attack
stage saved evidence for (``profile`` in the default audit).
"""

import json
import os
from pathlib import Path

import numpy as np

from seqmia_jax.data.base import Dataset
from seqmia_jax.report import charts, exposure, html, leakage, roc, samples, secrets, summary
from seqmia_jax.report.families import in_family_order
from seqmia_jax.report.headline import Headline, headline
from seqmia_jax.report.table import epsilon_table_markdown, fmt, results_table_markdown
from seqmia_jax.report.view import SampleView
from seqmia_jax.workdir import json_ready, recover_swap, replacing, sha256_of

MARKER = "report.json"
_REPORT_FILES = (
    "index.html",
    "roc.png",
    "tpr_intervals.png",
    "samples.csv",
    "sample_auc.png",
    "leakage.html",
    "leakage.png",
    "exposure.png",
    MARKER,
)


def _load_results(results_dir: Path) -> tuple[dict, str]:
    path = results_dir / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run the attack stage first")
    return json.loads(path.read_text()), sha256_of(path)


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


def _evidence_attack(attacks: dict) -> tuple[str | None, str | None]:
    """(spec, evidence file) of the attack the attack stage saved evidence for, if any."""
    for spec, entry in attacks.items():
        if entry.get("evidence_file"):
            return spec, entry["evidence_file"]
    return None, None


def _json_or_none(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _timings(workdir: Path, attacks: dict) -> list[str]:
    """Stage timings the work directory recorded, one phrase each."""
    out = []
    train = _json_or_none(workdir / "train_done.json")
    if train and train.get("seconds") is not None:
        out.append(
            f"training {train['seconds']:.0f} s ({train.get('step')} steps, strategy "
            f"{train.get('strategy')}, {train.get('num_devices')} device(s))"
        )
    scored = _json_or_none(workdir / "stats" / "done.json")
    if scored and scored.get("seconds") is not None:
        out.append(
            f"scoring {scored['seconds']:.0f} s ({scored.get('samples_per_s', 0):.0f} samples/s)"
        )
    if scored and scored.get("memorization_seconds") is not None:
        out.append(f"exposure and extraction {scored['memorization_seconds']:.0f} s")
    timed = {spec: e["seconds"] for spec, e in attacks.items() if e.get("seconds") is not None}
    if timed:
        slowest = max(timed, key=timed.get)
        out.append(
            f"attacks {sum(timed.values()):.0f} s in all (slowest `{slowest}`, "
            f"{timed[slowest]:.1f} s)"
        )
    return out


def _optional_mask(workdir: Path, num_samples: int, seq_len: int) -> np.ndarray | None:
    path = workdir / "stats" / "mask.npy"
    if not path.is_file():
        return None
    mask_NxL = np.load(path).astype(bool)
    if mask_NxL.shape != (num_samples, seq_len):
        raise ValueError(f"{path}: shape {mask_NxL.shape}, expected {(num_samples, seq_len)}")
    return mask_NxL


def _samples_table_md(view: SampleView) -> list[str]:
    lines = [
        "| rank | sample | AUC | p | member of | mean IN rank | cf. mem. | largest share | text |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for k, item in enumerate(view.items, start=1):
        share = "–" if item.largest_share is None else f"{100 * item.largest_share:.0f}%"
        text = view.columns["snippet"][item.sample][:40].replace("|", "\\|")
        lines.append(
            f"| {k} | {item.sample}{' *' if item.exposed else ''} | {item.auc:.3f} | "
            f"{item.pvalue:.2g} | {item.in_targets} | {item.rank_in:.1f} | "
            f"{fmt(item.cf_mem, 3)} | {share} | {text} |"
        )
    return lines


def _report_markdown(head: Headline, view: SampleView, written: dict, results: dict) -> str:
    """results.md after the table: headline, plots, per-sample summary, vulnerable samples."""
    lines = ["", "## Headline", "", *[f"- {s}" for s in head.sentences], ""]
    lines += [f"![{name}]({name})" for name in ("roc.png", "tpr_intervals.png") if name in written]
    lines += ["", "## Per-sample vulnerability", ""]
    if view.ranking is None:
        return "\n".join([*lines, "No attack results."]) + "\n"
    lines += exposure.exposure_sentences(view.summaries[view.ranking], view.ranking)
    lines += ["", "Every sample under every attack: [samples.csv](samples.csv).", ""]
    lines += ["![per-sample AUC](sample_auc.png)", "", "## Most vulnerable samples", ""]
    lines += [view.reason(head, results), view.concentration(), ""]
    shown = next((n for n in ("leakage.html", "leakage.png") if n in written), None)
    if shown:
        lines += [f"Per-position evidence: [{shown}]({shown}).", ""]
    lines += [*_samples_table_md(view), "", "\\* individually exposed (BH 5% FDR)."]
    return "\n".join(lines) + "\n"


def _exposure_table(view: SampleView) -> str:
    """Per attack: individually exposed samples, perfect separations and the median AUC."""
    rows = []
    for spec in in_family_order(list(view.summaries)):
        s = view.summaries[spec]
        cells = [html.inline(f"`{spec}`"), s["exposed"], s["perfect"]]
        cells += [s["strong"], fmt(s["auc_median"], 3)]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    first = next(iter(view.summaries.values()))
    head = ["attack", "individually exposed", "AUC = 1", f"AUC ≥ {first['strong_auc']}"]
    return (
        "<table><thead><tr>"
        + "".join(f"<th>{h}</th>" for h in [*head, "median AUC"])
        + "</tr></thead><tbody>"
        + "".join(rows)
        + f'</tbody></table><p class="note">No signal predicts {first["perfect_null"]:.2g} '
        f"samples with AUC = 1 and {first['strong_null']:.3g} with AUC ≥ "
        f"{first['strong_auc']}. A per-sample AUC compares one sample's scores across "
        "models, so any per-sample offset or scale in an attack's score cancels: the "
        "target-only baselines (loss, zlib) are calibrated here for free.</p>"
    )


def _png(path: Path, alt: str) -> str:
    return html.image(path.read_bytes(), alt) if path.is_file() else ""


def _index_page(dataset, results, head, view, written, facts, config, workdir, mask_NxL) -> str:
    """index.html from the files written and the view."""
    out = written["results.md"].parent
    attacks = results.get("attacks", {})
    lede, samples_html, leakage_html = [], "<p>No attack results.</p>", ""
    if view.ranking is not None:
        summary_ = view.summaries[view.ranking]
        lede.append(
            f"{summary_['exposed']} of {summary_['num_samples']} samples are individually "
            f"exposed under `{view.ranking}` (BH, {100 * summary_['fdr']:.0f}% false-discovery "
            "rate); the most vulnerable are in the leakage view below."
        )
        sentences = exposure.exposure_sentences(summary_, view.ranking)
        samples_html = (
            "".join(f"<p>{html.inline(s)}</p>" for s in sentences)
            + _png(out / "sample_auc.png", "per-sample AUC histogram")
            + _exposure_table(view)
            + '<p><a href="samples.csv">samples.csv</a>: every sample under every attack.</p>'
            + html.column_guide(list(attacks))
        )
        if dataset.kind == "text":
            leakage_html = leakage.legend_html(
                view.evidence_spec if view.evidence_KxL is not None else None
            ) + leakage.leakage_blocks(dataset, view.items, view.evidence_KxL, mask_NxL)
        else:
            leakage_html = _png(out / "leakage.png", "most vulnerable images")
        leakage_html = f"<p>{html.inline(view.concentration())}</p>" + leakage_html
    return html.index_page(
        title=f"Membership-inference audit: {dataset.name}",
        lede=lede,
        run=html.run_summary(config, facts, _timings(workdir, attacks)),
        head=head,
        ranking_reason=view.reason(head, results) if view.ranking else "",
        table=html.results_table(results) if attacks else "<p>No attack results.</p>",
        plots=[_png(out / n, n) for n in ("roc.png", "tpr_intervals.png") if n in written],
        samples=samples_html,
        leakage_view=leakage_html,
        secrets=secrets.html_section(results, _png(out / "exposure.png", "exposure histogram")),
    )


def write_report(
    workdir: str | os.PathLike,
    dataset: Dataset,
    *,
    num_exposed: int = 12,
    overwrite: bool = False,
    results_dir: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """Write index.html and the rest of the report of an attacked work directory.

    Args:
      workdir: the work directory (membership.npy, stats/, results/).
      dataset: the audit pool the statistics were computed on (same N and L).
      num_exposed: K, how many of the most vulnerable samples the leakage view shows.
      overwrite: replace an existing report (any file in ``_REPORT_FILES``).
      results_dir: the attack stage's output directory; default ``workdir/results``.

    Returns:
      name -> path of every file written: "index.html", "results.md",
      "report.json" and, with attack results, "roc.png", "tpr_intervals.png",
      "samples.csv", "sample_auc.png" and "leakage.html" (text) or
      "leakage.png" (images).

    Raises:
      FileNotFoundError: results.json, targets.npy or membership.npy is missing.
      FileExistsError: a report exists and ``overwrite`` is False.
      ValueError: the dataset or files disagree with results.json.
    """
    workdir = Path(workdir)
    out = Path(results_dir) if results_dir is not None else workdir / "results"
    recover_swap(out, writer=False)  # a crash between the renames of a stage's swap
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

    # Built beside the old report and swapped in whole (with the attack results,
    # hard-linked): a crash leaves the complete old report or the complete new one,
    # and no old view outlives an overwrite.
    final = out
    with replacing(final, lambda name: name in _REPORT_FILES or name == "results.md") as out:
        written: dict[str, Path] = {}
        attacks = results.get("attacks", {})
        scores = {spec: np.load(out / entry["scores_file"]) for spec, entry in attacks.items()}
        head = headline(results)
        loss_path = workdir / "stats" / "loss.npy"
        loss_SxNxL = np.load(loss_path, mmap_mode="r") if loss_path.is_file() else None
        gap = None if loss_SxNxL is None else summary.loss_gap(loss_SxNxL, keep_SxN, mask_NxL)
        facts = summary.header_facts(results, gap, loss_path)

        view = SampleView(head.ranking_attack, *_evidence_attack(attacks))
        if attacks:
            num_pos, num_neg = int(labels_TxN.sum()), int((~labels_TxN).sum())
            curves = {spec: roc.roc_on_grid(s, labels_TxN) for spec, s in scores.items()}
            labels = {spec: roc.legend_label(spec, entry) for spec, entry in attacks.items()}
            title = f"{dataset.name}: S={results['num_models']}, {len(targets_T)} targets"
            roc.plot_roc(curves, labels, num_neg, num_pos, out / "roc.png", title)
            charts.plot_tpr_intervals(attacks, num_pos, out / "tpr_intervals.png", title)
            written["roc.png"], written["tpr_intervals.png"] = (
                out / "roc.png",
                out / "tpr_intervals.png",
            )
            extra = secrets.sample_columns(workdir, results, keep_SxN)
            view.measure(dataset, scores, labels_TxN, loss_SxNxL, keep_SxN, mask_NxL, extra)
            samples.write_samples_csv(out / "samples.csv", view.columns)
            written["samples.csv"] = out / "samples.csv"
            charts.plot_sample_auc(
                view.per_attack[view.ranking]["auc"],
                list(zip(labels_TxN.sum(0).tolist(), (~labels_TxN).sum(0).tolist())),
                view.summaries[view.ranking]["exposed"],
                view.ranking,
                out / "sample_auc.png",
            )
            written["sample_auc.png"] = out / "sample_auc.png"
            view.select(num_exposed, out, labels_TxN, results)
            # The view ranks samples even without evidence to shade them.
            name = "leakage.html" if dataset.kind == "text" else "leakage.png"
            if dataset.kind == "text":
                reason = html.inline(view.reason(head, results))
                page = leakage.leakage_html(
                    dataset, view.items, view.evidence_KxL, reason, view.evidence_spec, mask_NxL
                )
                (out / name).write_text(page, encoding="utf-8")
            else:
                leakage.leakage_figure(
                    dataset, view.items, view.evidence_KxL, view.evidence_spec, out / name
                )
            written[name] = out / name
        text = (
            summary.header_markdown(results, gap, loss_path)
            + "\n"
            + results_table_markdown(results)
            + epsilon_table_markdown(results)
        )
        if secrets.plot_exposure(workdir, results, keep_SxN, out / "exposure.png"):
            written["exposure.png"] = out / "exposure.png"
        text += secrets.markdown(results)
        text += _report_markdown(head, view, written, results)
        (out / "results.md").write_text(text, encoding="utf-8")
        written["results.md"] = out / "results.md"
        config = _json_or_none(workdir / "config.json")
        page = _index_page(dataset, results, head, view, written, facts, config, workdir, mask_NxL)
        (out / "index.html").write_text(page, encoding="utf-8")
        written["index.html"] = out / "index.html"

        marker = {
            "files": sorted([*written, MARKER]),
            "results_sha256": results_sha256,
            "headline": list(head.sentences),
            "comparison_fpr": head.fpr_key,
            "ranked_by": view.ranking,
            "evidence_attack": view.evidence_spec if view.evidence_KxL is not None else None,
            "evidence_file": view.evidence_file if view.evidence_KxL is not None else None,
            "vulnerable": [vars(item) for item in view.items],
            "exposure": {
                spec: {k: v for k, v in summary_.items() if k != "exposed_samples"}
                for spec, summary_ in view.summaries.items()
            },
            "exposed_samples": view.summaries.get(view.ranking, {}).get("exposed_samples", []),
            "loss_gap": gap,
        }
        (out / MARKER).write_text(json.dumps(json_ready(marker), indent=2))
        written[MARKER] = out / MARKER
    return {name: final / path.relative_to(out) for name, path in written.items()}

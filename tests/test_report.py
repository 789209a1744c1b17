"""The report stage: its files, the headline, plot styles, the leakage views and overwrite rules."""

import json
import re
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from seqmia_jax.attacks.runner import run_attacks
from seqmia_jax.attacks.specs import DEFAULT_ATTACKS
from seqmia_jax.config import DataConfig
from seqmia_jax.data import load_dataset, make_dataset
from seqmia_jax.evaluation.metrics import roc_curve, tpr_at_fpr
from seqmia_jax.report import (
    audit_summary,
    leakage,
    loss_gap,
    roc,
    summary,
    summary_text,
    write_report,
)
from seqmia_jax.report.families import family_of, styles
from seqmia_jax.report.headline import headline
from seqmia_jax.report.samples import per_sample_auc
from tests.synthetic import balanced_keep

REPORT_FILES = {"index.html", "results.md", "report.json", "roc.png", "tpr_intervals.png"}
REPORT_FILES |= {"samples.csv", "sample_auc.png"}

EVIDENCE = "seq:cov=diag,evidence=true"
ATTACKS = ["lira", EVIDENCE]
NUM_MODELS, NUM_SAMPLES = 8, 40


def write_workdir(path: Path, seq_len: int, *, seed: int = 0, mask: bool = False) -> tuple:
    """Synthetic balanced membership and per-token losses where members have lower loss."""
    rng = np.random.default_rng(seed)
    keep_SxN = balanced_keep(rng, NUM_MODELS, NUM_SAMPLES)
    shape = (NUM_MODELS, NUM_SAMPLES, seq_len)
    loss = np.abs(rng.gamma(2.0, 1.0, shape) - 0.7 * keep_SxN[..., None]) + 0.01
    loss = loss.astype(np.float32)
    (path / "stats").mkdir(parents=True)
    np.save(path / "membership.npy", keep_SxN)
    np.save(path / "stats" / "loss.npy", loss)
    np.save(path / "stats" / "logit.npy", (-loss - np.log(-np.expm1(-loss))).astype(np.float32))
    mask_NxL = None
    if mask:
        mask_NxL = rng.random((NUM_SAMPLES, seq_len)) < 0.9
        mask_NxL[:, 0] = True
        np.save(path / "stats" / "mask.npy", mask_NxL)
    return keep_SxN, loss, mask_NxL


def reference_gap(loss_SxNxL, keep_SxN, mask_NxL):
    weight_NxL = np.ones(loss_SxNxL.shape[1:]) if mask_NxL is None else mask_NxL.astype(float)
    sample_SxN = (loss_SxNxL * weight_NxL).sum(-1) / weight_NxL.sum(-1)
    train = np.mean([row[k].mean() for row, k in zip(sample_SxN, keep_SxN)])
    test = np.mean([row[~k].mean() for row, k in zip(sample_SxN, keep_SxN)])
    return train, test


def test_text_report(tmp_path):
    keep_SxN, loss, mask_NxL = write_workdir(tmp_path, 16, mask=True)
    results = run_attacks(tmp_path, ATTACKS, 4, bootstrap=10, evidence_attack=EVIDENCE)
    dataset = load_dataset(DataConfig(name="pydoc", seq_len=16, num_samples=NUM_SAMPLES))
    paths = write_report(tmp_path, dataset, num_exposed=5)
    out = tmp_path / "results"
    assert set(paths) == REPORT_FILES | {"leakage.html"}
    assert all(p.is_file() and p.parent == out for p in paths.values())
    for name in ("roc.png", "tpr_intervals.png", "sample_auc.png"):
        image = matplotlib.image.imread(paths[name])
        assert image.ndim == 3 and min(image.shape[:2]) > 100, name

    page = paths["leakage.html"].read_text(encoding="utf-8")
    assert page.count('<div class="sample"') == 5
    assert EVIDENCE in page and "log p<sub>in</sub>" in page

    # The view ranks by the ranking attack's per-sample AUC, highest first.
    marker = json.loads(paths["report.json"].read_text())
    ranked = marker["ranked_by"]
    assert ranked == headline(results).ranking_attack and family_of(ranked).calibrated
    scores_TxN = np.load(out / results["attacks"][ranked]["scores_file"])
    auc_N = per_sample_auc(scores_TxN, keep_SxN[:4])
    shown = marker["vulnerable"]
    assert len(shown) == 5 and marker["evidence_attack"] == EVIDENCE
    np.testing.assert_allclose(
        [v["auc"] for v in shown], np.sort(auc_N[~np.isnan(auc_N)])[::-1][:5]
    )
    assert all(v["in_targets"] == keep_SxN[:4, v["sample"]].sum() for v in shown)

    md = paths["results.md"].read_text()
    table, bounds = md.split("## Empirical epsilon lower bounds")
    for spec in ATTACKS:  # one row in the results table, one in the epsilon bounds' table
        for part in (table, bounds):
            assert sum(line.startswith(f"| `{spec}` |") for line in part.splitlines()) == 1
    assert f"{int((~keep_SxN[:4]).sum())} non-members (negatives)" in md
    train, test = reference_gap(loss.astype(np.float64), keep_SxN, mask_NxL)
    assert f"train (IN) {train:.4f}, test (OUT) {test:.4f}" in md
    assert f"({100 * (test - train) / train:+.1f}% of train)" in md
    assert "leakage.html" in md and "S = 8, samples N = 40, positions L = 16" in md
    assert "samples.csv" in md and headline(results).sentences[0] in md


def test_image_report_and_overwrite(tmp_path):
    write_workdir(tmp_path, 64)
    run_attacks(tmp_path, ATTACKS, 3, bootstrap=0, evidence_attack=EVIDENCE)
    dataset = load_dataset(DataConfig(name="digits", seq_len=64, num_samples=NUM_SAMPLES))
    paths = write_report(tmp_path, dataset, num_exposed=6)
    assert set(paths) == REPORT_FILES | {"leakage.png"}
    for name in ("roc.png", "leakage.png"):
        image = matplotlib.image.imread(paths[name])
        assert image.ndim == 3 and min(image.shape[:2]) > 100, name

    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_report(tmp_path, dataset)
    assert write_report(tmp_path, dataset, overwrite=True) == paths

    # Attacks re-run without evidence: the old report is stale, the new view is unshaded.
    run_attacks(tmp_path, ["lira"], 3, bootstrap=0, overwrite=True)
    with pytest.raises(FileExistsError, match="earlier results"):
        write_report(tmp_path, dataset)
    paths = write_report(tmp_path, dataset, overwrite=True)
    assert set(paths) == REPORT_FILES | {"leakage.png"}
    marker = json.loads(paths["report.json"].read_text())
    assert marker["evidence_attack"] is None and marker["ranked_by"] == "lira"
    assert "not shaded" in paths["results.md"].read_text()


def test_report_rejects_a_mismatched_dataset(tmp_path):
    write_workdir(tmp_path, 16)
    run_attacks(tmp_path, ["lira"], 2, bootstrap=0)
    dataset = load_dataset(DataConfig(name="pydoc", seq_len=16, num_samples=NUM_SAMPLES + 1))
    with pytest.raises(ValueError, match="N = 40"):
        write_report(tmp_path, dataset)


def test_leakage_html_escapes_and_groups_utf8():
    text = "a<b>&\né".encode() + bytes([0xFF, 0x41])
    tokens_1xL = np.frombuffer(text, np.uint8).astype(np.int32)[None]
    cfg = DataConfig(name="crafted", seq_len=tokens_1xL.shape[1], num_samples=1)
    dataset = make_dataset("crafted", tokens_1xL, cfg, vocab_size=256, kind="text")
    evidence_1xL = np.arange(tokens_1xL.shape[1], dtype=np.float64)[None] - 2.0
    mask_1xL = np.ones_like(tokens_1xL, bool)
    mask_1xL[0, -1] = False
    item = leakage.Vulnerable(
        sample=0, auc=1.0, pvalue=0.01, tpr0=1.0, rank_in=1.0, in_targets=4, cf_mem=0.5,
        exposed=True, total=float(evidence_1xL.sum()), largest_share=None,
    )  # fmt: skip
    body = leakage.leakage_blocks(dataset, [item], evidence_1xL, mask_1xL)
    spans = re.findall(r'<span title="([^"]*)" style="([^"]*)">(.*?)</span>', body, re.DOTALL)
    assert [s[2] for s in spans] == ["a", "&lt;", "b", "&gt;", "&amp;", "⏎\n", "é", "\ufffd", "A"]
    assert "><</span>" not in body and ">></span>" not in body  # the text's own <b> is escaped
    assert spans[6][0] == "pos 6–7: +9"  # é is two bytes: evidence 4 + 5
    assert spans[0][0] == "pos 0: -2" and "rgba(40, 90, 220,0.222)" in spans[0][1]
    assert "rgba(220, 40, 40,1.000)" in spans[6][1]  # the largest |evidence| in the sample
    assert "absent" in spans[8][0] and "line-through" in spans[8][1]
    assert "sample 0 &middot; AUC 1.000" in body and "individually exposed" in body


def test_loss_gap_streams_over_models(monkeypatch):
    rng = np.random.default_rng(1)
    keep_SxN = rng.random((6, 9)) < 0.5
    keep_SxN[:, 0], keep_SxN[:, 1] = True, False
    loss_SxNxL = rng.gamma(2.0, 1.0, (6, 9, 5))
    mask_NxL = rng.random((9, 5)) < 0.7
    mask_NxL[:, 0] = True
    monkeypatch.setattr(summary, "_CHUNK_ELEMENTS", 60)  # 1 model per block
    gap = loss_gap(loss_SxNxL, keep_SxN, mask_NxL)
    train, test = reference_gap(loss_SxNxL, keep_SxN, mask_NxL)
    np.testing.assert_allclose([gap["train_loss"], gap["test_loss"]], [train, test])
    np.testing.assert_allclose(gap["gap_pct"], 100 * (test - train) / train)


def test_roc_grid_matches_tpr_at_fpr():
    rng = np.random.default_rng(2)
    labels_TxN = rng.random((3, 400)) < 0.5
    scores_TxN = rng.normal(size=(3, 400)) + labels_TxN
    fpr_G, tpr_G = roc.roc_on_grid(scores_TxN, labels_TxN, num_points=50)
    fpr, tpr, _ = roc_curve(scores_TxN, labels_TxN)
    assert fpr_G[0] == pytest.approx(1 / (~labels_TxN).sum()) and fpr_G[-1] == 1.0
    np.testing.assert_allclose(tpr_G, [tpr_at_fpr(fpr, tpr, f * (1 + 1e-9)) for f in fpr_G])


def test_print_summary(tmp_path):
    write_workdir(tmp_path, 8)
    results = run_attacks(tmp_path, ["lira", "loss"], 4, bootstrap=0)
    text = summary_text(results)
    lines = text.splitlines()
    assert lines[0].split() == ["attack", "AUC", "TPR@1e-02", "TPR@1e-03", "TPR@1e-04"]
    assert [line.split()[0] for line in lines[2:4]] == ["lira", "loss"]
    assert f"{results['attacks']['lira']['auc']:.3f}" in lines[2]
    assert "†" in text  # 1e-4 is unresolved with ~80 negatives


def _entry(auc, tpr, ci):
    point = {"tpr": tpr, "ci": ci, "num_negatives": 5000, "resolved": True}
    return {"auc": auc, "tpr_at_fpr": {"0.01": point, "0.001": point, "0.0001": {
        **point, "resolved": False}}}  # fmt: skip


def test_headline_compares_at_the_lowest_resolved_fpr_and_ranks_by_a_calibrated_attack():
    results = {
        "attacks": {
            "lira": _entry(0.9, 0.04, [0.02, 0.06]),
            "lira:variance=fixed": _entry(0.92, 0.10, [0.08, 0.12]),
            "seq:cov=pooled": _entry(0.88, 0.05, [0.03, 0.07]),
            "seq:cov=diag": _entry(0.8, 0.01, [0.0, 0.02]),
            "loss": _entry(0.7, 0.30, [0.25, 0.35]),  # strongest, but not calibrated
        }
    }
    head = headline(results)
    assert head.fpr_key == "0.001" and head.ranking_attack == "lira:variance=fixed"
    first = head.sentences[0]
    assert "`seq:cov=pooled`" in first and "1.25× plain `lira`" in first
    assert "0.50× the best univariate LiRA, `lira:variance=fixed`" in first
    assert "(0.0400 [0.0200, 0.0600]; the 95% CIs overlap)" in first
    assert "(0.1000 [0.0800, 0.1200]; the 95% CIs do not overlap)" in first
    assert "`loss`" in head.sentences[1]
    assert "seq:cov=pooled" in audit_summary(results) and "`" not in audit_summary(results)


def test_roc_styles_tell_every_default_attack_apart_and_the_legend_is_outside(tmp_path):
    style = styles(DEFAULT_ATTACKS)
    pairs = {(tuple(s["color"]), str(s["linestyle"])) for s in style.values()}
    assert len(pairs) == len(DEFAULT_ATTACKS)
    # Families never share a colour.
    by_family = {}
    for spec, s in style.items():
        by_family.setdefault(family_of(spec).label, set()).add(tuple(s["color"]))
    colours = [c for group in by_family.values() for c in group]
    assert len(colours) == len(set(colours))
    labels_TxN = np.random.default_rng(0).random((2, 300)) < 0.5
    curves = {
        spec: roc.roc_on_grid(
            np.random.default_rng(i).normal(size=(2, 300)) + labels_TxN, labels_TxN
        )
        for i, spec in enumerate(DEFAULT_ATTACKS)
    }
    fig = roc.plot_roc(curves, {s: s for s in curves}, 300, 300, tmp_path / "roc.png")
    (ax,) = fig.axes
    renderer = fig.canvas.get_renderer()
    legend_box = ax.get_legend().get_window_extent(renderer)
    assert legend_box.x0 >= ax.get_window_extent(renderer).x1  # right of the data
    assert legend_box.x1 <= fig.bbox.x1 + 1  # and not cut off

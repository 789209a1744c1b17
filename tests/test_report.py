"""The report stage: results.md, roc.png, the leakage views and overwrite rules."""

import json
import re
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from seqmia_jax.attacks.runner import run_attacks
from seqmia_jax.config import DataConfig
from seqmia_jax.data import load_dataset, make_dataset
from seqmia_jax.evaluation.metrics import roc_curve, tpr_at_fpr
from seqmia_jax.report import leakage, loss_gap, roc, summary, summary_text, write_report
from tests.synthetic import balanced_keep

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
    assert set(paths) == {"results.md", "roc.png", "leakage.html", "report.json"}
    assert all(p.is_file() and p.parent == out for p in paths.values())

    image = matplotlib.image.imread(paths["roc.png"])
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100

    page = paths["leakage.html"].read_text(encoding="utf-8")
    assert page.count('<div class="sample"') == 5
    assert EVIDENCE in page and "log p<sub>in</sub>" in page

    marker = json.loads(paths["report.json"].read_text())
    exposed = marker["exposed"]
    assert len(exposed) == 5 and marker["ranked_by"] == EVIDENCE
    scores_TxN = np.load(out / results["attacks"][EVIDENCE]["scores_file"])
    member_TxN = np.where(keep_SxN[:4], scores_TxN, -np.inf)
    np.testing.assert_allclose([e["score"] for e in exposed], np.sort(member_TxN.max(0))[::-1][:5])
    for e in exposed:  # each exposed pair is a member pair of its target
        assert keep_SxN[e["target"], e["sample"]] and e["target"] == e["target_index"]

    md = paths["results.md"].read_text()
    for spec in ATTACKS:
        assert sum(line.startswith(f"| `{spec}` |") for line in md.splitlines()) == 1
    assert f"{int((~keep_SxN[:4]).sum())} non-members (negatives)" in md
    train, test = reference_gap(loss.astype(np.float64), keep_SxN, mask_NxL)
    assert f"train (IN) {train:.4f}, test (OUT) {test:.4f}" in md
    assert f"({100 * (test - train) / train:+.1f}% of train)" in md
    assert "leakage.html" in md and "S = 8, samples N = 40, positions L = 16" in md


def test_image_report_and_overwrite(tmp_path):
    write_workdir(tmp_path, 64)
    run_attacks(tmp_path, ATTACKS, 3, bootstrap=0, evidence_attack=EVIDENCE)
    dataset = load_dataset(DataConfig(name="digits", seq_len=64, num_samples=NUM_SAMPLES))
    paths = write_report(tmp_path, dataset, num_exposed=6)
    assert set(paths) == {"results.md", "roc.png", "leakage.png", "report.json"}
    for name in ("roc.png", "leakage.png"):
        image = matplotlib.image.imread(paths[name])
        assert image.ndim == 3 and min(image.shape[:2]) > 100, name

    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_report(tmp_path, dataset)
    assert write_report(tmp_path, dataset, overwrite=True) == paths

    # Attacks re-run without evidence: the old report is stale, and the new one has no view.
    run_attacks(tmp_path, ["lira"], 3, bootstrap=0, overwrite=True)
    with pytest.raises(FileExistsError, match="earlier results"):
        write_report(tmp_path, dataset)
    paths = write_report(tmp_path, dataset, overwrite=True)
    assert set(paths) == {"results.md", "roc.png", "report.json"}
    assert not (tmp_path / "results" / "leakage.png").exists()
    assert "No leakage view" in paths["results.md"].read_text()


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
    exposed = [leakage.Exposed(sample=0, target_index=0, target=3, score=1.5)]
    page = leakage.leakage_html(dataset, exposed, evidence_1xL, EVIDENCE, mask_1xL)
    body = page[page.index('<div class="sample"') :]
    spans = re.findall(r'<span title="([^"]*)" style="([^"]*)">(.*?)</span>', body, re.DOTALL)
    assert [s[2] for s in spans] == ["a", "&lt;", "b", "&gt;", "&amp;", "⏎\n", "é", "\ufffd", "A"]
    assert "<b>" not in body
    assert spans[6][0] == "pos 6–7: +9"  # é is two bytes: evidence 4 + 5
    assert spans[0][0] == "pos 0: -2" and "rgba(40, 90, 220,0.222)" in spans[0][1]
    assert "rgba(220, 40, 40,1.000)" in spans[6][1]  # the largest |evidence| in the sample
    assert "absent" in spans[8][0] and "line-through" in spans[8][1]
    assert "target model 3" in body


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

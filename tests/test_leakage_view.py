"""The leakage view: planted memorized spans are found, the null shows nothing, evidence adds up.

Legend: S shadow models, N samples, L positions, T targets.
"""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from seqmia_jax.attacks.runner import run_attacks
from seqmia_jax.config import DataConfig
from seqmia_jax.data import load_dataset, make_dataset
from seqmia_jax.report import leakage, write_report
from tests.synthetic import balanced_keep

NUM_MODELS, NUM_SAMPLES = 16, 100
PLANTED = np.array([3, 17, 42, 58, 71, 90])
ATTACKS = ["lira", "profile", "loss"]


def _workdir(path: Path, seq_len: int, span: np.ndarray | None, seed: int = 0) -> np.ndarray:
    """Logit statistics x = mu + noise; members of a planted sample gain +3 on the span."""
    rng = np.random.default_rng(seed)
    keep_SxN = balanced_keep(rng, NUM_MODELS, NUM_SAMPLES)
    shape = (NUM_MODELS, NUM_SAMPLES, seq_len)
    logit = rng.normal(size=(NUM_SAMPLES, seq_len)) + rng.normal(size=shape)
    if span is not None:
        boost_NxL = np.zeros((NUM_SAMPLES, seq_len))
        boost_NxL[np.ix_(PLANTED, span)] = 3.0
        logit = logit + keep_SxN[..., None] * boost_NxL
    (path / "stats").mkdir(parents=True)
    np.save(path / "membership.npy", keep_SxN)
    np.save(path / "stats" / "logit.npy", logit.astype(np.float32))
    np.save(path / "stats" / "loss.npy", np.logaddexp(0.0, -logit).astype(np.float32))
    run_attacks(path, ATTACKS, None, bootstrap=0, evidence_attack="profile")
    return keep_SxN


def _on_span(evidence_L: np.ndarray, span: np.ndarray) -> float:
    """Share of a sample's positive evidence that lies on ``span``."""
    positive_L = np.clip(evidence_L, 0.0, None)
    return float(positive_L[span].sum() / positive_L.sum())


def _text_dataset(seq_len: int):
    rng = np.random.default_rng(9)
    tokens = rng.integers(ord("a"), ord("z") + 1, size=(NUM_SAMPLES, seq_len))
    cfg = DataConfig(name="crafted", seq_len=seq_len, num_samples=NUM_SAMPLES)
    return make_dataset("crafted", tokens, cfg, vocab_size=256, kind="text")


def test_planted_span_is_found_and_shaded(tmp_path):
    span = np.arange(8, 14)
    keep_SxN = _workdir(tmp_path, 24, span)
    paths = write_report(tmp_path, _text_dataset(24), num_exposed=len(PLANTED))
    report = json.loads(paths["report.json"].read_text())
    shown = report["vulnerable"]
    assert sorted(v["sample"] for v in shown) == sorted(PLANTED.tolist())
    assert all(v["exposed"] and v["auc"] == 1.0 for v in shown)
    evidence = np.load(tmp_path / "results" / "evidence" / "profile.npy")
    for v in shown:  # the evidence sits on the span: 6 of 24 positions, 25% if spread evenly
        n = v["sample"]
        member_L = evidence[keep_SxN[:, n], n].astype(np.float64).mean(0)
        assert v["top_positions"][0] in span, v
        assert _on_span(member_L, span) > 0.75, v
        assert v["largest_share"] == pytest.approx(member_L.max() / member_L.sum(), rel=1e-4)
    # The page shades what report.json says: parse one sample's hover titles.
    page = paths["leakage.html"].read_text(encoding="utf-8")
    block = page[page.index('id="rank-1"') :].split('<div class="sample"')[0]
    values = [float(v) for v in re.findall(r'title="pos \d+: ([-+0-9.e]+)"', block)]
    assert len(values) == 24 and int(np.argmax(values)) in span
    # Shaded values are the profile evidence averaged over the sample's member targets,
    # and each target's evidence sums to its standardized projection (test_profile_evidence).
    n = shown[0]["sample"]
    np.testing.assert_allclose(values, evidence[keep_SxN[:, n], n].mean(0), rtol=1e-3, atol=1e-3)
    assert shown[0]["total"] == np.float32(evidence[keep_SxN[:, n], n].sum(-1).mean())


def test_null_statistics_expose_nothing_beyond_the_null(tmp_path):
    _workdir(tmp_path, 24, None, seed=1)
    paths = write_report(tmp_path, _text_dataset(24), num_exposed=5)
    report = json.loads(paths["report.json"].read_text())
    for spec, summary in report["exposure"].items():
        assert summary["exposed"] == 0, spec
        # AUC >= 0.9 is rare under no signal: at most a few more than predicted.
        expected = summary["strong_null"]
        assert summary["strong"] <= expected + 4 * np.sqrt(expected) + 2, (spec, summary)
        assert summary["perfect"] <= 1, spec  # 100 x 1/12870 predicted
        assert 0.4 < summary["auc_median"] < 0.6, spec
    md = paths["results.md"].read_text()
    assert "0 of 100 samples are individually exposed" in md


def test_planted_pixel_patch_is_found(tmp_path):
    patch = np.array([r * 8 + c for r in range(2, 4) for c in range(3, 6)])  # rows 2-3, cols 3-5
    keep_SxN = _workdir(tmp_path, 64, patch, seed=2)
    dataset = load_dataset(DataConfig(name="digits", seq_len=64, num_samples=NUM_SAMPLES))
    paths = write_report(tmp_path, dataset, num_exposed=len(PLANTED))
    assert "leakage.png" in paths
    report = json.loads(paths["report.json"].read_text())
    assert sorted(v["sample"] for v in report["vulnerable"]) == sorted(PLANTED.tolist())
    evidence = np.load(tmp_path / "results" / "evidence" / "profile.npy")
    for v in report["vulnerable"]:  # 6 of 64 pixels: an even spread puts 9% on the patch
        n = v["sample"]
        assert v["top_positions"][0] in patch, v
        assert _on_span(evidence[keep_SxN[:, n], n].mean(0), patch) > 0.6, v


def test_rank_samples_and_shares():
    auc_N = np.array([0.5, 1.0, np.nan, 1.0, 0.9])
    rank_N = np.array([10.0, 3.0, 1.0, 2.0, 1.0])
    assert leakage.rank_samples(auc_N, rank_N, 3).tolist() == [3, 1, 4]  # NaN never shown
    assert leakage.largest_share(np.array([1.0, 3.0, -2.0])) == 1.5
    assert leakage.largest_share(np.array([1.0, -2.0])) is None
    assert leakage.top_positions(np.array([0.1, 0.5, 0.5, -1.0]), 2) == (1, 2)

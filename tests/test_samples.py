"""Per-sample vulnerability and samples.csv against sklearn, scipy and plain numpy loops."""

import csv
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from seqmia_jax.attacks.runner import run_attacks
from seqmia_jax.config import DataConfig
from seqmia_jax.data import load_dataset
from seqmia_jax.report import samples, write_report
from seqmia_jax.report.exposure import exposure_summary, null_tail
from tests.synthetic import balanced_keep

RECORDED_HEADER = Path(__file__).parent / "data" / "samples_header.csv"


def _scores(seed: int = 0, num_targets: int = 12, num_samples: int = 30):
    rng = np.random.default_rng(seed)
    labels_TxN = rng.random((num_targets, num_samples)) < 0.5
    labels_TxN[:, 0], labels_TxN[:, 1] = True, False  # no non-members / no members: undefined
    scores_TxN = rng.normal(size=labels_TxN.shape) + labels_TxN * rng.random(num_samples) * 2
    scores_TxN[:, 2:6] = np.round(scores_TxN[:, 2:6])  # ties
    return scores_TxN, labels_TxN


def test_per_sample_auc_matches_sklearn():
    scores_TxN, labels_TxN = _scores()
    auc_N = samples.per_sample_auc(scores_TxN, labels_TxN)
    assert np.isnan(auc_N[:2]).all()
    reference = [roc_auc_score(labels_TxN[:, n], scores_TxN[:, n]) for n in range(2, 30)]
    np.testing.assert_allclose(auc_N[2:], reference, rtol=0, atol=1e-12)


def test_per_sample_pvalue_matches_scipy_exact_and_is_conservative_with_ties():
    scores_TxN, labels_TxN = _scores(1)
    p_N = samples.per_sample_pvalue(scores_TxN, labels_TxN)
    assert np.isnan(p_N[:2]).all()
    for n in range(6, 30):  # no ties
        members, others = scores_TxN[labels_TxN[:, n], n], scores_TxN[~labels_TxN[:, n], n]
        ref = stats.mannwhitneyu(members, others, alternative="greater", method="exact")
        assert p_N[n] == pytest.approx(ref.pvalue, rel=1e-12), n
    for n in range(2, 6):  # ties: U is rounded down, so p is at least the no-tie p of U
        members, others = scores_TxN[labels_TxN[:, n], n], scores_TxN[~labels_TxN[:, n], n]
        u = stats.mannwhitneyu(members, others, alternative="greater").statistic
        ceil_u = math.ceil(u)
        counts = samples.u_null_counts(len(members), len(others))
        assert p_N[n] >= sum(counts[ceil_u:]) / math.comb(len(members) + len(others), len(members))


def test_u_null_counts_by_enumeration():
    for m, k in [(1, 3), (3, 4), (4, 4), (2, 6)]:
        counts = np.zeros(m * k + 1, dtype=int)
        for members in itertools.combinations(range(m + k), m):  # ranks 0 .. m+k-1
            counts[sum(members) - m * (m - 1) // 2] += 1
        assert list(samples.u_null_counts(m, k)) == list(counts), (m, k)
    assert sum(samples.u_null_counts(64, 64)) == math.comb(128, 64)  # exact beyond float64


def test_tpr0_and_mean_rank_by_loops():
    scores_TxN, labels_TxN = _scores(2)
    tpr0_N = samples.per_sample_tpr0(scores_TxN, labels_TxN)
    rank_N = samples.mean_rank_in(scores_TxN, labels_TxN)
    num_targets, num_samples = scores_TxN.shape
    for n in range(num_samples):
        ins = [t for t in range(num_targets) if labels_TxN[t, n]]
        outs = [t for t in range(num_targets) if not labels_TxN[t, n]]
        if ins and outs:
            top = max(scores_TxN[t, n] for t in outs)
            assert tpr0_N[n] == pytest.approx(np.mean([scores_TxN[t, n] > top for t in ins]))
        else:
            assert np.isnan(tpr0_N[n])
        if ins:  # rank 1 = the highest score of the target; ties share their mean rank
            ranks = [
                1
                + (scores_TxN[t] > scores_TxN[t, n]).sum()
                + 0.5 * ((scores_TxN[t] == scores_TxN[t, n]).sum() - 1)
                for t in ins
            ]
            assert rank_N[n] == pytest.approx(np.mean(ranks))


def test_counterfactual_memorization_matches_numpy():
    rng = np.random.default_rng(3)
    keep_SxN = balanced_keep(rng, 6, 9)
    loss_SxNxL = rng.gamma(2.0, 1.0, (6, 9, 5)) - 0.3 * keep_SxN[..., None]
    mask_NxL = rng.random((9, 5)) < 0.7
    mask_NxL[:, 0] = True
    got = samples.counterfactual_memorization(loss_SxNxL, keep_SxN, mask_NxL)
    for n in range(9):
        per_model = [loss_SxNxL[s, n][mask_NxL[n]].mean() for s in range(6)]
        mean_in = np.mean([per_model[s] for s in range(6) if keep_SxN[s, n]])
        mean_out = np.mean([per_model[s] for s in range(6) if not keep_SxN[s, n]])
        assert got[n] == pytest.approx(mean_out - mean_in, rel=1e-12)


def test_benjamini_hochberg_by_its_definition():
    rng = np.random.default_rng(4)
    p_N = np.concatenate([rng.random(40), rng.random(10) * 1e-3, [np.nan]])
    found = samples.benjamini_hochberg(p_N, 0.05)
    valid = np.sort(p_N[~np.isnan(p_N)])
    passing = [k for k in range(1, len(valid) + 1) if valid[k - 1] <= 0.05 * k / len(valid)]
    cutoff = valid[max(passing) - 1]
    np.testing.assert_array_equal(found, np.nan_to_num(p_N, nan=2.0) <= cutoff)
    assert not found[-1] and found.sum() >= 10


def test_null_tail_counts_the_exact_null():
    # m = k = 2: U in {0, 1, 1, 2, 3, 4} / 6 labellings, so P(AUC >= 0.75) = 2/6.
    assert null_tail(np.array([2, 2]), np.array([2, 2]), 0.75) == pytest.approx(2 * 2 / 6)
    assert null_tail(np.array([8]), np.array([8]), 1.0) == pytest.approx(1 / 12870)


def test_samples_csv_header_is_the_recorded_one(tmp_path):
    specs = ["lira", "seq:cov=copula,marginal=empirical", "profile"]
    rng = np.random.default_rng(5)
    keep_SxN = balanced_keep(rng, 8, 4)
    labels_TxN = keep_SxN[:4]
    scores_TxN = rng.normal(size=(4, 4))
    columns = samples.sample_columns(
        keep_SxN=keep_SxN,
        labels_TxN=labels_TxN,
        cf_mem_N=np.zeros(4),
        snippets=[samples.snippet(text) for text in ["a\nb", "c", "d,e", "\x01"]],
        per_attack={s: samples.vulnerability(scores_TxN, labels_TxN) for s in specs},
    )
    samples.write_samples_csv(tmp_path / "samples.csv", columns)
    lines = (tmp_path / "samples.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == RECORDED_HEADER.read_text().strip()
    assert list(columns) == samples.header(specs)
    # Appended columns go after the recorded ones; a text cell with a comma is quoted.
    extra = samples.sample_columns(
        keep_SxN=keep_SxN,
        labels_TxN=labels_TxN,
        cf_mem_N=np.zeros(4),
        snippets=["", "", "", ""],
        per_attack={},
        extra={"exposure": np.ones(4)},
    )
    assert list(extra) == samples.header([], ["exposure"])
    assert lines[1].split(",")[5] == "a⏎b" and '"d,e"' in lines[3] and "\u2401" in lines[4]


def test_report_writes_samples_csv_that_matches_its_scores(tmp_path):
    rng = np.random.default_rng(6)
    keep_SxN = balanced_keep(rng, 10, 24)
    loss = (rng.gamma(2.0, 1.0, (10, 24, 8)) - 0.5 * keep_SxN[..., None] + 1.0).astype(np.float32)
    (tmp_path / "stats").mkdir()
    np.save(tmp_path / "membership.npy", keep_SxN)
    np.save(tmp_path / "stats" / "loss.npy", loss)
    np.save(tmp_path / "stats" / "logit.npy", -loss)
    specs = ["lira", "seq:cov=diag", "loss"]
    results = run_attacks(tmp_path, specs, 6, bootstrap=0)
    dataset = load_dataset(DataConfig(name="pydoc", seq_len=8, num_samples=24))
    paths = write_report(tmp_path, dataset)
    with paths["samples.csv"].open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == samples.header(specs) and len(rows) == 24
    labels_TxN = keep_SxN[:6]
    for spec in specs:
        scores_TxN = np.load(tmp_path / "results" / results["attacks"][spec]["scores_file"])
        for n, row in enumerate(rows):
            expected = roc_auc_score(labels_TxN[:, n], scores_TxN[:, n])
            assert float(row[f"auc[{spec}]"]) == pytest.approx(expected, abs=1e-6), (spec, n)
    cf = samples.counterfactual_memorization(loss, keep_SxN)
    np.testing.assert_allclose([float(r["cf_mem_loss"]) for r in rows], cf, rtol=1e-5)
    assert [int(r["in_targets"]) + int(r["out_targets"]) for r in rows] == [6] * 24
    summary = exposure_summary(samples.vulnerability(scores_TxN, labels_TxN), labels_TxN)
    assert summary["num_samples"] == 24

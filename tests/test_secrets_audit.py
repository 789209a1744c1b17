"""A secrets audit end to end on a tiny ensemble: no carrier signal, exposure, extraction, report."""

import json

import numpy as np
import pytest

from seqmia_jax import membership
from seqmia_jax.evaluation import memorization
from seqmia_jax.pipeline import run_audit
from seqmia_jax.scoring import score
from tests.helpers import tiny_config

ATTACKS = "lira;lira:variance=fixed;seq:cov=diag;loss"


@pytest.fixture(scope="module")
def secrets_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("secrets")
    cfg = tiny_config(
        "kjv_secrets",
        **{
            "attack.attacks": ATTACKS,
            "score.extract_prefix": 8,
            "score.extract_tokens": 6,
            "train.epochs": 6,
        },
    )
    return cfg, path, run_audit(cfg, path)


def _shift_statistic(loss_SxNxL, keep_SxN, mask_NxL):
    """Mean squared IN - OUT difference of the mean loss, over the masked positions."""
    keep = keep_SxN.astype(np.float64)[:, :, None]
    mean_in = (loss_SxNxL * keep).sum(0) / keep.sum(0)
    mean_out = (loss_SxNxL * (1 - keep)).sum(0) / (1 - keep).sum(0)
    return float(np.square(mean_in - mean_out)[mask_NxL].mean())


def _permutation_rank(loss_SxNxL, keep_SxN, mask_NxL, num=99):
    """How many of ``num`` random balanced relabelings give a smaller shift than the true one."""
    observed = _shift_statistic(loss_SxNxL, keep_SxN, mask_NxL)
    rng = np.random.default_rng(0)
    null = [
        _shift_statistic(
            loss_SxNxL,
            membership.make_membership(*keep_SxN.shape, int(rng.integers(1 << 30))),
            mask_NxL,
        )
        for _ in range(num)
    ]
    return int(np.sum(np.asarray(null) < observed)), observed, float(np.median(null))


def test_the_carrier_carries_no_membership_signal(secrets_run, tmp_path):
    _cfg, path, _ = secrets_run
    loss_SxNxL = np.load(path / "stats" / "loss.npy").astype(np.float64)
    keep_SxN = np.load(path / "membership.npy")
    secret_NxL = np.load(path / "stats" / "secret_mask.npy")
    # Under no signal the true membership is one more draw of the relabeling null: the
    # shift at carrier positions must not stand out (rank < 95 of 99 fixes a 5% test).
    rank, observed, null = _permutation_rank(loss_SxNxL, keep_SxN, ~secret_NxL)
    assert rank < 95, (rank, observed, null)
    # The same statistic does see membership where OUT models never saw the text:
    # a plain tiny run (no secrets) with as many steps (each model trains on N/2, not N).
    plain = tiny_config("kjv_gpt", **{"attack.attacks": "loss", "train.epochs": 12})
    run_audit(plain, tmp_path)
    plain_loss = np.load(tmp_path / "stats" / "loss.npy").astype(np.float64)
    plain_keep = np.load(tmp_path / "membership.npy")
    all_NxL = np.ones(plain_loss.shape[1:], dtype=bool)
    rank, observed, null = _permutation_rank(plain_loss, plain_keep, all_NxL)
    assert rank == 99 and observed > 1.5 * null, (rank, observed, null)


def test_exposure_and_extraction_reach_results_and_the_report(secrets_run):
    cfg, path, out = secrets_run
    results = out["results"]
    keep_SxN = np.load(path / "membership.npy")
    exposure_SxK = np.load(path / "stats" / "memorization" / "exposure.npy")
    assert exposure_SxK.shape == (cfg.num_shadow_models, cfg.score.exposure_samples)
    top = np.log2(10**cfg.data.secret_symbols)
    assert np.all(exposure_SxK <= top + 1e-9) and np.all(exposure_SxK >= 0)
    section = results["exposure"]
    assert section["method"] == "exact rank" and section["max_bits"] == pytest.approx(top)
    keep_SxK = keep_SxN[:, : exposure_SxK.shape[1]]
    assert section["mean_bits"]["in"]["value"] == pytest.approx(exposure_SxK[keep_SxK].mean())
    assert section["mean_bits"]["out"]["value"] == pytest.approx(exposure_SxK[~keep_SxK].mean())
    matched_SxN = np.load(path / "stats" / "memorization" / "secret_extracted.npy")
    secret = results["extraction"]["secret"]
    exact_SxN = matched_SxN == cfg.data.secret_symbols
    assert secret["exact_rate"]["in"]["value"] == pytest.approx(exact_SxN[keep_SxN].mean())
    assert secret["exact_rate"]["out"]["num"] == int((~keep_SxN).sum())
    text = results["extraction"]["text"]
    assert (text["prefix"], text["num_tokens"]) == (8, 6)
    # The report: results.md's table, the histogram, samples.csv's extra columns.
    md = (path / "results" / "results.md").read_text()
    assert "## Secrets: exposure and extraction" in md and "secret exposure, bits" in md
    assert (path / "results" / "exposure.png").is_file()
    html = (path / "results" / "index.html").read_text()
    assert 'id="secrets"' in html
    header = (path / "results" / "samples.csv").read_text().splitlines()[0].split(",")
    for column in ("exposure_in", "exposure_out", "secret_extracted_in", "text_extracted_out"):
        assert column in header
    # No attack reads the secret mask: it is not among the statistics.
    assert "secret_mask" not in results["statistics"]


def test_changed_exposure_settings_recompute_only_the_measures(secrets_run):
    _cfg, path, _ = secrets_run
    loss_before = (path / "stats" / "loss.npy").stat().st_mtime_ns
    changed = tiny_config(
        "kjv_secrets",
        **{
            "attack.attacks": ATTACKS,
            "score.extract_prefix": 8,
            "score.extract_tokens": 6,
            "train.epochs": 6,
            "score.exposure_samples": 2,
        },
    )
    done = score(changed, path)
    assert done["memorization"]["exposure"]["samples"] == 2
    assert np.load(path / "stats" / "memorization" / "exposure.npy").shape[1] == 2
    assert (path / "stats" / "loss.npy").stat().st_mtime_ns == loss_before
    sections = memorization.sections(path, np.load(path / "membership.npy"), bootstrap=0, seed=0)
    assert sections["exposure"]["num_samples"] == 2
    assert (
        json.loads((path / "stats" / "done.json").read_text())["memorization"]
        == done["memorization"]
    )

"""The whole audit on tiny configs: every report file, no-op re-runs, resume, sweeps, refusals."""

import json
import shutil

import numpy as np
import pytest

from seqmia_jax.attacks.runner import load_inputs
from seqmia_jax.pipeline import run_audit
from seqmia_jax.scoring import STATISTICS, score
from seqmia_jax.sweep import run_sweep
from seqmia_jax.workdir import WorkdirError
from tests.helpers import tiny_config
from tests.test_index_html import assert_index_page

ATTACKS = "lira;lira:variance=fixed;seq:cov=diag;seq:cov=hetero;loss;zlib;minkpp;refcal"


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("kjv")
    cfg = tiny_config(**{"attack.attacks": ATTACKS})
    return cfg, path, run_audit(cfg, path)


def test_text_audit_writes_every_report_file(text_run):
    _cfg, path, out = text_run
    for name in ["results.json", "results.md", "roc.png", "leakage.html", "targets.npy"]:
        assert (path / "results" / name).is_file(), name
    assert_index_page(path / "results" / "index.html", num_images=3)
    results = out["results"]
    assert set(results["attacks"]) == set(ATTACKS.split(";"))
    keep_SxN = np.load(path / "membership.npy")
    targets_T = np.load(path / "results" / "targets.npy")
    labels_TxN = keep_SxN[targets_T]
    for spec, r in results["attacks"].items():
        # The reported AUC is that of the saved scores: P(member score > non-member score).
        scores_TxN = np.load(path / "results" / r["scores_file"])
        assert scores_TxN.shape == labels_TxN.shape, spec
        members, others = scores_TxN[labels_TxN], scores_TxN[~labels_TxN]
        wins = (members[:, None] > others[None]).mean() + 0.5 * (
            members[:, None] == others[None]
        ).mean()
        assert r["auc"] == pytest.approx(wins, abs=1e-9), spec
        assert (r["num_positives"], r["num_negatives"]) == (len(members), len(others)), spec
    for name in STATISTICS:
        stat = np.load(path / "stats" / f"{name}.npy", mmap_mode="r")
        assert stat.shape == (8, 64, 32) and np.all(np.isfinite(stat))
    # The summary's loss gap is that of the saved losses (balanced rows: a plain mean).
    sample_loss_SxN = np.load(path / "stats" / "loss.npy").astype(np.float64).mean(-1)
    train, test = sample_loss_SxN[keep_SxN].mean(), sample_loss_SxN[~keep_SxN].mean()
    md = (path / "results" / "results.md").read_text()
    assert f"train (IN) {train:.4f}, test (OUT) {test:.4f}" in md
    assert set(out["seconds"]) == {"train", "score", "attack", "report"}


def test_second_invocation_is_a_no_op(text_run):
    cfg, path, _ = text_run
    watched = ["train_done.json", "stats/done.json", "results/results.json", "results/roc.png"]
    before = {p: (path / p).stat().st_mtime_ns for p in watched}
    run_audit(cfg, path)
    assert before == {p: (path / p).stat().st_mtime_ns for p in watched}


def test_changed_attack_settings_are_refused_unless_overwrite(text_run, tmp_path):
    _cfg, path, _ = text_run
    work = tmp_path / "copy"
    shutil.copytree(path, work)
    other = tiny_config(**{"attack.attacks": "lira"})
    with pytest.raises(WorkdirError, match="overwrite"):
        run_audit(other, work)
    out = run_audit(other, work, overwrite=True)
    assert list(out["results"]["attacks"]) == ["lira"]


def test_changed_training_config_is_refused(text_run):
    _, path, _ = text_run
    with pytest.raises(WorkdirError, match="model.embed_dim"):
        run_audit(tiny_config(**{"model.embed_dim": 16}), path)


def test_scoring_resumes_after_interruption_with_identical_statistics(text_run, tmp_path):
    cfg = tiny_config(**{"score.batch_size": 16})
    _, trained, _ = text_run
    work = tmp_path / "w"
    shutil.copytree(
        trained, work, ignore=shutil.ignore_patterns("stats", "results", "text_bytes.npy")
    )
    partial = score(cfg, work, stop_after_samples=32)
    assert partial == {"samples_done": 32, "finished": False}
    assert json.loads((work / "stats" / "progress.json").read_text())["samples_done"] == 32
    score(cfg, work)
    resumed = {n: np.load(work / "stats" / f"{n}.npy") for n in STATISTICS}
    shutil.rmtree(work / "stats")
    score(cfg, work)
    for n in STATISTICS:
        np.testing.assert_array_equal(resumed[n], np.load(work / "stats" / f"{n}.npy"))


def test_pixel_audit_writes_every_report_file(tmp_path):
    cfg = tiny_config("digits_pixel")  # the default attack set: zlib has no text, skipped
    results = run_audit(cfg, tmp_path)["results"]
    assert "zlib" in results["skipped"] and "seq:cov=hetero" in results["attacks"]
    for name in ["results.json", "results.md", "roc.png", "leakage.png"]:
        assert (tmp_path / "results" / name).is_file(), name
    assert_index_page(tmp_path / "results" / "index.html", num_images=4)
    assert load_inputs(tmp_path).stats["loss"].shape == (8, 64, 64)


def test_shadow_count_sweep_reuses_the_trained_models(text_run, tmp_path, monkeypatch):
    _, trained, _ = text_run
    import configs.kjv_gpt as kjv
    from seqmia_jax import sweep as sweep_lib

    raw = kjv.get_config("tiny")
    raw.attack.attacks = "lira;seq:cov=pooled"
    points = [{"attack.num_shadows": 4}, {"attack.num_shadows": 6}]
    # Seed the sweep's training directory with the already trained run ...
    train_dir = sweep_lib.training_dir(
        tmp_path, tiny_config(**{"attack.attacks": "lira;seq:cov=pooled"})
    )
    shutil.copytree(trained, train_dir, ignore=shutil.ignore_patterns("results"))
    # ... and make any attempt to train or score from scratch fail loudly.
    import seqmia_jax.ensemble.train as train_lib

    monkeypatch.setattr(train_lib, "init_ensemble", lambda *a, **k: pytest.fail("retrained"))
    rows = run_sweep(raw, points, tmp_path)
    assert {r["attack"] for r in rows} == {"lira", "seq:cov=pooled"}
    assert sorted({r["num_models"] for r in rows}) == [6, 8]
    assert (tmp_path / "sweep.csv").is_file() and (tmp_path / "sweep.png").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("train-")] == [train_dir.name]

"""The attack stage end to end: work-directory loading, validation, results files, CLI."""

import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from seqmia_jax.attacks import ATTACKS, AttackInputError, AttackOutput, runner, specs
from seqmia_jax.attacks.base import AttackOptions, register_attack
from seqmia_jax.attacks.runner import load_inputs, run_attacks, subsample_models
from seqmia_jax.report.table import epsilon_table_markdown, results_table_markdown
from tests.synthetic import balanced_keep

REPO = Path(__file__).resolve().parents[1]
BASELINES = ["loss", "zlib", "mink:k=0.5", "minkpp", "refcal", "rmia"]


@dataclasses.dataclass(frozen=True)
class _EvidenceOptions(AttackOptions):
    scale: float = 1.0
    evidence: bool = False


@register_attack("_test_evidence", _EvidenceOptions)
def _evidence_attack(inputs, targets_T, opt):
    """Per-token -loss as evidence (when asked for), summing to the score."""
    evidence_TxNxL = -opt.scale * np.asarray(inputs.stats["loss"][targets_T], np.float64)
    evidence = evidence_TxNxL if opt.evidence else None
    return AttackOutput(evidence_TxNxL.sum(axis=2), evidence, {"scale": opt.scale})


@register_attack("_test_nan")
def _nan_attack(inputs, targets_T, opt):
    """LOSS with NaN scores for sample 0."""
    scores_TxN = -np.asarray(inputs.stats["loss"][targets_T], np.float64).mean(axis=2)
    scores_TxN[:, 0] = np.nan
    return AttackOutput(scores_TxN)


def write_workdir(path: Path, *, num_models=8, num_samples=60, seq_len=6, seed=0, text=True):
    """A balanced synthetic work directory where members have lower loss."""
    rng = np.random.default_rng(seed)
    keep_SxN = balanced_keep(rng, num_models, num_samples)
    shape = (num_models, num_samples, seq_len)
    loss = np.abs(rng.gamma(2.0, 1.0, shape) - 0.5 * keep_SxN[..., None]) + 0.01
    loss = loss.astype(np.float32)
    (path / "stats").mkdir(parents=True)
    np.save(path / "membership.npy", keep_SxN)
    np.save(path / "stats" / "loss.npy", loss)
    np.save(path / "stats" / "logit.npy", (-loss - np.log(-np.expm1(-loss))).astype(np.float32))
    np.save(path / "stats" / "mean_logp", -rng.gamma(2.0, 1.0, shape).astype(np.float32))
    np.save(path / "stats" / "std_logp", rng.uniform(0.5, 2.0, shape).astype(np.float32))
    mask = rng.random((num_samples, seq_len)) < 0.9
    mask[:, 0] = True
    np.save(path / "stats" / "mask.npy", mask)
    if text:
        text_bytes = np.zeros((num_samples, seq_len + 2), np.uint8)
        text_bytes[:, :seq_len] = rng.integers(97, 123, (num_samples, seq_len))
        np.save(path / "text_bytes.npy", text_bytes)
    return keep_SxN, loss, mask


def test_parse_spec_and_safe_name():
    assert specs.parse_spec("loss") == ("loss", {})
    name, options = specs.parse_spec("seq:cov=copula, marginal=empirical,k=3,x=0.5,b=True,n=none")
    assert name == "seq"
    assert options == {
        "cov": "copula",
        "marginal": "empirical",
        "k": 3,
        "x": 0.5,
        "b": True,
        "n": None,
    }
    assert (
        specs.safe_name("seq:cov=copula,marginal=empirical") == "seq__cov-copula_marginal-empirical"
    )
    assert specs.split_specs("lira; seq:cov=diag,mode=gls;") == ["lira", "seq:cov=diag,mode=gls"]
    for bad in ["", ":k=1", "seq:cov", "seq:k=1,k=2"]:
        with pytest.raises(AttackInputError):
            specs.parse_spec(bad)


def test_default_attacks_are_registered():
    for spec in specs.DEFAULT_ATTACKS:
        assert specs.parse_spec(spec)[0] in ATTACKS, spec


def test_end_to_end_writes_results(tmp_path):
    keep_SxN, loss, _ = write_workdir(tmp_path)
    attacks = BASELINES + ["_test_evidence:scale=2"]
    results = run_attacks(
        tmp_path, attacks, 3, bootstrap=20, evidence_attack="_test_evidence:scale=2"
    )
    out = tmp_path / "results"
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == results
    assert (results["num_models"], results["num_samples"], results["seq_len"]) == (8, 60, 6)
    assert results["targets"] == [0, 1, 2]
    np.testing.assert_array_equal(np.load(out / "targets.npy"), [0, 1, 2])
    assert list(results["attacks"]) == attacks
    for spec, entry in results["attacks"].items():
        scores = np.load(out / entry["scores_file"])
        assert scores.shape == (3, 60) and scores.dtype == np.float64
        assert 0.5 < entry["auc"] <= 1.0, spec  # members have lower loss
        assert entry["auc_ci"][0] <= entry["auc_ci"][1]
        assert set(entry["tpr_at_fpr"]) == {"0.01", "0.001", "0.0001"}
        for key, point in entry["tpr_at_fpr"].items():
            assert point["num_negatives"] == int((~keep_SxN[:3]).sum())
            assert point["resolved"] is (point["num_negatives"] * float(key) >= 1)
            assert set(point) >= {"tpr", "ci", "num_negatives", "resolved"}
        assert set(entry["per_target"]) == {"auc", "tpr@0.001"}
        assert entry["seconds"] >= 0 and isinstance(entry["diagnostics"], dict)
    entry = results["attacks"]["_test_evidence:scale=2"]
    assert entry["diagnostics"] == {"scale": 2}
    evidence = np.load(out / entry["evidence_file"])
    assert evidence.dtype == np.float32
    np.testing.assert_allclose(evidence, -2 * loss[:3], rtol=1e-6)
    table = (out / "results.md").read_text()
    assert table == results_table_markdown(results) + epsilon_table_markdown(results)
    assert "## Empirical epsilon lower bounds" in table
    assert "`mink:k=0.5`" in table and "†" in table  # 1e-4 is unresolved with ~90 negatives


def test_explicit_targets_and_subsampled_models(tmp_path):
    write_workdir(tmp_path)
    inputs = load_inputs(tmp_path)
    results, scores, _ = runner.score_attacks(inputs, ["loss", "refcal"], [5, 1], bootstrap=0)
    assert results["targets"] == [5, 1]
    want = -np.array(
        [
            [
                np.asarray(inputs.stats["loss"][t], np.float64)[n][inputs.mask_NxL[n]].mean()
                for n in range(60)
            ]
            for t in (5, 1)
        ]
    )
    np.testing.assert_allclose(scores["loss"], want)
    assert np.isnan(results["attacks"]["loss"]["auc_ci"]).all()  # no bootstrap

    contiguous = subsample_models(inputs, range(2, 8))
    assert isinstance(contiguous.stats["loss"], np.memmap) and contiguous.num_models == 6
    picked = subsample_models(inputs, [7, 0, 3, 5, 1, 2])
    np.testing.assert_array_equal(
        picked.stats["loss"], np.asarray(inputs.stats["loss"])[[7, 0, 3, 5, 1, 2]]
    )
    np.testing.assert_array_equal(picked.keep_SxN, inputs.keep_SxN[[7, 0, 3, 5, 1, 2]])
    for bad in ([0, 1, 2], [0, 0, 1, 2], [0, 1, 2, 99]):
        with pytest.raises(AttackInputError):
            subsample_models(inputs, bad)


def test_default_set_skips_absent_inputs_but_explicit_fails(tmp_path, monkeypatch):
    write_workdir(tmp_path, text=False)
    (tmp_path / "stats" / "std_logp.npy").unlink()
    monkeypatch.setattr(runner, "DEFAULT_ATTACKS", ["loss", "zlib", "minkpp", "not_registered"])
    results = run_attacks(tmp_path, None, 2, bootstrap=0)
    assert list(results["attacks"]) == ["loss"]
    assert set(results["skipped"]) == {"zlib", "minkpp", "not_registered"}
    assert "std_logp" in results["skipped"]["minkpp"]
    assert "Skipped `zlib`" in results_table_markdown(results)
    with pytest.raises(AttackInputError, match="text"):
        run_attacks(tmp_path, ["zlib"], 2, overwrite=True)
    with pytest.raises(AttackInputError, match="std_logp"):
        run_attacks(tmp_path, ["minkpp"], 2, overwrite=True)


def test_default_set_runs_with_shadow_attacks(tmp_path, monkeypatch):
    # Every default spec resolves; one LiRA and one sequence attack run through the runner
    # (the whole set compiles for about 30 s, too slow for this suite).
    for spec in specs.DEFAULT_ATTACKS:
        runner.resolve_attack(spec)
    defaults = ["lira", "seq:cov=diag", "loss", "zlib", "mink", "minkpp", "refcal", "rmia"]
    monkeypatch.setattr(runner, "DEFAULT_ATTACKS", defaults)
    write_workdir(tmp_path, num_models=8, num_samples=40, seq_len=4)
    results = run_attacks(tmp_path, None, 2, bootstrap=0)
    assert list(results["attacks"]) == defaults and not results["skipped"]
    json.dumps(results, allow_nan=False)


def test_overwrite_refused_then_replaces(tmp_path):
    write_workdir(tmp_path)
    run_attacks(tmp_path, ["loss", "mink"], 2, bootstrap=0)
    with pytest.raises(FileExistsError, match="overwrite"):
        run_attacks(tmp_path, ["loss"], 2, bootstrap=0)
    results = run_attacks(tmp_path, ["loss"], 2, bootstrap=0, overwrite=True)
    assert list(results["attacks"]) == ["loss"]
    assert sorted(os.listdir(tmp_path / "results" / "scores")) == ["loss.npy"]
    out_dir = tmp_path / "elsewhere"
    run_attacks(tmp_path, ["loss"], 2, bootstrap=0, out_dir=out_dir)
    assert (out_dir / "results.json").exists()


def test_text_formats(tmp_path):
    write_workdir(tmp_path, num_samples=8, text=False)
    np.save(tmp_path / "text.npy", np.array(["héllo"] + ["x" * n for n in range(1, 8)]))
    assert load_inputs(tmp_path).text[:2] == ["héllo".encode(), b"x"]
    np.save(tmp_path / "text.npy", np.array([b"x" * n for n in range(1, 9)]))  # dtype S
    assert load_inputs(tmp_path).text[1] == b"xx"
    (tmp_path / "text.npy").unlink()
    data = np.zeros((8, 5), np.uint8)
    data[:, :3] = 65
    np.save(tmp_path / "text_bytes.npy", data)
    assert load_inputs(tmp_path).text[0] == b"AAA"
    np.save(tmp_path / "text_lengths.npy", np.full(8, 4))
    assert load_inputs(tmp_path).text[0] == b"AAA\0"


def _corrupt(path: Path, change, spec: str = "loss"):
    change(path)
    with pytest.raises(AttackInputError) as err:
        run_attacks(path, [spec], None, bootstrap=0, overwrite=True)
    return str(err.value)


def _save(relative, array):
    return lambda root: np.save(root / relative, array)


def _savez_as(relative):
    """An np.savez archive under a .npy name (np.savez itself would append .npz)."""

    def write(root):
        buffer = io.BytesIO()
        np.savez(buffer, loss=np.zeros((8, 60, 6)))
        (root / relative).write_bytes(buffer.getvalue())

    return write


@pytest.mark.parametrize(
    "change, expected, spec",
    [
        (lambda root: (root / "membership.npy").unlink(), ["membership.npy", "not found"], "loss"),
        (
            lambda root: (root / "stats" / "loss.npy").write_bytes(b"garbage"),
            ["loss.npy", "not a readable"],
            "loss",
        ),
        (
            _save("membership.npy", np.arange(8)[:, None] < np.full((8, 59), 4)),
            ["membership.npy", "(8, 59, L)"],
            "loss",
        ),
        (_save("membership.npy", np.full((8, 60), 2)), ["membership.npy", "bool"], "loss"),
        (
            _save("stats/logit.npy", np.zeros((8, 60, 5), np.float32)),
            ["logit.npy", "differs", "loss.npy"],
            "lira",
        ),
        (_save("stats/mask.npy", np.ones((60, 5), bool)), ["mask.npy", "(60, 6)"], "loss"),
        (
            _save("stats/mask.npy", np.zeros((60, 6), bool)),
            ["mask.npy", "no present position"],
            "loss",
        ),
        (
            _save("stats/logit.npy", np.zeros((8, 60, 6), np.int32)),
            ["logit.npy", "float"],
            "lira",
        ),
        (
            _save("text_bytes.npy", np.zeros((59, 6), np.uint8)),
            ["text_bytes.npy", "(60, M)"],
            "zlib",
        ),
        (
            _savez_as("stats/loss.npy"),
            ["loss.npy", "is an .npz archive (np.savez)"],
            "loss",
        ),
    ],
)
def test_bad_files_are_named(tmp_path, change, expected, spec):
    write_workdir(tmp_path)
    message = _corrupt(tmp_path, change, spec)
    for part in expected:
        assert part in message
    if spec != "loss":  # a bad optional file blocks only the attacks that read it
        assert (
            "loss" in run_attacks(tmp_path, ["loss"], None, bootstrap=0, overwrite=True)["attacks"]
        )


def test_non_finite_statistics_are_counted_and_located(tmp_path):
    _, loss, _ = write_workdir(tmp_path)
    loss[1, 2, 3] = np.nan
    loss[4, 5, 0] = np.nan
    loss[6, 0, 1] = np.inf
    message = _corrupt(tmp_path, _save("stats/loss.npy", loss))
    assert "loss.npy" in message and "2 NaN and 1 Inf" in message
    assert "(1, 2, 3), (4, 5, 0), (6, 0, 1)" in message


def test_too_few_shadows(tmp_path):
    keep_SxN, _, _ = write_workdir(tmp_path)
    message = _corrupt(
        tmp_path, _save("membership.npy", keep_SxN[:3])
    )  # S < 4 (stats mismatch later)
    assert "membership.npy" in message and "at least 4" in message
    keep_SxN[:, 7] = False
    keep_SxN[:2, 7] = True  # 2 IN: with target 0 or 1 left out, one IN remains
    np.save(tmp_path / "membership.npy", keep_SxN)
    with pytest.raises(AttackInputError, match=r"target 0 left out, samples \[7\]"):
        run_attacks(tmp_path, ["loss"], None, bootstrap=0)
    run_attacks(tmp_path, ["loss"], [2, 3], bootstrap=0)  # targets that keep both IN shadows
    keep_SxN[1, 7] = False
    message = _corrupt(tmp_path, _save("membership.npy", keep_SxN))
    assert "membership.npy" in message and "samples [7]" in message


def test_unknown_attack_option_and_targets(tmp_path):
    write_workdir(tmp_path)
    with pytest.raises(AttackInputError, match="unknown attack 'nope'.*known: .*loss"):
        run_attacks(tmp_path, ["nope"], 2)
    with pytest.raises(AttackInputError, match="unknown option.*kk.*known: k"):
        run_attacks(tmp_path, ["mink:kk=0.1"], 2)
    with pytest.raises(AttackInputError, match="k must be"):
        run_attacks(tmp_path, ["mink:k=2"], 2)
    for targets in (0, 9, [8], [1, 1], []):
        with pytest.raises(AttackInputError, match="targets"):
            run_attacks(tmp_path, ["loss"], targets)
    with pytest.raises(AttackInputError, match="evidence attack"):
        run_attacks(tmp_path, ["loss"], 2, evidence_attack="mink")
    assert not (tmp_path / "results").exists()


def _cli(*args):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run(
        [sys.executable, "-m", "experiments.attack", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli(tmp_path):
    write_workdir(tmp_path)
    done = _cli(
        f"--workdir={tmp_path}", "--attacks=loss;mink:k=0.5", "--targets=0,3", "--bootstrap=10"
    )
    assert done.returncode == 0, done.stderr
    assert "`mink:k=0.5`" in done.stdout
    assert json.loads((tmp_path / "results" / "results.json").read_text())["targets"] == [0, 3]
    again = _cli(f"--workdir={tmp_path}", "--attacks=loss")
    assert again.returncode == 2 and "overwrite" in again.stderr
    (tmp_path / "stats" / "loss.npy").write_bytes(b"garbage")
    bad = _cli(f"--workdir={tmp_path}", "--attacks=loss", "--overwrite")
    assert bad.returncode == 2
    assert "loss.npy" in bad.stderr and "Traceback" not in bad.stderr


def test_nan_scores_rank_lowest_and_are_reported(tmp_path):
    write_workdir(tmp_path)
    results = run_attacks(tmp_path, ["_test_nan"], 3, bootstrap=0)
    entry = results["attacks"]["_test_nan"]
    assert entry["diagnostics"]["num_nan_scores"] == 3
    scores = np.load(tmp_path / "results" / entry["scores_file"])
    assert np.isneginf(scores[:, 0]).all() and np.isfinite(scores[:, 1:]).all()

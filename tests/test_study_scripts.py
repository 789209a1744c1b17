"""The study scripts (experiments/study/) on small constructed inputs with known answers.

The work directory has S=32 models, N=200 samples, L=16 positions and two
planted effects: the loss drops by 0.05 (half a noise std) at every position
for members, so the sequence mean keeps all the signal (d' = 0.5 sqrt(L) = 2);
the logit rises by 3 noise stds at position 0 only, so a per-token test has
d' = 3 and the sequence mean d' = 3 / sqrt(L) = 0.75. Where the scripts'
results follow in closed form from these, the tests check them against it.

Legend: S models, N samples, L positions.
"""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from experiments.study import (
    ceiling_table,
    ceiling_vs_shadows,
    eb_shift_prototype,
    per_token_dprime,
    sweep_table,
)
from seqmia_jax import membership

S, N, L = 32, 200, 16
LOSS_LEVEL, LOSS_NOISE, LOSS_SHIFT = 2.0, 0.1, 0.05
LOGIT_SHIFT = 3.0
Z_999 = norm.ppf(1 - 1e-3)
CONFIG = {
    "num_shadow_models": S,
    "data": {"name": "kjv", "num_samples": N, "seq_len": L, "canary_tokens": 4},
    "model": {"num_layers": 1, "embed_dim": 32},
    "train": {"epochs": 2},
}
SETTING = "kjv S=32 N=200 L=16, 1x32 2 ep, canaries 4"


def write_workdir(path: Path, num_models: int = S, seed: int = 0) -> Path:
    """A scored work directory: config.json, membership.npy, stats/{loss,logit}.npy."""
    rng = np.random.default_rng(seed)
    keep_SxN = membership.make_membership(num_models, N, seed)
    loss_SxNxL = (
        LOSS_LEVEL
        + LOSS_NOISE * rng.standard_normal((num_models, N, L))
        - LOSS_SHIFT * keep_SxN[..., None]
    )
    logit_SxNxL = rng.standard_normal((num_models, N, L))
    logit_SxNxL[..., 0] += LOGIT_SHIFT * keep_SxN
    (path / "stats").mkdir(parents=True)
    np.save(path / "membership.npy", keep_SxN)
    np.save(path / "stats" / "loss.npy", loss_SxNxL.astype(np.float32))
    np.save(path / "stats" / "logit.npy", logit_SxNxL.astype(np.float32))
    config = dict(CONFIG, num_shadow_models=num_models)
    (path / "config.json").write_text(json.dumps({"config": config}))
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return write_workdir(tmp_path_factory.mktemp("study") / "run")


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _raw_shrunk(cell: str) -> tuple[float, float]:
    raw, shrunk = cell.split(" / ")
    return float(raw), float(shrunk)


# sweep_table


def _write_sweep_csv(path: Path, rows: list[dict]) -> None:
    fields = ["point", "attack.num_shadows", "attack.targets", "attack", "num_models", "auc"]
    fields += ["auc_lo", "auc_hi", "tpr@0.001", "tpr@0.001_lo", "tpr@0.001_hi"]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({"point": "p", "num_models": 18, "auc_lo": 0, "auc_hi": 1, **row})


def _sweep_row(attack, shadows, targets, tpr, lo, hi, auc):
    return {
        "attack": attack,
        "attack.num_shadows": shadows,
        "attack.targets": targets,
        "tpr@0.001": tpr,
        "tpr@0.001_lo": lo,
        "tpr@0.001_hi": hi,
        "auc": auc,
    }


def test_sweep_table_cells_filter_and_numeric_column_order(tmp_path):
    path = tmp_path / "sweep.csv"
    _write_sweep_csv(
        path,
        [
            _sweep_row("lira", 128, "8:16", 0.25, 0.2, 0.3, 0.8),
            _sweep_row("lira", 16, "8:16", 0.125, 0.1, 0.15, 0.7),
            _sweep_row("lira", 16, "0:8", 0.9, 0.9, 0.9, 0.9),  # filtered out
            _sweep_row("rmia", 128, "8:16", 0.5, 0.4, 0.6, 0.9),
        ],
    )
    lines = list(sweep_table.table_lines(str(path), "attack.num_shadows", ["attack.targets=8:16"]))
    assert lines == [
        "| attack | attack.num_shadows = 16 | attack.num_shadows = 128 |",
        "|---|---|---|",
        "| `lira` | 0.125 [0.100, 0.150] (0.700) | 0.250 [0.200, 0.300] (0.800) |",
        "| `rmia` | - | 0.500 [0.400, 0.600] (0.900) |",
    ]


def test_sweep_table_reproduces_the_documented_weak_regime_table():
    docs = Path(__file__).resolve().parents[1] / "docs"
    lines = list(
        sweep_table.table_lines(
            str(docs / "study_shadows_weak.csv"), "attack.num_shadows", ["attack.targets=8:16"]
        )
    )
    assert lines[0].startswith("| attack | attack.num_shadows = 16 | attack.num_shadows = 64 |")
    study = (docs / "study.md").read_text()
    assert len(lines) == 2 + 15
    for line in lines[2:]:  # the header of docs/study.md names the columns "K = ..."
        assert line in study, line


# ceiling_table and ceiling_vs_shadows


def test_ceiling_table_rows_on_planted_effects(workdir, tmp_path, capsys):
    ceiling_table.main([str(workdir), str(tmp_path / "not_scored")])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| ensemble | gap | statistic | mean (raw / shrunk) | per-token | ratio |"
    rows = {cells[2]: cells for cells in map(_cells, lines[2:])}
    assert len(lines) == 4 and set(rows) == {"loss", "logit"}  # the unscored dir is left out
    for cells in rows.values():
        assert cells[0] == SETTING
        # Members' loss is 0.05 below LOSS_LEVEL.
        gap = 100 * LOSS_SHIFT / (LOSS_LEVEL - LOSS_SHIFT)
        assert abs(float(cells[1].rstrip("%")) - gap) < 0.2
    # Uniform shift: the sequence mean is as good as any per-token test (d' = 2 for both).
    mean, per_token, ratio = (_raw_shrunk(c) for c in rows["loss"][3:])
    for value in (*mean, *per_token):
        assert abs(value - norm.cdf(2.0 - Z_999)) < 0.08
    assert all(0.8 < r < 1.25 for r in ratio)
    # One shifted position: d' = 3 per token against 0.75 for the mean.
    mean, per_token, ratio = (_raw_shrunk(c) for c in rows["logit"][3:])
    assert all(abs(v - norm.cdf(3.0 - Z_999)) < 0.1 for v in per_token)
    assert all(v < 0.1 for v in mean)
    assert all(r > 5 for r in ratio)


def test_ceiling_table_names_the_skip_with_too_few_pairs(tmp_path):
    path = write_workdir(tmp_path / "four_models", num_models=4)
    lines = list(ceiling_table.table_lines([str(path)]))
    assert _cells(lines[2])[2:4] == ["loss", "needs at least 4 complementary pairs; got 2"]
    assert _cells(lines[2])[0] == "kjv S=4 N=200 L=16, 1x32 2 ep, canaries 4"


def test_ceiling_table_setting_names_duplicates():
    cfg = dict(CONFIG, data=dict(CONFIG["data"], canary_tokens=0))
    cfg["data"].update(duplicated_samples=20, duplicates=4)
    assert ceiling_table.setting(cfg) == "kjv S=32 N=200 L=16, 1x32 2 ep, 20 dup x4"


def test_ceiling_vs_shadows_uses_whole_pairs_and_matches_the_table_at_all_models(workdir, capsys):
    assert ceiling_vs_shadows.model_counts(256) == [16, 32, 64, 128, 256]
    assert ceiling_vs_shadows.model_counts(16) == [16]
    ceiling_vs_shadows.main(str(workdir), "logit")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| models | sequence mean | per-token | ratio |"
    rows = [_cells(line) for line in lines[2:]]
    assert [row[0] for row in rows] == ["16", "32"]
    # All S models: the same estimate as the ceiling table's logit row.
    table = [_cells(line) for line in ceiling_table.table_lines([str(workdir)])][2:]
    logit_row = next(cells for cells in table if cells[2] == "logit")
    assert rows[-1][1:] == logit_row[3:]
    assert all(r > 2 for r in _raw_shrunk(rows[0][3]))  # 16 models see it too


# per_token_dprime


def test_dprime_of_the_mean_projection_matches_theory():
    rng = np.random.default_rng(1)
    keep_SxN = membership.make_membership(S, N, 1)
    shift = 0.5
    x_SxNxL = rng.standard_normal((S, N, L)) + shift * keep_SxN[..., None]
    proj = per_token_dprime.projections(x_SxNxL, keep_SxN)
    assert set(proj) == set(per_token_dprime.NAMES)
    # The level is fitted on the other S - 1 models: both the IN-OUT difference
    # and the variance of the centred mean grow by S / (S - 1).
    expected = shift * np.sqrt(L) * np.sqrt(S / (S - 1))
    median = np.median(per_token_dprime.dprime(proj["mean"], keep_SxN))
    assert abs(median - expected) < 0.1 * expected


def test_per_token_dprime_finds_the_single_shifted_token(workdir, capsys):
    per_token_dprime.main(str(workdir), "logit", None)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{workdir} logit: {S} models, {N} samples"
    median = {}
    for line in lines[1:]:
        name, rest = line.split(maxsplit=1)
        median[name] = float(rest.split()[2])
    assert list(median) == list(per_token_dprime.NAMES)
    assert abs(median["mean"] - LOGIT_SHIFT / np.sqrt(L)) < 0.15
    for name in ("profile", "raw", "raw_v", "eb", "eb_token"):
        assert median[name] > 2 * median["mean"], name
    per_token_dprime.main(str(workdir), "logit", 16)
    assert capsys.readouterr().out.splitlines()[0] == f"{workdir} logit: 16 models, {N} samples"


def test_per_token_weights_find_a_shift_the_difficulty_bins_cannot():
    # Members +1.5, non-members -1.5 at position 0: its level (the mean over
    # models) is that of every other position, so no difficulty bin singles it
    # out. Weights from the bin shift keep the mean's d' (0.75); a token's own
    # shift keeps the per-token one (3).
    rng = np.random.default_rng(3)
    keep_SxN = membership.make_membership(S, N, 3)
    x_SxNxL = rng.standard_normal((S, N, L))
    x_SxNxL[..., 0] += LOGIT_SHIFT * keep_SxN - LOGIT_SHIFT / 2
    proj = per_token_dprime.projections(x_SxNxL, keep_SxN)
    median = {k: np.median(per_token_dprime.dprime(v, keep_SxN)) for k, v in proj.items()}
    for name in ("mean", "profile"):
        assert abs(median[name] - LOGIT_SHIFT / np.sqrt(L)) < 0.15, name
    for name in ("raw", "raw_v", "eb", "eb_token"):
        assert median[name] > 2 * median["profile"], name


# eb_shift_prototype


def _eb_lines(out: str) -> tuple[float, dict[str, float]]:
    lines = out.splitlines()
    assert lines[0].startswith("lambda ")
    auc = {line.split()[0]: float(line.split()[2]) for line in lines[1:]}
    return float(lines[0].split()[1]), auc


def test_eb_shift_on_the_loss_matches_the_mean_test(workdir, capsys):
    eb_shift_prototype.main([str(workdir), "loss"])
    lam, auc = _eb_lines(capsys.readouterr().out)
    assert list(auc) == list(eb_shift_prototype.NAMES)
    # Every position has the same shift: no spread of shifts to keep.
    assert lam < 0.2
    # The sequence-mean test with d' = 2 has AUC Phi(2 / sqrt 2).
    assert abs(auc["mean_fixed"] - norm.cdf(2.0 / np.sqrt(2))) < 0.03
    assert all(value > 0.8 for value in auc.values())


def test_eb_shift_keeps_the_single_token_shift(workdir, capsys):
    eb_shift_prototype.main([str(workdir)])  # the logit by default
    lam, auc = _eb_lines(capsys.readouterr().out)
    assert lam > 0.7  # the shifts differ between positions far beyond their noise
    assert auc["raw_fixed"] > auc["mean_fixed"] + 0.1
    assert abs(auc["mean_fixed"] - norm.cdf(0.75 / np.sqrt(2))) < 0.05


def test_eb_shift_scores_no_effect_at_chance():
    rng = np.random.default_rng(2)
    keep_SxN = membership.make_membership(S, N, 2)
    scores, labels, _ = eb_shift_prototype.eb_shift_scores(
        rng.standard_normal((S, N, L)), keep_SxN, num_targets=8
    )
    assert labels.shape == (8, N) and np.array_equal(labels, keep_SxN[:8])
    for line in eb_shift_prototype.summary_lines(scores, labels):
        assert abs(float(line.split()[2]) - 0.5) < 0.05, line

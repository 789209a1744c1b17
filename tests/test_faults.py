"""Fault and concurrency guarantees of the work directory: the writer lock, results
that an audit never replaces unless asked, and refusals that name the cause."""

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from seqmia_jax.attacks import runner
from seqmia_jax.pipeline import run_audit
from seqmia_jax.workdir import Workdir, WorkdirError
from tests.helpers import tiny_config

ROOT = Path(__file__).parent.parent
ATTACKS = "lira;loss"


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """A finished tiny audit (train, score, attack, report), copied by each test."""
    path = tmp_path_factory.mktemp("audited")
    cfg = tiny_config(**{"attack.attacks": ATTACKS})
    run_audit(cfg, path)
    return cfg, path


def _copy(audited, tmp_path) -> Path:
    dst = tmp_path / "wd"
    shutil.copytree(audited[1], dst)
    return dst


def _try_lock_elsewhere(path: Path) -> subprocess.CompletedProcess:
    code = (
        "import sys\n"
        "from seqmia_jax.workdir import Workdir, WorkdirError\n"
        "try:\n"
        f"    with Workdir({str(path)!r}).lock():\n"
        "        print('acquired')\n"
        "except WorkdirError as e:\n"
        "    print(e); sys.exit(3)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path):
    wd = Workdir(tmp_path / "wd")
    with wd.lock():
        with wd.lock():  # re-entrant: nested stages of one audit
            other = _try_lock_elsewhere(wd.path)
        assert other.returncode == 3, other.stdout + other.stderr
        assert f"in use by PID {os.getpid()} on " in other.stdout
    # Released: the next writer gets it.
    assert _try_lock_elsewhere(wd.path).stdout.strip() == "acquired"


def test_a_work_directory_that_is_a_file_is_refused_in_one_line(tmp_path):
    path = tmp_path / "wd"
    path.write_text("not a directory")
    with pytest.raises(WorkdirError, match="is a file, not a directory"), Workdir(path).lock():
        pass


def test_run_never_replaces_results_written_by_the_attack_cli(audited, tmp_path):
    cfg, _ = audited
    path = _copy(audited, tmp_path)
    (path / "results" / "attack_stage.json").unlink()  # results as experiments.attack leaves them
    runner.run_attacks(path, ["loss"], 4, bootstrap=0, overwrite=True)
    before = (path / "results" / "results.json").read_bytes()
    with pytest.raises(WorkdirError, match="written by another command"):
        run_audit(cfg, path)
    assert (path / "results" / "results.json").read_bytes() == before
    out = run_audit(cfg, path, overwrite=True)
    assert set(out["results"]["attacks"]) == set(ATTACKS.split(";"))


def test_run_refuses_results_the_attack_cli_replaced_after_it(audited, tmp_path):
    cfg, _ = audited
    path = _copy(audited, tmp_path)
    run_audit(cfg, path)  # complete: a no-op
    runner.run_attacks(path, ["loss"], 4, bootstrap=0, overwrite=True)  # attack --overwrite
    with pytest.raises(WorkdirError, match="written by another command"):
        run_audit(cfg, path)


def test_changed_attack_settings_are_refused_with_the_differences(audited, tmp_path):
    _cfg, _ = audited
    path = _copy(audited, tmp_path)
    changed = tiny_config(**{"attack.attacks": ATTACKS, "attack.bootstrap": 7})
    with pytest.raises(WorkdirError, match=r"different attack settings \(bootstrap\)"):
        run_audit(changed, path)


def _truncate_data_files(step_dir: Path) -> None:
    """A damaged step: every array data file of the checkpoint cut to half its size."""
    for data in step_dir.rglob("d/*"):
        if data.is_file():
            data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])


def test_a_corrupt_newest_checkpoint_falls_back_and_resumes_to_the_same_result(tmp_path):
    from seqmia_jax.ensemble.train import load_params, train

    cfg = tiny_config(**{"train.epochs": 3})  # 12 steps, checkpoints every 4
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    train(cfg, whole)
    train(cfg, broken, stop_after_steps=8)
    steps = sorted(int(p.name) for p in (broken / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [4, 8]
    _truncate_data_files(broken / "checkpoints" / "8")
    summary = train(cfg, broken)  # falls back to step 4 and finishes
    assert summary["finished"] and summary["step"] == 12
    assert [p.name.split("-")[0] for p in (broken / "checkpoints.corrupt").iterdir()] == ["8"]
    from seqmia_jax.data import load_dataset

    dataset = load_dataset(cfg.data)
    _, want = load_params(cfg, whole, dataset)
    _, got = load_params(cfg, broken, dataset)
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # A damaged FINAL checkpoint is never replaced by an older one for scoring.
    _truncate_data_files(broken / "checkpoints" / "12")
    with pytest.raises(WorkdirError, match=r"final checkpoint \(step 12\) .* cannot be read"):
        load_params(cfg, broken, dataset)


def test_a_corrupt_train_done_is_one_line(tmp_path):
    from seqmia_jax.ensemble.train import train

    cfg = tiny_config()
    train(cfg, tmp_path)
    (tmp_path / "train_done.json").write_text("{not json")
    with pytest.raises(WorkdirError, match="train_done.json is corrupt"):
        train(cfg, tmp_path)


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "stats/loss.npy")


def test_a_full_disk_while_scoring_is_one_line_and_the_rerun_recovers(
    audited, tmp_path, monkeypatch, capsys
):
    from seqmia_jax import launch
    from seqmia_jax.scoring import score

    cfg, _ = audited
    path = _copy(audited, tmp_path)
    shutil.rmtree(path / "stats")
    train_done = (path / "train_done.json").read_bytes()
    monkeypatch.setattr(os, "posix_fallocate", _enospc)
    with pytest.raises(SystemExit) as exit_info:
        launch.run_cleanly(lambda: score(cfg, path))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no space left on device: stats/loss.npy") and "\n" not in err
    assert (path / "train_done.json").read_bytes() == train_done  # nothing complete lost
    monkeypatch.undo()
    assert score(cfg, path)["shape"] == [8, 64, 32]


def test_disk_faults_are_found_inside_wrapped_errors():
    from seqmia_jax.launch import disk_fault

    try:
        try:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), "/ro/config.json")
        except OSError as inner:
            raise RuntimeError("orbax: save failed") from inner
    except RuntimeError as outer:
        assert disk_fault(outer) == "read-only file system: /ro/config.json"
    wrapped = ValueError(f"tensorstore: write failed: [Errno 28] {os.strerror(errno.ENOSPC)}")
    assert disk_fault(wrapped).startswith("no space left on device (")
    assert disk_fault(ValueError("a plain bug")) is None


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--config.train.epoch=3"],
            "error: unknown config field 'epoch'. Did you mean \"epochs\"",
        ),
        (["--config=configs/kjv_gpt.py:tinyy"], "error: unknown config argument 'tinyy'"),
        (
            ["--config=configs/nope.py"],
            "error: [Errno 2] No such file or directory: 'configs/nope.py'",
        ),
        (["--config.train.epochs=0"], "error: train.epochs must be >= 1; got 0"),
        (["--nosuchflag"], "error: Unknown command line flag 'nosuchflag'"),
    ],
)
def test_command_line_mistakes_are_one_line_and_write_nothing(tmp_path, argv, message):
    workdir = tmp_path / "wd"
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.train", f"--workdir={workdir}", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith(("error", "Trace"))]
    assert errors == [errors[0]] and errors[0].startswith(message), proc.stderr[-2000:]
    assert not workdir.exists()


def test_the_report_refuses_another_config_and_names_the_difference(audited, tmp_path):
    path = _copy(audited, tmp_path)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.report",
            "--config=configs/kjv_gpt.py:tiny",
            "--config.data.seed=5",  # other samples: the leakage view would show wrong text
            f"--workdir={path}",
            "--overwrite",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "was made with a different config or dataset" in proc.stderr
    assert "data.seed: 0 in the work directory, 5 now" in proc.stderr


class _Payload:
    """Unpickling this runs a shell command that leaves a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickled_text_file_never_runs_code(tmp_path):
    from seqmia_jax.attacks.base import AttackInputError
    from tests.test_attack_runner import write_workdir

    write_workdir(tmp_path, text=False)
    marker = tmp_path / "pwned"
    texts = np.empty(60, dtype=object)
    texts[:] = [_Payload(marker)] * 60
    np.save(tmp_path / "text.npy", texts, allow_pickle=True)
    results = runner.run_attacks(tmp_path, ["loss"], 2, bootstrap=0)  # needs no text
    assert list(results["attacks"]) == ["loss"]
    with pytest.raises(AttackInputError, match="holds Python objects, which would need pickle"):
        runner.run_attacks(tmp_path, ["zlib"], 2, bootstrap=0, overwrite=True)
    assert not marker.exists()


_KILLER = """
import os, signal, sys
import numpy as np
from seqmia_jax.attacks import runner
from seqmia_jax import workdir as workdir_lib

point, count = sys.argv[2], int(sys.argv[3])
calls = {"n": 0}

def killing(original):
    def wrapped(*args, **kwargs):
        out = original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == count:
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    return wrapped

if point == "np.save":
    np.save = killing(np.save)
else:
    workdir_lib.os.replace = killing(os.replace)
runner.run_attacks(sys.argv[1], ["loss", "mink", "lira"], 2, bootstrap=0, overwrite=True)
"""


@pytest.mark.parametrize(
    "point, count",
    [("np.save", 2), ("os.replace", 1), ("os.replace", 2)],
    ids=["after-second-score-file", "between-the-renames", "before-cleanup"],
)
def test_sigkill_during_the_attack_stage_leaves_complete_old_or_new_results(tmp_path, point, count):
    from seqmia_jax.workdir import recover_swap
    from tests.test_attack_runner import write_workdir

    write_workdir(tmp_path)
    runner.run_attacks(tmp_path, ["loss"], 2, bootstrap=0)
    out = tmp_path / "results"
    old = (out / "results.json").read_bytes()
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER, str(tmp_path), point, str(count)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    if (point, count) == ("os.replace", 1):  # killed between the renames: no results/
        assert not out.exists() and (tmp_path / "results.new" / ".staged").exists()
    recover_swap(out, writer=False)  # what every reader does first
    results = json.loads((out / "results.json").read_text())
    assert (out / "results.json").read_bytes() == old or set(results["attacks"]) == {
        "loss",
        "mink",
        "lira",
    }
    for entry in results["attacks"].values():  # every file the results name is there, whole
        assert np.load(out / entry["scores_file"]).shape == (2, 60)
    if point == "np.save":  # killed while building the new version: the old one stands
        assert (out / "results.json").read_bytes() == old
    new = runner.run_attacks(tmp_path, ["loss", "mink"], 2, bootstrap=0, overwrite=True)
    assert set(new["attacks"]) == {"loss", "mink"}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("results")) == ["results"]


def test_only_the_loss_runs_the_default_set_on_the_loss_and_says_so(tmp_path):
    from tests.test_attack_runner import write_workdir

    write_workdir(tmp_path, text=False)
    for name in ("logit", "mean_logp", "std_logp"):
        (tmp_path / "stats" / f"{name}.npy").unlink(missing_ok=True)
    results = runner.run_attacks(tmp_path, None, 2, bootstrap=0)
    ran = results["attacks"]
    for spec in ("lira", "seq:cov=pooled", "profile", "lira:variance=fixed"):
        assert ran[spec]["diagnostics"]["statistic"] == "loss (stats/logit.npy is absent)"
    assert set(results["skipped"]) == {"zlib", "minkpp"}, results["skipped"]


def test_a_bad_named_statistic_fails_before_any_attack_runs(tmp_path, monkeypatch):
    from seqmia_jax.attacks.base import ATTACKS, AttackInputError
    from tests.test_attack_runner import write_workdir

    write_workdir(tmp_path)
    np.save(tmp_path / "stats" / "logit.npy", np.zeros((8, 60, 5), np.float32))  # wrong L
    ran = []
    mink = ATTACKS.get("mink")
    monkeypatch.setattr(mink, "fn", lambda *a: ran.append("mink") or pytest.fail("ran"))
    with pytest.raises(AttackInputError, match="logit.npy: shape"):
        runner.run_attacks(tmp_path, ["mink", "lira:statistic=logit"], 2, bootstrap=0)
    assert ran == [] and not (tmp_path / "results").exists()
    with pytest.raises(AttackInputError, match="bootstrap must be >= 0"):
        runner.run_attacks(tmp_path, ["mink"], 2, bootstrap=-3)


_REPORT_KILLER = """
import os, pathlib, signal, sys
from seqmia_jax.config import from_config_dict
from seqmia_jax.data import load_dataset
from seqmia_jax.report import write_report
from tests.helpers import tiny_config

point = sys.argv[2]
calls = {"n": 0}

def killing(original):
    def wrapped(*args, **kwargs):
        out = original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    return wrapped

if point == "write_text":
    pathlib.Path.write_text = killing(pathlib.Path.write_text)
else:
    os.replace = killing(os.replace)
write_report(sys.argv[1], load_dataset(tiny_config().data), overwrite=True, num_exposed=3)
"""


@pytest.mark.parametrize("point", ["write_text", "os.replace"])
def test_sigkill_during_the_report_leaves_the_complete_old_or_new_report(audited, tmp_path, point):
    from seqmia_jax.workdir import recover_swap

    path = _copy(audited, tmp_path)
    out = path / "results"
    old_index = (out / "index.html").read_bytes()
    proc = subprocess.run(
        [sys.executable, "-c", _REPORT_KILLER, str(path), point],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    recover_swap(out, writer=False)
    marker = json.loads((out / "report.json").read_text())
    assert all((out / name).is_file() for name in marker["files"])
    assert (out / "results.json").is_file() and (out / "scores").is_dir()
    if point == "write_text":  # killed while writing the new report: the old one stands
        assert (out / "index.html").read_bytes() == old_index


def test_the_attack_cli_is_refused_while_another_writer_holds_the_work_directory(tmp_path):
    from tests.test_attack_runner import write_workdir

    write_workdir(tmp_path)
    with Workdir(tmp_path).lock():
        proc = subprocess.run(
            [sys.executable, "-m", "experiments.attack", f"--workdir={tmp_path}", "--attacks=loss"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    assert proc.returncode == 2 and f"is in use by PID {os.getpid()}" in proc.stderr
    assert not (tmp_path / "results").exists()


def test_a_first_attack_run_killed_mid_way_does_not_block_the_next(tmp_path):
    from tests.test_attack_runner import write_workdir

    write_workdir(tmp_path)
    unfinished = tmp_path / "results.new"  # what a kill before the first swap leaves
    (unfinished / "scores").mkdir(parents=True)
    (unfinished / "scores" / "loss.npy").write_bytes(b"half")
    assert list(runner.run_attacks(tmp_path, ["loss"], 2, bootstrap=0)["attacks"]) == ["loss"]
    assert not unfinished.exists()


def test_a_bad_optional_statistic_skips_only_its_attacks_in_the_default_set(tmp_path):
    from tests.test_attack_runner import write_workdir

    write_workdir(tmp_path)
    np.save(tmp_path / "stats" / "logit.npy", np.zeros((8, 60, 5), np.float32))  # wrong L
    results = runner.run_attacks(tmp_path, None, 2, bootstrap=0)
    assert "lira" in results["skipped"] and "logit.npy: shape" in results["skipped"]["lira"]
    assert {"loss", "lira:statistic=loss", "refcal"} <= set(results["attacks"])


def test_when_no_checkpoint_restores_nothing_is_moved_and_training_stops(tmp_path):
    from seqmia_jax.ensemble.train import train

    cfg = tiny_config()
    train(cfg, tmp_path, stop_after_steps=4)
    _truncate_data_files(tmp_path / "checkpoints" / "4")
    with pytest.raises(WorkdirError, match=r"no checkpoint in .* can be read \(steps \[4\]"):
        train(cfg, tmp_path)
    assert (tmp_path / "checkpoints" / "4").is_dir()  # put back, never silently retrained


def test_two_text_files_block_only_the_attacks_that_read_text(tmp_path):
    from seqmia_jax.attacks.base import AttackInputError
    from tests.test_attack_runner import write_workdir

    write_workdir(tmp_path)  # writes text_bytes.npy
    np.save(tmp_path / "text.npy", np.array([b"x"] * 60))
    assert list(runner.run_attacks(tmp_path, ["loss"], 2, bootstrap=0)["attacks"]) == ["loss"]
    with pytest.raises(AttackInputError, match="give text.npy or text_bytes.npy, not both"):
        runner.run_attacks(tmp_path, ["zlib"], 2, bootstrap=0, overwrite=True)

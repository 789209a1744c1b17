"""Multi-host on one machine: 2 CPU processes (jax.distributed, gloo) equal 1 process.

Two processes of tests/multihost_driver.py, with 2 CPU devices each, train the
tiny ensemble over a 4-device mesh spanning both and score it, while this
process does the same on its own 8 devices. Parameters, statistics and the
training log must agree, and each file must have been written once.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from seqmia_jax.data import load_dataset
from seqmia_jax.ensemble.train import load_params, train
from seqmia_jax.scoring import STATISTICS, score
from tests.helpers import tiny_config

REPO = Path(__file__).resolve().parents[1]
NUM_PROCESSES = 2
DEVICES_PER_PROCESS = 2
TIMEOUT_S = 600  # generous: a loaded 2-core machine; a hang fails after this


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start(workdir: Path, logs: list[Path], config_flags: list[str]) -> list[subprocess.Popen]:
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={DEVICES_PER_PROCESS}",
        # Share conftest's compilation cache, so reruns skip most compiles.
        "JAX_COMPILATION_CACHE_DIR": os.path.join(tempfile.gettempdir(), "seqmia_jax_test_cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    port = _free_port()
    procs = []
    for i, log in enumerate(logs):
        cmd = [
            sys.executable,
            "-m",
            "tests.multihost_driver",
            *config_flags,
            f"--workdir={workdir}",
            f"--coordinator_address=localhost:{port}",
            f"--num_processes={NUM_PROCESSES}",
            f"--process_id={i}",
        ]
        with log.open("w") as out:
            procs.append(
                subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
            )
    return procs


def _tails(logs: list[Path], lines: int = 25) -> str:
    return "\n".join(
        f"--- {log.name} (last {lines} lines) ---\n"
        + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
        for log in logs
    )


def _wait(procs: list[subprocess.Popen], logs: list[Path], deadline: float) -> None:
    """Waits for every process; a hang or a failure kills them all and fails with the logs.

    A process that fails can leave the others waiting at a barrier, so the
    first failure ends the run instead of the timeout.
    """
    while any(p.poll() is None for p in procs):
        failed = any(p.returncode for p in procs)
        if failed or time.monotonic() > deadline:
            for p in procs:
                p.kill()
                p.wait()
            why = "failed" if failed else f"did not finish in {TIMEOUT_S}s (hung?)"
            pytest.fail(f"multi-process run {why}\n{_tails(logs)}")
        time.sleep(0.5)
    if any(p.returncode for p in procs):
        codes = [p.returncode for p in procs]
        pytest.fail(f"multi-process run failed, exit codes {codes}\n{_tails(logs)}")


def _files(workdir: Path) -> set[str]:
    return {str(p.relative_to(workdir)) for p in workdir.rglob("*") if "checkpoints" not in p.parts}


def _leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.mark.parametrize("kind", ["scratch", "lora"])
def test_two_processes_equal_one_process(tmp_path, kind):
    """From scratch, and LoRA from a base pretrained here first (pretraining is one process)."""
    multi, single = tmp_path / "multi", tmp_path / "single"
    logs = [tmp_path / f"process_{i}.log" for i in range(NUM_PROCESSES)]
    if kind == "lora":
        from configs import kjv_finetune
        from seqmia_jax.config import from_config_dict
        from seqmia_jax.pretrain import pretrain
        from seqmia_jax.sweep import apply_overrides

        base = tmp_path / "base"
        raw = kjv_finetune.get_config("tiny,lora")
        cfg = from_config_dict(apply_overrides(raw, {"base.dir": str(base)}))
        pretrain(cfg, tmp_path)
        config_flags = [
            "--config=configs/kjv_finetune.py:tiny,lora",
            f"--config.base.dir={base}",
        ]
    else:
        cfg = tiny_config()
        config_flags = ["--config=configs/kjv_gpt.py:tiny"]
    deadline = time.monotonic() + TIMEOUT_S
    procs = _start(multi, logs, config_flags)
    try:
        # The single-process reference runs here meanwhile, on this process's 8 devices.
        train(cfg, single)
        score(cfg, single)
    finally:
        _wait(procs, logs, deadline)

    text = "".join(log.read_text(errors="replace") for log in logs)
    for i in range(NUM_PROCESSES):
        assert f"process {i}/{NUM_PROCESSES}, {DEVICES_PER_PROCESS} local / 4 global" in text

    # Process 0 wrote every file once: the same files, the log not doubled, no leftovers.
    assert _files(multi) == _files(single)
    if kind == "lora":
        assert "stats/base_loss.npy" in _files(multi)
        np.testing.assert_allclose(
            np.load(multi / "stats" / "base_loss.npy"),
            np.load(single / "stats" / "base_loss.npy"),
            rtol=1e-5,
        )
    assert not list(multi.rglob("*.tmp*"))
    metrics = [json.loads(line) for line in (multi / "metrics.jsonl").read_text().splitlines()]
    expected = [json.loads(line) for line in (single / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [m["step"] for m in expected]
    np.testing.assert_allclose(
        [m["loss_mean"] for m in metrics], [m["loss_mean"] for m in expected], rtol=1e-5
    )
    assert json.loads((multi / "train_done.json").read_text())["num_devices"] == 4
    stored = json.loads((multi / "config.json").read_text())
    reference = json.loads((single / "config.json").read_text())
    assert (stored["config"], stored["dataset"]) == (reference["config"], reference["dataset"])
    np.testing.assert_array_equal(
        np.load(multi / "membership.npy"), np.load(single / "membership.npy")
    )

    # The checkpoint the two processes wrote together restores on one process's 8 devices.
    dataset = load_dataset(cfg.data)
    _, params_multi = load_params(cfg, multi, dataset)
    _, params_single = load_params(cfg, single, dataset)
    for a, b in zip(_leaves(params_multi), _leaves(params_single), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for name in STATISTICS:
        a, b = np.load(multi / "stats" / f"{name}.npy"), np.load(single / "stats" / f"{name}.npy")
        assert a.shape == (cfg.num_shadow_models, cfg.data.num_samples, cfg.data.seq_len)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)

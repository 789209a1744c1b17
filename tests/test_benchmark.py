"""The benchmark runs end to end with quick settings and reports every field.

Speed itself is never asserted: only that every number is there, finite and positive.
"""

import json
import math

import numpy as np
import pytest

from seqmia_jax.config import ConfigError
from seqmia_jax.perf import benchmark
from seqmia_jax.perf.devices import device_peak_flops
from seqmia_jax.perf.ensemble_timing import parse_strategy
from seqmia_jax.perf.table import format_table
from seqmia_jax.workdir import json_ready
from tests.helpers import tiny_config


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    settings = benchmark.quick_settings(
        strategies=("vmap", "map", "map:2", "loop"),
        attacks=("lira", "carlini", "loss", "zlib", "minkpp"),
        peak_tflops=1.0,
        profile_dir=str(tmp_path_factory.mktemp("profile")),
    )
    return benchmark.run_benchmark(benchmark.quick_config(tiny_config()), settings)


def test_training_rows_have_every_field(result):
    assert set(result["training"]) == {"vmap", "map", "map:2", "loop"}
    for label, row in result["training"].items():
        for field in (
            "warmup_s",
            "seconds",
            "steps",
            "tokens_per_s",
            "model_steps_per_s",
            "model_flops_per_s",
            "mfu",
            "speedup_vs_loop",
        ):
            assert _positive(row[field]), (label, field, row[field])
        assert np.isclose(
            row["model_flops_per_s"], row["tokens_per_s"] * result["config"]["flops_per_token"]
        )
        assert np.isclose(
            row["mfu"], row["model_flops_per_s"] / 1e12 / result["device"]["num_devices"]
        )
    assert result["training"]["loop"]["speedup_vs_loop"] == 1.0
    # Every strategy trains the same models from the same state: same losses.
    losses = [row["final_loss"] for row in result["training"].values()]
    np.testing.assert_allclose(losses, losses[0], rtol=1e-4)


def test_auto_scoring_attacks_and_memory_fields(result):
    assert result["auto"]["resolves_to"] in result["training"]
    assert _positive(result["auto"]["speedup_vs_loop"])
    for field in ("seconds", "samples_per_s", "model_samples_per_s"):
        assert _positive(result["scoring"][field]), field
    attacks = result["attacks"]
    assert set(attacks["per_attack_s"]) == {"lira", "carlini", "loss", "zlib", "minkpp"}
    assert _positive(attacks["seconds"])
    assert all(_positive(s) for s in attacks["per_attack_s"].values())
    # The planted effect is visible: members have lower loss.
    assert attacks["auc"]["loss"] > 0.55
    assert set(result["memory"]) == {"peak_bytes_in_use", "peak_bytes_per_model"}
    assert result["config"]["compute_dtype"] == "float32"
    assert _positive(result["config"]["flops_per_token"])


def test_json_round_trip_and_table(result):
    text = json.dumps(json_ready(result), allow_nan=False)
    assert json.loads(text)["training"]["vmap"]["strategy"] == "vmap"
    table = format_table(result)
    for label in ("vmap", "map:2", "loop", "score", "attacks"):
        assert f"| {label}" in table or f"| train | {label}" in table


def test_peak_table_and_strategy_labels():
    peak, _ = device_peak_flops("NVIDIA H100 80GB HBM3", "bfloat16")
    assert peak == 989e12
    assert device_peak_flops("NVIDIA H100 PCIe", "bfloat16")[0] == 756e12
    assert device_peak_flops("NVIDIA H100 80GB HBM3", "float32")[0] == 494.5e12
    assert device_peak_flops("TPU v5 lite", "bfloat16")[0] == 197e12
    assert device_peak_flops("cpu", "float32")[0] is None
    assert device_peak_flops("cpu", "float32", 2.0)[0] == 2e12
    assert parse_strategy("map:4") == ("map", 4)
    assert parse_strategy("map:1") == ("map", 0)
    for bad in ("scan", "vmap:2", "map:x", "map:-1"):
        with pytest.raises(ConfigError):
            parse_strategy(bad)


def test_profile_of_the_first_strategy_totals_its_kernels(result):
    prof = result["profile"]
    assert prof["strategy"] == "vmap" and prof["steps"] == result["config"]["chunk_steps"]
    assert _positive(prof["kernel_seconds"]) and _positive(prof["wall_seconds"])
    assert np.isclose(sum(prof["categories"].values()), prof["kernel_seconds"])
    assert "matmul" in prof["categories"]  # the dots of the model are found and classified
    assert "Profile of one" in format_table(result)

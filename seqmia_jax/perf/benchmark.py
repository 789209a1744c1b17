"""Throughput benchmark: ensemble training strategies against a loop, scoring, and attacks.

Legend: S shadow models, N samples, B batch per model, L positions, K timed chunks.

``run_benchmark(cfg, settings)`` measures, in one process and from one initial
state, the steady-state training speed of each strategy: ``vmap``, ``map``
(``lax.map``, one model at a time), ``map:k`` (``lax.map`` over chunks of k
vmapped models) and ``loop`` (the same jitted single-model chunk called
once per model from Python). Each strategy compiles and warms
up on one chunk of steps, then K chunks are timed with ``block_until_ready``
(``ensemble_timing.py``). It also times the scorer over a batch of N samples
for all S models and the attack set over synthetic S x N x L statistics
(``attack_timing.py``), and reads the device's peak memory (``devices.py``).
With ``profile_dir`` one more chunk of the first strategy runs under the
profiler and its kernel time is totalled by category (``profiling.py``).
``table.format_table`` renders the result as one markdown table.

Model FLOPs follow ``count_flops_per_token`` (6 N + 12 num_layers D L per
token). Tokens count every row of every batch, the weight-0 padding of an
epoch's last batch included, since it is computed like any other.
"""

import dataclasses
import os

import jax

from seqmia_jax.config import ConfigError, ExperimentConfig
from seqmia_jax.data import load_dataset
from seqmia_jax.ensemble import sharding
from seqmia_jax.ensemble.train import resolve_strategy
from seqmia_jax.models.build import count_flops_per_token, num_params
from seqmia_jax.perf.attack_timing import time_attacks
from seqmia_jax.perf.devices import device_peak_flops, peak_memory_bytes
from seqmia_jax.perf.ensemble_timing import (
    auto_label,
    make_setup,
    parse_strategy,
    time_scoring,
    time_training,
)

STAGES = ("train", "score", "attack")


@dataclasses.dataclass(frozen=True)
class BenchmarkSettings:
    """What to measure and for how long."""

    strategies: tuple[str, ...] = ("vmap", "map", "loop")  # also "map:k" (k models per chunk)
    chunk_steps: int | None = None  # steps per timed chunk (None: train.log_every)
    timed_chunks: int = 3  # K chunks timed after one warm-up chunk
    score_samples: int | None = None  # N of the scoring batch (None: score.batch_size)
    score_repeats: int = 3
    attack_shape: tuple[int, int, int] = (16, 1000, 64)  # synthetic S, N, L for the attacks
    attacks: tuple[str, ...] | None = None  # None: DEFAULT_ATTACKS
    attack_bootstrap: int = 20  # bootstrap resamples (the CIs are part of an attack's cost)
    attack_repeats: int = 1  # a second run is warm: it separates compilation from compute
    peak_tflops: float | None = None  # overrides the device table; needed for MFU on CPU
    seed: int = 0
    stages: tuple[str, ...] = ("train", "score", "attack")  # which of STAGES to run
    profile_dir: str | None = None  # trace one more chunk of the first strategy here


def quick_settings(**overrides) -> BenchmarkSettings:
    """Small sizes that run in well under two minutes on two CPU cores."""
    base = BenchmarkSettings(
        chunk_steps=2,
        timed_chunks=2,
        score_samples=32,
        score_repeats=2,
        attack_shape=(8, 64, 16),
        attack_bootstrap=5,
    )
    return dataclasses.replace(base, **overrides)


def quick_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """Shrinks a config to the ``tiny`` sizes (S=8, N=64, L=32, one layer of width 32)."""
    return dataclasses.replace(
        cfg,
        num_shadow_models=min(cfg.num_shadow_models, 8),
        data=dataclasses.replace(cfg.data, seq_len=min(cfg.data.seq_len, 32), num_samples=64),
        model=dataclasses.replace(cfg.model, num_layers=1, embed_dim=32, num_heads=2),
        train=dataclasses.replace(cfg.train, batch_size=min(cfg.train.batch_size, 8)),
    )


def run_benchmark(cfg: ExperimentConfig, settings: BenchmarkSettings = BenchmarkSettings()) -> dict:
    """Measures the stages of ``settings`` for ``cfg``; returns a JSON-ready dict."""
    unknown = set(settings.stages) - set(STAGES)
    if unknown:
        raise ConfigError(f"unknown benchmark stage(s) {sorted(unknown)}; known: {STAGES}")
    for label in settings.strategies:
        parse_strategy(label)
    load_before = os.getloadavg()
    device = jax.devices()[0]
    peak_flops, peak_source = device_peak_flops(
        device.device_kind, cfg.model.compute_dtype, settings.peak_tflops
    )
    dataset = load_dataset(cfg.data)
    flops_per_token = count_flops_per_token(cfg.model, dataset.vocab_size, dataset.seq_len)
    chunk_steps = settings.chunk_steps or cfg.train.log_every
    auto = auto_label(cfg)
    result = {
        "jax_version": jax.__version__,
        "device": {
            "platform": device.platform,
            "device_kind": device.device_kind,
            "num_devices": sharding.make_mesh(cfg.num_shadow_models).size,
            "peak_flops_per_device": peak_flops,
            "peak_source": peak_source,
        },
        "config": {
            "num_shadow_models": cfg.num_shadow_models,
            "num_samples": cfg.data.num_samples,
            "seq_len": cfg.data.seq_len,
            "num_layers": cfg.model.num_layers,
            "embed_dim": cfg.model.embed_dim,
            "batch_size": cfg.train.batch_size,
            "compute_dtype": cfg.model.compute_dtype,
            "flops_per_token": flops_per_token,
            "chunk_steps": chunk_steps,
            "timed_chunks": settings.timed_chunks,
        },
    }
    if "train" in settings.stages or "score" in settings.stages:
        setup = make_setup(cfg, dataset)
        result["config"]["params_per_model"] = num_params(setup.state["params"]) // (
            cfg.num_shadow_models
        )
    if "train" in settings.stages:
        # MFU against the peak of every device the mesh uses.
        mesh_peak = peak_flops * setup.mesh.size if peak_flops else None
        labels = list(dict.fromkeys(settings.strategies)) + [auto]
        rows, summary = time_training(
            setup,
            list(dict.fromkeys(labels)),
            chunk_steps=chunk_steps,
            timed_chunks=settings.timed_chunks,
            flops_per_token=flops_per_token,
            peak_flops=mesh_peak,
            profile_dir=settings.profile_dir,
        )
        if summary:
            result["profile"] = summary
        peak_bytes = peak_memory_bytes()
        result["training"] = rows
        result["auto"] = {"resolves_to": auto, "speedup_vs_loop": rows[auto].get("speedup_vs_loop")}
        result["memory"] = {
            "peak_bytes_in_use": peak_bytes,
            "peak_bytes_per_model": None
            if peak_bytes is None
            else peak_bytes / cfg.num_shadow_models,
        }
    if "score" in settings.stages:
        num_score = settings.score_samples or cfg.score.batch_size
        result["scoring"] = time_scoring(
            setup,
            resolve_strategy(cfg.train.strategy),
            min(num_score, cfg.data.num_samples),
            settings.score_repeats,
        )
    if "attack" in settings.stages:
        result["attacks"] = time_attacks(
            settings.attack_shape,
            settings.attacks,
            settings.attack_bootstrap,
            settings.seed,
            settings.attack_repeats,
        )
    result["load_average"] = {"before": list(load_before), "after": list(os.getloadavg())}
    return result

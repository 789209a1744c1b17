"""Throughput benchmark: ensemble training strategies against a loop, scoring, and attacks.

Legend: S shadow models, N samples, B batch per model, L positions, K timed chunks.

``run_benchmark(cfg, settings)`` measures, in one process and from one initial
state, the steady-state training speed of each strategy: ``vmap``, ``map``
(``lax.map``, one model at a time), ``map:k`` (``lax.map`` over chunks of k
vmapped models) and ``loop`` (``steps.loop_over_models``, the same jitted
single-model chunk called once per model). Each strategy compiles and warms
up on one chunk of steps, then K chunks are timed with ``block_until_ready``.
It also times the scorer over a batch of N samples for all S models and the
attack set over synthetic S x N x L statistics (``attacks/timing.py``), and
reads the device's peak memory. With ``profile_dir`` one more chunk of the
first strategy runs under the profiler and its kernel time is totalled by
category (``profiling.py``). ``format_table`` (``report/benchmark_table.py``)
renders the result as one markdown table.

Model FLOPs follow ``count_flops_per_token`` (6 N + 12 num_layers D L per
token). Tokens count every row of every batch, the weight-0 padding of an
epoch's last batch included, since it is computed like any other.
"""

import dataclasses
import os
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from seqmia_jax import membership, profiling
from seqmia_jax.attacks.timing import time_attacks
from seqmia_jax.config import ConfigError, ExperimentConfig
from seqmia_jax.data import Dataset, load_dataset, training_copies
from seqmia_jax.ensemble import sharding, steps
from seqmia_jax.ensemble.train import init_ensemble, resolve_strategy
from seqmia_jax.models.build import count_flops_per_token, num_params
from seqmia_jax.report.benchmark_table import format_table  # noqa: F401  (re-exported)
from seqmia_jax.scoring import make_scorer
from seqmia_jax.workdir import json_ready  # noqa: F401  (re-exported for the CLI)

# Dense datasheet peaks in TFLOP/s, matched against jax's device_kind (lower case,
# most specific first). bfloat16 is the tensor-core / MXU rate without sparsity.
# float32 is half of it: on NVIDIA that is the TF32 tensor-core rate, which XLA
# uses for float32 matmuls at the default precision; on TPU, default-precision
# float32 matmuls run as bfloat16 passes, so half is a conservative figure.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("h100 pcie", 756.0),
    ("h100", 989.0),  # SXM ("NVIDIA H100 80GB HBM3")
    ("h200", 989.0),
    ("a100", 312.0),
    ("tpu v5 lite", 197.0),  # v5e
    ("tpu v5e", 197.0),
    ("tpu v5p", 459.0),
    ("tpu v5", 459.0),
    ("tpu v4", 275.0),
)
FLOAT32_FRACTION = 0.5
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


def parse_strategy(label: str) -> tuple[str, int]:
    """``"vmap"`` -> ("vmap", 0); ``"map:4"`` -> ("map", 4); ``"loop"`` -> ("loop", 0)."""
    name, _, chunk = label.partition(":")
    if name not in ("vmap", "map", "loop") or (chunk and name != "map"):
        raise ConfigError(f"unknown strategy {label!r}; use vmap, map, map:k or loop")
    try:
        map_chunk = int(chunk) if chunk else 0
    except ValueError:
        raise ConfigError(f"strategy {label!r}: the map chunk must be an integer") from None
    if map_chunk < 0:
        raise ConfigError(f"strategy {label!r}: the map chunk must be >= 0")
    return name, map_chunk if map_chunk > 1 else 0


def strategy_label(name: str, map_chunk: int = 0) -> str:
    return f"map:{map_chunk}" if name == "map" and map_chunk > 1 else name


def auto_label(cfg: ExperimentConfig) -> str:
    """The strategy ``train.strategy="auto"`` runs on this backend, as a label."""
    name = resolve_strategy("auto")
    return strategy_label(name, cfg.train.map_chunk if name == "map" else 0)


def device_peak_flops(
    device_kind: str, compute_dtype: str, override_tflops: float | None = None
) -> tuple[float | None, str]:
    """Peak FLOP/s of one device and where the figure comes from (None when unknown)."""
    if override_tflops is not None:
        return float(override_tflops) * 1e12, "--peak_tflops"
    kind = device_kind.lower()
    for pattern, tflops in PEAK_BF16_TFLOPS:
        if pattern in kind:
            if compute_dtype == "bfloat16":
                return tflops * 1e12, f"{pattern} bf16 dense datasheet"
            return (
                tflops * FLOAT32_FRACTION * 1e12,
                f"{pattern} bf16 dense datasheet x {FLOAT32_FRACTION} for float32",
            )
    return None, "unknown device: pass --peak_tflops"


def peak_memory_bytes() -> int | None:
    """Largest ``peak_bytes_in_use`` over local devices, None where not reported (CPU)."""
    peaks = []
    for device in jax.local_devices():
        stats = device.memory_stats()  # None on CPU
        if stats and "peak_bytes_in_use" in stats:
            peaks.append(int(stats["peak_bytes_in_use"]))
    return max(peaks) if peaks else None


def _block(tree) -> None:
    jax.tree.map(lambda x: x.block_until_ready(), tree)


def _copy(tree):
    # Every strategy donates its state, so each starts from its own copy of the init state.
    return jax.tree.map(jnp.copy, tree)


@dataclasses.dataclass
class _Setup:
    """The ensemble every measurement starts from: one init state on one mesh."""

    graphdef: object
    state: dict
    mesh: object
    tokens_NxL: jax.Array
    in_idx_SxM: jax.Array
    sched: steps.Schedule
    tx: object


def _setup(cfg: ExperimentConfig, dataset: Dataset) -> _Setup:
    copies_N = training_copies(cfg.data)
    keep_SxN = membership.make_membership(
        cfg.num_shadow_models, cfg.data.num_samples, cfg.seed, copies_N
    )
    in_idx_SxM = membership.in_indices(keep_SxN, copies_N)
    sched = steps.Schedule(cfg.train.batch_size, in_idx_SxM.shape[1], cfg.train.epochs)
    tx = steps.make_optimizer(cfg.train, sched.total_steps)
    mesh = sharding.make_mesh(cfg.num_shadow_models)
    graphdef, state = init_ensemble(cfg, dataset, mesh, tx)
    tokens_NxL = sharding.put_replicated(np.asarray(dataset.tokens_NxL, np.int32), mesh)
    return _Setup(
        graphdef, state, mesh, tokens_NxL, sharding.put_sharded(in_idx_SxM, mesh), sched, tx
    )


def time_training(
    setup: _Setup,
    labels: Sequence[str],
    *,
    chunk_steps: int,
    timed_chunks: int,
    flops_per_token: float,
    peak_flops: float | None,
    profile_dir: str | None = None,
) -> tuple[dict, dict | None]:
    """Steady-state training speed of each strategy label, each from a copy of one init state.

    Every strategy compiles and runs one warm-up chunk, then the K timed chunks
    run round-robin over the strategies (all their states stay live at once).
    With ``profile_dir``, one more chunk of the first strategy runs under the
    profiler. Returns (rows by label, profile summary or None).
    """
    num_models = setup.in_idx_SxM.shape[0]
    model_chunk = steps.make_model_chunk(setup.graphdef, setup.tx, setup.sched, chunk_steps)
    batch_size, seq_len = setup.sched.batch_size, setup.tokens_NxL.shape[1]
    tokens_per_chunk = num_models * batch_size * seq_len * chunk_steps
    runners, states, chunk_s, losses, peak_bytes = {}, {}, {}, {}, {}

    def run_chunk(label: str, k: int) -> float:
        start = time.perf_counter()
        states[label], losses[label] = runners[label](
            setup.tokens_NxL, states[label], setup.in_idx_SxM, jnp.int32(k * chunk_steps)
        )
        _block((states[label], losses[label]))
        return time.perf_counter() - start

    for label in labels:  # chunk 0 compiles and warms up
        name, map_chunk = parse_strategy(label)
        runners[label] = (
            steps.loop_over_models(model_chunk)
            if name == "loop"
            else steps.lift_to_ensemble(model_chunk, setup.mesh, name, map_chunk)
        )
        states[label] = _copy(setup.state)
        chunk_s[label] = [run_chunk(label, 0)]
        # The process's running maximum: clean for the first strategy, an upper bound after.
        peak_bytes[label] = peak_memory_bytes()
        logging.info("train %s: compiled and warmed up in %.1f s", label, chunk_s[label][0])
    # Round-robin over the strategies, so a change in background load hits all of them alike.
    for k in range(1, timed_chunks + 1):
        for label in labels:
            chunk_s[label].append(run_chunk(label, k))
    rows = {}
    for label in labels:
        name, map_chunk = parse_strategy(label)
        seconds = sum(chunk_s[label][1:])
        tokens_per_s = tokens_per_chunk * timed_chunks / seconds
        rows[label] = {
            "strategy": name,
            "map_chunk": map_chunk,
            "warmup_s": chunk_s[label][0],
            "chunk_s": chunk_s[label][1:],
            "seconds": seconds,
            "steps": chunk_steps * timed_chunks,
            "tokens_per_s": tokens_per_s,
            "model_steps_per_s": num_models * chunk_steps * timed_chunks / seconds,
            "model_flops_per_s": tokens_per_s * flops_per_token,
            "mfu": tokens_per_s * flops_per_token / peak_flops if peak_flops else None,
            "final_loss": float(np.mean(sharding.to_host(losses[label]))),
            "peak_bytes_per_model": None
            if peak_bytes[label] is None
            else peak_bytes[label] / num_models,
        }
        logging.info(
            "train %s: %.0f tokens/s (chunks %s s)",
            label,
            tokens_per_s,
            ", ".join(f"{t:.2f}" for t in chunk_s[label][1:]),
        )
    if "loop" in rows:
        for row in rows.values():
            row["speedup_vs_loop"] = rows["loop"]["seconds"] / row["seconds"]
    summary = None
    if profile_dir:
        wall = []
        try:
            summary = profiling.profile(
                lambda: wall.append(run_chunk(labels[0], timed_chunks + 1)), profile_dir
            )
            summary.update(strategy=labels[0], wall_seconds=wall[0], steps=chunk_steps)
        except (RuntimeError, OSError, ValueError, KeyError) as error:  # keep the timings
            logging.warning("profiling failed: %s", error)
    return rows, summary


def time_scoring(setup: _Setup, strategy: str, num_samples: int, repeats: int) -> dict:
    """Samples/s of ``make_scorer`` over one batch of N samples for all S models."""
    scorer = make_scorer(setup.graphdef, setup.mesh, strategy)
    pool_NxL = sharding.to_host(setup.tokens_NxL)
    tokens = sharding.put_replicated(
        np.resize(pool_NxL, (num_samples, pool_NxL.shape[1])), setup.mesh
    )
    params_S = setup.state["params"]
    start = time.perf_counter()
    _block(scorer(params_S, tokens))
    warmup_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(repeats):
        out = scorer(params_S, tokens)
    _block(out)
    seconds = (time.perf_counter() - start) / repeats
    num_models = setup.in_idx_SxM.shape[0]
    logging.info("score %s: %.1f samples/s", strategy, num_samples / seconds)
    return {
        "strategy": strategy,
        "num_models": num_models,
        "num_samples": num_samples,
        "warmup_s": warmup_s,
        "seconds": seconds,
        "samples_per_s": num_samples / seconds,
        "model_samples_per_s": num_models * num_samples / seconds,
    }


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
        setup = _setup(cfg, dataset)
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
        num_score = settings.score_samples or int(cfg.score.get("batch_size", 256))
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

"""Timing of the ensemble's training strategies and of its scorer, from one init state.

Legend: S shadow models, N samples, M IN samples per model, L positions.

Strategies are labelled ``vmap``, ``map`` (``lax.map``, one model at a time),
``map:k`` (``lax.map`` over chunks of k vmapped models) and ``loop``
(the same jitted single-model chunk called once per model); all come from
``steps.lift_to_ensemble``. ``time_training`` compiles and warms up each on one chunk of
steps, then times K chunks with ``block_until_ready``; ``time_scoring`` times
``make_scorer`` over one batch of N samples for all S models.
"""

import dataclasses
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from seqmia_jax import membership
from seqmia_jax.config import ConfigError, ExperimentConfig
from seqmia_jax.data import Dataset, training_copies
from seqmia_jax.ensemble import dp, sharding, steps
from seqmia_jax.ensemble.train import init_ensemble, resolve_strategy
from seqmia_jax.perf import profiling
from seqmia_jax.perf.devices import peak_memory_bytes
from seqmia_jax.scoring import make_scorer


def split_dp(label: str) -> tuple[str, int | None]:
    """``"map:2+dp"`` -> ("map:2", 0); ``"vmap+dp/8"`` -> ("vmap", 8); ``"vmap"`` -> ("vmap", None).

    A ``+dp`` label times DP-SGD steps (``seqmia_jax.ensemble.dp``; ``/k``:
    per-example gradients k rows at a time) beside the normal ones.
    """
    base, plus, dp = label.partition("+")
    if not plus:
        return label, None
    kind, _, micro = dp.partition("/")
    if kind != "dp" or (micro and not micro.isdigit()):
        raise ConfigError(f"unknown strategy {label!r}; a DP label is <strategy>+dp[/k]")
    return base, int(micro or 0)


def parse_strategy(label: str) -> tuple[str, int]:
    """``"vmap"`` -> ("vmap", 0); ``"map:4"`` -> ("map", 4); ``"loop"`` -> ("loop", 0).

    A ``+dp[/k]`` suffix (``split_dp``) is accepted and ignored here.
    """
    name, _, chunk = split_dp(label)[0].partition(":")
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


def _block(tree) -> None:
    jax.tree.map(lambda x: x.block_until_ready(), tree)


def _copy(tree):
    # Every strategy donates its state, so each starts from its own copy of the init state.
    return jax.tree.map(jnp.copy, tree)


@dataclasses.dataclass
class EnsembleSetup:
    """The ensemble every measurement starts from: one init state on one mesh."""

    graphdef: object
    state: dict
    mesh: object
    tokens_NxL: jax.Array
    in_idx_SxM: jax.Array
    sched: steps.Schedule
    tx: object


def make_setup(cfg: ExperimentConfig, dataset: Dataset) -> EnsembleSetup:
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
    return EnsembleSetup(
        graphdef, state, mesh, tokens_NxL, sharding.put_sharded(in_idx_SxM, mesh), sched, tx
    )


def benchmark_dp(sched: steps.Schedule, microbatch: int) -> dp.DPSettings:
    """DP-SGD at clip norm 1 and noise multiplier 1 (the cost does not depend on them).

    The expected batch is the configured one, so tokens/s compares with normal
    training at the same batch; the Poisson padding is part of DP's cost.
    """
    return dp.make_settings(
        1.0, 1.0, sched.batch_size, sched.samples_per_model, sched.total_steps, microbatch
    )


def time_training(
    setup: EnsembleSetup,
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

    def model_chunk_for(label: str):
        micro = split_dp(label)[1]
        if micro is None:
            return steps.make_model_chunk(setup.graphdef, setup.tx, setup.sched, chunk_steps)
        return steps.make_model_chunk(
            setup.graphdef, setup.tx, setup.sched, chunk_steps, benchmark_dp(setup.sched, micro)
        )

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
        runners[label] = steps.lift_to_ensemble(model_chunk_for(label), setup.mesh, name, map_chunk)
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
        micro = split_dp(label)[1]
        rows[label] = {
            "strategy": name,
            "map_chunk": map_chunk,
            "dp": None if micro is None else dataclasses.asdict(benchmark_dp(setup.sched, micro)),
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


def time_scoring(setup: EnsembleSetup, strategy: str, num_samples: int, repeats: int) -> dict:
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

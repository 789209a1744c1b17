"""The training loop shared by every ensemble: chunks of steps, logging, checkpoints.

Legend: S models, K steps per chunk.

``TrainLoop`` runs a one-model training chunk (``steps.make_model_chunk``),
lifted over the models, to the last step: it logs one line per chunk to
``metrics.jsonl``, checkpoints every ``checkpoint_every`` steps and stops on
a non-finite loss. The shadow ensemble (``ensemble.train``) and the single
base model (``seqmia_jax.pretrain``) both train with it.
"""

import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from absl import logging

from seqmia_jax import processes
from seqmia_jax.ensemble import sharding, steps


class TrainingError(RuntimeError):
    """Training diverged (NaN/Inf loss) or cannot continue."""


def _log_line(step, total, losses_SxK, dt, tokens, start_time, start_step):
    per_model = losses_SxK.mean(axis=1)
    rate = tokens / max(dt, 1e-9)
    done = step - start_step
    eta = (time.time() - start_time) / max(done, 1) * (total - step)
    return {
        "step": step,
        "loss_mean": float(per_model.mean()),
        "loss_std": float(per_model.std()),
        "loss_min": float(per_model.min()),
        "loss_max": float(per_model.max()),
        "tokens_per_s": rate,
        "eta_s": eta,
        "time": time.time(),
    }


def _check_finite(losses_SxK: np.ndarray, step0: int) -> None:
    bad = ~np.isfinite(losses_SxK)
    if bad.any():
        models, offsets = np.nonzero(bad)
        first = step0 + int(offsets.min())
        raise TrainingError(
            f"non-finite loss at step {first + 1} in model(s) "
            f"{sorted(set(models[offsets == offsets.min()].tolist()))} "
            f"({int(bad.sum())} non-finite values in steps {step0 + 1}..{step0 + bad.shape[1]}); "
            "lower train.learning_rate or check the data. The last checkpoint is intact."
        )


def truncate_metrics(path: Path, step: int) -> None:
    """Drops log lines written after the checkpoint being resumed from.

    A line cut short (a kill or a full disk mid-write) is dropped too.
    """
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("step", 0) <= step:
            kept.append(line)
    path.write_text("".join(ln + "\n" for ln in kept))


@dataclasses.dataclass
class TrainLoop:
    """Runs training chunks to the last step, logging and checkpointing: one loop for every
    ensemble (the shadows, and the single base model of ``seqmia_jax.pretrain``).

    ``make_chunk(num_steps)`` returns the one-model chunk (``steps.make_model_chunk``);
    ``run`` lifts it over the models, with ``extra`` (the frozen base under LoRA)
    broadcast to all of them.
    """

    make_chunk: Callable
    mesh: object
    strategy: str
    map_chunk: int
    chunk_len: int
    checkpoint_every: int
    tokens_per_step: int
    metrics: Path
    start_time: float = 0.0
    rates: list = dataclasses.field(default_factory=list)  # tokens/s of each chunk run

    @property
    def steady_tokens_per_s(self) -> float | None:
        """Median tokens/s over the chunks after the first (which compiles); None if none ran."""
        rates = self.rates[1:] or self.rates
        return float(np.median(rates)) if rates else None

    def run(self, state, data, extra, step, total, ckpt, stop_after_steps=None):
        """Trains from ``step`` to ``total`` (or ``stop_after_steps``): (state, step, last log record).

        ``data`` is (tokens_NxL, in_idx_SxM) on the mesh. The checkpointer is closed on return.
        """
        runners = {}

        def runner(num_steps):
            if num_steps not in runners:
                runners[num_steps] = steps.lift_to_ensemble(
                    self.make_chunk(num_steps),
                    self.mesh,
                    self.strategy,
                    self.map_chunk,
                    frozen=bool(extra),
                )
            return runners[num_steps]

        ckpt_every = self.chunk_len * max(1, math.ceil(self.checkpoint_every / self.chunk_len))
        self.start_time, start_step, record = time.time(), step, None
        while step < total:
            num_steps = min(self.chunk_len, total - step)
            t0 = time.time()
            tokens_NxL, in_idx_SxM = data
            state, losses_SxK = runner(num_steps)(
                tokens_NxL, state, in_idx_SxM, jnp.int32(step), *extra
            )
            losses_SxK = sharding.to_host(losses_SxK)
            dt = time.time() - t0
            _check_finite(losses_SxK, step)
            step += num_steps
            record = _log_line(
                step,
                total,
                losses_SxK,
                dt,
                self.tokens_per_step * num_steps,
                self.start_time,
                start_step,
            )
            self.rates.append(record["tokens_per_s"])
            logging.info(
                "step %d/%d  loss %.4f +- %.4f (min %.4f, max %.4f)  %.0f tokens/s  ETA %.0fs",
                step,
                total,
                record["loss_mean"],
                record["loss_std"],
                record["loss_min"],
                record["loss_max"],
                record["tokens_per_s"],
                record["eta_s"],
            )
            if processes.is_primary():
                with self.metrics.open("a") as f:
                    f.write(json.dumps(record) + "\n")
            if step % ckpt_every == 0 or step == total or step == stop_after_steps:
                ckpt.save(step, state)
            if stop_after_steps is not None and step >= stop_after_steps and step < total:
                break
        ckpt.close()
        return state, step, record

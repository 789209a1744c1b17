"""The scoring stage: per-token statistics of every shadow model on every audit sample.

Legend: S shadow models, N audit samples, B batch, L positions, V vocabulary.

Writes memory-mappable ``stats/<name>.npy`` arrays of shape S x N x L (float32):

- ``loss``: -log p(x_l | x_<l);
- ``logit``: log p - log(1 - p), computed stably as the correct logit minus
  the logsumexp of the other logits (Carlini et al.'s score);
- ``mean_logp`` and ``std_logp``: mean and standard deviation of log p(v) under
  the model's own predictive distribution p(. | x_<l), for Min-K%++.

Fine-tuned from a base (``seqmia_jax.pretrain``), it also writes the base
model's ``stats/base_loss.npy`` and ``stats/base_logit.npy`` (N x L, one
model). For text it writes each sample's bytes (``text_bytes.npy``, and with
subwords ``text_lengths.npy`` and the token ids ``tokens.npy``).

The stage is resumable: samples are scored in chunks, and ``stats/progress.json``
records how many are complete only after their rows are flushed to disk.

In a multi-process run every process scores its own models; the statistics
are gathered to every process and process 0 alone writes them.
"""

import errno
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from seqmia_jax import processes
from seqmia_jax.config import ExperimentConfig
from seqmia_jax.data import Dataset, load_dataset
from seqmia_jax.ensemble import lift, sharding
from seqmia_jax.ensemble.train import load_base_of, load_params, resolve_strategy, run_fingerprint
from seqmia_jax.evaluation.memorization import MEASURES, MEMORIZATION_DIR, measure_file
from seqmia_jax.models.build import merge
from seqmia_jax.workdir import Workdir, WorkdirError, holds_lock, read_json, write_json

STATISTICS = ("loss", "logit", "mean_logp", "std_logp")
MEMORIZATION_FILES = ("secret_mask.npy", *map(measure_file, MEASURES))  # relative to stats/


def token_statistics(logits_BxLxV: jax.Array, tokens_BxL: jax.Array) -> dict[str, jax.Array]:
    """All per-token statistics from one model's logits, float32 B x L each."""
    logits = logits_BxLxV.astype(jnp.float32)
    logp_BxLxV = jax.nn.log_softmax(logits, axis=-1)
    correct_BxL = jnp.take_along_axis(logits, tokens_BxL[..., None], axis=-1)[..., 0]
    logp_BxL = jnp.take_along_axis(logp_BxLxV, tokens_BxL[..., None], axis=-1)[..., 0]
    # log(1 - p) from the other logits only: never 1 - p, which rounds to 0.
    is_correct = jax.nn.one_hot(tokens_BxL, logits.shape[-1], dtype=bool)
    others_BxL = jax.nn.logsumexp(jnp.where(is_correct, -jnp.inf, logits), axis=-1)
    p_BxLxV = jnp.exp(logp_BxLxV)
    mean_BxL = jnp.sum(p_BxLxV * logp_BxLxV, axis=-1)
    var_BxL = jnp.sum(p_BxLxV * jnp.square(logp_BxLxV - mean_BxL[..., None]), axis=-1)
    return {
        "loss": -logp_BxL,
        "logit": correct_BxL - others_BxL,
        "mean_logp": mean_BxL,
        "std_logp": jnp.sqrt(jnp.maximum(var_BxL, 0.0)),
    }


def make_scorer(graphdef: nnx.GraphDef, mesh, strategy: str):
    """Returns ``score(params_S, tokens_BxL) -> {name: S x B x L}`` for all S models."""

    def one_model(params, tokens_BxL):
        return token_statistics(merge(graphdef, params)(tokens_BxL), tokens_BxL)

    return lift.over_models(one_model, mesh, strategy, in_axes=(0, None))


def _reserve(path: Path) -> None:
    """Allocates the file's blocks now: a full disk is then an OSError here, not a
    SIGBUS later when a page of the (sparse) memory map is written."""
    with open(path, "r+b") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
        except OSError as error:
            if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # no fallocate here
                raise


def _open_stats(stats_dir: Path, shape: tuple[int, int, int], fresh: bool) -> dict[str, np.memmap]:
    out = {}
    for name in STATISTICS:
        path = stats_dir / f"{name}.npy"
        if fresh or not path.exists():
            out[name] = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
            _reserve(path)
        else:
            out[name] = np.load(path, mmap_mode="r+")
            if out[name].shape != shape:
                raise WorkdirError(f"{path} has shape {out[name].shape}, expected {shape}")
    return out


@holds_lock
def score(
    cfg: ExperimentConfig,
    workdir: str | Path,
    *,
    dataset: Dataset | None = None,
    stop_after_samples: int | None = None,
) -> dict:
    """Computes (or resumes, or confirms) ``stats/*.npy`` for a trained work directory.

    Args:
      stop_after_samples: stop once this many samples are scored (tests use it
        to simulate an interruption).
    """
    wd = Workdir(workdir)
    dataset = dataset or load_dataset(cfg.data)
    wd.bind(cfg, run_fingerprint(cfg, wd.path, dataset))
    if not wd.train_done.exists():
        raise WorkdirError(f"training has not finished in {wd.path}; run the train stage first")
    train_done = read_json(wd.train_done)
    done_path = wd.stats / "done.json"
    measures = memorization_settings(cfg, dataset)
    if done_path.exists():
        done = read_json(done_path)
        if done.get("train") != train_done:
            raise WorkdirError(
                f"{wd.stats} was computed from a different training run; delete {wd.stats} "
                "to recompute it"
            )
        if done.get("memorization", {}) == measures:
            logging.info("statistics already complete in %s: nothing to do", wd.stats)
            return done
        # Only the exposure and extraction settings changed: the statistics stay.
        logging.info("statistics complete; recomputing exposure and extraction only")
        mesh = sharding.make_mesh(cfg.num_shadow_models)
        graphdef, params = load_params(cfg, wd.path, dataset, mesh)
        done = {**done, "memorization": measures}
        _measure_memorization(cfg, wd, dataset, graphdef, params, mesh, done)
        return done

    tokens_NxL = np.asarray(dataset.tokens_NxL, np.int32)
    num_samples, seq_len = tokens_NxL.shape
    num_models = cfg.num_shadow_models
    batch = min(cfg.score.batch_size, num_samples)
    wd.stats.mkdir(exist_ok=True)
    progress_path = wd.stats / "progress.json"
    start = 0
    if progress_path.exists():
        progress = read_json(progress_path)
        if progress.get("train") == train_done and progress.get("batch") == batch:
            start = int(progress["samples_done"])
    # Every process must run the same batches: process 0, the writer, decides.
    start = int(processes.from_primary(np.int32(start)))
    is_writer = processes.is_primary()
    stats = (
        _open_stats(wd.stats, (num_models, num_samples, seq_len), fresh=start == 0)
        if is_writer
        else {}
    )

    mesh = sharding.make_mesh(num_models)
    graphdef, params = load_params(cfg, wd.path, dataset, mesh)
    scorer = make_scorer(graphdef, mesh, resolve_strategy(cfg.train.strategy))
    if start:
        logging.info("resuming scoring at sample %d of %d", start, num_samples)
    t0 = time.time()
    for lo in range(start, num_samples, batch):
        hi = min(lo + batch, num_samples)
        # Pad the last batch to the full size, so one compiled program serves every batch.
        tokens_BxL = np.zeros((batch, seq_len), np.int32)
        tokens_BxL[: hi - lo] = tokens_NxL[lo:hi]
        out = sharding.to_host(scorer(params, sharding.put_replicated(tokens_BxL, mesh)))
        if is_writer:
            for name in STATISTICS:
                stats[name][:, lo:hi] = out[name][:, : hi - lo]
                stats[name].flush()
            write_json(progress_path, {"train": train_done, "batch": batch, "samples_done": hi})
        logging.info(
            "scored samples %d/%d (%.1f samples/s)",
            hi,
            num_samples,
            (hi - start) / (time.time() - t0),
        )
        if stop_after_samples is not None and hi >= stop_after_samples and hi < num_samples:
            return {"samples_done": hi, "finished": False}
    bad = [name for name in STATISTICS if is_writer and not np.all(np.isfinite(stats[name][:]))]
    # Only process 0 holds the files; all processes fail together.
    num_bad = int(processes.from_primary(np.int32(len(bad))))
    if num_bad:
        raise WorkdirError(
            f"{wd.stats} holds non-finite values in "
            + (", ".join(f"{name}.npy" for name in bad) or f"{num_bad} statistic(s)")
        )
    seconds = time.time() - t0
    done = {
        "train": train_done,
        "statistics": list(STATISTICS),
        "shape": [num_models, num_samples, seq_len],
        "seconds": seconds,
        "samples_per_s": (num_samples - start) / max(seconds, 1e-9),
    }
    if measures:  # absent otherwise: done.json stays as older versions wrote it
        done["memorization"] = measures
    if is_writer and dataset.kind == "text":  # raw bytes for the zlib baseline
        text_NxM, lengths_N = dataset.text_bytes()
        np.save(wd.path / "text_bytes.npy", text_NxM)
        if dataset.fingerprint.get("tokenizer"):  # subwords: bytes per sample vary
            np.save(wd.path / "text_lengths.npy", lengths_N)
            np.save(wd.path / "tokens.npy", tokens_NxL)
    base = load_base_of(cfg, wd.path, dataset)
    if is_writer and base is not None:
        for name, value in base_statistics(base, tokens_NxL, batch).items():
            np.save(wd.stats / f"base_{name}.npy", value)
        done["base_statistics"] = [f"base_{name}" for name in BASE_STATISTICS]
    _measure_memorization(cfg, wd, dataset, graphdef, params, mesh, done)
    if is_writer:
        progress_path.unlink(missing_ok=True)
    return done


BASE_STATISTICS = ("loss", "logit")


def base_statistics(base, tokens_NxL: np.ndarray, batch: int) -> dict[str, np.ndarray]:
    """The base model's per-token ``loss`` and ``logit``, float32 N x L (one model, no S axis)."""
    one = jax.jit(lambda p, t: token_statistics(merge(base.graphdef, p)(t), t))
    parts = {name: [] for name in BASE_STATISTICS}
    for lo in range(0, len(tokens_NxL), batch):
        part = tokens_NxL[lo : lo + batch]
        padded = np.zeros((batch, tokens_NxL.shape[1]), np.int32)
        padded[: len(part)] = part
        out = one(base.params, padded)
        for name in BASE_STATISTICS:
            parts[name].append(np.asarray(out[name], np.float32)[: len(part)])
    return {name: np.concatenate(values) for name, values in parts.items()}


def memorization_settings(cfg: ExperimentConfig, dataset: Dataset) -> dict:
    """What ``_measure_memorization`` computes; {} when neither secrets nor text extraction."""
    settings = {}
    layout = dataset.secrets
    if layout is not None:
        num = cfg.score.exposure_samples
        num = dataset.num_samples if num < 0 else min(num, dataset.num_samples)
        settings["exposure"] = {
            "samples": num,
            "exact_limit": cfg.score.exposure_exact_limit,
            "candidates": cfg.score.exposure_candidates,
        }
        settings["secret_extraction"] = {"symbols": layout.num_symbols}
    if cfg.score.extract_tokens:
        settings["text_extraction"] = {
            "prefix": cfg.score.extract_prefix,
            "tokens": cfg.score.extract_tokens,
        }
    return settings


def _measure_memorization(cfg, wd: Workdir, dataset: Dataset, graphdef, params, mesh, done):
    """Exposure and extraction (``seqmia_jax.extraction``), then ``stats/done.json``.

    Writes, next to the statistics: ``secret_mask.npy`` (bool N x L, the
    secret positions: the same for IN and OUT, so never a membership feature),
    and, under ``stats/memorization/``, ``exposure.npy`` (float64 S x K, the first
    K samples), ``secret_extracted.npy`` (int32 S x N, secret symbols reproduced
    by greedy decoding) and ``text_extracted.npy`` (int32 S x N, continuation
    tokens reproduced).
    Rerun whole if interrupted; ``done.json`` comes last.
    """
    from seqmia_jax import extraction

    settings = done.get("memorization", {})
    strategy = resolve_strategy(cfg.train.strategy)
    tokens_NxL = np.asarray(dataset.tokens_NxL, np.int32)
    is_writer = processes.is_primary()
    batch = min(cfg.score.batch_size, dataset.num_samples)
    t0 = time.time()
    files = {}
    layout = dataset.secrets
    if settings.get("exposure", {}).get("samples"):
        exp = settings["exposure"]
        out = extraction.exposures(
            graphdef,
            params,
            mesh,
            strategy,
            tokens_NxL,
            layout,
            np.arange(exp["samples"]),
            exact_limit=exp["exact_limit"],
            num_sampled=exp["candidates"],
            seed=cfg.seed,
        )
        files[measure_file("exposure")] = np.asarray(out["exposure_SxK"], np.float64)
        done["exposure"] = {"exact": bool(out["exact"]), "num_candidates": layout.num_candidates}
        logging.info(
            "exposure of %d samples (%s)", exp["samples"], "exact" if out["exact"] else "estimated"
        )
    if "secret_extraction" in settings:
        files["secret_mask.npy"] = layout.mask_NxL(dataset.seq_len)
        out = extraction.extraction(
            graphdef, params, mesh, strategy, tokens_NxL, layout.start_N, layout.num_symbols, batch
        )
        files[measure_file("secret_extracted")] = np.asarray(out["matched_SxN"], np.int32)
    if "text_extraction" in settings:
        text = settings["text_extraction"]
        start_N = np.full(dataset.num_samples, text["prefix"], np.int64)
        out = extraction.extraction(
            graphdef, params, mesh, strategy, tokens_NxL, start_N, text["tokens"], batch
        )
        files[measure_file("text_extracted")] = np.asarray(out["matched_SxN"], np.int32)
    if settings:
        done["memorization_seconds"] = time.time() - t0
    if is_writer:
        if len(files) > ("secret_mask.npy" in files):
            (wd.stats / MEMORIZATION_DIR).mkdir(exist_ok=True)
        for name in MEMORIZATION_FILES:
            path = wd.stats / name
            if name in files:
                tmp = path.with_suffix(".tmp.npy")
                np.save(tmp, files[name])
                os.replace(tmp, path)
            else:
                path.unlink(missing_ok=True)  # from earlier settings
        write_json(wd.stats / "done.json", done)
    # A stage that follows in the same program (attacks) must see stats/done.json.
    processes.barrier("score.done")

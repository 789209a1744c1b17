"""The pretrain stage: one base model trained on the public corpus, shared by audits.

Legend: W windows of the public corpus, L tokens per window, N audit samples.

``base.source`` says where the base of a fine-tuning audit comes from:

- ``"none"``: no base; shadows train from scratch (the default);
- ``"pretrain"``: ``pretrain(cfg, workdir)`` trains one model on the corpus
  outside the audit pool (``data.load_base_corpus``: no pool window and no
  window overlapping one) into ``base.dir`` (default ``<workdir>/base``);
- ``"checkpoint:<dir>"``: a base directory written by this stage, never trained.

A base directory holds ``checkpoints/`` (orbax, resumable), ``tokenizer.json``
(for subword vocabularies), ``fingerprint.json`` (what it is trained from, written
first) and ``base.json`` (the fingerprint, losses and timing, written last). A
base that exists is reused, never retrained, and many audits can share it; one
that does not match the config is refused with the fields that differ.
"""

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from seqmia_jax import data as data_lib
from seqmia_jax import processes
from seqmia_jax.config import ConfigError, ExperimentConfig
from seqmia_jax.data import Dataset, load_dataset
from seqmia_jax.ensemble import lift, sharding, steps
from seqmia_jax.ensemble.checkpoint import EnsembleCheckpointer
from seqmia_jax.ensemble.finetune import Base
from seqmia_jax.ensemble.loop import TrainLoop, truncate_metrics
from seqmia_jax.ensemble.train import model_builder, resolve_strategy
from seqmia_jax.scoring import base_statistics
from seqmia_jax.workdir import Workdir, WorkdirError, read_json, write_json

BASE_STREAM = 0xBA5E  # folded into the run's seed for the base's init and data order
# Fields a base must share with the config that fine-tunes from it (shapes and vocabulary).
COMPATIBLE = ("model", "vocab_size", "seq_len", "tokenizer", "tokenizer_sha256")
EVAL_WINDOWS = 1024  # public windows the base's train loss is measured on


def base_dir(cfg: ExperimentConfig, workdir: str | Path) -> Path | None:
    """Where the base of ``cfg`` lives; None without one."""
    source = cfg.base.source
    if source == "none":
        return None
    if source.startswith("checkpoint:"):
        return Path(source.split(":", 1)[1])
    return Path(cfg.base.dir) if cfg.base.dir else Path(workdir) / "base"


def _base_train_config(cfg: ExperimentConfig):
    """The base's training settings: the base section's, the rest of ``train``'s, no DP."""
    return dataclasses.replace(
        cfg.train,
        epochs=cfg.base.epochs,
        batch_size=cfg.base.batch_size,
        learning_rate=cfg.base.learning_rate,
        warmup_steps=cfg.base.warmup_steps,
        dp_clip_norm=0.0,
        dp_noise_multiplier=0.0,
        dp_target_epsilon=0.0,
    )


def fingerprint(cfg: ExperimentConfig, dataset: Dataset, corpus) -> dict:
    """What a pretrained base is: its shapes, vocabulary, corpus and training settings."""
    train = _base_train_config(cfg)
    return {
        **_expected(cfg, dataset),
        "dataset": cfg.data.name,
        "corpus_sha256": corpus.sha256,
        "corpus": corpus.description,
        # Named as the config names them, so a mismatch reads "base.epochs: 3 in the base, ...".
        "base": {
            "epochs": train.epochs,
            "batch_size": train.batch_size,
            "learning_rate": train.learning_rate,
            "warmup_steps": train.warmup_steps,
            "max_windows": cfg.base.max_windows,
        },
        "train": {"weight_decay": train.weight_decay, "grad_clip": train.grad_clip},
        "seed": cfg.seed,
        "compute_dtype": cfg.model.compute_dtype,
    }


def fingerprint_sha(record: dict) -> str:
    """A short hash of a base's fingerprint: what work directories record of their base."""
    text = json.dumps(record["fingerprint"], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _differences(have: dict, want: dict, keys) -> list[str]:
    out = []
    for key in keys:
        a, b = have.get(key), want.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += [
                f"{key}.{k}: {a.get(k)!r} in the base, {b.get(k)!r} in the config"
                for k in sorted(set(a) | set(b))
                if a.get(k) != b.get(k)
            ]
        else:
            out.append(f"{key}: {a!r} in the base, {b!r} in the config")
    return out


def _refuse(path: Path, diffs: list[str], fix: str) -> None:
    raise WorkdirError(f"the base in {path} does not match the config ({'; '.join(diffs)}); {fix}")


def _expected(cfg: ExperimentConfig, dataset: Dataset) -> dict:
    """The compatibility fields of ``fingerprint`` (needs no corpus)."""
    model = {
        k: v
        for k, v in dataclasses.asdict(cfg.model).items()
        if k in ("name", "num_layers", "embed_dim", "num_heads", "mlp_ratio")
    }
    return {
        "model": model,
        "vocab_size": dataset.vocab_size,
        "seq_len": dataset.seq_len,
        "tokenizer": cfg.data.tokenizer,
        "tokenizer_sha256": dataset.fingerprint.get("tokenizer_sha256"),
    }


def read_record(cfg: ExperimentConfig, workdir: str | Path, dataset: Dataset) -> dict:
    """The finished base's ``base.json``, checked against the config (one-line errors)."""
    path = base_dir(cfg, workdir)
    done = path / "base.json"
    if not done.exists():
        how = (
            "run `python -m experiments.pretrain` with this config first"
            if cfg.base.source == "pretrain"
            else "base.source='checkpoint:<dir>' needs a directory written by experiments.pretrain"
        )
        raise WorkdirError(f"no finished base in {path} ({done.name} is missing); {how}")
    record = read_json(done)
    if "fingerprint" not in record:
        raise WorkdirError(f"{done} is corrupt: no 'fingerprint' entry")
    diffs = _differences(record["fingerprint"], _expected(cfg, dataset), COMPATIBLE)
    if diffs:
        _refuse(path, diffs, "name a matching base, or another base.dir")
    return record


def load_base(cfg: ExperimentConfig, workdir: str | Path, dataset: Dataset) -> Base:
    """The finished base of ``cfg``: its graphdef, params (one model) and record."""
    record = read_record(cfg, workdir, dataset)
    path = base_dir(cfg, workdir)
    graphdef, params = _abstract_one(cfg, dataset)
    mesh = sharding.make_mesh(1, jax.local_devices()[:1])
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct((1, *x.shape), x.dtype, sharding=sharding.replicated(mesh)),
        params,
    )
    ckpt = EnsembleCheckpointer(path / "checkpoints")
    try:
        restored = ckpt.restore_params(int(record["step"]), abstract)
    except Exception as error:  # noqa: BLE001  (any failure to read it: one message)
        raise WorkdirError(
            f"the base checkpoint (step {record.get('step')}) in {path} cannot be read "
            f"({type(error).__name__}); delete {path} and pretrain again"
        ) from None
    finally:
        ckpt.close()
    return Base(graphdef, jax.tree.map(lambda x: jnp.asarray(x)[0], restored), record)


def _abstract_one(cfg: ExperimentConfig, dataset: Dataset):
    build = model_builder(cfg, dataset)
    return nnx.split(nnx.eval_shape(lambda: build(nnx.Rngs(0))))


def mean_loss(graphdef, params, tokens_WxL: np.ndarray, batch: int = 256) -> float:
    """Mean per-token loss of one model on ``tokens_WxL`` (the score stage's statistics)."""
    loss_WxL = base_statistics(Base(graphdef, params, {}), np.asarray(tokens_WxL, np.int32), batch)
    return float(loss_WxL["loss"].astype(np.float64).mean())


def pretrain(
    cfg: ExperimentConfig,
    workdir: str | Path,
    *,
    dataset: Dataset | None = None,
    stop_after_steps: int | None = None,
) -> dict:
    """Trains (or resumes, or reuses) the base of ``cfg``; returns its ``base.json``."""
    if cfg.base.source == "none":
        raise ConfigError("base.source is 'none': this config fine-tunes from no base")
    if jax.process_count() > 1:
        raise ConfigError(
            "experiments.pretrain trains one model: run it in one process, then the audit "
            "(which may be multi-host) reuses the base"
        )
    dataset = dataset or load_dataset(cfg.data)
    path = base_dir(cfg, workdir)
    if cfg.base.source.startswith("checkpoint:"):
        return read_record(cfg, workdir, dataset)
    corpus = data_lib.load_base_corpus(cfg.data)
    want = fingerprint(cfg, dataset, corpus)
    with Workdir(path).lock():
        return _pretrain_locked(cfg, path, dataset, corpus, want, stop_after_steps)


def _pretrain_locked(cfg, path: Path, dataset, corpus, want, stop_after_steps) -> dict:
    done_path, claim = path / "base.json", path / "fingerprint.json"
    for existing in (done_path, claim):
        if existing.exists():
            have = read_json(existing).get("fingerprint")
            diffs = _differences(have or {}, want, list(want))
            if diffs:
                _refuse(path, diffs, "use another base.dir, or delete it to pretrain again")
    if done_path.exists():
        record = read_json(done_path)
        logging.info("base in %s is finished (step %d): reused", path, record["step"])
        return record
    write_json(claim, {"fingerprint": want})
    if dataset.tokenizer is not None and dataset.kind == "text":
        dataset.tokenizer.save(path / "tokenizer.json")

    tokens_WxL = np.asarray(corpus.tokens_WxL, np.int32)
    if cfg.base.max_windows:
        tokens_WxL = tokens_WxL[: cfg.base.max_windows]
    train_cfg = _base_train_config(cfg)
    sched = steps.Schedule(train_cfg.batch_size, len(tokens_WxL), train_cfg.epochs)
    total = sched.total_steps
    tx = steps.make_optimizer(train_cfg, total)
    mesh = sharding.make_mesh(1, jax.local_devices()[:1])
    build = model_builder(cfg, dataset)
    graphdef, _ = _abstract_one(cfg, dataset)
    init_key, data_key = jax.random.split(jax.random.fold_in(jax.random.key(cfg.seed), BASE_STREAM))

    def init_one(init_key, data_key):
        _, params = nnx.split(build(nnx.Rngs(jax.random.wrap_key_data(init_key))))
        return {"params": params, "opt_state": tx.init(params), "key": data_key}

    keys = [np.asarray(jax.random.key_data(k))[None] for k in (init_key, data_key)]
    state = lift.over_models(init_one, mesh, "vmap", in_axes=(0, 0))(
        *sharding.put_sharded(keys, mesh)
    )
    ckpt = EnsembleCheckpointer(path / "checkpoints")
    step, restored = ckpt.restore_newest_intact(state)
    if step:
        state = restored
        truncate_metrics(path / "metrics.jsonl", step)
        logging.info("resuming the base from its checkpoint at step %d of %d", step, total)
    logging.info(
        "pretraining the base on %s for %d steps (%d epochs)",
        corpus.description,
        total,
        sched.epochs,
    )
    chunk_len = max(1, min(train_cfg.log_every, total))
    loop = TrainLoop(
        make_chunk=lambda k: steps.make_model_chunk(graphdef, tx, sched, k),
        mesh=mesh,
        strategy=resolve_strategy(train_cfg.strategy),
        map_chunk=0,
        chunk_len=chunk_len,
        checkpoint_every=train_cfg.checkpoint_every,
        tokens_per_step=train_cfg.batch_size * tokens_WxL.shape[1],
        metrics=path / "metrics.jsonl",
    )
    data = (
        sharding.put_replicated(tokens_WxL, mesh),
        sharding.put_sharded(np.arange(len(tokens_WxL), dtype=np.int32)[None], mesh),
    )
    t0 = time.time()
    state, step, _ = loop.run(state, data, (), step, total, ckpt, stop_after_steps)
    if step < total:
        return {"step": step, "finished": False}
    params = jax.tree.map(lambda x: np.asarray(x)[0], state["params"])
    record = {
        "fingerprint": want,
        "step": total,
        "finished": True,
        "seconds": time.time() - t0,
        "num_windows": len(tokens_WxL),
        "train_loss": mean_loss(graphdef, params, tokens_WxL[:EVAL_WINDOWS]),
        "test_loss": mean_loss(graphdef, params, dataset.tokens_NxL),  # the audit pool: unseen
    }
    if processes.is_primary():
        write_json(done_path, record)
    logging.info(
        "base finished: train loss %.4f, audit-pool loss %.4f (%.0f s)",
        record["train_loss"],
        record["test_loss"],
        record["seconds"],
    )
    return record

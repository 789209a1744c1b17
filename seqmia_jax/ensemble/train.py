"""The training stage: S shadow models trained as one ensemble, resumable.

Legend: S shadow models, N audit samples, M = N/2 samples per model (the
largest M_s under poisson membership), L positions.

``train(cfg, workdir)`` is the whole stage. Re-running it after an interruption
resumes from the latest checkpoint and ends with the same parameters as an
uninterrupted run; re-running a finished run does nothing and says so.
"""

import time
from pathlib import Path

import jax
import numpy as np
from absl import logging
from flax import nnx

from seqmia_jax import membership, processes
from seqmia_jax.config import ExperimentConfig
from seqmia_jax.data import Dataset, load_dataset, training_copies
from seqmia_jax.ensemble import dp, finetune, lift, memory, sharding, steps
from seqmia_jax.ensemble.checkpoint import EnsembleCheckpointer
from seqmia_jax.ensemble.loop import TrainingError, TrainLoop, truncate_metrics
from seqmia_jax.models import build_model
from seqmia_jax.workdir import Workdir, WorkdirError, holds_lock, read_json, write_json


def resolve_strategy(strategy: str) -> str:
    """``auto`` is vmap on accelerators and lax.map on CPU (measured faster there).

    On accelerators ``train`` may still chunk the vmap when the models do not
    all fit in memory (``ensemble/memory.py``).
    """
    if strategy != "auto":
        return strategy
    return "map" if jax.default_backend() == "cpu" else "vmap"


def model_builder(cfg: ExperimentConfig, dataset: Dataset):
    """Returns ``build(rngs) -> nnx.Module`` for one model of this run."""

    def build(rngs: nnx.Rngs) -> nnx.Module:
        return build_model(
            cfg.model,
            vocab_size=dataset.vocab_size,
            seq_len=dataset.tokens_NxL.shape[1],
            image_shape=dataset.image_shape,
            rngs=rngs,
        )

    return build


def model_keys(seed: int, num_models: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-model init and data-order keys (raw uint32), independent of device count."""
    base = jax.random.key(seed)
    derive = jax.jit(lambda s: jax.random.key_data(jax.random.split(jax.random.fold_in(base, s))))
    keys_Sx2x2 = np.stack([np.asarray(derive(np.int32(s))) for s in range(num_models)])
    return keys_Sx2x2[:, 0], keys_Sx2x2[:, 1]


def init_ensemble(cfg: ExperimentConfig, dataset: Dataset, mesh, tx):
    """Initializes S independent models (and their optimizer states) on the mesh."""
    build = model_builder(cfg, dataset)
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: build(nnx.Rngs(0))))
    init_keys, data_keys = model_keys(cfg.seed, cfg.num_shadow_models)

    def init_one(init_key, data_key):
        _, params = nnx.split(build(nnx.Rngs(jax.random.wrap_key_data(init_key))))
        return {"params": params, "opt_state": tx.init(params), "key": data_key}

    # Initialization is cheap next to training: vmap it whatever the training strategy.
    init = lift.over_models(init_one, mesh, "vmap", in_axes=(0, 0))
    state = init(*sharding.put_sharded((init_keys, data_keys), mesh))
    return graphdef, state


def load_or_make_membership(cfg: ExperimentConfig, wd: Workdir) -> np.ndarray:
    """keep_SxN from the work directory, or made from the seed and saved by process 0.

    Every process computes the same keep_SxN from the seed, so none waits for
    process 0's file (which is renamed into place, never seen half-written).
    """
    if wd.membership.exists():
        keep_SxN = np.load(wd.membership)
        membership.check_membership(keep_SxN, str(wd.membership), cfg.membership)
        return keep_SxN
    keep_SxN = membership.draw_membership(
        cfg.membership,
        cfg.num_shadow_models,
        cfg.data.num_samples,
        cfg.seed,
        training_copies(cfg.data),
    )
    if processes.is_primary():
        tmp = wd.membership.with_suffix(".tmp.npy")
        np.save(tmp, keep_SxN)
        tmp.replace(wd.membership)
    return keep_SxN


def training_data(
    cfg: ExperimentConfig, dataset: Dataset, keep_SxN: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """What each model trains on: a token table and each model's rows in it, ``(T x L, S x M)``.

    Normally the table is the audit pool and model s's rows are its IN samples
    (duplicated ones repeated); under poisson membership they are padded with
    ``membership.PAD`` to the largest training set. With secrets every model
    trains on every carrier, OUT models with fresh secrets
    (``SecretLayout.training_data``).
    """
    if dataset.secrets is not None:
        return dataset.secrets.training_data(dataset.tokens_NxL, keep_SxN)
    if cfg.membership == "poisson":
        rows_SxM = membership.padded_in_indices(keep_SxN, training_copies(cfg.data))
    else:
        rows_SxM = membership.in_indices(keep_SxN, training_copies(cfg.data))
    return np.asarray(dataset.tokens_NxL, np.int32), rows_SxM


def nominal_rows(cfg: ExperimentConfig, rows_SxM: np.ndarray) -> float | None:
    """N/2, the expected rows per model, when training sets differ in size (else None).

    DP-SGD's sample rate is then batch_size / (N/2) for every model
    (``dp.settings_for``); DP-SGD refuses duplicated samples, so a row is a sample.
    """
    return cfg.data.num_samples / 2 if membership.is_padded(rows_SxM) else None


@holds_lock
def train(
    cfg: ExperimentConfig,
    workdir: str | Path,
    *,
    dataset: Dataset | None = None,
    stop_after_steps: int | None = None,
    num_devices: int | None = None,
) -> dict:
    """Trains (or resumes, or confirms) the ensemble of ``cfg`` in ``workdir``.

    Args:
      stop_after_steps: stop (after checkpointing) once this many steps are done;
        used by tests to simulate an interruption.
      num_devices: use only the first devices (default: all).

    Returns:
      The contents of ``train_done.json`` (or a partial summary if stopped early).
    """
    wd = Workdir(workdir)
    dataset = dataset or load_dataset(cfg.data)
    wd.bind(cfg, run_fingerprint(cfg, wd.path, dataset))
    if wd.train_done.exists():
        summary = read_json(wd.train_done)
        logging.info(
            "training already finished in %s (step %d): nothing to do", wd.path, summary["step"]
        )
        return summary

    keep_SxN = load_or_make_membership(cfg, wd)
    table_TxL, in_idx_SxM = training_data(cfg, dataset, keep_SxN)
    sched = steps.Schedule(
        cfg.train.batch_size,
        in_idx_SxM.shape[1],
        cfg.train.epochs,
        padded=membership.is_padded(in_idx_SxM),
    )
    total = sched.total_steps
    tx = steps.make_optimizer(cfg.train, total)
    dp_settings, dp_record = dp.settings_for(
        cfg.train, in_idx_SxM.shape[1], total, nominal_rows(cfg, in_idx_SxM)
    )
    if dp_record is not None:
        logging.info(
            "DP-SGD: sigma %.4g, clip %.4g, q %.4g, %d steps: epsilon %.4g at delta %g (%s)",
            dp_record["noise_multiplier"],
            dp_record["clip_norm"],
            dp_record["sample_rate"],
            total,
            dp_record["epsilon"],
            dp_record["delta"],
            dp_record["accountant"],
        )
    mesh = sharding.make_mesh(cfg.num_shadow_models, jax.devices()[:num_devices])
    strategy = resolve_strategy(cfg.train.strategy)
    base = load_base_of(cfg, wd.path, dataset)
    if base is None:
        graphdef, state = init_ensemble(cfg, dataset, mesh, tx)
        frozen = None
    else:
        _, data_keys = model_keys(cfg.seed, cfg.num_shadow_models)
        graphdef, state, frozen = finetune.init_finetuned(cfg, base, mesh, tx, data_keys)
        memory_record = finetune.memory_bytes(cfg, base, tx, state, frozen)
        logging.info(
            "fine-tuning (%s) from base %s: %s bytes of parameters and optimizer state "
            "(full fine-tuning: %s)",
            cfg.train.finetune,
            fingerprint_sha_of(base),
            f"{memory_record['ensemble']:,}",
            f"{memory_record['full_finetune']:,}",
        )
    if processes.is_primary() and dataset.tokenizer is not None and dataset.kind == "text":
        dataset.tokenizer.save(wd.path / "tokenizer.json")

    ckpt = EnsembleCheckpointer(wd.checkpoints)
    step, restored = ckpt.restore_newest_intact(state)
    if step:
        state = restored
        if processes.is_primary():
            truncate_metrics(wd.metrics, step)
        logging.info("resuming from the checkpoint at step %d of %d", step, total)

    tokens_NxL = sharding.put_replicated(table_TxL, mesh)
    in_idx = sharding.put_sharded(in_idx_SxM, mesh)
    extra = () if frozen is None else (sharding.put_replicated(frozen, mesh),)
    chunk_len = max(1, min(cfg.train.log_every, total))
    map_chunk = cfg.train.map_chunk
    if cfg.train.strategy == "auto" and jax.default_backend() != "cpu":
        strategy, map_chunk = memory.auto_strategy(
            steps.make_model_chunk(graphdef, tx, sched, chunk_len, dp_settings),
            tokens_NxL,
            state,
            in_idx,
            cfg.num_shadow_models // mesh.size,
            *extra,
        )
    logging.info(
        "training %d models (%s) for %d steps (%d epochs x %d steps) on %d device(s)",
        cfg.num_shadow_models,
        strategy,
        total,
        cfg.train.epochs,
        sched.steps_per_epoch,
        mesh.size,
    )
    loop = TrainLoop(
        make_chunk=lambda k: steps.make_model_chunk(graphdef, tx, sched, k, dp_settings),
        mesh=mesh,
        strategy=strategy,
        map_chunk=map_chunk,
        chunk_len=chunk_len,
        checkpoint_every=cfg.train.checkpoint_every,
        tokens_per_step=cfg.num_shadow_models * cfg.train.batch_size * table_TxL.shape[1],
        metrics=wd.metrics,
    )
    state, step, record = loop.run(
        state, (tokens_NxL, in_idx), extra, step, total, ckpt, stop_after_steps
    )
    if step < total:
        return {"step": step, "finished": False}
    summary = {
        "step": total,
        "finished": True,
        "final_loss_mean": record["loss_mean"] if record else None,
        "strategy": strategy,
        "num_devices": mesh.size,
        "seconds": time.time() - loop.start_time,
        "tokens_per_s": loop.steady_tokens_per_s,
    }
    if dp_record is not None:
        summary["dp"] = dp_record
    if base is not None:
        summary["finetune"] = {
            "mode": cfg.train.finetune,
            "base": fingerprint_sha_of(base),
            "base_train_loss": base.record["train_loss"],
            "base_test_loss": base.record["test_loss"],  # on the audit pool, which it never saw
            "memory_bytes": memory_record,
        }
    if processes.is_primary():
        write_json(wd.train_done, summary)
    # A stage that follows in the same program (scoring) must see train_done.json.
    processes.barrier("train.done")
    return summary


def load_base_of(cfg: ExperimentConfig, workdir: Path, dataset: Dataset):
    """The base that ``cfg`` fine-tunes from (``seqmia_jax.pretrain``), or None."""
    if cfg.base.source == "none":
        return None
    from seqmia_jax import pretrain  # it imports this module

    return pretrain.load_base(cfg, workdir, dataset)


def fingerprint_sha_of(base) -> str:
    from seqmia_jax import pretrain

    return pretrain.fingerprint_sha(base.record)


def run_fingerprint(cfg: ExperimentConfig, workdir: str | Path, dataset: Dataset) -> dict:
    """What a work directory records of its inputs: the dataset's fingerprint, and its base's.

    A directory fine-tuned from one base is thereby refused for another.
    """
    if cfg.base.source == "none":
        return dataset.fingerprint
    from seqmia_jax import pretrain

    record = pretrain.read_record(cfg, workdir, dataset)
    return {**dataset.fingerprint, "base": pretrain.fingerprint_sha(record)}


def load_params(cfg: ExperimentConfig, workdir: str | Path, dataset: Dataset, mesh=None):
    """Loads the final stacked params of a finished run: ``(graphdef, params_S)``.

    Under LoRA ``params_S`` is ``(adapters_S, lift.Shared(frozen base))``:
    ``models.build.merge`` and ``lift.over_models`` take it as it is.
    """
    wd = Workdir(workdir)
    if not wd.train_done.exists():
        raise TrainingError(f"training has not finished in {wd.path}; run the train stage first")
    mesh = mesh or sharding.make_mesh(cfg.num_shadow_models)
    base = load_base_of(cfg, wd.path, dataset)
    frozen = None
    if base is None:
        graphdef, abstract_params = abstract_ensemble_params(cfg, dataset, mesh)
    else:
        graphdef, one, frozen = finetune.abstract_trained(cfg, base)
        abstract_params = _stacked_abstract(one, cfg.num_shadow_models, mesh)
    final = int(read_json(wd.train_done)["step"])
    ckpt = EnsembleCheckpointer(wd.checkpoints)
    try:
        params = ckpt.restore_params(final, abstract_params)
    except Exception as error:  # noqa: BLE001  (any failure to read it: one message)
        raise WorkdirError(
            f"the final checkpoint (step {final}) in {wd.checkpoints} cannot be read "
            f"({type(error).__name__}); delete {wd.train_done.name} and re-run training, "
            "which resumes from the newest intact checkpoint"
        ) from None
    finally:
        ckpt.close()
    if frozen is not None:
        return graphdef, (params, lift.Shared(sharding.put_replicated(frozen, mesh)))
    return graphdef, params


def abstract_ensemble_params(cfg: ExperimentConfig, dataset: Dataset, mesh):
    """``(graphdef, params_S)`` with shape-only leaves, sharded over S, for restoring."""
    build = model_builder(cfg, dataset)
    graphdef, params = nnx.split(nnx.eval_shape(lambda: build(nnx.Rngs(0))))
    return graphdef, _stacked_abstract(params, cfg.num_shadow_models, mesh)


def _stacked_abstract(params, num_models: int, mesh):
    shadow = sharding.shadow_sharding(mesh)
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct((num_models, *x.shape), x.dtype, sharding=shadow), params
    )

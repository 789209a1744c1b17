"""How many models of an ensemble to vmap at once, from the device's memory budget.

Legend: S_loc models on one device, M samples per model.

XLA reports the memory one compiled program needs (``memory_analysis``). The
single-model training chunk is compiled once for that; vmapping k models
needs about k times its per-model part (parameters, optimizer state,
activations), while the token table is shared. ``auto`` then vmaps all local
models when they fit in ``MEMORY_FRACTION`` of the device, and otherwise
runs ``lax.map`` over chunks of as many models as fit.
"""

import jax
import numpy as np
from absl import logging

from seqmia_jax.config import ConfigError

MEMORY_FRACTION = 0.8  # of the device's bytes_limit; the rest is XLA's and the runtime's


def device_bytes_limit(device: jax.Device) -> int | None:
    """Memory the allocator may use on ``device``; None where unknown (CPU)."""
    stats = device.memory_stats()
    return int(stats["bytes_limit"]) if stats and "bytes_limit" in stats else None


def program_bytes(model_chunk, tokens_NxL, state_one, in_idx_M, step0, *frozen) -> int | None:
    """Device bytes of one model's compiled training chunk (arguments, outputs, temporaries).

    Arguments may be arrays or ``jax.ShapeDtypeStruct``s; None where XLA
    gives no memory analysis. ``frozen``: the LoRA base, if any.
    """
    lowered = jax.jit(model_chunk, donate_argnums=(1,)).lower(
        tokens_NxL, state_one, in_idx_M, step0, *frozen
    )
    analysis = lowered.compile().memory_analysis()
    if analysis is None:
        return None
    return int(
        analysis.argument_size_in_bytes
        + analysis.output_size_in_bytes
        - analysis.alias_size_in_bytes
        + analysis.temp_size_in_bytes
    )


def models_per_chunk(
    per_model_bytes: int, num_local_models: int, bytes_limit: int, shared_bytes: int = 0
) -> int:
    """The number of models to vmap at once: all of them if they fit, else as many as fit."""
    budget = MEMORY_FRACTION * bytes_limit - shared_bytes
    fit = int(budget // per_model_bytes)
    if fit < 1:
        raise ConfigError(
            f"one model's training step needs {per_model_bytes / 2**30:.2f} GiB, more than "
            f"{MEMORY_FRACTION:.0%} of the device's {bytes_limit / 2**30:.2f} GiB; lower "
            "train.batch_size or the model size, or set model.remat=True"
        )
    return min(num_local_models, fit)


def auto_strategy(model_chunk, tokens_NxL, state_S, in_idx_SxM, num_local_models: int, *frozen):
    """(strategy, map_chunk) for ``train.strategy='auto'`` on an accelerator.

    ``frozen`` (the LoRA base, stored once) counts as shared, like the tokens.
    """
    limit = device_bytes_limit(jax.local_devices()[0])
    if limit is None:
        return "vmap", 0
    state_one = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), state_S)
    in_idx_one = jax.ShapeDtypeStruct(in_idx_SxM.shape[1:], in_idx_SxM.dtype)
    tokens = jax.ShapeDtypeStruct(tokens_NxL.shape, tokens_NxL.dtype)
    frozen_abstract = [
        jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), f) for f in frozen
    ]
    try:
        total = program_bytes(
            model_chunk,
            tokens,
            state_one,
            in_idx_one,
            jax.ShapeDtypeStruct((), np.int32),
            *frozen_abstract,
        )
    except (RuntimeError, NotImplementedError, ValueError) as error:  # no estimate: vmap all
        logging.warning("memory: no estimate of a model's footprint (%s); vmapping all", error)
        total = None
    if total is None:
        return "vmap", 0
    shared = int(np.prod(tokens_NxL.shape)) * np.dtype(tokens_NxL.dtype).itemsize
    shared += sum(x.nbytes for f in frozen for x in jax.tree.leaves(f))
    per_model = max(1, total - shared)
    chunk = models_per_chunk(per_model, num_local_models, limit, shared)
    logging.info(
        "memory: %.1f MiB per model, %.1f GiB budget: vmap %d of %d local models at once",
        per_model / 2**20,
        MEMORY_FRACTION * limit / 2**30,
        chunk,
        num_local_models,
    )
    return ("vmap", 0) if chunk == num_local_models else ("map", chunk)

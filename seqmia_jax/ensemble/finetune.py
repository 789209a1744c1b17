"""Shadow models that start from a pretrained base: full fine-tuning and LoRA.

Legend: S shadow models.

- ``full``: every model starts from the base's weights (the same for all S)
  with a fresh optimizer, and trains every weight.
- ``lora``: the base is frozen and kept once, broadcast to every model
  (``lift``'s ``in_axes=None``); each model trains only its low-rank adapters
  (``models/lora.py``), which are all that the ensemble's state, optimizer and
  checkpoints hold. The adapters start the same in every model (A drawn from
  the run's seed, B zero, so every shadow equals the base at step 0).

Either way the shadows differ only in their training data and its order, as
fine-tuned models from one public base do.
"""

import dataclasses

import jax
from flax import nnx

from seqmia_jax.config import TrainConfig
from seqmia_jax.ensemble import lift, sharding
from seqmia_jax.models import lora

LORA_STREAM = 0x10A  # folded into the run's seed for the adapters' A matrices


@dataclasses.dataclass(frozen=True)
class Base:
    """One pretrained model: ``(graphdef, params)`` without adapters, and its record."""

    graphdef: nnx.GraphDef
    params: nnx.State
    record: dict


def lora_graphdef(cfg: TrainConfig, base: Base) -> nnx.GraphDef:
    """The graphdef of the adapted model, split as (adapters, frozen)."""
    abstract = nnx.eval_shape(lambda: _adapted(cfg, base, jax.random.key(0)))
    graphdef, _, _ = nnx.split(abstract, nnx.LoRAParam, nnx.Param)
    return graphdef


def _adapted(cfg: TrainConfig, base: Base, key) -> nnx.Module:
    model = nnx.merge(base.graphdef, base.params)
    return lora.add_lora(
        model, cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets, nnx.Rngs(params=key)
    )


def lora_split(cfg: TrainConfig, base: Base, seed: int):
    """(graphdef, adapters, frozen) of the base with fresh adapters (A from ``seed``)."""
    graphdef = lora_graphdef(cfg, base)

    @jax.jit
    def split(params, key):
        model = _adapted(cfg, dataclasses.replace(base, params=params), key)
        _, adapters, frozen = nnx.split(model, nnx.LoRAParam, nnx.Param)
        return adapters, frozen

    key = jax.random.fold_in(jax.random.key(seed), LORA_STREAM)
    adapters, frozen = split(base.params, key)
    return graphdef, adapters, frozen


def init_finetuned(cfg, base: Base, mesh, tx, data_keys):
    """``(graphdef, state_S, frozen)``: S models starting from ``base`` (``frozen``: None for full).

    ``state_S`` is ``{"params", "opt_state", "key"}`` stacked over S, as for
    models trained from scratch; under LoRA its params are the adapters only.
    """
    if cfg.train.finetune == "lora":
        graphdef, start, frozen = lora_split(cfg.train, base, cfg.seed)
    else:
        graphdef, start, frozen = base.graphdef, base.params, None

    def init_one(params, data_key):
        return {"params": params, "opt_state": tx.init(params), "key": data_key}

    init = lift.over_models(init_one, mesh, "vmap", in_axes=(None, 0))
    state = init(sharding.put_replicated(start, mesh), sharding.put_sharded(data_keys, mesh))
    return graphdef, state, frozen


def abstract_trained(cfg, base: Base):
    """``(graphdef, params, frozen)`` of ONE model, shape-only except ``frozen`` (LoRA only)."""
    if cfg.train.finetune == "lora":
        graphdef, adapters, frozen = lora_split(cfg.train, base, cfg.seed)
        return graphdef, adapters, frozen
    return base.graphdef, base.params, None


def tree_bytes(tree) -> int:
    """Bytes of every array leaf of ``tree`` (shapes and dtypes only)."""
    return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree)))


def memory_bytes(cfg, base: Base, tx, state_S, frozen) -> dict:
    """Parameter and optimizer bytes of this ensemble, beside full fine-tuning's.

    ``ensemble`` counts the trained state of all S models plus the frozen base
    once; ``full_finetune`` is what S fully fine-tuned models of this base
    with this optimizer would hold.
    """
    num_models = cfg.num_shadow_models
    full_opt = jax.eval_shape(tx.init, base.params)
    out = {
        "base": tree_bytes(base.params),
        "frozen": tree_bytes(frozen) if frozen is not None else 0,
        "trained_params": tree_bytes(state_S["params"]),
        "optimizer": tree_bytes(state_S["opt_state"]),
        "full_finetune": num_models * (tree_bytes(base.params) + tree_bytes(full_opt)),
    }
    out["ensemble"] = out["frozen"] + out["trained_params"] + out["optimizer"]
    return out

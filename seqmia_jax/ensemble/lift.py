"""The one place the shadow-model (S) axis is added to a one-model function.

Legend: S shadow models (S_loc: on one device of the mesh).

Everything that runs on all S models (initialization, the training chunk,
scoring) is written for ONE model and lifted here by ``over_models``. The
strategies:

- ``vmap``: all local models batched into one program (accelerators);
- ``map``: ``lax.map`` over the local models inside one jitted program, one
  at a time or ``map_chunk`` at a time (a chunked vmap). On a few CPU cores it
  is faster than vmap, whose batched matmuls are slow there, and on an
  accelerator it bounds memory when all models do not fit at once;
- ``loop``: the same jitted one-model function called once per model from
  Python, on one device, the sequential baseline the benchmark compares against.

For ``vmap`` and ``map`` the S axis is split over the mesh's ``shadow`` axis
with ``shard_map``, so each device runs only its own models and no collective
is needed; ``loop`` first gathers its arguments onto one device.

An argument with a leading S axis may hold a ``Shared`` subtree: one value
that every model sees whole, such as the frozen base under LoRA adapters. It
is broadcast (``in_axes=None``), never copied S times.
"""

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec

from seqmia_jax.ensemble.sharding import SHADOW_AXIS

STRATEGIES = ("vmap", "map", "loop")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Shared:
    """Marks ``value`` inside a per-model argument as the same for every model."""

    value: Any


def _is_shared(x) -> bool:
    return isinstance(x, Shared)


def _leaf_axes(arg, axis):
    """The per-leaf axes of one argument: None for Shared subtrees and unbatched arguments."""
    if axis is None:
        return None
    return jax.tree.map(lambda x: None if _is_shared(x) else 0, arg, is_leaf=_is_shared)


def _split_shared(arg):
    """(the batched leaves, a function rebuilding ``arg`` from new batched leaves)."""
    leaves, treedef = jax.tree.flatten(arg, is_leaf=_is_shared)
    batched = [i for i, leaf in enumerate(leaves) if not _is_shared(leaf)]

    def rebuild(new):
        out = list(leaves)
        for i, leaf in zip(batched, new):
            out[i] = leaf
        return jax.tree.unflatten(treedef, out)

    return [leaves[i] for i in batched], rebuild


def over_models(
    fn: Callable,
    mesh: Mesh,
    strategy: str,
    *,
    in_axes: Sequence[int | None],
    map_chunk: int = 0,
    donate_argnums: tuple[int, ...] = (),
) -> Callable:
    """Lifts ``fn(*args)`` for one model to all S models.

    Args:
      fn: a pure function of one model's positional arguments; every output
        is per model and gains a leading S axis.
      mesh: a mesh whose ``shadow`` axis splits the S models over devices.
      strategy: ``vmap``, ``map`` or ``loop`` (see the module docstring).
      in_axes: per positional argument, 0 if it carries a leading S axis (one
        slice per model) or None if every model sees the same value.
      map_chunk: under ``map``, models per vmapped chunk (0 or 1: one at a time).
      donate_argnums: arguments whose buffers the jitted program may reuse.

    Returns:
      The S-model function, jitted (``vmap``/``map``) or a loop over a jitted
      one-model function (``loop``).
    """
    in_axes = tuple(in_axes)
    if any(axis not in (0, None) for axis in in_axes):
        raise ValueError(f"in_axes entries must be 0 or None; got {in_axes}")
    if strategy == "loop":
        return _loop(fn, in_axes, donate_argnums)
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown ensemble strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    per_model = [i for i, axis in enumerate(in_axes) if axis == 0]
    shadow = PartitionSpec(SHADOW_AXIS)

    def local(*args):
        if strategy == "vmap":
            axes = tuple(_leaf_axes(arg, axis) for arg, axis in zip(args, in_axes))
            return jax.vmap(fn, in_axes=axes)(*args)
        splits = [_split_shared(args[i]) for i in per_model]

        def one(sliced):
            full = list(args)
            for i, (_, rebuild), x in zip(per_model, splits, sliced):
                full[i] = rebuild(x)
            return fn(*full)

        return jax.lax.map(
            one,
            tuple(batched for batched, _ in splits),
            batch_size=map_chunk if map_chunk > 1 else None,
        )

    def sharded(*args):
        specs = tuple(
            jax.tree.map(lambda a: PartitionSpec() if a is None else shadow, axes)
            if (axes := _leaf_axes(arg, axis)) is not None
            else PartitionSpec()
            for arg, axis in zip(args, in_axes)
        )
        return jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=shadow)(*args)

    return jax.jit(sharded, donate_argnums=donate_argnums)


def _loop(fn: Callable, in_axes: tuple[int | None, ...], donate_argnums) -> Callable:
    jitted = jax.jit(fn, donate_argnums=donate_argnums)

    def run(*args):
        # One device holds everything, so slicing model s is a local copy; slicing
        # an array sharded over many devices op by op would start a cross-device
        # program per model, whose rendezvous can stall on a few CPU cores.
        device = jax.local_devices()[0]
        args = jax.device_put(list(args), device)
        splits = [_split_shared(x) if axis == 0 else None for x, axis in zip(args, in_axes)]
        num_models = next(split[0][0].shape[0] for split in splits if split is not None)
        outs = [
            jitted(
                *(
                    x if split is None else split[1]([leaf[s] for leaf in split[0]])
                    for x, split in zip(args, splits)
                )
            )
            for s in range(num_models)
        ]
        return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)

    return run

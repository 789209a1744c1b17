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
"""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec

from seqmia_jax.ensemble.sharding import SHADOW_AXIS

STRATEGIES = ("vmap", "map", "loop")


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

    def local(*args):
        if strategy == "vmap":
            return jax.vmap(fn, in_axes=in_axes)(*args)

        def one(sliced):
            full = list(args)
            for i, x in zip(per_model, sliced):
                full[i] = x
            return fn(*full)

        return jax.lax.map(
            one,
            tuple(args[i] for i in per_model),
            batch_size=map_chunk if map_chunk > 1 else None,
        )

    shadow = PartitionSpec(SHADOW_AXIS)
    sharded = jax.shard_map(
        local,
        mesh=mesh,
        in_specs=tuple(shadow if axis == 0 else PartitionSpec() for axis in in_axes),
        out_specs=shadow,
    )
    return jax.jit(sharded, donate_argnums=donate_argnums)


def _loop(fn: Callable, in_axes: tuple[int | None, ...], donate_argnums) -> Callable:
    jitted = jax.jit(fn, donate_argnums=donate_argnums)

    def run(*args):
        # One device holds everything, so slicing model s is a local copy; slicing
        # an array sharded over many devices op by op would start a cross-device
        # program per model, whose rendezvous can stall on a few CPU cores.
        device = jax.local_devices()[0]
        args = jax.device_put(list(args), device)
        num_models = next(
            jax.tree.leaves(x)[0].shape[0] for x, axis in zip(args, in_axes) if axis == 0
        )
        outs = [
            jitted(
                *(
                    jax.tree.map(lambda leaf, s=s: leaf[s], x) if axis == 0 else x
                    for x, axis in zip(args, in_axes)
                )
            )
            for s in range(num_models)
        ]
        return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)

    return run

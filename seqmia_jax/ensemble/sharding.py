"""Device mesh for the ensemble: the S axis is split over a 1-D ``shadow`` mesh axis.

Every array with a leading S axis (parameters, optimizer state, keys, IN
indices, statistics) is sharded along it; the dataset is replicated. Across
hosts (``jax.distributed``) the same mesh spans every device of every process.

Which process writes files, and how processes wait for each other, is in
``seqmia_jax.processes``.
"""

import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

SHADOW_AXIS = "shadow"


def make_mesh(num_models: int, devices: list | None = None) -> Mesh:
    """A 1-D mesh over as many devices as evenly divide ``num_models``."""
    devices = list(jax.devices() if devices is None else devices)
    count = math.gcd(num_models, len(devices))
    if count < len(devices) and jax.process_count() > 1:
        raise ValueError(
            f"num_shadow_models={num_models} must be divisible by the {len(devices)} devices "
            "of a multi-host run"
        )
    return Mesh(np.asarray(devices[:count]), (SHADOW_AXIS,))


def shadow_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of arrays whose leading axis is S."""
    return NamedSharding(mesh, PartitionSpec(SHADOW_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def put_sharded(tree, mesh: Mesh):
    """Places every leaf of an S-leading pytree (host numpy or global arrays) on the mesh.

    In a multi-process run each process passes the full host array and keeps
    only its addressable shards.
    """
    sharding = shadow_sharding(mesh)

    def place(x):
        if isinstance(x, jax.Array) and x.sharding == sharding:
            return x
        if jax.process_count() == 1:
            return jax.device_put(x, sharding)
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

    return jax.tree.map(place, tree)


def put_replicated(tree, mesh: Mesh):
    """Places every leaf of ``tree`` (host numpy or arrays), whole, on every device of the mesh."""
    if jax.process_count() == 1:
        return jax.device_put(tree, replicated(mesh))

    def place(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, replicated(mesh), lambda idx: x[idx])

    return jax.tree.map(place, tree)


def to_host(tree):
    """Gathers a (possibly multi-host) sharded pytree to numpy on every process."""
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    from jax.experimental import multihost_utils

    return jax.tree.map(
        lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True)), tree
    )

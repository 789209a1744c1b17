"""Multi-process coordination for the stages that read and write the work directory.

Rule for files: every process computes, process 0 alone writes (orbax
checkpoints excepted: all processes save and restore them together), and a
``barrier`` follows each write that another process will read. In a
single-process run every function here is trivial.
"""

import jax


def is_primary() -> bool:
    """Whether this process writes the work directory's files (process 0)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Waits until every process gets here (a no-op in a single-process run)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def from_primary(value):
    """Process 0's value of a small numpy scalar or array pytree, on every process."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    return multihost_utils.broadcast_one_to_all(value)


def all_true(flag: bool) -> bool:
    """Whether ``flag`` holds on every process (each process passes its own)."""
    if jax.process_count() == 1:
        return bool(flag)
    import numpy as np
    from jax.experimental import multihost_utils

    return bool(np.min(multihost_utils.process_allgather(np.int32(bool(flag)))))

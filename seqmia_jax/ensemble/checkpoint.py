"""Orbax checkpoints of the stacked ensemble state (params, optimizer state, RNG keys).

Saves are asynchronous: training continues while the previous state is
written. Orbax writes into a temporary directory and renames it when complete,
so a run killed mid-save resumes from the last complete checkpoint. In a
multi-process run every process calls save and restore collectively.
"""

from pathlib import Path

import jax
import orbax.checkpoint as ocp


class EnsembleCheckpointer:
    """Thin wrapper over ``ocp.CheckpointManager`` for one pytree per step."""

    def __init__(self, directory: Path, max_to_keep: int = 2, async_save: bool = True):
        self._manager = ocp.CheckpointManager(
            Path(directory).absolute(),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep,
                enable_async_checkpointing=async_save,
                cleanup_tmp_directories=True,
                create=True,
            ),
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state) -> None:
        self._manager.save(step, args=ocp.args.StandardSave(state))

    def restore(self, step: int, like):
        """Restores ``step`` into the structure, dtypes and shardings of ``like``."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

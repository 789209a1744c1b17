"""Orbax checkpoints of the stacked ensemble state (params, optimizer state, RNG keys).

Saves are asynchronous: training continues while the previous state is
written. Orbax writes into a temporary directory and renames it when complete,
so a run killed mid-save resumes from the last complete checkpoint. A step
that was completed but later damaged (a truncated file, a bad disk) is moved
aside to ``<checkpoints>.corrupt/`` and the newest intact one is used instead:
``restore_newest_intact``. In a multi-process run every process calls save
and restore collectively.
"""

import logging as std_logging
import sys
import time
from pathlib import Path

import jax
import orbax.checkpoint as ocp
from absl import logging

from seqmia_jax import processes
from seqmia_jax.workdir import WorkdirError


def _quiet_orphaned_reads() -> None:
    """Silences the tracebacks of a failed restore's orphaned reads.

    After tensorstore fails to read a damaged step, its remaining reads finish
    on other threads and report to an event loop orbax has already closed;
    Python prints each as "Exception ignored", and asyncio logs their futures.
    Only exactly those are dropped (the step's own failure is logged once, by
    the caller); every other unraisable exception still reaches the old hook.
    """
    previous = sys.unraisablehook
    if getattr(previous, "seqmia_quiet", False):
        return
    # asyncio also logs each of those reads' futures, with its whole tensorstore spec.
    std_logging.getLogger("asyncio").addFilter(
        lambda record: not str(record.msg).startswith("Future exception was never retrieved")
    )

    def hook(unraisable):
        value = unraisable.exc_value
        if isinstance(value, RuntimeError) and str(value) == "Event loop is closed":
            return
        previous(unraisable)

    hook.seqmia_quiet = True
    sys.unraisablehook = hook


class EnsembleCheckpointer:
    """Thin wrapper over ``ocp.CheckpointManager`` for one pytree per step."""

    def __init__(self, directory: Path, max_to_keep: int = 2, async_save: bool = True):
        self._directory = Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            Path(directory).absolute(),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep,
                enable_async_checkpointing=async_save,
                cleanup_tmp_directories=True,
                create=True,
            ),
        )

    def save(self, step: int, state) -> None:
        self._manager.save(step, args=ocp.args.StandardSave(state))

    def restore(self, step: int, like):
        """Restores ``step`` into the structure, dtypes and shardings of ``like``."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def restore_params(self, step: int, abstract_params):
        """Only the ``params`` of ``step`` (scoring needs no optimizer state).

        ``abstract_params`` holds ``jax.ShapeDtypeStruct`` leaves with shardings.
        """
        item = {"params": abstract_params}
        args = ocp.args.PyTreeRestore(
            item=item,
            restore_args=ocp.checkpoint_utils.construct_restore_args(item),
            partial_restore=True,
        )
        return self._manager.restore(step, args=args)["params"]

    def restore_newest_intact(self, like) -> tuple[int, object]:
        """(step, state) of the newest checkpoint that restores; (0, None) if there is none.

        Any failure to read a step makes that step unusable, whatever orbax or
        tensorstore raises for it; the work directory's config was checked
        before (``Workdir.bind``). If no step restores at all, the cause is
        more likely the code (a changed optimizer state, say) than the disk:
        every step is put back and the error raised, never a silent restart.
        """
        self._manager.reload()
        steps = sorted(self._manager.all_steps(), reverse=True)
        moved = []
        for step in steps:
            # Every process restores its own shards: all must succeed to use the step.
            try:
                state, error = self.restore(step, like), None
            except Exception as failure:  # noqa: BLE001  (see the docstring)
                state, error = None, failure
                _quiet_orphaned_reads()
            if processes.all_true(error is None):
                return step, state
            if error is None:
                error = RuntimeError("another process could not read its part of this step")
            aside = self._directory.with_name(self._directory.name + ".corrupt")
            target = aside / f"{step}-{int(time.time())}"
            logging.warning(
                "checkpoint step %d in %s cannot be read (%s: %s); moved to %s, "
                "falling back to the previous step",
                step,
                self._directory,
                type(error).__name__,
                str(error).splitlines()[0][:200] if str(error) else "",
                target,
            )
            if processes.is_primary():
                aside.mkdir(exist_ok=True)
                (self._directory / str(step)).rename(target)
            moved.append((step, target, error))
            processes.barrier(f"checkpoint.aside.{step}")
            self._manager.reload()
        if moved:
            if processes.is_primary():
                for step, target, _ in moved:
                    target.rename(self._directory / str(step))
            processes.barrier("checkpoint.restored")
            _, _, error = moved[0]
            raise WorkdirError(
                f"no checkpoint in {self._directory} can be read (steps {steps}; newest: "
                f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"
                "); if the code changed since they were written, use the old code or delete "
                "the checkpoints to retrain"
            )
        return 0, None

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

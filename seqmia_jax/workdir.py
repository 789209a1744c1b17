"""The work directory: every stage reads its inputs from it and writes its outputs to it.

Layout::

    config.json        resolved config, dataset fingerprint, versions, git hash
    membership.npy     keep_SxN, bool
    checkpoints/       orbax checkpoints of the stacked ensemble
    metrics.jsonl      training log, one JSON object per logged step
    train_done.json    written once training has finished
    stats/             per-token statistics S x N x L (scoring stage)
    results/           attack scores, results.json, report (attack/report stages)
    .lock              advisory lock of the process that writes (``Workdir.lock``)

A directory made with a different config or dataset is refused, never mixed.
Only the settings that change what a stage computes are compared: switching
the training strategy or the logging interval of a run is allowed. Which
fields those are is declared on the config dataclasses (``config.setting``,
``config.added``), not listed here.
"""

import contextlib
import dataclasses
import errno
import fcntl
import functools
import hashlib
import json
import math
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from seqmia_jax import processes
from seqmia_jax.config import ExperimentConfig, identity_rules, to_dict

# Fields never compared, and added fields with the value that reproduces the
# older behaviour (at that value they are left out of the identity).
_NON_IDENTITY, _NEUTRAL_ADDITIONS = identity_rules()


class WorkdirError(RuntimeError):
    """A missing, corrupt, mismatched or busy work directory."""


# Locks this process holds: path -> (open lock file, depth), so stages nested in
# one audit (run -> train -> ...) take the lock once.
_HELD: dict[Path, list] = {}


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name not in _NON_IDENTITY:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def identity(config_dict: dict) -> dict[str, Any]:
    """The config fields that define the trained ensemble, flattened."""
    return {
        k: v
        for k, v in _flatten(config_dict).items()
        if k not in _NON_IDENTITY and _NEUTRAL_ADDITIONS.get(k, object()) != v
    }


STAGED = ".staged"  # written last into a staging directory: it is complete


@contextlib.contextmanager
def replacing(final: Path, owned: Callable[[str], bool]) -> Iterator[Path]:
    """Yields a staging directory for the next version of directory ``final``.

    The stage writes the entries it ``owns`` (by name) into the staging
    directory; every other entry of ``final`` is already there, hard-linked
    (so large score files cost nothing), and must not be written to. On
    success the staging directory replaces ``final`` by two renames
    (``final`` -> ``final.old``, staging -> ``final``); on an exception it is
    discarded. A crash at any point leaves the complete old version or the
    complete new one: ``recover_swap``, which every reader and writer of
    ``final`` calls first, puts one back if the crash fell between the renames.
    """
    recover_swap(final, writer=True)
    staging, old = _staging(final), final.with_name(final.name + ".old")
    staging.mkdir(parents=True)
    try:
        if final.exists():
            for item in final.iterdir():
                if item.name != STAGED and not owned(item.name):
                    if item.is_dir():
                        shutil.copytree(item, staging / item.name, copy_function=os.link)
                    else:
                        os.link(item, staging / item.name)
        yield staging
        (staging / STAGED).touch()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    (final / STAGED).unlink()
    shutil.rmtree(old, ignore_errors=True)


def _staging(final: Path) -> Path:
    return final.with_name(final.name + ".new")


def recover_swap(final: Path, *, writer: bool) -> None:
    """Finishes or undoes a ``replacing`` of ``final`` that a crash interrupted.

    Only a ``writer`` (holding the work-directory lock) discards leftovers: an
    unfinished staging directory, or the old version once the new one is in.
    A reader only puts back a missing ``final``.
    """
    staging, old = _staging(final), final.with_name(final.name + ".old")
    if not final.exists():
        if (staging / STAGED).exists():
            os.replace(staging, final)
            (final / STAGED).unlink()
        elif old.exists():
            os.replace(old, final)
    if writer and staging.exists() and (final.exists() or not (staging / STAGED).exists()):
        shutil.rmtree(staging)  # an unfinished attempt, or one that lost to the old version
    if writer and old.exists() and final.exists():
        shutil.rmtree(old)


def sha256_of(path: Path) -> str | None:
    """Hex SHA-256 of a file's bytes (None if it does not exist): how stages name results."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def holds_lock(stage: Callable) -> Callable:
    """Decorates ``stage(cfg, workdir, ...)`` to run under ``Workdir(workdir).lock()``."""

    @functools.wraps(stage)
    def locked(cfg, workdir, *args, **kwargs):
        with Workdir(workdir).lock():
            return stage(cfg, workdir, *args, **kwargs)

    return locked


def json_ready(value: Any) -> Any:
    """Plain JSON types (numpy scalars and arrays converted); NaN and Inf become null."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, obj: Any) -> None:
    """Writes JSON atomically, so a crash never leaves a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise WorkdirError(f"{path} is missing") from None
    except json.JSONDecodeError as e:
        raise WorkdirError(
            f"{path} is corrupt ({e}); delete the work directory or fix the file"
        ) from None


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for pkg in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _git_hash() -> str | None:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                check=False,
                cwd=Path(__file__).parent,
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        return None


@dataclasses.dataclass(frozen=True)
class Workdir:
    """Paths of one run and the checks that keep runs from mixing."""

    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    config_json = property(lambda self: self.path / "config.json")
    membership = property(lambda self: self.path / "membership.npy")
    checkpoints = property(lambda self: self.path / "checkpoints")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    train_done = property(lambda self: self.path / "train_done.json")
    stats = property(lambda self: self.path / "stats")
    results = property(lambda self: self.path / "results")

    @contextlib.contextmanager
    def lock(self, *, collective: bool = True, create: bool = True) -> Iterator[None]:
        """Holds the work directory's writer lock (an advisory ``flock`` on ``.lock``).

        A second writer, in this host or another one sharing the file system,
        is refused with the holder's PID and host. Readers never take it. The
        lock is re-entrant within a process, so nested stages take it once. In
        a multi-process run process 0 holds it for all processes (they write
        only what process 0 coordinates); with ``collective`` (stages that
        every process runs) every process learns whether it got it, so all fail
        together, and host-only stages run by process 0 alone pass False.
        Stages that need an existing directory pass ``create=False``.
        """
        key = self.path.absolute()
        if key in _HELD:
            _HELD[key][1] += 1
            try:
                yield
            finally:
                _HELD[key][1] -= 1
            return
        handle, error = None, ""
        if processes.is_primary():
            handle, error = self._acquire(create)
        failed = np.int32(handle is None and processes.is_primary())
        if int(processes.from_primary(failed) if collective else failed):
            raise WorkdirError(error or f"work directory {self.path} is locked by another writer")
        _HELD[key] = [handle, 1]
        try:
            yield
        finally:
            del _HELD[key]
            if handle is not None:
                handle.truncate(0)  # no stale holder named to the next writer
                handle.close()  # releases the flock

    def _acquire(self, create: bool):
        """(open lock file, "") or (None, the reason it cannot be taken)."""
        if self.path.exists() and not self.path.is_dir():
            return None, f"work directory {self.path} is a file, not a directory"
        if not create and not self.path.is_dir():
            return None, f"work directory {self.path} does not exist"
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            handle = open(self.path / ".lock", "a+")  # noqa: SIM115  (held while locked)
        except OSError as e:  # a message for every process, not a hang of the others
            return None, f"cannot lock work directory {self.path}: {e.strerror or e}"
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                handle.close()
                return None, f"cannot lock work directory {self.path}: {e.strerror or e}"
            handle.seek(0)
            holder = handle.read().strip() or "unknown process"
            handle.close()
            return None, (
                f"work directory {self.path} is in use by {holder}; wait for it to finish, "
                "or use another --workdir"
            )
        handle.seek(0)
        handle.truncate()
        handle.write(f"PID {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        return handle, ""

    def bind(self, cfg: ExperimentConfig, fingerprint: dict) -> None:
        """Creates the directory for ``cfg``, or checks that it was made for ``cfg``.

        In a multi-process run every process must call it: process 0 creates the
        directory, and after a barrier every process checks the same config.json,
        so a mismatch fails everywhere instead of leaving some processes waiting.
        """
        new = _record(cfg, fingerprint)
        if processes.is_primary():
            self.path.mkdir(parents=True, exist_ok=True)
            if not self.config_json.exists():
                write_json(
                    self.config_json,
                    {**new, "versions": _versions(), "git": _git_hash(), "created": time.time()},
                )
        processes.barrier("workdir.bind")
        self._compare(new)

    def check(self, cfg: ExperimentConfig, fingerprint: dict) -> None:
        """Checks, creating nothing, that this existing directory was made for ``cfg``.

        Stages that only read what earlier stages wrote (the report) call it, so
        they never pair this run's scores with another config's samples.
        """
        if not self.config_json.exists():
            raise WorkdirError(
                f"{self.path} is not a work directory: {self.config_json} is missing"
            )
        self._compare(_record(cfg, fingerprint))

    def _compare(self, new: dict) -> None:
        old = read_json(self.config_json)
        if "config" not in old or "dataset" not in old:
            raise WorkdirError(f"{self.config_json} is corrupt: no 'config' or 'dataset' entry")
        diffs = [
            f"  {k}: {v!r} in the work directory, {identity(new['config']).get(k)!r} now"
            for k, v in identity(old["config"]).items()
            if identity(new["config"]).get(k, "<absent>") != v
        ]
        diffs += [
            f"  {k}: new field, {v!r} now"
            for k, v in identity(new["config"]).items()
            if k not in identity(old["config"])
        ]
        if old["dataset"] != new["dataset"]:
            diffs.append(f"  dataset fingerprint: {old['dataset']} before, {new['dataset']} now")
        if diffs:
            raise WorkdirError(
                f"work directory {self.path} was made with a different config or dataset:\n"
                + "\n".join(diffs)
                + "\nUse a new --workdir, or delete this one to start over."
            )


def _record(cfg: ExperimentConfig, fingerprint: dict) -> dict:
    """What config.json stores of a run, as a JSON round trip keeps it (tuples become lists)."""
    return json.loads(json.dumps({"config": to_dict(cfg), "dataset": fingerprint}, default=str))

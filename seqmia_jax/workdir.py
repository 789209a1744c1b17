"""The work directory: every stage reads its inputs from it and writes its outputs to it.

Layout::

    config.json        resolved config, dataset fingerprint, versions, git hash
    membership.npy     keep_SxN, bool
    checkpoints/       orbax checkpoints of the stacked ensemble
    metrics.jsonl      training log, one JSON object per logged step
    train_done.json    written once training has finished
    stats/             per-token statistics S x N x L (scoring stage)
    results/           attack scores, results.json, report (attack/report stages)

A directory made with a different config or dataset is refused, never mixed.
Only the settings that change what a stage computes are compared: switching
the training strategy or the logging interval of a run is allowed. Which
fields those are is declared on the config dataclasses (``config.setting``,
``config.added``), not listed here.
"""

import dataclasses
import json
import math
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from seqmia_jax import processes
from seqmia_jax.config import ExperimentConfig, identity_rules, to_dict

# Fields never compared, and added fields with the value that reproduces the
# older behaviour (at that value they are left out of the identity).
_NON_IDENTITY, _NEUTRAL_ADDITIONS = identity_rules()


class WorkdirError(RuntimeError):
    """A missing, corrupt or mismatched work directory."""


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

    def bind(self, cfg: ExperimentConfig, fingerprint: dict) -> None:
        """Creates the directory for ``cfg``, or checks that it was made for ``cfg``.

        In a multi-process run every process must call it: process 0 creates the
        directory, and after a barrier every process checks the same config.json,
        so a mismatch fails everywhere instead of leaving some processes waiting.
        """
        # Compare what a JSON round trip keeps (tuples become lists).
        new = json.loads(json.dumps({"config": to_dict(cfg), "dataset": fingerprint}, default=str))
        if processes.is_primary():
            self.path.mkdir(parents=True, exist_ok=True)
            if not self.config_json.exists():
                write_json(
                    self.config_json,
                    {**new, "versions": _versions(), "git": _git_hash(), "created": time.time()},
                )
        processes.barrier("workdir.bind")
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

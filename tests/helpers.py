"""Small shared fixtures: tiny configs that train in seconds."""

import importlib

import jax
import numpy as np

from seqmia_jax.config import from_config_dict
from seqmia_jax.sweep import apply_overrides


def tiny_config(name: str = "kjv_gpt", **overrides):
    """The ``tiny`` argument of ``configs/<name>.py`` with dotted-key overrides."""
    raw = importlib.import_module(f"configs.{name}").get_config("tiny")
    return from_config_dict(apply_overrides(raw, overrides))


def assert_params_close(a, b) -> None:
    """Two trained ensembles agree, e.g. resumed on 8 devices against uninterrupted on 1.

    8 devices and 1 compile different float32 programs; Adam divides by the root of the
    second moment, so a rounding difference on a coordinate whose gradient is near 0 can
    grow to ~1e-5 (seen on 1 entry of 65,792). Every entry is close; nearly all agree to 1e-5.
    """
    diffs = np.concatenate(
        [
            np.abs(np.asarray(x) - np.asarray(y)).ravel()
            for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
        ]
    )
    assert diffs.max() < 1e-4 and np.mean(diffs > 1e-5) < 1e-3, (diffs.max(), np.mean(diffs > 1e-5))

"""Small shared fixtures: tiny configs that train in seconds."""

import importlib

from seqmia_jax.config import from_config_dict
from seqmia_jax.sweep import apply_overrides


def tiny_config(name: str = "kjv_gpt", **overrides):
    """The ``tiny`` argument of ``configs/<name>.py`` with dotted-key overrides."""
    raw = importlib.import_module(f"configs.{name}").get_config("tiny")
    return from_config_dict(apply_overrides(raw, overrides))

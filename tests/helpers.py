"""Small shared fixtures: tiny configs that train in seconds."""

from seqmia_jax.config import from_config_dict


def tiny_config(name: str = "kjv_gpt", **overrides):
    """The ``tiny`` argument of ``configs/<name>.py`` with dotted-key overrides."""
    import importlib

    raw = importlib.import_module(f"configs.{name}").get_config("tiny")
    for key, value in overrides.items():
        node = raw
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return from_config_dict(raw)

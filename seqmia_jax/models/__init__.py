"""Models: one-model flax.nnx modules, their registry and pure apply helpers.

Importing this package registers every model in ``MODELS``.
"""

from seqmia_jax.models import gpt, pixel  # noqa: F401  (registers "gpt", "pixel")
from seqmia_jax.models.build import (
    MODELS,
    apply,
    build_model,
    count_flops_per_token,
    init_params,
    num_params,
)
from seqmia_jax.models.decoder import AutoregressiveModel, Block, Decoder
from seqmia_jax.models.gpt import GPT
from seqmia_jax.models.pixel import PixelModel

__all__ = [
    "GPT",
    "MODELS",
    "AutoregressiveModel",
    "Block",
    "Decoder",
    "PixelModel",
    "apply",
    "build_model",
    "count_flops_per_token",
    "init_params",
    "num_params",
]

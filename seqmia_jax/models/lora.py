"""LoRA: low-rank adapters on chosen Linear layers of any model in this package.

Legend: I input width, O output width, r rank.

``add_lora(model, ...)`` wraps every ``nnx.Linear`` whose attribute name is in
``targets`` (e.g. ``qkv``, ``out``, ``up``, ``down``, ``head``) in a
``LoRALinear``: ``y = base(x) + (alpha / r) x A B``, with A (I x r) drawn like
a Linear kernel and B (r x O) zero, so an adapted model computes exactly what
its base computes until B moves (Hu et al. 2021). A and B are ``nnx.LoRAParam``
(a subclass of ``nnx.Param``), so ``nnx.split(model, nnx.LoRAParam, nnx.Param)``
separates the adapters (what is trained) from the frozen base weights, which
keep the paths they have without adapters.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from seqmia_jax.config import ConfigError


class LoRALinear(nnx.Module):
    """A frozen ``nnx.Linear`` plus a trainable rank-r update, scaled by alpha / r."""

    def __init__(self, base: nnx.Linear, rank: int, alpha: float, *, rngs: nnx.Rngs):
        in_features, out_features = base.kernel.shape
        self.base = base
        self.scale = float(alpha) / rank
        # A like a Linear kernel at fan-in I (He-uniform, as in the reference code), B zero.
        self.lora_a = nnx.LoRAParam(
            nnx.initializers.he_uniform()(rngs.params(), (in_features, rank), jnp.float32)
        )
        self.lora_b = nnx.LoRAParam(jnp.zeros((rank, out_features), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.base(x)
        dtype = self.base.dtype or x.dtype
        a, b = self.lora_a[...].astype(dtype), self.lora_b[...].astype(dtype)
        update = (x.astype(dtype) @ a @ b) * jnp.asarray(self.scale, dtype)
        return y + update.astype(y.dtype)


def parse_targets(targets: str) -> tuple[str, ...]:
    names = tuple(sorted({name.strip() for name in targets.split(",") if name.strip()}))
    if not names:
        raise ConfigError("train.lora_targets names no layer; e.g. 'qkv,out,up,down'")
    return names


def add_lora(model: nnx.Module, rank: int, alpha: float, targets: str, rngs: nnx.Rngs):
    """Wraps the target Linear layers of ``model`` in place; returns the model.

    Raises ConfigError when a target names no Linear layer of the model.
    """
    names = parse_targets(targets)
    found = set()
    # Collect first: the graph must not change while it is walked.
    sites = [
        (path, module)
        for path, module in nnx.iter_graph(model)
        if type(module) is nnx.Linear and path and path[-1] in names
    ]
    for path, module in sites:
        parent = model
        for key in path[:-1]:
            parent = parent[key] if isinstance(key, int) else getattr(parent, key)
        wrapped = LoRALinear(module, rank, alpha, rngs=rngs)
        if isinstance(path[-1], int):
            parent[path[-1]] = wrapped
        else:
            setattr(parent, path[-1], wrapped)
        found.add(path[-1])
    missing = sorted(set(names) - found)
    if missing:
        linears = sorted(
            {str(p[-1]) for p, m in nnx.iter_graph(model) if isinstance(m, nnx.Linear) and p}
        )
        raise ConfigError(
            f"train.lora_targets names {', '.join(missing)}, which the model does not have; "
            f"its Linear layers are {', '.join(linears)}"
        )
    return model

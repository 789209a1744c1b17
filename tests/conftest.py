"""Test set-up: 8 forced CPU devices, so sharded code paths run anywhere.

A persistent compilation cache lets the many tiny runs in the suite share
compiled programs instead of recompiling identical ones. Implicit rank
promotion in jax.numpy is an error, so every broadcast says which axes it adds.
"""

import os
import tempfile

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax

jax.config.update(
    "jax_compilation_cache_dir", os.path.join(tempfile.gettempdir(), "seqmia_jax_test_cache")
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

# Adding an L x D array to a B x L x D one silently broadcasts in NumPy; a
# misordered axis then passes unnoticed. "raise" makes such sums spell it out
# ([None], [:, None]).
jax.config.update("jax_numpy_rank_promotion", "raise")

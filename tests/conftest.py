"""Test set-up: 8 forced CPU devices, so sharded code paths run anywhere.

A persistent compilation cache (one per pytest-xdist worker) lets the many
tiny runs in the suite share compiled programs instead of recompiling
identical ones. Implicit rank promotion in jax.numpy is an error, so every
broadcast says which axes it adds.
"""

import os
import tempfile

# The suite's programs are tiny, so compiling them costs more than running them:
# LLVM at -O0 (XLA's HLO passes still run) about halves a cold run, and every
# reference and golden value still holds. Subprocesses that tests start
# inherit both flags.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax

# One cache per pytest-xdist worker, so two processes never write one entry.
_CACHE = "seqmia_jax_test_cache" + os.environ.get("PYTEST_XDIST_WORKER", "")
jax.config.update("jax_compilation_cache_dir", os.path.join(tempfile.gettempdir(), _CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

# Adding an L x D array to a B x L x D one silently broadcasts in NumPy; a
# misordered axis then passes unnoticed. "raise" makes such sums spell it out
# ([None], [:, None]).
jax.config.update("jax_numpy_rank_promotion", "raise")

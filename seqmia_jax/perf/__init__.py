"""Performance tooling: the throughput benchmark, its timings, kernel profiles and table.

- ``benchmark``: ``run_benchmark(cfg, settings)``, what ``experiments.benchmark`` calls;
- ``ensemble_timing``: training strategies and the scorer, from one init state;
- ``attack_timing``: the attack stage on synthetic statistics;
- ``devices``: datasheet peak FLOP/s and the devices' peak memory;
- ``profiling``: a jax.profiler trace of one function, its kernels totalled;
- ``table``: the benchmark's result as one markdown table.

Nothing in the audit pipeline imports this package.
"""

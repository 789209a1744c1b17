"""Benchmarks ensemble training strategies, scoring and attacks; prints one table, writes JSON.

python -m experiments.benchmark --config=configs/kjv_gpt.py:tiny --out=bench.json
python -m experiments.benchmark --quick   # small sizes, under two minutes on two CPU cores
"""

import json

from absl import flags

from seqmia_jax import launch
from seqmia_jax.attacks.specs import split_specs
from seqmia_jax.config import from_config_dict
from seqmia_jax.perf import benchmark
from seqmia_jax.perf.table import format_table
from seqmia_jax.workdir import json_ready

_CONFIG = launch.define_config()
_QUICK = flags.DEFINE_bool("quick", False, "Tiny sizes and few steps (CI smoke run).")
_OUT = flags.DEFINE_string("out", None, "Write the JSON result here.")
_PEAK = flags.DEFINE_float("peak_tflops", None, "Peak TFLOP/s per device (default: table).")
_STRATEGIES = flags.DEFINE_list(
    "strategies",
    ["vmap", "map", "loop"],
    "Training strategies: vmap, map, map:k, loop; a +dp or +dp/k suffix times DP-SGD steps.",
)
_ATTACK_SHAPE = flags.DEFINE_list(
    "attack_shape", None, "Synthetic S,N,L for the attack timing (default 16,1000,64)."
)
_ATTACKS = flags.DEFINE_string("attacks", None, "';'-separated attack specs (default set).")
_CHUNK_STEPS = flags.DEFINE_integer("chunk_steps", None, "Steps per timed chunk.")
_STAGES = flags.DEFINE_list("stages", ["train", "score", "attack"], "Stages to measure.")
_TIMED_CHUNKS = flags.DEFINE_integer("timed_chunks", None, "Chunks timed after the warm-up.")
_ATTACK_REPEATS = flags.DEFINE_integer(
    "attack_repeats", 1, "Run the attack set this many times (later runs are warm)."
)
_PROFILE_DIR = flags.DEFINE_string(
    "profile_dir", None, "Trace one more training chunk of the first strategy here and total it."
)


def main(argv):
    del argv
    launch.init_runtime()

    def run():
        cfg = from_config_dict(_CONFIG.value)
        overrides = {
            "strategies": tuple(_STRATEGIES.value),
            "peak_tflops": _PEAK.value,
            "stages": tuple(_STAGES.value),
            "profile_dir": _PROFILE_DIR.value,
            "attack_repeats": _ATTACK_REPEATS.value,
        }
        if _ATTACK_SHAPE.value:
            overrides["attack_shape"] = tuple(int(n) for n in _ATTACK_SHAPE.value)
        if _ATTACKS.value:
            overrides["attacks"] = tuple(split_specs(_ATTACKS.value))
        if _CHUNK_STEPS.value:
            overrides["chunk_steps"] = _CHUNK_STEPS.value
        if _TIMED_CHUNKS.value:
            overrides["timed_chunks"] = _TIMED_CHUNKS.value
        if _QUICK.value:
            cfg, settings = benchmark.quick_config(cfg), benchmark.quick_settings(**overrides)
        else:
            settings = benchmark.BenchmarkSettings(**overrides)
        result = benchmark.run_benchmark(cfg, settings)
        print(format_table(result))
        if _OUT.value:
            with open(_OUT.value, "w") as f:
                json.dump(json_ready(result), f, indent=2)

    launch.run_cleanly(run)


if __name__ == "__main__":
    launch.run_main(main)

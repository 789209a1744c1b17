"""Runs the ``get_sweep()`` of a config file: shared training, one results dir per point.

python -m experiments.sweep --config=configs/kjv_gpt.py --workdir=runs/kjv_gpt_sweep
"""

import importlib.util

from absl import flags

from seqmia_jax import launch
from seqmia_jax.config import ConfigError
from seqmia_jax.sweep import run_sweep

_CONFIG = launch.define_config()
_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep directory.", required=True)


def _get_sweep() -> list[dict]:
    path, config_arg = launch.config_path_and_arg()
    spec = importlib.util.spec_from_file_location("sweep_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_sweep"):
        raise ConfigError(f"{path} defines no get_sweep()")
    return module.get_sweep(config_arg)


def main(argv):
    del argv
    launch.init_runtime()

    def sweep():
        rows = run_sweep(_CONFIG.value, _get_sweep(), _WORKDIR.value)
        print(f"{len(rows)} rows written to {_WORKDIR.value}/sweep.csv")

    launch.run_cleanly(sweep)


if __name__ == "__main__":
    launch.run_main(main)

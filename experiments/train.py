"""Trains the shadow-model ensemble of a config into a work directory.

python -m experiments.train --config=configs/kjv_gpt.py:tiny --workdir=runs/tiny
"""

from absl import flags

from seqmia_jax import launch
from seqmia_jax.config import from_config_dict
from seqmia_jax.ensemble.train import train

_CONFIG = launch.define_config()
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory.", required=True)


def main(argv):
    del argv
    launch.init_runtime()
    launch.run_cleanly(lambda: train(from_config_dict(_CONFIG.value), _WORKDIR.value))


if __name__ == "__main__":
    launch.run_main(main)

"""Trains the shadow-model ensemble of a config into a work directory.

python -m experiments.train --config=configs/kjv_gpt.py:tiny --workdir=runs/tiny
"""

from absl import app, flags
from ml_collections import config_flags

from seqmia_jax import launch
from seqmia_jax.config import from_config_dict
from seqmia_jax.ensemble.train import train

_CONFIG = config_flags.DEFINE_config_file("config", "configs/kjv_gpt.py", "Config file[:arg].")
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory.", required=True)


def main(argv):
    del argv
    launch.init_runtime()
    launch.run_cleanly(lambda: train(from_config_dict(_CONFIG.value), _WORKDIR.value))


if __name__ == "__main__":
    app.run(main)

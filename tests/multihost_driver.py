"""One process of a multi-process test run: train, then score, in one work directory.

tests/test_multihost.py starts several of these on localhost:

    python -m tests.multihost_driver --config=configs/kjv_gpt.py:tiny --workdir=/tmp/wd \
        --coordinator_address=localhost:12345 --num_processes=2 --process_id=0

Both stages run in one program, as in experiments.run, so the test also covers
a stage reading the files that process 0 wrote in the stage before.
"""

from absl import flags

from seqmia_jax import launch
from seqmia_jax.config import from_config_dict
from seqmia_jax.ensemble.train import train
from seqmia_jax.scoring import score

_CONFIG = launch.define_config()
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory.", required=True)


def main(argv):
    del argv
    launch.init_runtime()
    cfg = from_config_dict(_CONFIG.value)
    train(cfg, _WORKDIR.value)
    score(cfg, _WORKDIR.value)


if __name__ == "__main__":
    launch.run_main(main)

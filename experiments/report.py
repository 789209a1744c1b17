"""Writes the report (results.md, roc.png, leakage view) from a work directory's attack results.

python -m experiments.report --config=configs/kjv_gpt.py:tiny --workdir=runs/tiny
"""

import json
from pathlib import Path

from absl import flags

from seqmia_jax import launch
from seqmia_jax.config import from_config_dict
from seqmia_jax.data import load_dataset
from seqmia_jax.report import summary_text, write_report

_CONFIG = launch.define_config()
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory.", required=True)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing report.")


def main(argv):
    del argv

    def report():
        cfg = from_config_dict(_CONFIG.value)
        paths = write_report(_WORKDIR.value, load_dataset(cfg.data), overwrite=_OVERWRITE.value)
        results = json.loads((Path(_WORKDIR.value) / "results" / "results.json").read_text())
        print(summary_text(results))
        print("\n".join(f"{name}: {path}" for name, path in paths.items()))

    launch.run_cleanly(report)


if __name__ == "__main__":
    launch.run_main(main)

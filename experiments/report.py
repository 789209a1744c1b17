"""Writes the report (index.html and the files it draws on) from a work directory's attack results.

python -m experiments.report --config=configs/kjv_gpt.py:tiny --workdir=runs/tiny
"""

from pathlib import Path

from absl import flags

from seqmia_jax import launch
from seqmia_jax.config import from_config_dict
from seqmia_jax.data import load_dataset
from seqmia_jax.ensemble.train import run_fingerprint
from seqmia_jax.report import audit_summary, summary_text, write_report
from seqmia_jax.workdir import Workdir, WorkdirError, read_json

_CONFIG = launch.define_config()
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory.", required=True)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing report.")


def main(argv):
    del argv

    def report():
        cfg = from_config_dict(_CONFIG.value)
        dataset = load_dataset(cfg.data)
        # The report pairs scores with samples: both must come from this config.
        wd = Workdir(_WORKDIR.value)
        wd.check(cfg, run_fingerprint(cfg, wd.path, dataset))
        try:
            with wd.lock(collective=False, create=False):  # it replaces files in results/
                paths = write_report(wd.path, dataset, overwrite=_OVERWRITE.value)
        except (ValueError, FileNotFoundError) as error:  # the writer's documented refusals
            raise WorkdirError(str(error)) from None
        results = read_json(Path(_WORKDIR.value) / "results" / "results.json")
        print(summary_text(results))
        print(audit_summary(results, Path(_WORKDIR.value) / "results") + "\n")
        print("\n".join(f"{name}: {path}" for name, path in paths.items()))

    launch.run_cleanly(report)


if __name__ == "__main__":
    launch.run_main(main)

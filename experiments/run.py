"""The whole audit: train -> score -> attack -> report, skipping completed stages.

python -m experiments.run                                   # configs/kjv_gpt.py -> runs/kjv_gpt
python -m experiments.run --config=configs/kjv_gpt.py:gpu   # -> runs/kjv_gpt_gpu
python -m experiments.run --config=configs/digits_pixel.py  # -> runs/digits_pixel
"""

from pathlib import Path

from absl import flags

from seqmia_jax import launch
from seqmia_jax.config import from_config_dict
from seqmia_jax.pipeline import run_audit
from seqmia_jax.report import audit_summary, summary_text

_CONFIG = launch.define_config()
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Work directory (default: runs/<config name>[_<arg>])."
)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace completed attack results and report.")


def main(argv):
    del argv
    launch.init_runtime()
    workdir = _WORKDIR.value or launch.default_workdir()

    def audit():
        out = run_audit(from_config_dict(_CONFIG.value), workdir, overwrite=_OVERWRITE.value)
        if out["results"] is None:  # not process 0 of a multi-process run
            return
        print(summary_text(out["results"]))
        print(audit_summary(out["results"], Path(workdir) / "results"))
        print(
            f"\nReport: {Path(workdir) / 'results' / 'index.html'}  (stage seconds: "
            + ", ".join(f"{k} {v:.0f}" for k, v in out["seconds"].items())
            + ")"
        )

    launch.run_cleanly(audit)


if __name__ == "__main__":
    launch.run_main(main)

"""Diagnostics of a scored work directory: correlations, shift SNR, ceilings, leakage.

python -m experiments.diagnose --workdir=runs/kjv_gpt [--statistics=loss,logit]
python -m experiments.diagnose --workdir=/tmp/ft/default --output=/tmp/ft_diagnostics.json

Writes WORKDIR/results/diagnostics.json unless --output names another file
(for a work directory that must stay untouched), prints the report, then the
covariance ceilings and the correlation excess as markdown tables.
"""

import json
from pathlib import Path

import numpy as np
from absl import flags

from experiments.study import covariance_ceiling_table
from seqmia_jax import analysis, launch
from seqmia_jax.workdir import Workdir, recover_swap, write_json

_WORKDIR = flags.DEFINE_string("workdir", None, "Scored work directory.", required=True)
_STATISTICS = flags.DEFINE_list("statistics", ["loss", "logit"], "Statistics to diagnose.")
_OUTPUT = flags.DEFINE_string(
    "output", None, "Report file (default: WORKDIR/results/diagnostics.json, under the lock)."
)


def main(argv):
    del argv

    def run():
        wd = Path(_WORKDIR.value)
        keep = np.load(wd / "membership.npy")
        # Token ids: tokens.npy for subword vocabularies, else the bytes themselves.
        ids, text = wd / "tokens.npy", wd / "text_bytes.npy"
        source = ids if ids.exists() else text if text.exists() else None
        tokens = np.load(source, allow_pickle=False) if source is not None else None
        secret = wd / "stats" / "secret_mask.npy"
        secret_NxL = np.load(secret, allow_pickle=False) if secret.exists() else None
        report = {
            name: analysis.diagnose(
                np.load(wd / "stats" / f"{name}.npy", mmap_mode="r"),
                keep,
                tokens,
                secret_NxL=secret_NxL,
            )
            for name in _STATISTICS.value
        }
        if _OUTPUT.value:
            write_json(Path(_OUTPUT.value), report)
        else:
            with Workdir(wd).lock(collective=False, create=False):
                recover_swap(wd / "results", writer=True)
                (wd / "results").mkdir(exist_ok=True)
                write_json(wd / "results" / "diagnostics.json", report)
        print(json.dumps(report, indent=1))
        print("\n".join(covariance_ceiling_table.table_lines({str(wd): report})))

    launch.run_cleanly(run)


if __name__ == "__main__":
    launch.run_main(main)

"""Diagnostics of a scored work directory: correlations, shift SNR, per-token ceiling, leakage.

python -m experiments.diagnose --workdir=runs/kjv_gpt [--statistics=loss,logit]
"""

import json
from pathlib import Path

import numpy as np
from absl import flags

from seqmia_jax import analysis, launch
from seqmia_jax.workdir import Workdir, recover_swap, write_json

_WORKDIR = flags.DEFINE_string("workdir", None, "Scored work directory.", required=True)
_STATISTICS = flags.DEFINE_list("statistics", ["loss", "logit"], "Statistics to diagnose.")


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
        with Workdir(wd).lock(collective=False, create=False):
            recover_swap(wd / "results", writer=True)
            (wd / "results").mkdir(exist_ok=True)
            write_json(wd / "results" / "diagnostics.json", report)
        print(json.dumps(report, indent=1))

    launch.run_cleanly(run)


if __name__ == "__main__":
    launch.run_main(main)

"""How the per-token ceiling estimate depends on the number of models it is measured with.

    python docs/scripts/ceiling_vs_shadows.py runs/study_shadows_weak/train-5ba4c30649af loss

Keeps the first K/2 complementary pairs for K = 16, 32, 64, ..., S and prints
the ceiling TPRs at FPR 1e-3 (raw / shrunk). Per-sample estimates from few
models are noisy, and the noise raises the tails, the per-token one most.
"""

import sys

import numpy as np
from ceiling_table import ceiling_cells  # the sibling script (this directory is on sys.path)

from seqmia_jax import analysis, membership


def main(workdir: str, stat: str) -> None:
    x = np.load(f"{workdir}/stats/{stat}.npy", mmap_mode="r")
    keep = np.load(f"{workdir}/membership.npy")
    pairs = membership.complementary_pairs(keep)
    counts = [k for k in (16, 32, 64, 128) if k < keep.shape[0]] + [keep.shape[0]]
    print("| models | sequence mean | per-token | ratio |")
    print("|---|---|---|---|")
    for k in counts:
        chosen = pairs[: k // 2].ravel()
        ceiling = analysis.per_token_ceiling(np.asarray(x[chosen]), keep[chosen], fprs=(1e-3,))
        cells = ceiling_cells(ceiling["tpr_at_0.001"])
        print(f"| {k} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

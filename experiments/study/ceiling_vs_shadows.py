"""How the per-token ceiling estimate depends on the number of models it is measured with.

    python -m experiments.study.ceiling_vs_shadows runs/study_shadows_weak/train-5ba4c30649af loss

Keeps the first K/2 complementary pairs for K = 16, 32, 64, ..., S and prints
the ceiling TPRs at FPR 1e-3 (raw / shrunk). Per-sample estimates from few
models are noisy, and the noise raises the tails, the per-token one most.
"""

import sys
from collections.abc import Iterator

import numpy as np

from experiments.study.ceiling_table import ceiling_cells
from seqmia_jax import analysis, membership


def model_counts(num_models: int) -> list[int]:
    """The K of the table: 16, 32, 64 and 128 where fewer than S, then S."""
    return [k for k in (16, 32, 64, 128) if k < num_models] + [num_models]


def table_lines(stats_SxNxL: np.ndarray, keep_SxN: np.ndarray) -> Iterator[str]:
    """The markdown lines of the table, header first, one row per K."""
    pairs_Px2 = membership.complementary_pairs(keep_SxN)
    yield "| models | sequence mean | per-token | ratio |"
    yield "|---|---|---|---|"
    for k in model_counts(keep_SxN.shape[0]):
        chosen = pairs_Px2[: k // 2].ravel()
        ceiling = analysis.per_token_ceiling(
            np.asarray(stats_SxNxL[chosen]), keep_SxN[chosen], fprs=(1e-3,)
        )
        cells = ceiling_cells(ceiling["tpr_at_0.001"])
        yield f"| {k} | {' | '.join(cells)} |"


def main(workdir: str, stat: str) -> None:
    x = np.load(f"{workdir}/stats/{stat}.npy", mmap_mode="r")
    keep = np.load(f"{workdir}/membership.npy")
    for line in table_lines(x, keep):
        print(line, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

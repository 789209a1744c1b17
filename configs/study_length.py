"""Study: sequence length. Do per-token attacks gain as a sample gets more positions?

The mean over L positions averages more noise away as L grows, but a
per-token model also gets L more mean shifts to estimate. Each L trains its
own ensemble (N = 1,000 windows of L bytes, so the token count grows with L).
Targets 0-7 are the validation half, 8-15 the held-out half.

    python -m experiments.sweep --config=configs/study_length.py --workdir=runs/study_length

Argument: "" (2 CPU cores: S=16; about 2, 3, 5 and 10 minutes for L = 32 ... 256).
"""

import ml_collections

from configs import study_canaries

LENGTHS = (32, 64, 128, 256)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    if arg:
        raise ValueError(f"unknown config argument {arg!r}; use ''")
    cfg = study_canaries.get_config("")
    cfg.num_shadow_models = 16
    cfg.data.canary_tokens = 0
    return cfg


def get_sweep(arg: str = "") -> list[dict]:
    del arg
    return [
        {"data.seq_len": length, "attack.targets": targets}
        for length in LENGTHS
        for targets in (study_canaries.VALIDATION, study_canaries.HELD_OUT)
    ]

"""Study: regime. Do stronger or longer-trained models memorize in a way per-token attacks see?

Model width x epochs at S = 16, N = 1,000 KJV windows of L = 64 bytes; one
ensemble per point. Targets 0-7 are the validation half, 8-15 the held-out
half.

    python -m experiments.sweep --config=configs/study_regime.py --workdir=runs/study_regime

Argument: "" (2 CPU cores: about 30 minutes in all, most of it width 128 x 30 epochs).
"""

import ml_collections

from configs import study_canaries, study_length, study_pixels


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    cfg = study_length.get_config(arg)
    cfg.attack.attacks = study_pixels.ATTACKS  # with LiRA on the loss at a fixed variance
    return cfg


def get_sweep(arg: str = "") -> list[dict]:
    del arg
    return [
        {"model.embed_dim": width, "train.epochs": epochs, "attack.targets": targets}
        for width in (64, 128)
        for epochs in (5, 30)
        for targets in (study_canaries.VALIDATION, study_canaries.HELD_OUT)
    ]

"""Study: pixel models. Do per-token attacks do better on images than on text?

Autoregressive pixel models on scikit-learn's 8x8 digits (L = 64 sub-pixels,
17 levels), S = 16, trained for 15 and for 45 epochs (the default digits run
is near chance). Targets 0-7 are the validation half, 8-15 the held-out half.

    python -m experiments.sweep --config=configs/study_pixels.py --workdir=runs/study_pixels

Argument: "" (2 CPU cores: about 4 and 12 minutes).
"""

import ml_collections

from configs import digits_pixel, study_canaries


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    if arg:
        raise ValueError(f"unknown config argument {arg!r}; use ''")
    cfg = digits_pixel.get_config("")
    cfg.attack.attacks = study_canaries.ATTACKS
    cfg.attack.targets = study_canaries.HELD_OUT
    cfg.attack.bootstrap = 100
    return cfg


def get_sweep(arg: str = "") -> list[dict]:
    del arg
    return [
        {"train.epochs": epochs, "attack.targets": targets}
        for epochs in (15, 45)
        for targets in (study_canaries.VALIDATION, study_canaries.HELD_OUT)
    ]

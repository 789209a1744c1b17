"""Study: pixel models. Do per-token attacks do better on images than on text?

Autoregressive pixel models on scikit-learn's 8x8 digits (L = 64 sub-pixels,
17 levels). The first half of the targets is the validation half (choose the
attack variant there), the second half is held out (report there).

    python -m experiments.sweep --config=configs/study_pixels.py --workdir=runs/study_pixels
    python -m experiments.sweep --config=configs/study_pixels.py:s32 --workdir=runs/study_pixels_s32

Arguments: "" (2 CPU cores: S = 16, 15 and 45 epochs; about 4 and 12 minutes),
"s32" (S = 32, 30 epochs, 16 + 16 targets; about 20 minutes).
"""

import ml_collections

from configs import digits_pixel, study_canaries

# Pixel statistics favour the loss over the logit, so both get each variance.
ATTACKS = (
    study_canaries.ATTACKS
    + ";lira:statistic=loss,variance=fixed;profile:statistic=loss,variance=fixed"
)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    cfg = digits_pixel.get_config("")
    cfg.attack.attacks = ATTACKS
    cfg.attack.targets = study_canaries.HELD_OUT
    cfg.attack.bootstrap = 100
    if arg == "s32":
        cfg.num_shadow_models = 32
        cfg.train.epochs = 30
        cfg.attack.targets = "16:32"
    elif arg:
        raise ValueError(f"unknown config argument {arg!r}; use '' or 's32'")
    return cfg


def get_sweep(arg: str = "") -> list[dict]:
    if arg == "s32":
        return [{"attack.targets": targets} for targets in ("0:16", "16:32")]
    return [
        {"train.epochs": epochs, "attack.targets": targets}
        for epochs in (15, 45)
        for targets in (study_canaries.VALIDATION, study_canaries.HELD_OUT)
    ]

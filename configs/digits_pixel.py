"""Autoregressive pixel models on scikit-learn's 8x8 digits (17 intensity levels, L=64).

Arguments: "" (default, a few minutes on 2 CPU cores), "tiny" (tests), "gpu".

    python -m experiments.run --config=configs/digits_pixel.py
"""

import ml_collections

from configs import kjv_gpt


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    cfg = kjv_gpt.get_config(arg)
    cfg.data.name = "digits"  # 1,797 images; levels fixed at 17
    cfg.data.seq_len = 64  # 8 x 8 x 1 sub-pixels, raster order
    cfg.data.num_samples = 1000
    cfg.model.name = "pixel"
    if arg == "tiny":
        cfg.data.num_samples = 64
    elif arg == "gpu":
        cfg.data.num_samples = 1796
        cfg.train.epochs = 30
    return cfg

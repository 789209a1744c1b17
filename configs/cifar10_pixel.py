"""Autoregressive pixel models on CIFAR-10 through tfds (prepare it first).

    tfds build cifar10 --file_format=array_record
    python -m experiments.run --config=configs/cifar10_pixel.py:gpu

Colour images become sub-pixels in raster order, channel fastest (L = 32*32*3).
Arguments: "" (CPU-sized, slow), "tiny", "gpu".
"""

import ml_collections

from configs import kjv_gpt


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    cfg = kjv_gpt.get_config(arg)
    cfg.data.name = "cifar10"
    cfg.data.levels = 8
    cfg.data.seq_len = 32 * 32 * 3
    cfg.data.num_samples = 1000
    cfg.model.name = "pixel"
    cfg.train.batch_size = 16
    if arg == "tiny":
        cfg.data.num_samples = 64
        cfg.train.batch_size = 8
    elif arg == "gpu":
        cfg.data.num_samples = 20000
        cfg.train.batch_size = 16
    return cfg

"""Autoregressive pixel models on MNIST through tfds (prepare it first, no download at run time).

    tfds build mnist --file_format=array_record
    python -m experiments.run --config=configs/mnist_pixel.py

Arguments: "" (CPU-sized), "tiny", "gpu".
"""

import ml_collections

from configs import kjv_gpt


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    cfg = kjv_gpt.get_config(arg)
    cfg.data.name = "mnist"
    cfg.data.levels = 4  # intensity levels after quantization
    cfg.data.seq_len = 28 * 28  # raster order
    cfg.data.num_samples = 2000
    cfg.data.split = "train"
    cfg.model.name = "pixel"
    if arg == "tiny":
        cfg.data.num_samples = 64
    elif arg == "gpu":
        cfg.data.num_samples = 20000
        cfg.data.levels = 8
        cfg.train.batch_size = 16
    return cfg

"""DP-SGD shadow models on byte-level KJV windows: a complete DP audit.

Every shadow model is trained with DP-SGD (``seqmia_jax.ensemble.dp``:
Poisson batches, per-example clipping, Gaussian noise) at the noise that
gives ``train.dp_target_epsilon`` at ``train.dp_delta`` under the PLD
accountant; the report puts the accountant's epsilon next to the attacks.

Arguments: "" (default, CPU: kjv_gpt's default models), "tiny" (tests),
"gpu" (kjv_gpt's gpu models).

    python -m experiments.run --config=configs/kjv_dp.py
"""

import ml_collections

from configs import kjv_gpt


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    if arg not in ("", "tiny", "gpu"):
        raise ValueError(f"unknown config argument {arg!r}; use '', 'tiny' or 'gpu'")
    cfg = kjv_gpt.get_config(arg)
    # "balanced" (each sample IN for exactly S/2 models) or "poisson" (each sample in
    # each model independently with probability 1/2: what the one-run bound needs).
    cfg.membership = "balanced"
    cfg.train.dp_clip_norm = 1.0  # C: each example's gradient clipped to L2 norm 1
    cfg.train.dp_target_epsilon = 8.0  # sigma is derived from it (PLD accountant)
    cfg.train.dp_noise_multiplier = 0.0  # used only without a target epsilon
    cfg.train.dp_delta = 1e-5  # below 1 / (N/2) for every config here
    cfg.train.dp_microbatch = 0  # 0: every per-example gradient of a batch at once
    cfg.train.grad_clip = 1e9  # the per-example clip is the clip; no second one
    if arg == "tiny":
        cfg.train.dp_target_epsilon = 4.0
    elif arg == "gpu":
        cfg.train.dp_microbatch = 8  # bounds per-example gradient memory at width 256
    return cfg

"""Study: canaries, where memorization concentrates on a few known-rare positions.

Every audit sample carries a run of k random decimal digits (a "secret",
``data.canary_tokens``) at a random offset; the rest is KJV text. The paper's
argument for per-token attacks is strongest here: a memorized canary lowers
the loss of k positions by a lot, which the mean over L positions dilutes.

Each k trains its own ensemble (the data differ). Targets 0-7 are the
validation half (choose the attack variant there), targets 8-15 the held-out
half (report there): one sweep point each, from the same statistics.

    python -m experiments.sweep --config=configs/study_canaries.py --workdir=runs/study_canaries
    python -m experiments.sweep --config=configs/study_canaries.py:gpu --workdir=runs/study_canaries_gpu

Arguments: "" (2 CPU cores: S=32, N=1000, L=64; about 6 minutes per k),
"gpu" (one H100: S=64, N=4000, L=128).
"""

import ml_collections

from configs import kjv_gpt

ATTACKS = (
    "lira;lira:variance=fixed;lira:statistic=loss;seq:cov=diag;seq:cov=pooled;seq:cov=hetero;"
    "seq:mode=gls;seq:cov=copula,marginal=empirical;profile;profile:variance=fixed;"
    "profile:statistic=loss;profile:variance=fixed,by=token;"
    "profile:variance=fixed,by=difficulty+token;loss;mink;refcal;rmia"
)
VALIDATION, HELD_OUT = "0:8", "8:16"


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    cfg = kjv_gpt.get_config("")
    cfg.num_shadow_models = 32
    cfg.data.canary_tokens = 8
    cfg.attack.attacks = ATTACKS
    cfg.attack.targets = HELD_OUT
    cfg.attack.bootstrap = 100
    if arg == "gpu":
        cfg.num_shadow_models = 64
        cfg.data.seq_len = 128
        cfg.data.num_samples = 4000
        cfg.model.num_layers = 4
        cfg.model.embed_dim = 128
        cfg.model.compute_dtype = "bfloat16"
        cfg.train.epochs = 10
        cfg.train.learning_rate = 1e-3
        cfg.train.strategy = "vmap"
        cfg.train.log_every = 100
        cfg.train.checkpoint_every = 500
    elif arg:
        raise ValueError(f"unknown config argument {arg!r}; use '' or 'gpu'")
    return cfg


def get_sweep(arg: str = "") -> list[dict]:
    del arg
    return [
        {"data.canary_tokens": k, "attack.targets": targets}
        for k in (0, 2, 8)
        for targets in (VALIDATION, HELD_OUT)
    ]

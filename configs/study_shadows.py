"""Study: does sequence-aware LiRA overtake univariate LiRA as the number of shadows grows?

One ensemble of small GPTs is trained and scored once; the sweep then evaluates
every target against K = 4, 8, ..., S-2 shadows (whole complementary pairs),
from the cached statistics. Targets are held out from nothing here: the sweep
only compares fixed attacks, it selects nothing.

    python -m experiments.sweep --config=configs/study_shadows.py --workdir=runs/study_shadows
    python -m experiments.sweep --config=configs/study_shadows.py:gpu --workdir=runs/study_shadows_gpu

Arguments: "" (2 CPU cores: S=32, about 10 minutes), "gpu" (one H100: S=128),
"many" (2 CPU cores: S=256 one-layer GPTs on 32-byte windows, about 15 minutes),
"weak" (2 CPU cores: S=256 of the default GPTs trained 5 epochs, the weakly
memorizing regime where the per-token ceiling is highest; validation targets
0-7 and held-out targets 8-15 at each K; about 25 minutes).
"""

import ml_collections

from configs import kjv_gpt, study_canaries

ATTACKS = (
    "lira;lira:variance=fixed;seq:cov=diag;seq:cov=pooled;seq:cov=hetero;"
    "seq:cov=pooled,statistic=loss;refcal;rmia"
)

WEAK_ATTACKS = (
    "lira;lira:variance=fixed;lira:statistic=loss;lira:statistic=loss,variance=fixed;"
    "seq:cov=diag;seq:cov=diag,statistic=loss;seq:cov=pooled;seq:cov=hetero;"
    "profile;profile:statistic=loss;profile:variance=fixed;profile:statistic=loss,variance=fixed;"
    "profile:variance=fixed,by=difficulty+token;refcal;rmia"
)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    cfg = kjv_gpt.get_config("")
    cfg.num_shadow_models = 32
    cfg.data.num_samples = 600
    cfg.train.epochs = 20
    cfg.attack.attacks = ATTACKS
    cfg.attack.targets = "8"  # the first 8 models are targets at each shadow count K
    cfg.attack.bootstrap = 100
    if arg == "gpu":
        cfg.num_shadow_models = 128
        cfg.data.num_samples = 2000
        cfg.train.strategy = "vmap"
        cfg.model.compute_dtype = "bfloat16"
        cfg.train.log_every = 100
        cfg.train.checkpoint_every = 400
        cfg.attack.targets = "8"
    elif arg == "many":
        cfg.num_shadow_models = 256
        cfg.data.seq_len = 32
        cfg.data.num_samples = 500
        cfg.model.num_layers = 1
        cfg.train.epochs = 30
        cfg.train.log_every = 40
        cfg.train.checkpoint_every = 80
        cfg.attack.attacks = ATTACKS + ";profile;profile:variance=fixed"
    elif arg == "weak":
        cfg.num_shadow_models = 256
        cfg.data.num_samples = 1000
        cfg.train.epochs = 5
        cfg.train.log_every = 40
        cfg.train.checkpoint_every = 80
        cfg.attack.attacks = WEAK_ATTACKS
    elif arg:
        raise ValueError(f"unknown config argument {arg!r}; use '', 'gpu', 'many' or 'weak'")
    return cfg


def get_sweep(arg: str = "") -> list[dict]:
    num_models = get_config(arg).num_shadow_models
    grid = {"gpu": (4, 16, 64), "many": (4, 16, 64, 128), "weak": (16, 64, 128)}.get(
        arg, (4, 8, 16)
    )
    counts = [k for k in grid if k <= num_models - 2] + [num_models - 2]
    if arg == "weak":
        halves = (study_canaries.VALIDATION, study_canaries.HELD_OUT)
        return [{"attack.num_shadows": k, "attack.targets": t} for k in counts for t in halves]
    return [{"attack.num_shadows": k} for k in counts]

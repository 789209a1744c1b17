"""Study: the paper's headline against its own baseline, with FPR 1e-4 resolved.

The paper's "naive approach" is LiRA with a per-sample variance and few
shadows. This is the ``many`` ensemble of ``study_shadows`` (S = 256 one-layer
GPTs on N = 500 KJV windows of 32 bytes, 30 epochs), with every model a
target: S x N/2 = 64,000 negatives at each shadow count K, enough for FPR 1e-4.
Each target is evaluated against K = 4, ..., 254 shadows (whole complementary
pairs, ``membership.shadow_subset``) from the one trained and scored ensemble.

    python -m experiments.sweep --config=configs/study_baseline.py --workdir=runs/study_baseline
    python -m experiments.study.baseline_table runs/study_baseline/sweep.csv

Arguments: "" (2 CPU cores: training as ``study_shadows:many``, about 15
minutes, then one attack evaluation per K, about 15 minutes in all; results
in docs/study.md, H15).
"""

import ml_collections

from configs import study_shadows

# Univariate LiRA, as published (per-sample variance) and with the variance
# pooled across samples (fixed), on the logit and on the loss statistic.
UNIVARIATE = (
    "lira",
    "lira:variance=fixed",
    "lira:statistic=loss",
    "lira:statistic=loss,variance=fixed",
)
# Sequence-aware: per-sample per-token models (diag, hetero), a covariance
# shared across samples (pooled), the same with IN and OUT tied, and the
# shared token profile (with the per-sample variance, as ``lira``, and fixed;
# on the logit and on the loss, as the univariate LiRAs it is compared with).
SEQUENCE = (
    "seq:cov=diag",
    "seq:cov=pooled",
    "seq:cov=pooled,tied=true",
    "seq:cov=hetero",
    "profile",
    "profile:variance=fixed",
    "profile:statistic=loss",
    "profile:statistic=loss,variance=fixed",
)
ATTACKS = ";".join(UNIVARIATE + SEQUENCE + ("rmia",))
SHADOW_COUNTS = (4, 8, 16, 32, 64, 128, 254)  # even, at most S - 2


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    if arg:
        raise ValueError(f"unknown config argument {arg!r}; use ''")
    cfg = study_shadows.get_config("many")  # same training identity: same train-<hash>
    cfg.attack.attacks = ATTACKS
    cfg.attack.targets = ""  # every model is a target: 256 x 250 = 64,000 negatives
    cfg.attack.bootstrap = 100  # resampling samples, for the 95% CIs
    return cfg


def get_sweep(arg: str = "") -> list[dict]:
    num_models = get_config(arg).num_shadow_models
    return [{"attack.num_shadows": k} for k in SHADOW_COUNTS if k <= num_models - 2]

"""Study: DP-SGD at epsilon 1, 4, 8 and without DP, on models sized like the default audit.

S = 16 GPTs (2 layers, width 64) on N = 1,000 KJV windows of L = 64 bytes, 15
epochs (kjv_gpt's default); DP points clip each example's gradient to norm 1
and take the noise that gives the point's epsilon at delta 1e-5 (PLD
accountant). Every attack's empirical epsilon lower bounds choose their
threshold on targets 0-7 and are evaluated on targets 8-15.

    python -m experiments.sweep --config=configs/study_dp.py --workdir=runs/study_dp
    python -m experiments.study.dp_table --workdir=runs/study_dp

Arguments: "" (2 CPU cores), "tiny" (tests), "gpu".
"""

import ml_collections

from configs import kjv_dp

ATTACKS = (
    "lira;lira:variance=fixed;lira:statistic=loss,variance=fixed;seq:cov=pooled;profile;loss;rmia"
)
EPSILONS = (1.0, 4.0, 8.0)  # and infinity: no DP-SGD


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    cfg = kjv_dp.get_config(arg)
    cfg.attack.attacks = ATTACKS
    return cfg


def get_sweep(arg: str = "") -> list[dict]:
    del arg
    points = [{"train.dp_target_epsilon": eps} for eps in EPSILONS]
    # No DP: no clipping, no noise, and the ordinary global-norm clip of kjv_gpt.
    points.append(
        {"train.dp_clip_norm": 0.0, "train.dp_target_epsilon": 0.0, "train.grad_clip": 1.0}
    )
    return points

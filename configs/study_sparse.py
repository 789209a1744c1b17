"""Study: sparse aggregations of per-token evidence (``sparse``) on the S = 256 ensemble of H15.

The same trained and scored ensemble as ``study_baseline`` (same training
identity, so a sweep directory that already holds it reuses it), every model
a target (64,000 negatives), each target against K = 4, 16, 64 and 254
shadows. The attacks and their options were fixed before any real run: the
univariate LiRAs of H15, the best sequence-aware attack there
(``profile:statistic=loss,variance=fixed``), and six ``sparse`` variants
(top-k with k = 0.1, offline and online, per-sample and pooled variance, on
the logit and the loss; higher criticism with alpha = 0.5).

    python -m experiments.sweep --config=configs/study_sparse.py --workdir=runs/study_sparse
    python -m experiments.study.baseline_table runs/study_sparse/sweep.csv
"""

import ml_collections

from configs import study_baseline

SPARSE = (
    "sparse",
    "sparse:variance=fixed",
    "sparse:mode=online,variance=fixed",
    "sparse:agg=hc,variance=fixed",
    "sparse:statistic=loss,variance=fixed",
    "sparse:statistic=loss,mode=online,variance=fixed",
)
ATTACKS = ";".join(study_baseline.UNIVARIATE + ("profile:statistic=loss,variance=fixed",) + SPARSE)
SHADOW_COUNTS = (4, 16, 64, 254)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    cfg = study_baseline.get_config(arg)
    cfg.attack.attacks = ATTACKS
    return cfg


def get_sweep(arg: str = "") -> list[dict]:
    num_models = get_config(arg).num_shadow_models
    return [{"attack.num_shadows": k} for k in SHADOW_COUNTS if k <= num_models - 2]

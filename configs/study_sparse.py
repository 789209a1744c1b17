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

Arguments:

- "" (the ensemble above);
- "secrets": the secrets audit of ``kjv_secrets.py:gpu`` at L = 256, 64
  models, for one H100/H200 (``scripts/gpu_session.sh`` phase
  ``sparse_secrets``); "secrets-cpu" the default CPU secrets audit (S = 16,
  L = 64); "secrets-cpu-32" the same with S = 32; "secrets-cpu-256" at
  L = 256 (its training ETA was 33 minutes on 2 cores); "secrets-dp" the
  default with DP-SGD as ``kjv_dp`` sets it up (epsilon 8); "secrets-tiny"
  (tests). They skip exposure (the membership question only);
- "finetune", "finetune-lora": the default fine-tuning audit
  (``kjv_finetune``), full and LoRA;
- "onset": the width-128 models of H2b (``study_regime``: S = 16,
  N = 1,000, L = 64) between its 5 and 30 epochs, where memorization begins:
  8, 12 and 16 epochs.

Except for "", a sweep is the two target halves, choose on the first and
report on the second (``experiments.study.heldout_table``); ``experiments.run``
runs every target at once, as the epsilon lower bounds want:

    python -m experiments.sweep --config=configs/study_sparse.py:onset --workdir=runs/study_onset
    python -m experiments.study.heldout_table runs/study_onset/sweep.csv
"""

import ml_collections

from configs import kjv_dp, kjv_finetune, kjv_secrets, study_baseline, study_canaries, study_regime

SPARSE = (
    "sparse",
    "sparse:variance=fixed",
    "sparse:mode=online,variance=fixed",
    "sparse:agg=hc,variance=fixed",
    "sparse:statistic=loss,variance=fixed",
    "sparse:statistic=loss,mode=online,variance=fixed",
)
# Each position against its own empirical null (fixed after the runs of H16, before
# any real run of the empirical null).
EMPIRICAL = (
    "sparse:null=empirical,variance=fixed",
    "sparse:statistic=loss,null=empirical,variance=fixed",
    "sparse:mode=online,null=empirical,variance=fixed",
    "sparse:agg=hc,null=empirical,variance=fixed",
)
ATTACKS = ";".join(
    study_baseline.UNIVARIATE + ("profile:statistic=loss,variance=fixed",) + SPARSE + EMPIRICAL
)
SECRETS_ATTACKS = ";".join(
    study_baseline.UNIVARIATE
    + ("seq:cov=pooled", "profile:variance=fixed", "profile:statistic=loss,variance=fixed")
    + SPARSE
    + EMPIRICAL
)
FINETUNE_ATTACKS = (
    SECRETS_ATTACKS + ";profile:difficulty=base,statistic=loss,variance=fixed;baseref"
)
SHADOW_COUNTS = (4, 16, 64, 254)
ONSET_EPOCHS = (8, 12, 16)
SECRETS = {  # argument: (kjv_secrets variant, window length, models)
    "secrets": ("gpu", 256, None),
    "secrets-cpu": ("", 64, None),
    "secrets-cpu-32": ("", 64, 32),
    "secrets-cpu-256": ("", 256, None),
    "secrets-dp": ("", 64, None),
    "secrets-tiny": ("tiny", None, None),
}
FINETUNE = {"finetune": "", "finetune-lora": "lora"}  # argument: kjv_finetune's


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    if arg in SECRETS:
        variant, length, models = SECRETS[arg]
        cfg = kjv_secrets.get_config(variant)
        if length:
            cfg.data.seq_len = length
        if models:
            cfg.num_shadow_models = models
        if arg == "secrets-dp":  # DP-SGD as kjv_dp sets it up, at kjv_dp's epsilon 8
            dp = kjv_dp.get_config("")
            cfg.membership = dp.membership
            cfg.train.update({k: v for k, v in dp.train.items() if k.startswith("dp_")})
            cfg.train.grad_clip = dp.train.grad_clip
        cfg.score.exposure_samples = 0
        cfg.attack.attacks = SECRETS_ATTACKS
        return cfg
    if arg in FINETUNE:
        cfg = kjv_finetune.get_config(FINETUNE[arg])
        cfg.attack.attacks = FINETUNE_ATTACKS
        return cfg
    if arg == "onset":
        cfg = study_regime.get_config("")
        cfg.model.embed_dim = 128
        cfg.attack.attacks = SECRETS_ATTACKS
        return cfg
    if arg:
        raise ValueError(
            f"unknown config argument {arg!r}; use '', 'onset', "
            f"{', '.join(map(repr, [*SECRETS, *FINETUNE]))}"
        )
    cfg = study_baseline.get_config(arg)
    cfg.attack.attacks = ATTACKS
    return cfg


def get_sweep(arg: str = "") -> list[dict]:
    if arg == "onset":
        return [
            {"train.epochs": epochs, "attack.targets": targets}
            for epochs in ONSET_EPOCHS
            for targets in (study_canaries.VALIDATION, study_canaries.HELD_OUT)
        ]
    num_models = get_config(arg).num_shadow_models
    if arg in SECRETS or arg in FINETUNE:
        # every model a target: choose on one half, report on the other
        half = num_models // 2
        return [{"attack.targets": f"0:{half}"}, {"attack.targets": f"{half}:{num_models}"}]
    return [{"attack.num_shadows": k} for k in SHADOW_COUNTS if k <= num_models - 2]

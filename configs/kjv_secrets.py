"""Secrets in ordinary text: GPT shadows on KJV windows that each end in a secret PIN.

Every model trains on every carrier window; an IN model sees the sample's own
secret, an OUT model the same window with a fresh secret of its own, so IN and
OUT differ only in the secret (``seqmia_jax.data.secrets``). The audit adds
exposure (the secret's rank among all A^m candidates) and extraction (greedy
decoding of the secret from its prefix) to the membership attacks.

Arguments: "" (default, CPU), "tiny" (tests), "gpu" (one H100/H200), and
"L=<n>" for the default at another window length (the dilution study).

    python -m experiments.run --config=configs/kjv_secrets.py
"""

import ml_collections

from configs import kjv_gpt


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    base, _, length = arg.partition("L=") if arg.startswith("L=") else (arg, "", "")
    cfg = kjv_gpt.get_config("tiny" if base == "tiny" else "gpu" if base == "gpu" else "")
    if base not in ("", "tiny", "gpu"):
        raise ValueError(f"unknown config argument {arg!r}; use '', 'tiny', 'gpu' or 'L=<n>'")
    cfg.data.secret_symbols = 4  # m: a 4-digit PIN, A^m = 10^4 candidates (exact exposure)
    cfg.data.secret_alphabet = "digits"
    cfg.data.secret_template = " PIN "  # the text right before each secret
    cfg.data.secret_at = "end"
    cfg.data.secret_repeats = 1  # r: copies of each carrier (with its secret) per epoch
    # 128 carriers, each seen 100 times: a small byte model memorizes the PINs, and
    # 16 models x 64 OUT samples give 1,024 negatives, enough to resolve FPR 1e-3.
    cfg.data.num_samples = 128
    cfg.train.epochs = 100
    cfg.score.exposure_samples = 8  # exact exposure costs A^(m-1) forward passes per sample
    cfg.score.extract_prefix = 0  # ordinary-text extraction: off by default
    cfg.score.extract_tokens = 0
    if base == "tiny":
        cfg.data.num_samples = 64
        cfg.data.secret_symbols = 3  # 10^3 candidates: exact exposure stays cheap
        cfg.train.epochs = 2
        cfg.score.exposure_samples = 4
    elif base == "gpu":  # S=64, 4 layers, width 256, L=128 (kjv_gpt's gpu model)
        cfg.data.num_samples = 1024  # 64 x 512 = 32,768 negatives: resolves FPR 1e-4
        cfg.train.epochs = 60
        cfg.score.exposure_samples = 64
        cfg.attack.targets = ""
    if length:
        cfg.data.seq_len = int(length)
    return cfg

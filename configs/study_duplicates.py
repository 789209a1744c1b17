"""Study: duplicated samples, where memorization grows with repetition.

A seeded 10% of the audit pool (``data.duplicated_samples``) is repeated d
times in every training set that holds it (``data.duplicates``), as documents
are in web-scale corpora; every sample also carries k = 8 random digits
(``data.canary_tokens``), rare content that repetition can make the model
memorize. If memorization concentrates on a few positions of the repeated
samples, a per-token attack should gain over the mean loss there.

Each d trains its own ensemble (d = 1 is the canary study's k = 8 ensemble).
Targets 0-7 are the validation half, 8-15 the held-out half. d = 4 already
brings the train/test gap to 9.7%, the edge of an auditor's typical range.

    python -m experiments.sweep --config=configs/study_duplicates.py --workdir=runs/study_duplicates

Argument: "" (2 CPU cores: S=32, N=1000, L=64; about 6 and 14 minutes for
d = 1 and 4).
"""

import ml_collections

from configs import study_canaries

DUPLICATED = 100
COPIES = (1, 4)


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    if arg:
        raise ValueError(f"unknown config argument {arg!r}; use ''")
    return study_canaries.get_config("")


def get_sweep(arg: str = "") -> list[dict]:
    del arg
    return [
        {
            "data.duplicated_samples": DUPLICATED if d > 1 else 0,
            "data.duplicates": d,
            "attack.targets": targets,
        }
        for d in COPIES
        for targets in (study_canaries.VALIDATION, study_canaries.HELD_OUT)
    ]

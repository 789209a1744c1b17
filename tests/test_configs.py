"""Every shipped config and every point of its sweep is a valid experiment config."""

import importlib
import pathlib

import pytest

from seqmia_jax.attacks import ATTACKS
from seqmia_jax.attacks.specs import parse_spec
from seqmia_jax.config import from_config_dict
from seqmia_jax.pipeline import attack_settings
from seqmia_jax.sweep import apply_overrides

CONFIGS = sorted(
    p.stem
    for p in pathlib.Path(__file__).parent.parent.joinpath("configs").glob("*.py")
    if p.stem != "__init__"
)
# The arguments each config documents besides "".
ARGS = {
    "kjv_gpt": ("tiny", "gpu"),
    "kjv_secrets": ("tiny", "gpu", "L=256"),
    "kjv_dp": ("tiny", "gpu"),
    "study_dp": ("tiny", "gpu"),
    "digits_pixel": ("tiny", "gpu"),
    "study_shadows": ("gpu", "many", "weak"),
    "study_canaries": ("gpu",),
    "study_pixels": ("s32",),
    "study_sparse": (
        "onset",
        "finetune",
        "finetune-lora",
        "secrets",
        "secrets-cpu",
        "secrets-cpu-32",
        "secrets-cpu-256",
        "secrets-dp",
        "secrets-tiny",
    ),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_config_and_sweep_points_are_valid(name):
    module = importlib.import_module(f"configs.{name}")
    for arg in ("",) + ARGS.get(name, ()):
        raw = module.get_config(arg)
        cfg = from_config_dict(raw)
        for spec in attack_settings(cfg)["attacks"] or []:  # targets and specs parse
            assert parse_spec(spec)[0] in ATTACKS, spec
        assert cfg.num_shadow_models % 2 == 0
        for point in getattr(module, "get_sweep", lambda arg: [])(arg):
            attack_settings(from_config_dict(apply_overrides(raw, point)))


def test_the_sparse_study_reuses_the_baseline_ensemble(tmp_path):
    from configs import study_baseline, study_sparse
    from seqmia_jax.sweep import training_dir

    def train_dir(module):
        return training_dir(tmp_path, from_config_dict(module.get_config()))

    assert train_dir(study_sparse) == train_dir(study_baseline)
    secrets = from_config_dict(study_sparse.get_config("secrets"))
    assert secrets.data.seq_len == 256 and secrets.score.exposure_samples == 0
    assert any(spec.startswith("sparse") for spec in attack_settings(secrets)["attacks"])


def test_default_workdir_keeps_the_config_argument():
    from seqmia_jax.launch import workdir_for

    assert workdir_for("configs/kjv_gpt.py") == "runs/kjv_gpt"
    assert workdir_for("configs/kjv_gpt.py:gpu") == "runs/kjv_gpt_gpu"
    assert workdir_for("configs/kjv_gpt.py:tiny") != workdir_for("configs/kjv_gpt.py")

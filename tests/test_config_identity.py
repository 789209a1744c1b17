"""Typed stage configs, the one targets grammar, and the identity rule of work directories.

``tests/data/configs_v0_1.json`` holds resolved configs as seqmia_jax 0.1 wrote
them into ``config.json`` (before the score and attack sections were typed).
Work directories made then must stay valid: a new config field must be marked
``config.added`` (with a default that reproduces the old behaviour) or
``config.setting``, and these tests fail for one that is neither.
"""

import dataclasses
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from seqmia_jax import config as config_lib
from seqmia_jax.config import ConfigError, from_config_dict, parse_targets, to_dict
from seqmia_jax.pipeline import attack_settings
from seqmia_jax.workdir import Workdir, WorkdirError, identity, write_json
from tests.helpers import tiny_config

OLD = json.loads((Path(__file__).parent / "data" / "configs_v0_1.json").read_text())


def _current(key: str) -> dict:
    name, arg = key.split(":")
    cfg = from_config_dict(importlib.import_module(f"configs.{name}").get_config(arg))
    return json.loads(json.dumps(to_dict(cfg), default=str))


@pytest.mark.parametrize("key", sorted(OLD))
def test_identity_of_every_shipped_config_is_unchanged_since_0_1(key):
    assert identity(_current(key)) == identity(OLD[key]), (
        "a config field changed the identity of existing work directories: mark a new field "
        "config.added(default) or config.setting(default)"
    )


def test_a_work_directory_made_by_0_1_binds_to_the_current_config(tmp_path):
    fingerprint = {"name": "kjv", "sha256": "0" * 64}
    write_json(tmp_path / "config.json", {"config": OLD["kjv_gpt:tiny"], "dataset": fingerprint})
    Workdir(tmp_path).bind(tiny_config(), fingerprint)  # no WorkdirError


def test_an_unmarked_new_field_invalidates_old_work_directories(tmp_path):
    # The failure the marker rule prevents: a plain new field enters the identity.
    @dataclasses.dataclass(frozen=True)
    class DataWithNewField(config_lib.DataConfig):
        new_knob: int = 0

    new = to_dict(tiny_config())
    new["data"]["new_knob"] = 0
    assert "data.new_knob" in identity(new)
    fingerprint = {"name": "kjv"}
    write_json(tmp_path / "config.json", {"config": OLD["kjv_gpt:tiny"], "dataset": fingerprint})
    cfg = dataclasses.replace(
        tiny_config(), data=DataWithNewField(**dataclasses.asdict(tiny_config().data))
    )
    with pytest.raises(WorkdirError, match="data.new_knob: new field"):
        Workdir(tmp_path).bind(cfg, fingerprint)


def test_marked_fields_are_the_documented_ones():
    never, neutral = config_lib.identity_rules()
    assert never == {
        "train.strategy",
        "train.map_chunk",
        "train.checkpoint_every",
        "train.log_every",
        "train.dp_microbatch",
        "model.remat",
        "model.attention",
        "base.dir",
        "score",
        "attack",
    }
    assert neutral == {
        "membership": "balanced",
        "data.canary_tokens": 0,
        "data.duplicated_samples": 0,
        "data.duplicates": 1,
        "data.secret_symbols": 0,
        "data.secret_alphabet": "digits",
        "data.secret_repeats": 1,
        "data.secret_template": "",
        "data.secret_at": "end",
        "train.dp_clip_norm": 0.0,
        "train.dp_noise_multiplier": 0.0,
        "train.dp_target_epsilon": 0.0,
        "train.dp_delta": 1e-5,
        "data.tokenizer": "bytes",
        "train.finetune": "full",
        "train.lora_rank": 8,
        "train.lora_alpha": 16.0,
        "train.lora_targets": "qkv,out,up,down",
        "base.source": "none",
        "base.epochs": 5,
        "base.batch_size": 32,
        "base.learning_rate": 3e-3,
        "base.warmup_steps": 20,
        "base.max_windows": 0,
    }


def test_score_and_attack_sections_are_typed_with_one_set_of_defaults():
    cfg = from_config_dict({})
    assert cfg.score == config_lib.ScoreConfig() and cfg.score.batch_size == 256
    assert cfg.attack == config_lib.AttackConfig() and cfg.attack.bootstrap == 200
    with pytest.raises(
        ConfigError, match="'attack.bootstrapp' in attack; did you mean 'bootstrap'"
    ):
        from_config_dict({"attack": {"bootstrapp": 5}})
    with pytest.raises(ConfigError, match="attack.num_targets was replaced by attack.targets"):
        from_config_dict({"attack": {"num_targets": 4}})


def test_targets_grammar():
    assert parse_targets("") is None and parse_targets(" all ") is None
    assert parse_targets("8") == 8 and parse_targets(8) == 8  # the first 8 models
    assert parse_targets("8:12") == [8, 9, 10, 11]
    assert parse_targets("0,3,5") == [0, 3, 5] and parse_targets("5,") == [5]
    for bad in ("first half", "16:8", "1:2:3", ","):
        with pytest.raises(ConfigError, match="targets must be K"):
            parse_targets(bad)


def test_targets_are_checked_against_the_number_of_models():
    for bad in ("0", "9", "6:10", "3,8"):  # S = 8 in the tiny config
        with pytest.raises(ConfigError, match="attack.targets"):
            tiny_config(**{"attack.targets": bad})
    assert attack_settings(tiny_config(**{"attack.targets": "4"}))["targets"] == 4
    assert attack_settings(tiny_config(**{"attack.targets": "4,"}))["targets"] == [4]
    assert attack_settings(tiny_config())["targets"] is None


def test_attack_cli_help_and_config_share_the_targets_grammar():
    out = subprocess.run(
        [sys.executable, "-m", "experiments.attack", "--helpfull"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
        check=False,
    ).stdout
    assert "K (the first K), a range a:b, or a list i,j,k" in out
    # The CLI parses with the config's own function, so "8" means the same in both.
    attack_cli = importlib.import_module("experiments.attack")
    assert attack_cli.parse_targets is parse_targets


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"train.epochs": 0}, r"train.epochs must be >= 1; got 0"),
        ({"train.learning_rate": 0.0}, r"train.learning_rate must be > 0"),
        ({"num_shadow_models": 4}, r"num_shadow_models must be even .* >= 6 .*got 4"),
        ({"data.num_samples": 63}, r"data.num_samples must be even"),
        ({"model.name": "rnn"}, r"unknown model 'rnn' \(model.name\); known: gpt, pixel"),
        ({"attack.targets": "9"}, r"attack.targets=9 .* must be in \[1, S=8\]"),
        ({"attack.targets": "7,8"}, r"attack.targets must lie in \[0, S=8\)"),
        ({"attack.bootstrap": -3}, r"attack.bootstrap must be >= 0; got -3"),
        (
            {"attack.num_shadows": 8},
            r"attack.num_shadows must be 0 \(all\) or even in \[4, S-2=6\]",
        ),
        ({"train.epochs": "3"}, r"train.epochs must be int; got '3'"),
        ({"model.remat": 1}, r"model.remat must be bool; got 1"),
        ({"train.strategy": "fast"}, r"train.strategy must be one of auto, vmap, map, loop"),
        ({"attack.attacks": "lira;nosuch"}, r"attack.attacks: unknown attack 'nosuch'"),
        ({"attack.attacks": "lira:bogus=1"}, r"attack.attacks: .*unknown option\(s\) bogus"),
    ],
)
def test_impossible_configs_are_refused_before_anything_is_written(overrides, match):
    raw = importlib.import_module("configs.kjv_gpt").get_config("tiny").to_dict()
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = raw
        for p in parents:
            node = node[p]
        node[leaf] = value
    with pytest.raises(ConfigError, match=match):
        from_config_dict(raw)


def test_an_int_is_accepted_for_a_float_field():
    assert from_config_dict({"train": {"learning_rate": 1}}).train.learning_rate == 1.0

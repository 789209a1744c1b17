"""Typed, frozen configuration.

Configs are written as ml_collections ConfigDicts in ``configs/*.py``; the
library converts them here, at the boundary, into frozen dataclasses so jitted
code sees hashable, typed settings and typos fail loudly. Every default lives
here, once.

**Which fields define a work directory.** A trained ensemble is identified by
its config (``seqmia_jax.workdir.identity``), and a work directory made with
another identity is refused. Two field markers, read by ``identity_rules``,
decide what enters it:

- ``setting(default)``: does not change the trained parameters (beyond float
  rounding), such as the training strategy or a stage's own options; never
  compared.
- ``added(default)``: a field that did not exist when older work directories
  were made. Its default must reproduce the older behaviour; at the default it
  is left out of the identity, so those directories (and sweep hashes) stay
  valid. ``tests/test_config_identity.py`` fails for a new field that is
  neither.
"""

import dataclasses
from typing import Any


class ConfigError(ValueError):
    """An impossible or inconsistent configuration."""


def setting(default: Any) -> Any:
    """A field that does not change what training computes (not part of the identity)."""
    return dataclasses.field(default=default, metadata={"identity": False})


def added(default: Any) -> Any:
    """A field added after work directories existed; its default reproduces the old behaviour."""
    return dataclasses.field(default=default, metadata={"added": True})


@dataclasses.dataclass(frozen=True)
class DataConfig:
    name: str = "kjv"  # registered dataset name
    seq_len: int = 64  # L: tokens (or sub-pixels) per sample
    num_samples: int = 2000  # N: size of the audit pool
    selection: str = "first"  # "first" N windows, or a seeded "random" N
    seed: int = 0  # seed of the "random" selection
    levels: int = 16  # intensity levels for image datasets
    split: str = "train"  # tfds split
    data_dir: str | None = None  # tfds data_dir (None: tfds default)
    canary_tokens: int = added(0)  # k: a run of k random tokens planted in every sample
    duplicated_samples: int = added(0)  # how many audit samples are duplicated in training (even)
    duplicates: int = added(1)  # copies of a duplicated sample in each training set holding it


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    name: str = "gpt"  # registered model name: "gpt" or "pixel"
    num_layers: int = 2
    embed_dim: int = 64
    num_heads: int = 4
    mlp_ratio: int = 4  # MLP hidden width = mlp_ratio * embed_dim
    compute_dtype: str = "float32"  # "bfloat16" on accelerators; params stay f32
    remat: bool = setting(False)  # rematerialize each block in the backward pass
    attention: str = setting("xla")  # "xla", or "cudnn" (fused; GPU with bfloat16 compute)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10  # passes over each model's own IN set
    batch_size: int = 32  # per model
    learning_rate: float = 3e-3
    warmup_steps: int = 20
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    strategy: str = setting("auto")  # "vmap", "map", "loop" or "auto"
    map_chunk: int = setting(0)  # models per vmap chunk under "map" (0: one at a time)
    checkpoint_every: int = setting(200)  # steps between checkpoints
    log_every: int = setting(50)  # steps between log lines


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
    batch_size: int = 256  # samples per scoring batch, per model


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    attacks: str = ""  # ";"-separated specs; "" = the default set
    targets: str = ""  # target models, grammar of ``parse_targets``; "" = all S models
    bootstrap: int = 200  # bootstrap resamples for the 95% CIs
    num_shadows: int = 0  # sweeps only: evaluate each target against K shadows (0: all)


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    num_shadow_models: int = 16  # S
    seed: int = 0
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    # A stage's own options: never part of the identity of the trained ensemble.
    score: ScoreConfig = dataclasses.field(
        default_factory=ScoreConfig, metadata={"identity": False}
    )
    attack: AttackConfig = dataclasses.field(
        default_factory=AttackConfig, metadata={"identity": False}
    )


SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "score": ScoreConfig,
    "attack": AttackConfig,
}
# Fields that were renamed or merged: a clear message instead of "unknown field".
_REPLACED = {
    "attack.num_targets": "attack.targets (e.g. '8' for the first 8 models, '8:16', '0,3,5')",
}


def identity_rules() -> tuple[set[str], dict[str, Any]]:
    """(dotted names never compared, dotted added fields -> their neutral default)."""
    never, neutral = set(), {}

    def walk(cls: type, prefix: str) -> None:
        for f in dataclasses.fields(cls):
            name = prefix + f.name
            if not f.metadata.get("identity", True):
                never.add(name)
            elif f.name in SECTIONS and cls is ExperimentConfig:
                walk(SECTIONS[f.name], name + ".")
            elif f.metadata.get("added"):
                neutral[name] = f.default

    walk(ExperimentConfig, "")
    return never, neutral


def parse_targets(text: str | int) -> list[int] | int | None:
    """The one grammar of target models (``attack.targets``, ``--targets``, sweeps).

    ``""`` or ``"all"``: every model; ``"K"``: the first K models; ``"a:b"``:
    models a..b-1; ``"i,j,k"``: those models (one model: ``"5,"``). Explicit
    targets let a study choose variants on some targets (validation) and
    report on others (held out).
    """
    text = str(text).strip()
    if text in ("", "all"):
        return None
    try:
        if ":" in text:
            start, stop = (int(part) for part in text.split(":"))
            targets = list(range(start, stop))
        elif "," in text:
            targets = [int(part) for part in text.split(",") if part.strip()]
        else:
            return int(text)
    except ValueError:
        targets = []
    if not targets:
        raise ConfigError(
            f"targets must be K (the first K models), a range 'a:b' or a list 'i,j,k'; got {text!r}"
        )
    return targets


def _build(cls, values: Any, where: str):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    for name in unknown:
        dotted = f"{where}.{name}" if where != "config" else name
        if dotted in _REPLACED:
            raise ConfigError(f"config field {dotted} was replaced by {_REPLACED[dotted]}")
    if unknown:
        raise ConfigError(f"unknown config field(s) in {where}: {unknown}")
    return cls(**values)


def from_config_dict(config: Any) -> ExperimentConfig:
    """Converts an ml_collections ConfigDict (or a plain dict) into dataclasses."""
    raw = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    raw = dict(raw)
    sections = {name: _build(cls, raw.pop(name, {}), name) for name, cls in SECTIONS.items()}
    if not isinstance(sections["attack"].targets, str):  # a sweep may give an int
        sections["attack"] = dataclasses.replace(
            sections["attack"], targets=str(sections["attack"].targets)
        )
    cfg = _build(ExperimentConfig, {**raw, **sections}, "config")
    validate(cfg)
    return cfg


def validate(cfg: ExperimentConfig) -> None:
    """Rejects impossible settings with a message that names the field."""
    s = cfg.num_shadow_models
    if s < 2 or s % 2:
        raise ConfigError(
            f"num_shadow_models must be even and >= 2 so each sample is IN for exactly "
            f"S/2 models; got {s}"
        )
    if cfg.data.seq_len < 2:
        raise ConfigError(f"data.seq_len must be >= 2; got {cfg.data.seq_len}")
    if cfg.data.num_samples < 2:
        raise ConfigError(f"data.num_samples must be >= 2; got {cfg.data.num_samples}")
    if cfg.data.selection not in ("first", "random"):
        raise ConfigError(f"data.selection must be 'first' or 'random'; got {cfg.data.selection!r}")
    dup, copies = cfg.data.duplicated_samples, cfg.data.duplicates
    if not 0 <= dup <= cfg.data.num_samples or dup % 2:
        raise ConfigError(
            f"data.duplicated_samples must be even and in [0, num_samples="
            f"{cfg.data.num_samples}] (half of them train each model); got {dup}"
        )
    if copies < 1 or (copies > 1) != (dup > 0):
        raise ConfigError(
            "set data.duplicated_samples > 0 and data.duplicates > 1 together (or neither); "
            f"got duplicated_samples={dup}, duplicates={copies}"
        )
    if cfg.model.embed_dim % cfg.model.num_heads:
        raise ConfigError(
            f"model.embed_dim ({cfg.model.embed_dim}) must be divisible by "
            f"model.num_heads ({cfg.model.num_heads})"
        )
    if cfg.train.strategy not in ("auto", "vmap", "map", "loop"):
        raise ConfigError(
            f"train.strategy must be auto, vmap, map or loop; got {cfg.train.strategy!r}"
        )
    if cfg.train.batch_size > cfg.data.num_samples // 2:
        raise ConfigError(
            f"train.batch_size ({cfg.train.batch_size}) exceeds the IN set per model "
            f"(num_samples/2 = {cfg.data.num_samples // 2})"
        )
    _validate_targets(cfg)
    if cfg.score.batch_size < 1:
        raise ConfigError(f"score.batch_size must be >= 1; got {cfg.score.batch_size}")
    if cfg.attack.bootstrap < 0:
        raise ConfigError(f"attack.bootstrap must be >= 0; got {cfg.attack.bootstrap}")
    if cfg.model.compute_dtype not in ("float32", "bfloat16"):
        raise ConfigError(
            f"model.compute_dtype must be float32 or bfloat16; got {cfg.model.compute_dtype!r}"
        )


def _validate_targets(cfg: ExperimentConfig) -> None:
    s = cfg.num_shadow_models
    targets = parse_targets(cfg.attack.targets)
    if isinstance(targets, int) and not 1 <= targets <= s:
        raise ConfigError(f"attack.targets={targets} (the first K models) must be in [1, S={s}]")
    if isinstance(targets, list) and not all(0 <= t < s for t in targets):
        raise ConfigError(f"attack.targets must lie in [0, S={s}); got {cfg.attack.targets!r}")


def to_dict(cfg: ExperimentConfig) -> dict:
    return dataclasses.asdict(cfg)

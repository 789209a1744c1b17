"""Typed, frozen configuration.

Configs are written as ml_collections ConfigDicts in ``configs/*.py``; the
library converts them here, at the boundary, into frozen dataclasses so jitted
code sees hashable, typed settings and typos fail loudly.
"""

import dataclasses
from typing import Any


class ConfigError(ValueError):
    """An impossible or inconsistent configuration."""


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
    canary_tokens: int = 0  # k: a run of k random tokens planted in every sample (0: none)
    duplicated_samples: int = 0  # how many audit samples are duplicated in training (even)
    duplicates: int = 1  # copies of a duplicated sample in each training set that holds it


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    name: str = "gpt"  # registered model name: "gpt" or "pixel"
    num_layers: int = 2
    embed_dim: int = 64
    num_heads: int = 4
    mlp_ratio: int = 4  # MLP hidden width = mlp_ratio * embed_dim
    compute_dtype: str = "float32"  # "bfloat16" on accelerators; params stay f32
    remat: bool = False  # rematerialize each block in the backward pass
    attention: str = "xla"  # "xla", or "cudnn" (fused; GPU with bfloat16 compute)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10  # passes over each model's own IN set
    batch_size: int = 32  # per model
    learning_rate: float = 3e-3
    warmup_steps: int = 20
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    strategy: str = "auto"  # "vmap", "map", "loop" or "auto"
    map_chunk: int = 0  # models per vmap chunk under "map" (0: one at a time)
    checkpoint_every: int = 200  # steps between checkpoints
    log_every: int = 50  # steps between log lines


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    num_shadow_models: int = 16  # S
    seed: int = 0
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    score: dict = dataclasses.field(default_factory=dict, hash=False, compare=True)
    attack: dict = dataclasses.field(default_factory=dict, hash=False, compare=True)


def _build(cls, values: Any, where: str):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ConfigError(f"unknown config field(s) in {where}: {sorted(unknown)}")
    return cls(**values)


def from_config_dict(config: Any) -> ExperimentConfig:
    """Converts an ml_collections ConfigDict (or a plain dict) into dataclasses."""
    raw = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    raw = dict(raw)
    data = _build(DataConfig, raw.pop("data", {}), "data")
    model = _build(ModelConfig, raw.pop("model", {}), "model")
    train = _build(TrainConfig, raw.pop("train", {}), "train")
    raw.setdefault("score", {})
    raw.setdefault("attack", {})
    cfg = _build(ExperimentConfig, {**raw, "data": data, "model": model, "train": train}, "config")
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
    if cfg.model.compute_dtype not in ("float32", "bfloat16"):
        raise ConfigError(
            f"model.compute_dtype must be float32 or bfloat16; got {cfg.model.compute_dtype!r}"
        )


def to_dict(cfg: ExperimentConfig) -> dict:
    return dataclasses.asdict(cfg)

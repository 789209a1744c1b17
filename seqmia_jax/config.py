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
import difflib
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
    # Secrets (seqmia_jax.data.secrets): m symbols planted in every sample; 0 = none.
    secret_symbols: int = added(0)  # m
    secret_alphabet: str = added("digits")  # "digits", "hex" or "letters"
    secret_repeats: int = added(1)  # r: copies of each carrier (and its secret) per epoch
    secret_template: str = added("")  # text right before each secret, e.g. "my PIN is "
    secret_at: str = added("end")  # "end" of the sample, or a seeded "random" place
    # "bytes" (vocab 256, one token per byte) or "bpe:<V>": a byte-level BPE
    # vocabulary of V tokens learned from the corpus outside the audit pool.
    tokenizer: str = added("bytes")


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
    # DP-SGD (seqmia_jax.ensemble.dp): per-example clipping to dp_clip_norm > 0 turns it on.
    dp_clip_norm: float = added(0.0)  # C: per-example L2 clip norm (0: no DP-SGD)
    dp_noise_multiplier: float = added(0.0)  # sigma: noise std is sigma * C
    dp_target_epsilon: float = added(0.0)  # > 0: derive sigma from it (overrides the above)
    dp_delta: float = added(1e-5)  # delta of the reported (epsilon, delta)
    dp_microbatch: int = setting(0)  # per-example gradients this many rows at a time (0: all)
    # Fine-tuning from a base (``base.source`` != "none"): "full" trains every
    # weight from the base's; "lora" trains only low-rank adapters on a frozen base.
    finetune: str = added("full")
    lora_rank: int = added(8)  # r
    lora_alpha: float = added(16.0)  # adapters add (alpha / r) x A B to a weight
    lora_targets: str = added("qkv,out,up,down")  # comma-separated names of adapted Linear layers


@dataclasses.dataclass(frozen=True)
class BaseConfig:
    """The pretrained base that shadows are fine-tuned from (``seqmia_jax.pretrain``)."""

    source: str = added("none")  # "none" (from scratch), "pretrain", or "checkpoint:<dir>"
    dir: str = setting("")  # where "pretrain" keeps its base ("": <workdir>/base); share it
    epochs: int = added(5)  # passes over the public corpus (the text outside the audit pool)
    batch_size: int = added(32)
    learning_rate: float = added(3e-3)
    warmup_steps: int = added(20)
    max_windows: int = added(0)  # use at most this many public windows (0: all)


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
    batch_size: int = 256  # samples per scoring batch, per model
    # Memorization measures beside the statistics (seqmia_jax.extraction).
    exposure_samples: int = 64  # secrets: exposure of the first K samples (0: none, -1: all)
    exposure_exact_limit: int = 100_000  # rank exactly up to this many candidates (A^m)
    exposure_candidates: int = 2048  # sampled candidates for the skew-normal estimate above it
    extract_prefix: int = 0  # ordinary text: k tokens of prompt ...
    extract_tokens: int = 0  # ... then greedy-decode n tokens (0: no text extraction)


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
    # Membership design (seqmia_jax.membership): "balanced" (every sample IN for
    # exactly S/2 models, every model on N/2 samples) or "poisson" (each sample in
    # each model's training set independently with probability 1/2).
    membership: str = added("balanced")
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    base: BaseConfig = dataclasses.field(default_factory=BaseConfig)
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
    "base": BaseConfig,
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
        close = difflib.get_close_matches(name, list(fields), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(fields)}"
        raise ConfigError(f"unknown config field {dotted!r} in {where}{hint}")
    return cls(**{name: _typed(fields[name], value, where) for name, value in values.items()})


def _typed(field: dataclasses.Field, value: Any, where: str) -> Any:
    """``value`` checked against the field's annotation (ints are accepted for floats)."""
    kind = field.type
    if kind in SECTIONS.values() or dataclasses.is_dataclass(value):
        return value
    allowed = tuple(t for t in getattr(kind, "__args__", (kind,)) if isinstance(t, type))
    ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
    if not ok and float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        names = " or ".join("None" if t is type(None) else t.__name__ for t in allowed)
        raise ConfigError(f"config field {where}.{field.name} must be {names}; got {value!r}")
    return value


def from_config_dict(config: Any) -> ExperimentConfig:
    """Converts an ml_collections ConfigDict (or a plain dict) into dataclasses."""
    raw = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    raw = dict(raw)
    sections = {name: _build(cls, raw.pop(name, {}), name) for name, cls in SECTIONS.items()}
    cfg = _build(ExperimentConfig, {**raw, **sections}, "config")
    from seqmia_jax.validation import validate  # it reads the registries, which import this

    validate(cfg)
    return cfg


def to_dict(cfg: ExperimentConfig) -> dict:
    return dataclasses.asdict(cfg)

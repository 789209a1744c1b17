"""Up-front validation of a whole config: every field's range and every cross-field rule.

``config.from_config_dict`` calls ``validate`` before any stage writes
anything, so an impossible config never leaves a ``config.json`` behind that
would refuse the corrected command.
"""

from seqmia_jax.config import ConfigError, ExperimentConfig, parse_targets

# The fewest models for leave-one-out attacks: every sample needs at least two IN
# and two OUT shadows among the models other than the target (S/2 - 1 >= 2).
MIN_SHADOW_MODELS = 6

POSITIVE = 5e-324  # the smallest float above 0: "must be > 0"

# field: (smallest allowed, largest allowed or None).
_RANGES = {
    "data.seq_len": (2, None),
    "data.num_samples": (2, None),
    "data.levels": (2, 256),
    "data.canary_tokens": (0, None),
    "data.secret_symbols": (0, None),
    "data.secret_repeats": (1, None),
    "model.num_layers": (1, None),
    "model.embed_dim": (1, None),
    "model.num_heads": (1, None),
    "model.mlp_ratio": (1, None),
    "train.epochs": (1, None),
    "train.batch_size": (1, None),
    "train.learning_rate": (POSITIVE, None),
    "train.warmup_steps": (0, None),
    "train.weight_decay": (0, None),
    "train.grad_clip": (POSITIVE, None),
    "train.map_chunk": (0, None),
    "train.checkpoint_every": (1, None),
    "train.log_every": (1, None),
    "train.dp_clip_norm": (0, None),
    "train.dp_noise_multiplier": (0, None),
    "train.dp_target_epsilon": (0, None),
    "train.dp_microbatch": (0, None),
    "train.lora_rank": (1, None),
    "train.lora_alpha": (POSITIVE, None),
    "base.epochs": (1, None),
    "base.batch_size": (1, None),
    "base.learning_rate": (POSITIVE, None),
    "base.warmup_steps": (0, None),
    "base.max_windows": (0, None),
    "score.batch_size": (1, None),
    "score.exposure_samples": (-1, None),
    "score.exposure_exact_limit": (1, None),
    "score.exposure_candidates": (16, None),
    "score.extract_prefix": (0, None),
    "score.extract_tokens": (0, None),
    "attack.bootstrap": (0, None),
    "attack.num_shadows": (0, None),
}
_CHOICES = {
    "data.selection": ("first", "random"),
    "data.secret_at": ("end", "random"),
    "model.compute_dtype": ("float32", "bfloat16"),
    "model.attention": ("xla", "cudnn"),
    "train.strategy": ("auto", "vmap", "map", "loop"),
    "train.finetune": ("full", "lora"),
}


def _get(cfg: ExperimentConfig, dotted: str):
    section, name = dotted.split(".")
    return getattr(getattr(cfg, section), name)


def validate(cfg: ExperimentConfig) -> None:
    """Rejects impossible settings with a one-line message that names the field."""
    s = cfg.num_shadow_models
    if cfg.membership not in ("balanced", "poisson"):
        raise ConfigError(f"membership must be one of balanced, poisson; got {cfg.membership!r}")
    balanced = cfg.membership == "balanced"
    if s < MIN_SHADOW_MODELS or (s % 2 and balanced):
        raise ConfigError(
            f"num_shadow_models must be even (each sample is IN for exactly S/2 models) and "
            f">= {MIN_SHADOW_MODELS} (leave-one-out needs two IN and two OUT shadows besides "
            f"the target); got {s}"
        )
    for dotted, (low, high) in _RANGES.items():
        value = _get(cfg, dotted)
        if value < low or (high is not None and value > high):
            bound = (
                f"in [{low}, {high}]"
                if high is not None
                else ("> 0" if low == POSITIVE else f">= {low}")
            )
            raise ConfigError(f"{dotted} must be {bound}; got {value!r}")
    for dotted, choices in _CHOICES.items():
        if _get(cfg, dotted) not in choices:
            raise ConfigError(
                f"{dotted} must be one of {', '.join(choices)}; got {_get(cfg, dotted)!r}"
            )
    _check_registered(cfg)
    data = cfg.data
    if data.num_samples % 2 and balanced:
        raise ConfigError(
            "data.num_samples must be even so that every model trains on exactly N/2 samples; "
            f"got {data.num_samples}"
        )
    dup, copies = data.duplicated_samples, data.duplicates
    if not 0 <= dup <= data.num_samples or dup % 2:
        raise ConfigError(
            f"data.duplicated_samples must be even and in [0, num_samples={data.num_samples}] "
            f"(half of them train each model); got {dup}"
        )
    if copies < 1 or (copies > 1) != (dup > 0):
        raise ConfigError(
            "set data.duplicated_samples > 0 and data.duplicates > 1 together (or neither); "
            f"got duplicated_samples={dup}, duplicates={copies}"
        )
    if data.secret_symbols:
        from seqmia_jax.data import secrets

        secrets.check_secrets(data)
    train = cfg.train
    if not 0 < train.dp_delta < 1:
        raise ConfigError(f"train.dp_delta must be in (0, 1); got {train.dp_delta!r}")
    if not train.dp_clip_norm and (train.dp_noise_multiplier or train.dp_target_epsilon):
        raise ConfigError(
            "train.dp_noise_multiplier and train.dp_target_epsilon need train.dp_clip_norm > 0 "
            "(DP-SGD clips each example's gradient to it)"
        )
    if train.dp_clip_norm and (data.duplicated_samples or data.secret_repeats > 1):
        raise ConfigError(
            "DP-SGD's epsilon is per training row, and data.duplicated_samples or "
            "data.secret_repeats > 1 put a sample in several rows (group privacy); use "
            "neither with train.dp_clip_norm > 0"
        )
    score = cfg.score
    if (score.extract_prefix > 0) != (score.extract_tokens > 0):
        raise ConfigError(
            "set score.extract_prefix and score.extract_tokens together (or neither); got "
            f"extract_prefix={score.extract_prefix}, extract_tokens={score.extract_tokens}"
        )
    if score.extract_prefix + score.extract_tokens > data.seq_len:
        raise ConfigError(
            f"score.extract_prefix + score.extract_tokens ({score.extract_prefix} + "
            f"{score.extract_tokens}) must be at most data.seq_len={data.seq_len}"
        )
    if cfg.model.embed_dim % cfg.model.num_heads:
        raise ConfigError(
            f"model.embed_dim ({cfg.model.embed_dim}) must be divisible by "
            f"model.num_heads ({cfg.model.num_heads})"
        )
    if cfg.train.batch_size > data.num_samples // 2:
        raise ConfigError(
            f"train.batch_size ({cfg.train.batch_size}) exceeds the IN set per model "
            f"(num_samples/2 = {data.num_samples // 2})"
        )
    _check_base(cfg)
    _check_targets(cfg)
    _check_attack_specs(cfg)
    if not balanced:
        _check_poisson(cfg)


def _check_base(cfg: ExperimentConfig) -> None:
    source = cfg.base.source
    if source not in ("none", "pretrain") and not (
        source.startswith("checkpoint:") and source.split(":", 1)[1]
    ):
        raise ConfigError(
            f"base.source must be 'none', 'pretrain' or 'checkpoint:<dir>'; got {source!r}"
        )
    if cfg.train.finetune == "lora" and source == "none":
        raise ConfigError(
            "train.finetune='lora' needs a base (base.source 'pretrain' or 'checkpoint:<dir>')"
        )
    if cfg.train.finetune == "lora":
        from seqmia_jax.models.lora import parse_targets

        parse_targets(cfg.train.lora_targets)


def _check_attack_specs(cfg: ExperimentConfig) -> None:
    """Every named attack and option is checked now, not after training and scoring."""
    from seqmia_jax.attacks.base import AttackInputError
    from seqmia_jax.attacks.runner import resolve_attack
    from seqmia_jax.attacks.specs import split_specs

    for spec in split_specs(cfg.attack.attacks):
        try:
            resolve_attack(spec)
        except AttackInputError as err:
            raise ConfigError(f"attack.attacks: {err}") from None


def _check_registered(cfg: ExperimentConfig) -> None:
    from seqmia_jax.data import DATASETS
    from seqmia_jax.models import MODELS

    for dotted, kind, registry in (
        ("data.name", "dataset", DATASETS),
        ("model.name", "model", MODELS),
    ):
        if _get(cfg, dotted) not in registry:
            raise ConfigError(
                f"unknown {kind} {_get(cfg, dotted)!r} ({dotted}); known: "
                + ", ".join(registry.names())
            )


def _check_targets(cfg: ExperimentConfig) -> None:
    s = cfg.num_shadow_models
    targets = parse_targets(cfg.attack.targets)
    if isinstance(targets, int) and not 1 <= targets <= s:
        raise ConfigError(f"attack.targets={targets} (the first K models) must be in [1, S={s}]")
    if isinstance(targets, list) and not all(0 <= t < s for t in targets):
        raise ConfigError(f"attack.targets must lie in [0, S={s}); got {cfg.attack.targets!r}")
    if cfg.attack.num_shadows and not (
        cfg.attack.num_shadows % 2 == 0 and 4 <= cfg.attack.num_shadows <= s - 2
    ):  # whole complementary pairs besides the target's, and two IN, two OUT once it is out
        raise ConfigError(
            f"attack.num_shadows must be 0 (all) or even in [4, S-2={s - 2}]; "
            f"got {cfg.attack.num_shadows}"
        )


def _check_poisson(cfg: ExperimentConfig) -> None:
    """Poisson membership: no complementary pairs, and every sample keeps enough shadows.

    The draw is made from the seed now (it is cheap) so that a membership the
    attacks would refuse is refused before any training.
    """
    if cfg.attack.num_shadows:
        raise ConfigError(
            "attack.num_shadows > 0 evaluates targets against whole complementary pairs of "
            "models, which membership='poisson' has none of; use membership='balanced'"
        )
    from seqmia_jax import membership
    from seqmia_jax.attacks.base import AttackInputError
    from seqmia_jax.attacks.inputs import check_membership, resolve_targets

    s = cfg.num_shadow_models
    keep_SxN = membership.make_poisson_membership(s, cfg.data.num_samples, cfg.seed)
    try:
        check_membership(keep_SxN, resolve_targets(parse_targets(cfg.attack.targets), s))
    except AttackInputError as err:
        detail = str(err).removeprefix("membership.npy: ")
        raise ConfigError(
            f"membership='poisson' with seed={cfg.seed}: {detail} (each sample's IN count is "
            "Binomial(S, 1/2)), or another seed"
        ) from None

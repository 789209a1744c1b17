"""Attack spec strings: ``name`` or ``name:key=value,key=value``.

Values parse as int, then float, then bool (true/false, any case), then
``none``; anything else stays a string. Several specs on one command line are
separated by ';', since a spec itself contains commas.
"""

import re

from seqmia_jax.attacks.base import AttackInputError

DEFAULT_ATTACKS: list[str] = [
    "lira",
    "lira:variance=fixed",
    "lira:mode=offline",
    "lira:statistic=loss",
    "lira:statistic=loss,variance=fixed",
    "carlini",
    "seq:cov=diag",
    "seq:cov=pooled",
    "seq:cov=hetero",
    "seq:cov=copula,marginal=empirical",
    "seq:mode=gls",
    "profile",
    "profile:variance=fixed",
    "loss",
    "zlib",
    "mink",
    "minkpp",
    "refcal",
    "rmia",
    "baseref",
    "baseref:agg=topk,k=0.1",
]
"""Attacks run when none are named; those whose inputs are absent are skipped.

Attacks that read the base model's statistics (``baseref``) apply only to
shadows fine-tuned from a base: a from-scratch run leaves them out unlisted.
"""


def _parse_value(text: str) -> int | float | bool | str | None:
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    return text


def parse_spec(spec: str) -> tuple[str, dict]:
    """Split ``"seq:cov=pooled,shrinkage=0.1"`` into ``("seq", {"cov": "pooled", "shrinkage": 0.1})``."""
    name, _, rest = spec.strip().partition(":")
    name = name.strip()
    if not name:
        raise AttackInputError(f"attack spec {spec!r} has no attack name")
    options: dict = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise AttackInputError(f"attack spec {spec!r}: option {item!r} is not key=value")
        if key in options:
            raise AttackInputError(f"attack spec {spec!r}: option {key!r} given twice")
        options[key] = _parse_value(value.strip())
    return name, options


def split_specs(text: str) -> list[str]:
    """Split a ';'-separated list of specs, dropping empty entries."""
    return [spec.strip() for spec in text.split(";") if spec.strip()]


def safe_name(spec: str) -> str:
    """A file-name stem for a spec: ``"seq:cov=copula,marginal=empirical"`` -> ``"seq__cov-copula_marginal-empirical"``."""
    name, options = parse_spec(spec)
    parts = [name] + [f"{key}-{value}" for key, value in options.items()]
    stem = parts[0] + ("__" + "_".join(parts[1:]) if len(parts) > 1 else "")
    return re.sub(r"[^A-Za-z0-9._-]", "_", stem)

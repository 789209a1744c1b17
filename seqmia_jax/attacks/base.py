"""Shared types of the attack library and the one way to write an attack.

Legend: S shadow models, N samples, L positions, T targets.

An attack is a function with a frozen dataclass of typed options, registered
with ``register_attack``::

    @dataclasses.dataclass(frozen=True)
    class MinKOptions(AttackOptions):
        k: float = option(0.2, check=lambda k: 0.0 < k <= 1.0, rule="in (0, 1]")

    @register_attack("mink", MinKOptions)
    def mink(inputs: AttackInputs, targets_T: np.ndarray, opt: MinKOptions) -> AttackOutput:
        ...

It scores every target model t in ``targets_T`` against all N samples using
leave-one-out: parameters fitted for target t never see row t of any
statistic. Higher scores mean "more likely a member".

Options. A field's type says what a value may be: ``bool``, ``int``,
``float`` (an int converts), ``str``, a ``typing.Literal`` of allowed values,
or a union of these (``Literal["oas", "lw"] | float``). ``option(choices=...)``
names the allowed values when they are only known at run time (a registry's
names), ``check`` states a rule on one value, and ``AttackOptions.validate``
rules between values. Options the dataclass lacks are refused with the list
of valid ones. Spec strings (``specs.py``) and keyword arguments
(``ATTACKS.get(name)(inputs, targets_T, k=0.5)``) go through the same parser.

Evidence. An attack that can return per-position evidence has the option
``evidence: bool = False``; the runner sets it for the one attack whose
evidence the report shows, since computing it costs memory.

Base model. When the shadows are fine-tuned from one pretrained base model,
``AttackInputs.base_stats`` holds that model's statistics (N x L, no S axis).
An attack that reads them says which through its options'
``base_statistics()``: the runner leaves it out of the default set of a
from-scratch run, which has no base model, and checks those files before any
attack runs.
"""

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from seqmia_jax.registry import Registry


class AttackInputError(ValueError):
    """Bad attack input: the message names the file or option and the problem."""


class UnknownOptionError(AttackInputError, TypeError):
    """An option the attack does not have; a TypeError too, as for an unknown keyword argument."""


class MissingStatisticError(AttackInputError, KeyError):
    """A statistic the inputs lack; a KeyError too, so ``in`` and ``.get`` work as on a dict."""

    def __str__(self) -> str:  # KeyError's own would quote the message
        return ValueError.__str__(self)


class LazyMapping(Mapping):
    """Name -> array, ``load(name)`` run once on first read; ``in`` never reads a file."""

    def __init__(self, load: Callable[[str], np.ndarray], names: Iterable[str]):
        self._load, self._names, self._cache = load, tuple(names), {}

    def _missing(self, name: str) -> Exception:
        return KeyError(name)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._names:
            raise self._missing(name)
        if name not in self._cache:
            self._cache[name] = self._load(name)
        return self._cache[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __contains__(self, name: object) -> bool:  # Mapping's default would read the file
        return name in self._names

    def __len__(self) -> int:
        return len(self._names)


class BaseStats(LazyMapping):
    """The base model's statistics: name -> float N x L (one model, so no S axis).

    ``load(name)`` reads (and checks) one of ``names`` on first use. Any other
    name raises MissingStatisticError naming its file: a from-scratch run has
    no base model, and a fine-tuned one may lack some statistic.
    """

    def __init__(self, load: Callable[[str], np.ndarray], names: Iterable[str]):
        super().__init__(load, sorted(names))

    @classmethod
    def of(cls, arrays: Mapping[str, np.ndarray]) -> "BaseStats":
        """In-memory base statistics (unchecked, like ``AttackInputs.stats``)."""
        arrays = dict(arrays)
        return cls(arrays.__getitem__, arrays)

    def _missing(self, name: str) -> Exception:
        return MissingStatisticError(
            f"stats/base_{name}.npy: the base model's {name!r} is absent (have "
            f"{list(self._names) or 'none'}); only shadows fine-tuned from a pretrained base "
            "have base-model statistics"
        )


@dataclasses.dataclass(frozen=True)
class AttackInputs:
    """Everything an attack may read, as loaded from a work directory.

    Attributes:
      stats: statistic name -> float array S x N x L (``np.memmap`` is fine).
        Always holds ``loss``; ``logit``, ``mean_logp`` and ``std_logp``
        (Min-K%++ moments of log p under the model's own predictive
        distribution) when the scoring stage provided them.
      keep_SxN: bool membership matrix.
      mask_NxL: bool, False where a position is absent; None means all present.
      text: raw bytes of each sample (for zlib), or None.
      base_stats: the pretrained base model's statistics, name -> float N x L
        (``loss``, ``logit``), when the shadows were fine-tuned from it; a
        plain dict is wrapped in ``BaseStats``, so a missing name raises
        AttackInputError (empty for a from-scratch run).
      tokens_NxL: int token ids, position l holding the token whose
        prediction statistic l is, or None (then ``profile:by=token`` reads
        the bytes of ``text``). ``load_inputs`` gives an array-like that
        ``np.asarray`` reads on first use.
    """

    stats: Mapping[str, np.ndarray]
    keep_SxN: np.ndarray
    mask_NxL: np.ndarray | None = None
    text: Sequence[bytes] | None = None
    base_stats: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    tokens_NxL: np.ndarray | None = None

    def __post_init__(self):
        if not isinstance(self.base_stats, BaseStats):  # a plain dict, from a test or notebook
            object.__setattr__(self, "base_stats", BaseStats.of(self.base_stats))

    @property
    def num_models(self) -> int:
        return self.keep_SxN.shape[0]

    @property
    def num_samples(self) -> int:
        return self.keep_SxN.shape[1]


@dataclasses.dataclass
class AttackOutput:
    """Scores of one attack.

    Attributes:
      scores_TxN: float64, higher = more likely a member of target t.
      evidence_TxNxL: optional per-position contributions to the score (for
        the leakage report); positions summing to the score where defined.
      diagnostics: free-form facts worth reporting (repairs made, shrinkage
        used, shadows dropped), JSON-serialisable.
    """

    scores_TxN: np.ndarray
    evidence_TxNxL: np.ndarray | None = None
    diagnostics: dict = dataclasses.field(default_factory=dict)


# ------------------------------------------------------------------ options
def option(
    default: Any,
    *,
    choices: Callable[[], Iterable] | None = None,
    check: Callable[[Any], bool] | None = None,
    rule: str = "",
) -> Any:
    """A dataclass field with a default, run-time ``choices`` and a ``check`` described by ``rule``."""
    return dataclasses.field(
        default=default, metadata={"choices": choices, "check": check, "rule": rule}
    )


@dataclasses.dataclass(frozen=True)
class AttackOptions:
    """Base of every attack's options (a frozen dataclass, hashable for jit)."""

    def validate(self) -> None:
        """Rules between options; raises AttackInputError. None by default."""

    def base_statistics(self) -> tuple[str, ...]:
        """The base-model statistics (``AttackInputs.base_stats``) these options read; none by default."""
        return ()

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class NoOptions(AttackOptions):
    """Options of an attack that takes none."""


def _convert(kind: Any, value: Any) -> tuple[bool, Any]:
    """(allowed, converted value) of ``value`` for a field of type ``kind``."""
    origin = typing.get_origin(kind)
    if origin is Literal:
        # type() too: True == 1 must not let a bool through an int choice.
        return any(type(value) is type(a) and value == a for a in typing.get_args(kind)), value
    if origin in (typing.Union, types.UnionType):
        for member in typing.get_args(kind):
            ok, converted = _convert(member, value)
            if ok:
                return True, converted
        return False, value
    if kind is type(None):
        return value is None, value
    if kind is bool:
        return isinstance(value, (bool, np.bool_)), bool(value)
    integer = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if kind is int:
        return integer, int(value) if integer else value
    if kind is float:
        number = integer or isinstance(value, (float, np.floating))
        return number, float(value) if number else value
    if kind is str:
        return isinstance(value, str), value
    raise TypeError(f"unsupported option type {kind!r}")


def _describe(kind: Any) -> str:
    origin = typing.get_origin(kind)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(kind))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_describe(member) for member in typing.get_args(kind))
    return {bool: "true | false", int: "an integer", float: "a number", str: "a string"}.get(
        kind, "none"
    )


def parse_options(options_type: type[AttackOptions], attack: str, raw: Mapping) -> AttackOptions:
    """Typed, checked options of ``attack`` from raw values (spec-parsed or keyword arguments)."""
    fields = {f.name: f for f in dataclasses.fields(options_type)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise UnknownOptionError(
            f"attack {attack!r}: unknown option(s) {', '.join(unknown)}; "
            f"known: {', '.join(fields) or 'none'}"
        )
    hints = typing.get_type_hints(options_type)
    values = {}
    for name, value in raw.items():
        meta = fields[name].metadata
        ok, converted = _convert(hints[name], value)
        choices = meta.get("choices")
        allowed = _describe(hints[name])
        if choices is not None:
            allowed = " | ".join(repr(c) for c in choices())
            ok = ok and converted in tuple(choices())
        if not ok:
            raise AttackInputError(
                f"attack {attack!r}: option {name}={value!r} is not allowed; expected {allowed}"
            )
        check = meta.get("check")
        if check is not None and not check(converted):
            raise AttackInputError(
                f"attack {attack!r}: option {name} must be {meta['rule']}, got {value!r}"
            )
        values[name] = converted
    opt = options_type(**values)
    opt.validate()
    return opt


# ------------------------------------------------------------------ registration
class Attack:
    """A registered attack: its function, its options type and whether it returns evidence.

    Call it like a function with keyword options, ``attack(inputs, targets_T,
    **options)``, or run it with parsed options, ``attack.run(inputs,
    targets_T, attack.parse(options))``.
    """

    def __init__(self, name: str, options: type[AttackOptions], fn: Callable[..., AttackOutput]):
        self.name, self.options, self.fn = name, options, fn
        functools.update_wrapper(self, fn)

    @property
    def evidence(self) -> bool:
        """Whether the attack can return per-position evidence (it has an ``evidence`` option)."""
        return any(f.name == "evidence" for f in dataclasses.fields(self.options))

    def parse(self, raw: Mapping) -> AttackOptions:
        return parse_options(self.options, self.name, raw)

    def run(self, inputs: AttackInputs, targets_T: np.ndarray, opt: AttackOptions) -> AttackOutput:
        return self.fn(inputs, targets_T, opt)

    def __call__(self, inputs: AttackInputs, targets_T: np.ndarray, **options) -> AttackOutput:
        return self.run(inputs, targets_T, self.parse(options))


ATTACKS: Registry[Attack] = Registry("attack")


def register_attack(
    name: str, options: type[AttackOptions] = NoOptions
) -> Callable[[Callable[..., AttackOutput]], Attack]:
    """Decorator: registers ``fn(inputs, targets_T, opt) -> AttackOutput`` as attack ``name``."""

    def decorator(fn: Callable[..., AttackOutput]) -> Attack:
        attack = Attack(name, options, fn)
        ATTACKS.register(name)(attack)
        return attack

    return decorator

"""The attack-authoring convention, and the README's example attack run from the README itself."""

import dataclasses
import importlib.util
import re
import sys
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from seqmia_jax.attacks import ATTACKS, AttackInputError, AttackInputs
from seqmia_jax.attacks.base import AttackOptions, UnknownOptionError, option, parse_options
from seqmia_jax.attacks.runner import score_attacks
from tests import reference_attacks as ref
from tests.synthetic import balanced_keep, gaussian_stats

README = Path(__file__).resolve().parents[1] / "README.md"


def _example_code() -> str:
    """The python block of README.md's "Extending" section that registers an attack."""
    section = README.read_text().split("\n## Extending\n", 1)[1].split("\n## ", 1)[0]
    (code,) = [
        b for b in re.findall(r"```python\n(.*?)```", section, re.DOTALL) if "register_attack(" in b
    ]
    return code


@pytest.fixture(scope="module")
def zmean(tmp_path_factory):
    """The README's attack, imported as if it were seqmia_jax/attacks/zmean.py."""
    path = tmp_path_factory.mktemp("readme") / "readme_zmean.py"
    path.write_text(_example_code())
    spec = importlib.util.spec_from_file_location("readme_zmean", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    assert ATTACKS.get("zmean") is module.zmean
    return module.zmean


def _inputs(seed, num_models=8, num_samples=30, length=5, masked=True):
    rng = np.random.default_rng(seed)
    keep_SxN = balanced_keep(rng, num_models, num_samples)
    x = gaussian_stats(rng, num_models, num_samples, length, shift_std=0.2, rho=0.4)
    x = x - 0.5 * keep_SxN[..., None]  # members have lower loss
    mask_NxL = None
    if masked:
        mask_NxL = rng.random((num_samples, length)) < 0.7
        mask_NxL[:, 0] = True
    return AttackInputs({"loss": x, "logit": -x}, keep_SxN, mask_NxL)


def _naive(x_SxNxL, keep_SxN, mask_NxL, targets_T, sign):
    """Per-position terms by explicit shadow sets (equal-count rule), in float64."""
    _, num_samples, length = x_SxNxL.shape
    terms = np.zeros((len(targets_T), num_samples, length))
    for i, t in enumerate(targets_T):
        for n in range(num_samples):
            out = np.asarray(x_SxNxL[ref.side_sets(keep_SxN, t, n)["out"], n], np.float64)
            var = np.maximum(out.var(0, ddof=1), 1e-12) * (1.0 + 1.0 / len(out))
            z = sign * (x_SxNxL[t, n] - out.mean(0)) / np.sqrt(var)
            terms[i, n, mask_NxL[n]] = z[mask_NxL[n]] / mask_NxL[n].sum()
    return terms


@pytest.mark.parametrize("statistic", ["logit", "loss"])
def test_readme_example_matches_a_naive_reference(zmean, statistic):
    inputs = _inputs(0)
    spec = f"zmean:statistic={statistic}"
    results, scores, evidence = score_attacks(
        inputs, [spec, "loss"], [0, 3, 5], bootstrap=0, evidence_attack=spec
    )
    want = _naive(
        inputs.stats[statistic],
        inputs.keep_SxN,
        inputs.mask_NxL,
        [0, 3, 5],
        1.0 if statistic == "logit" else -1.0,
    )
    np.testing.assert_allclose(scores[spec], want.sum(-1), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(evidence, want, rtol=1e-6, atol=1e-7)
    assert results["attacks"][spec]["diagnostics"]["options"] == {
        "statistic": statistic,
        "evidence": True,
    }
    assert results["attacks"][spec]["auc"] > 0.6  # members have lower loss: the sign is right


def test_readme_example_is_calibrated_under_the_null(zmean):
    rng = np.random.default_rng(8)
    keep_SxN = balanced_keep(rng, 8, 12500)
    x = gaussian_stats(rng, 8, 12500, 4, shift_std=0.3, rho=0.5)
    scores_TxN = zmean(AttackInputs({"logit": x}, keep_SxN), np.arange(8)).scores_TxN
    assert abs(roc_auc_score(keep_SxN.reshape(-1), scores_TxN.reshape(-1)) - 0.5) < 0.015


def test_readme_example_options_and_evidence(zmean):
    inputs = _inputs(1, masked=False)
    assert zmean.evidence and zmean(inputs, np.arange(2)).evidence_TxNxL is None
    assert zmean(inputs, np.arange(2), evidence=True).evidence_TxNxL.shape == (2, 30, 5)
    with pytest.raises(
        AttackInputError, match=r"unknown option\(s\) k; known: statistic, evidence"
    ):
        score_attacks(inputs, ["zmean:k=3"], 2)
    with pytest.raises(AttackInputError, match="statistic='bits' is not allowed; expected 'logit'"):
        score_attacks(inputs, ["zmean:statistic=bits"], 2)


@dataclasses.dataclass(frozen=True)
class _Options(AttackOptions):
    flag: bool = False
    count: int = option(3, check=lambda n: n >= 1, rule=">= 1")
    scale: float = 1.0
    mode: Literal["a", "b"] = "a"
    amount: Literal["auto"] | float = "auto"
    name: str = option("x", choices=lambda: ("x", "y"))

    def validate(self) -> None:
        if self.mode == "b" and self.flag:
            raise AttackInputError("_options: mode='b' excludes flag=true")


def test_options_are_converted_and_checked():
    opt = parse_options(_Options, "t", {"scale": 2, "amount": 1, "count": 5, "name": "y"})
    assert opt == _Options(scale=2.0, amount=1.0, count=5, name="y")
    assert type(opt.scale) is float and type(opt.amount) is float
    assert parse_options(_Options, "t", {"amount": "auto"}).amount == "auto"
    for raw, message in [
        ({"flag": 1}, "flag=1 is not allowed; expected true | false"),
        ({"count": True}, "count=True is not allowed; expected an integer"),
        ({"count": 2.0}, "count=2.0 is not allowed"),
        ({"count": 0}, "count must be >= 1, got 0"),
        ({"scale": "big"}, "expected a number"),
        ({"mode": "c"}, "mode='c' is not allowed; expected 'a' | 'b'"),
        ({"amount": "manual"}, "expected 'auto' | a number"),
        ({"name": "z"}, "name='z' is not allowed; expected 'x' | 'y'"),
        ({"mode": "b", "flag": True}, "mode='b' excludes flag=true"),
    ]:
        with pytest.raises(AttackInputError, match=re.escape(message)):
            parse_options(_Options, "t", raw)
    # An unknown option is a TypeError too, as for an unexpected keyword argument.
    with pytest.raises(UnknownOptionError, match="known: flag, count, scale, mode, amount, name"):
        parse_options(_Options, "t", {"colour": 1})
    assert issubclass(UnknownOptionError, TypeError)

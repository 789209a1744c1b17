"""DP audits end to end on tiny ensembles: the accountant's record and the soundness check."""

import json

import numpy as np
import pytest

from seqmia_jax.pipeline import run_audit
from seqmia_jax.privacy import accounting
from tests.helpers import tiny_config

ATTACKS = "lira;lira:variance=fixed;lira:statistic=loss,variance=fixed;seq:cov=pooled;loss;rmia"


def _bounds(results):
    return {
        spec: max(e["epsilon_lower_bound"]["cp"], e["epsilon_lower_bound"]["gdp"])
        for spec, e in results["attacks"].items()
    }


@pytest.fixture(scope="module")
def dp_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("dp")
    cfg = tiny_config(
        "kjv_dp", **{"attack.attacks": ATTACKS, "train.epochs": 30, "train.dp_target_epsilon": 1.0}
    )
    return cfg, path, run_audit(cfg, path)


def test_the_accountant_record_matches_dp_accounting(dp_run):
    cfg, path, out = dp_run
    record = json.loads((path / "train_done.json").read_text())["dp"]
    rate = cfg.train.batch_size / (cfg.data.num_samples // 2)
    assert record["sample_rate"] == pytest.approx(rate)
    assert record["epsilon"] == pytest.approx(
        accounting.epsilon(record["noise_multiplier"], rate, record["steps"], cfg.train.dp_delta)
    )
    assert record["epsilon"] <= 1.0 + 1e-9 and record["epsilon"] > 0.9  # calibrated to 1
    assert record["overflow_probability"] <= 1e-6
    assert out["results"]["dp"] == record
    md = (path / "results" / "results.md").read_text()
    assert "DP-SGD: accountant epsilon 1" in md and "## Empirical epsilon lower bounds" in md


def test_every_empirical_lower_bound_stays_below_the_accountant(dp_run, tmp_path):
    _cfg, _path, out = dp_run
    claimed = out["results"]["dp"]["epsilon"]
    bounds = _bounds(out["results"])
    assert all(b <= claimed for b in bounds.values()), (claimed, bounds)
    # The check has power: the same models trained without DP-SGD (a "broken"
    # implementation claiming epsilon 1) break the claim under some attack.
    plain = tiny_config("kjv_gpt", **{"attack.attacks": ATTACKS, "train.epochs": 30})
    results = run_audit(plain, tmp_path)["results"]
    assert "dp" not in results
    assert max(_bounds(results).values()) > claimed, _bounds(results)
    np.testing.assert_array_equal(
        results["attacks"]["lira"]["epsilon_lower_bound"]["held_out_targets"], [4, 5, 6, 7]
    )

"""DP audits end to end on tiny ensembles: the accountant's record and the soundness check,
under the balanced and the poisson membership design."""

import json

import numpy as np
import pytest

from seqmia_jax import membership
from seqmia_jax.pipeline import run_audit
from seqmia_jax.privacy import accounting
from tests.helpers import assert_params_close, tiny_config

ATTACKS = "lira;lira:variance=fixed;lira:statistic=loss,variance=fixed;seq:cov=pooled;loss;rmia"


def _bounds(results):
    """Each attack's largest empirical lower bound (CP, GDP and, under poisson, one run)."""
    return {
        spec: max(
            e["epsilon_lower_bound"][kind]
            for kind in ("cp", "gdp", "one_run")
            if kind in e["epsilon_lower_bound"]
        )
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


@pytest.mark.parametrize("name", ["kjv_dp", "kjv_secrets"])
def test_resume_and_eight_devices_equal_an_uninterrupted_one_device_run(tmp_path, name):
    """DP batches and noise, and the secrets' training table, come from the step and the seed
    alone: an interrupted run resumes to the same models, on 8 devices as on 1."""
    from seqmia_jax.data import load_dataset
    from seqmia_jax.ensemble.train import load_params, train

    cfg = tiny_config(name)
    full = train(cfg, tmp_path / "one", num_devices=1)
    assert train(cfg, tmp_path / "resumed", stop_after_steps=4)["finished"] is False
    resumed = train(cfg, tmp_path / "resumed")  # all 8 devices
    assert resumed["step"] == full["step"] and resumed.get("dp") == full.get("dp")
    dataset = load_dataset(cfg.data)
    _, a = load_params(cfg, tmp_path / "one", dataset)
    _, b = load_params(cfg, tmp_path / "resumed", dataset)
    assert_params_close(a, b)


# rmia's default population is the target's OUT samples: its scores read the target's
# labels, so it is no audit (privacy.audit); population=all reads none.
POISSON_ATTACKS = ATTACKS.replace("rmia", "rmia:population=all")


def _poisson_audit(path, num_models, **overrides):
    cfg = tiny_config(
        "kjv_dp",
        **{
            "membership": "poisson",
            "num_shadow_models": num_models,
            "attack.attacks": POISSON_ATTACKS,
        },
        **overrides,
    )
    return cfg, run_audit(cfg, path)["results"]


def _check_poisson_run(cfg, path, results):
    """The draw is the seed's, training sets differ, and every bound stays below the claim."""
    keep_SxN = np.load(path / "membership.npy")
    num_models, num_samples = cfg.num_shadow_models, cfg.data.num_samples
    np.testing.assert_array_equal(
        keep_SxN, membership.make_poisson_membership(num_models, num_samples, cfg.seed)
    )
    assert len(set(keep_SxN.sum(1))) > 1  # unequal training sets
    record = results["dp"]
    assert record["sample_rate"] == cfg.train.batch_size / (num_samples / 2)
    assert record["nominal_rows"] == num_samples / 2
    steps_per_epoch = -(-int(keep_SxN.sum(1).max()) // cfg.train.batch_size)
    assert record["steps"] == cfg.train.epochs * steps_per_epoch
    assert record["epsilon"] == pytest.approx(
        accounting.epsilon(
            record["noise_multiplier"], record["sample_rate"], record["steps"], cfg.train.dp_delta
        )
    )
    for spec, attack in results["attacks"].items():
        entry = attack["epsilon_lower_bound"]
        assert entry["membership"] == "poisson" and "one_run" in entry, spec
    bounds = _bounds(results)
    assert all(b <= record["epsilon"] for b in bounds.values()), (record["epsilon"], bounds)
    md = (path / "results" / "results.md").read_text()
    assert "epsilon >= (one run)" in md


def test_a_tiny_dp_audit_runs_end_to_end_under_poisson_membership(tmp_path):
    cfg, results = _poisson_audit(tmp_path, 16)
    _check_poisson_run(cfg, tmp_path, results)


@pytest.mark.slow
def test_soundness_under_poisson_membership_with_32_dp_models(tmp_path):
    """S = 32 DP models at epsilon 1, trained 30 epochs: no attack's CP, GDP or one-run bound
    exceeds the accountant's epsilon (the larger-ensemble soundness check)."""
    cfg, results = _poisson_audit(
        tmp_path, 32, **{"train.epochs": 30, "train.dp_target_epsilon": 1.0}
    )
    _check_poisson_run(cfg, tmp_path, results)
    assert results["dp"]["epsilon"] <= 1.0 + 1e-9


def test_dp_sgd_without_noise_reports_an_infinite_accountant_epsilon(tmp_path):
    # Noise multiplier 0 (an ablation: clipping and Poisson batches only) has no
    # finite epsilon; the audit must still finish and say so in its tables.
    cfg = tiny_config(
        "kjv_dp",
        **{
            "attack.attacks": "lira:variance=fixed",
            "train.epochs": 2,
            "train.dp_target_epsilon": 0.0,
            "train.dp_noise_multiplier": 0.0,
        },
    )
    results = run_audit(cfg, tmp_path)["results"]
    assert results["dp"]["epsilon"] is None and results["dp"]["noise_multiplier"] == 0.0
    table = (tmp_path / "results" / "results.md").read_text()
    assert "DP-SGD at epsilon infinity (noise multiplier 0: no privacy guarantee)" in table

"""The base model's statistics: baseref against a float64 reference and the null,
profile:difficulty=base, tokens.npy for profile:by=token, and the work-directory rules."""

import dataclasses
import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from seqmia_jax.attacks import ATTACKS, AttackInputError, AttackInputs, runner, specs
from seqmia_jax.attacks.runner import load_inputs, run_attacks
from tests import reference_attacks as ref
from tests.synthetic import balanced_keep, gaussian_stats
from tests.test_attack_runner import write_workdir
from tests.test_lira import tpr_at_fpr

S, N, L = 6, 12, 25  # k = 0.28 of 25 positions is 7, not ceil(7.000000000000001)


def _logit(loss):
    return -loss - np.log(-np.expm1(-loss))


def _inputs(seed=0, masked=True):
    rng = np.random.default_rng(seed)
    keep_SxN = balanced_keep(rng, S, N)
    base_NxL = rng.gamma(2.0, 1.0, (N, L))
    loss_SxNxL = np.abs(base_NxL + rng.normal(0.0, 0.5, (S, N, L)) - 0.3 * keep_SxN[..., None])
    mask_NxL = None
    if masked:
        mask_NxL = rng.random((N, L)) < 0.7
        mask_NxL[:, 0] = True
        mask_NxL[3, :] = False
        mask_NxL[3, 4] = True  # a sample with one present position
        mask_NxL[5, :] = True  # and one with all L
    return AttackInputs(
        stats={"loss": loss_SxNxL.astype(np.float32), "logit": _logit(loss_SxNxL)},
        keep_SxN=keep_SxN,
        mask_NxL=mask_NxL,
        base_stats={"loss": base_NxL.astype(np.float32), "logit": _logit(base_NxL)},
    )


def _run(inputs, targets=(0, 2, 5), **options):
    return ATTACKS.get("baseref")(inputs, np.asarray(targets), **options)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("statistic", ["loss", "logit"])
@pytest.mark.parametrize(
    "options",
    [{}, {"agg": "topk"}, {"agg": "topk", "k": 0.28}, {"agg": "topk", "k": 1.0}],
)
def test_baseref_matches_the_reference(masked, statistic, options):
    inputs = _inputs(masked=masked)
    got = _run(inputs, statistic=statistic, evidence=True, **options)
    x, base = inputs.stats[statistic], inputs.base_stats[statistic]
    want = ref.baseref(x, base, inputs.mask_NxL, (0, 2, 5), statistic, **options)
    np.testing.assert_allclose(got.scores_TxN, want, rtol=1e-12, atol=1e-12)
    # The evidence sums to the score and is zero where a position is absent.
    np.testing.assert_allclose(got.evidence_TxNxL.sum(-1), want, rtol=1e-5, atol=1e-5)
    if masked:
        assert not got.evidence_TxNxL[:, ~inputs.mask_NxL].any()
    json.dumps(got.diagnostics)


def test_topk_of_everything_is_the_mean_and_the_mean_is_the_loss_gap():
    inputs = _inputs()
    mean = _run(inputs).scores_TxN
    np.testing.assert_allclose(_run(inputs, agg="topk", k=1.0).scores_TxN, mean, rtol=1e-12)
    # The sequence-level difference: the base's mean loss minus the target's LOSS score.
    mask = inputs.mask_NxL
    base_NxL = np.asarray(inputs.base_stats["loss"], np.float64)
    base_mean_N = np.where(mask, base_NxL, 0.0).sum(1) / mask.sum(1)
    loss = ATTACKS.get("loss")(inputs, np.array([0, 2, 5])).scores_TxN
    np.testing.assert_allclose(mean, base_mean_N[None] + loss, rtol=1e-12)


@pytest.mark.parametrize("num_models,num_samples", [(8, 12500), (16, 6250)])
def test_null_calibration(num_models, num_samples):
    # No membership signal; per-sample means, a per-model shift and AR(1) correlation as in
    # the LiRA null test, and a base model whose difficulty tracks each sample's mean.
    rng = np.random.default_rng(num_models)
    keep = balanced_keep(rng, num_models, num_samples)
    x = gaussian_stats(rng, num_models, num_samples, 4, shift_std=0.3, rho=0.5)
    base = x.mean(0) + rng.normal(0.0, 0.5, (num_samples, 4))
    mask = rng.random((num_samples, 4)) < 0.8
    mask[:, 0] = True
    inputs = AttackInputs(
        stats={"loss": x, "logit": -x},
        keep_SxN=keep,
        mask_NxL=mask,
        base_stats={"loss": base, "logit": -base},
    )
    y = keep.reshape(-1)
    for options in [{}, {"agg": "topk", "k": 0.3}, {"statistic": "logit", "agg": "topk"}]:
        s = _run(inputs, np.arange(num_models), **options).scores_TxN.reshape(-1)
        auc = roc_auc_score(y, s)
        assert abs(auc - 0.5) < 0.015, (options, auc)
        assert tpr_at_fpr(y, s, 1e-2) <= 0.02, options


def test_topk_finds_a_sparse_shift_that_the_mean_dilutes():
    # Fine-tuning lowers every loss a little; members' loss drops further on 2 of 40
    # positions (the surprising tokens memorization concentrates on).
    rng = np.random.default_rng(0)
    num_models, num_samples, length = 4, 2000, 40
    keep = balanced_keep(rng, num_models, num_samples)
    base = rng.gamma(2.0, 1.0, (num_samples, length))
    planted = np.zeros((num_samples, length), bool)
    for n in range(num_samples):
        planted[n, rng.choice(length, 2, replace=False)] = True
    loss = base + 0.3 * rng.normal(size=(num_models, num_samples, length)) - 0.2
    loss = loss - 1.0 * keep[..., None] * planted
    inputs = AttackInputs(stats={"loss": loss}, keep_SxN=keep, base_stats={"loss": base})
    y = keep.reshape(-1)
    auc = {
        agg: roc_auc_score(y, _run(inputs, np.arange(num_models), agg=agg).scores_TxN.ravel())
        for agg in ("mean", "topk")
    }
    assert auc["topk"] > auc["mean"] + 0.1, auc


def test_missing_base_statistics_and_bad_options():
    inputs = _inputs()
    scratch = dataclasses.replace(inputs, base_stats={})
    for spec in ({}, {"agg": "topk"}):
        with pytest.raises(AttackInputError, match=r"base_loss\.npy"):
            _run(scratch, **spec)
    with pytest.raises(AttackInputError, match=r"stats/base_loss\.npy.*absent"):
        scratch.base_stats["loss"]
    with pytest.raises(KeyError):  # a Mapping still: ``in`` and ``.get`` work as on a dict
        scratch.base_stats["loss"]
    assert "loss" not in scratch.base_stats and scratch.base_stats.get("loss") is None
    only_loss = dataclasses.replace(inputs, base_stats={"loss": inputs.base_stats["loss"]})
    with pytest.raises(AttackInputError, match=r"base_logit\.npy"):
        _run(only_loss, statistic="logit")
    wrong = dataclasses.replace(inputs, base_stats={"loss": inputs.base_stats["loss"][:, :-1]})
    with pytest.raises(AttackInputError, match=r"shape \(12, 24\), expected N x L = \(12, 25\)"):
        _run(wrong)
    with pytest.raises(AttackInputError, match="agg"):
        _run(inputs, agg="max")
    with pytest.raises(AttackInputError, match="k must be in"):
        _run(inputs, agg="topk", k=0.0)


# ------------------------------------------------------------------ work directories
def _one_nan():
    array = np.zeros((60, 6), np.float32)
    array[7, 2] = np.nan
    return array


def _write_base(path, loss, name="loss"):
    np.save(path / "stats" / f"base_{name}.npy", loss)


def _without_seconds(results):
    return {
        **results,
        "attacks": {
            spec: {k: v for k, v in entry.items() if k != "seconds"}
            for spec, entry in results["attacks"].items()
        },
    }


def test_a_from_scratch_default_run_is_unchanged(tmp_path, monkeypatch):
    assert {"baseref", "baseref:agg=topk,k=0.1"} <= set(specs.DEFAULT_ATTACKS)
    write_workdir(tmp_path)
    monkeypatch.setattr(runner, "DEFAULT_ATTACKS", ["loss", "mink", "refcal"])
    before = run_attacks(tmp_path, None, 3, bootstrap=10, out_dir=tmp_path / "before")
    base_specs = ["baseref", "baseref:agg=topk,k=0.1", "profile:difficulty=base"]
    monkeypatch.setattr(runner, "DEFAULT_ATTACKS", ["loss", "mink", *base_specs, "refcal"])
    after = run_attacks(tmp_path, None, 3, bootstrap=10, out_dir=tmp_path / "after")
    assert _without_seconds(after) == _without_seconds(before)
    assert not after["skipped"] and "base_statistics" not in after
    md = {d: (tmp_path / d / "results.md").read_text() for d in ("before", "after")}
    assert md["after"] == md["before"]
    # Named, they fail, naming the file a fine-tuned run would have.
    for spec in base_specs:
        with pytest.raises(AttackInputError, match=r"base_loss\.npy"):
            run_attacks(tmp_path, [spec], 3, bootstrap=0, out_dir=tmp_path / "named")


def test_a_fine_tuned_run_reads_the_base_statistics(tmp_path, monkeypatch):
    _, loss, mask = write_workdir(tmp_path)
    rng = np.random.default_rng(1)
    base_NxL = (loss.mean(0) + rng.gamma(1.0, 0.3, loss.shape[1:])).astype(np.float32)
    _write_base(tmp_path, base_NxL)
    inputs = load_inputs(tmp_path)
    assert "base_loss" not in inputs.stats and "loss" in inputs.base_stats
    assert list(inputs.base_stats) == ["loss"] and "logit" not in inputs.base_stats
    np.testing.assert_array_equal(inputs.base_stats["loss"], base_NxL)
    defaults = ["loss", "baseref", "baseref:agg=topk,k=0.1", "baseref:statistic=logit"]
    monkeypatch.setattr(runner, "DEFAULT_ATTACKS", defaults)
    results = run_attacks(tmp_path, None, 3, bootstrap=0)
    assert list(results["attacks"]) == defaults[:3] and results["base_statistics"] == ["loss"]
    assert "base_logit.npy" in results["skipped"]["baseref:statistic=logit"]
    assert "Skipped `baseref:statistic=logit`" in (tmp_path / "results" / "results.md").read_text()
    for spec, options in (("baseref", {}), ("baseref:agg=topk,k=0.1", {"agg": "topk", "k": 0.1})):
        scores = np.load(tmp_path / "results" / results["attacks"][spec]["scores_file"])
        want = ref.baseref(loss, base_NxL, mask, [0, 1, 2], **options)
        np.testing.assert_allclose(scores, want, rtol=1e-12)
        assert results["attacks"][spec]["auc"] > 0.5  # members have lower loss


@pytest.mark.parametrize(
    "array, expected",
    [
        (np.zeros((60, 5), np.float32), ["base_loss.npy", "shape (60, 5)", "(60, 6)"]),
        (np.zeros((8, 60, 6), np.float32), ["base_loss.npy", "one base model"]),
        (np.zeros((60, 6), np.int32), ["base_loss.npy", "float"]),
        (_one_nan(), ["1 NaN and 0 Inf", "first at (sample, position) (7, 2)"]),
    ],
)
def test_bad_base_files_are_named_and_block_only_their_attacks(tmp_path, array, expected):
    write_workdir(tmp_path)
    _write_base(tmp_path, array)
    with pytest.raises(AttackInputError) as err:
        run_attacks(tmp_path, ["loss", "baseref"], 2, bootstrap=0)
    for part in expected:
        assert part in str(err.value)
    assert not (tmp_path / "results").exists()  # refused before any attack ran
    assert list(run_attacks(tmp_path, ["loss"], 2, bootstrap=0)["attacks"]) == ["loss"]


# ------------------------------------------------------------------ profile
def _profile_inputs(seed, num_models=8, num_samples=40, length=6, masked=False):
    rng = np.random.default_rng(seed)
    keep = balanced_keep(rng, num_models, num_samples)
    x = gaussian_stats(rng, num_models, num_samples, length, shift_std=0.2, rho=0.3)
    x = x - 0.3 * keep[..., None] * (rng.random((num_samples, length)) < 0.5)
    mask = None
    if masked:
        mask = rng.random((num_samples, length)) < 0.8
        mask[:, 0] = True
    base = x.mean(0) + rng.normal(0.0, 1.0, (num_samples, length))
    tokens = rng.integers(0, 5000, size=(num_samples, length)).astype(np.int32)
    tokens[:, ::2] = rng.integers(0, 3, size=(num_samples, (length + 1) // 2))  # shared ids
    return AttackInputs(
        stats={"logit": -x, "loss": x},
        keep_SxN=keep,
        mask_NxL=mask,
        base_stats={"loss": base},
        tokens_NxL=tokens,
    )


def _lira_on_reference(inputs, targets, weights_of, options):
    x = np.asarray(inputs.stats[options.get("statistic", "logit")], np.float64)
    lira_options = {k: v for k, v in options.items() if k in ("mode", "variance")}
    rows = []
    for t in targets:
        a_SxNx1 = (x * weights_of(x, t)).sum(-1, keepdims=True) / x.shape[2]
        projected = AttackInputs(stats={"logit": a_SxNx1}, keep_SxN=inputs.keep_SxN)
        rows.append(ATTACKS.get("lira")(projected, np.array([t]), **lira_options).scores_TxN[0])
    return np.stack(rows)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize(
    "options", [{}, {"bins": 3, "mode": "offline"}, {"statistic": "loss", "by": "difficulty+token"}]
)
def test_profile_on_base_difficulty_is_lira_on_the_naively_weighted_mean(masked, options):
    inputs = _profile_inputs(1, masked=masked)
    mask = np.ones((40, 6), bool) if inputs.mask_NxL is None else inputs.mask_NxL
    bins = options.get("bins", 16)
    token = inputs.tokens_NxL if "token" in options.get("by", "") else None
    targets = np.array([0, 3, 7])
    got = ATTACKS.get("profile")(inputs, targets, difficulty="base", **options).scores_TxN

    def weights_of(x, t):
        return ref.profile_weights(
            x, inputs.keep_SxN, mask, t, bins, inputs.base_stats["loss"], token
        )

    want = _lira_on_reference(inputs, targets, weights_of, options)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
    shadows = ATTACKS.get("profile")(inputs, targets, **options).scores_TxN
    assert not np.allclose(got, shadows)  # the option changes the bins


def test_profile_on_base_difficulty_is_null_calibrated():
    rng = np.random.default_rng(8)
    keep = balanced_keep(rng, 8, 12000)
    x = gaussian_stats(rng, 8, 12000, 8, shift_std=0.3, rho=0.5)
    base = x.mean(0) + rng.normal(0.0, 0.5, (12000, 8))
    inputs = AttackInputs(stats={"logit": x, "loss": -x}, keep_SxN=keep, base_stats={"loss": base})
    y = keep.reshape(-1)
    for options in [{}, {"mode": "offline"}]:
        s = ATTACKS.get("profile")(inputs, np.arange(8), difficulty="base", **options).scores_TxN
        auc = roc_auc_score(y, s.ravel())
        assert abs(auc - 0.5) < 0.015, (options, auc)


def test_profile_reads_base_statistics_only_for_base_difficulty():
    inputs = dataclasses.replace(_profile_inputs(2), base_stats={})
    with pytest.raises(AttackInputError, match=r"'profile' needs the base model's 'loss'"):
        ATTACKS.get("profile")(inputs, np.array([0]), difficulty="base")
    # by=token has no difficulty bins: difficulty=base reads nothing.
    assert (
        ATTACKS.get("profile").parse({"difficulty": "base", "by": "token"}).base_statistics() == ()
    )
    ATTACKS.get("profile")(inputs, np.array([0]), difficulty="base", by="token")


# ------------------------------------------------------------------ tokens.npy
@pytest.mark.parametrize("by", ["token", "difficulty+token"])
def test_profile_by_token_uses_token_ids_beyond_one_byte(by):
    inputs = _profile_inputs(3, masked=True)
    targets = np.array([1, 4])
    options = {"by": by, "bins": 2}
    got = ATTACKS.get("profile")(inputs, targets, **options).scores_TxN

    def weights_of(x, t):
        bins = 2 if "difficulty" in by else 1
        return ref.profile_weights(
            x, inputs.keep_SxN, inputs.mask_NxL, t, bins, token_NxL=inputs.tokens_NxL
        )

    np.testing.assert_allclose(got, _lira_on_reference(inputs, targets, weights_of, {}), rtol=1e-6)


def test_tokens_npy_is_preferred_to_the_text_bytes(tmp_path):
    _, _, mask = write_workdir(tmp_path)  # with text_bytes.npy, one byte per position
    rng = np.random.default_rng(4)
    tokens = rng.integers(0, 3, size=(60, 6)).astype(np.int32) * 1000
    tokens[~mask] = -1  # padding ids where a position is absent are never read
    np.save(tmp_path / "tokens.npy", tokens)
    inputs = load_inputs(tmp_path)
    targets = np.array([0, 1])
    got = ATTACKS.get("profile")(inputs, targets, by="token").scores_TxN
    in_memory = dataclasses.replace(inputs, tokens_NxL=np.where(mask, tokens, 7))
    want = ATTACKS.get("profile")(in_memory, targets, by="token").scores_TxN
    np.testing.assert_allclose(got, want, rtol=1e-12)
    from_text = dataclasses.replace(inputs, tokens_NxL=None)
    assert not np.allclose(got, ATTACKS.get("profile")(from_text, targets, by="token").scores_TxN)


@pytest.mark.parametrize(
    "tokens, expected",
    [
        (np.zeros((60, 5), np.int32), r"tokens\.npy must hold int \(60, 6\) token ids"),
        (np.zeros((60, 6), np.float32), r"got float32 \(60, 6\)"),
        (np.full((60, 6), -2, np.int32), "negative token ids at present positions"),
    ],
)
def test_bad_tokens_npy_is_named_and_blocks_only_by_token(tmp_path, tokens, expected):
    write_workdir(tmp_path)
    np.save(tmp_path / "tokens.npy", tokens)
    with pytest.raises(AttackInputError, match=expected):
        run_attacks(tmp_path, ["profile:by=token"], 2, bootstrap=0)
    assert list(run_attacks(tmp_path, ["loss"], 2, bootstrap=0)["attacks"]) == ["loss"]
    (tmp_path / "results").rename(tmp_path / "old")
    (tmp_path / "tokens.npy").write_bytes(b"garbage")  # read only by the attacks that need it
    assert list(run_attacks(tmp_path, ["loss"], 2, bootstrap=0)["attacks"]) == ["loss"]

"""Profile's per-position evidence: it sums to the standardized projection, from its own weights."""

import numpy as np

from seqmia_jax.attacks import ATTACKS, AttackInputs
from tests.synthetic import balanced_keep, gaussian_stats


def _inputs(seed: int, masked: bool) -> AttackInputs:
    rng = np.random.default_rng(seed)
    keep_SxN = balanced_keep(rng, 10, 30)
    x = gaussian_stats(rng, 10, 30, 7, shift_std=0.0, rho=0.3)
    x = x + 0.4 * keep_SxN[..., None] * (rng.random((30, 7)) < 0.5)  # members: higher logit
    mask_NxL = None
    if masked:
        mask_NxL = rng.random((30, 7)) < 0.8
        mask_NxL[:, 0] = True
    return AttackInputs(stats={"logit": x, "loss": -x}, keep_SxN=keep_SxN, mask_NxL=mask_NxL)


def _reference_z(inputs: AttackInputs, t: int, profile: dict) -> np.ndarray:
    """z_N of target t from the reported profile (edges, delta, var), by plain float64 numpy."""
    x = inputs.stats["logit"].astype(np.float64)
    keep_SxN = inputs.keep_SxN
    num_models, _, length = x.shape
    others = [s for s in range(num_models) if s != t]
    feature_NxL = x[others].mean(0)
    bin_NxL = np.searchsorted(profile["edges"], feature_NxL, side="right")
    delta_G, var_G = np.array(profile["delta"]), np.array(profile["var"])
    weight_NxL = np.where(np.array(profile["size"]) > 0, delta_G / np.maximum(var_G, 1e-12), 0)[
        bin_NxL
    ]
    if inputs.mask_NxL is not None:
        weight_NxL = np.where(inputs.mask_NxL, weight_NxL, 0.0)
    a_SxN = (x * weight_NxL).sum(-1) / length
    z = []
    for n in range(x.shape[1]):
        outs = [s for s in others if not keep_SxN[s, n]]
        z.append((a_SxN[t, n] - a_SxN[outs, n].mean()) / a_SxN[outs, n].std(ddof=1))
    return np.array(z)


def test_profile_evidence_sums_to_the_standardized_projection():
    for masked in (False, True):
        inputs = _inputs(0, masked)
        targets_T = np.array([0, 3, 9])
        plain = ATTACKS.get("profile")(inputs, targets_T)
        out = ATTACKS.get("profile")(inputs, targets_T, evidence=True)
        assert plain.evidence_TxNxL is None
        np.testing.assert_array_equal(out.scores_TxN, plain.scores_TxN)  # evidence costs no change
        assert out.evidence_TxNxL.shape == (3, 30, 7)
        # The first target's weights are in the diagnostics: rebuild its z independently.
        z_N = _reference_z(inputs, 0, out.diagnostics["profile_first_target"])
        np.testing.assert_allclose(out.evidence_TxNxL[0].sum(-1), z_N, rtol=1e-4, atol=1e-5)
        if masked:  # absent positions carry no evidence
            assert np.all(out.evidence_TxNxL[:, ~inputs.mask_NxL] == 0)
        # Members lie on the member side of their OUT shadows: z is larger for them.
        member_TxN = inputs.keep_SxN[targets_T]
        z_TxN = out.evidence_TxNxL.sum(-1)
        assert z_TxN[member_TxN].mean() > z_TxN[~member_TxN].mean() + 0.5

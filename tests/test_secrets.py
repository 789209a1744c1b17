"""The secrets data mode: planted secrets, the training design and the checks of its settings."""

import numpy as np
import pytest

from configs import kjv_secrets
from seqmia_jax import membership
from seqmia_jax.config import ConfigError, from_config_dict
from seqmia_jax.data import load_dataset
from seqmia_jax.data import secrets as secret_mode
from seqmia_jax.ensemble.train import training_data


def _cfg(**data):
    raw = kjv_secrets.get_config("tiny")
    for key, value in data.items():
        setattr(raw.data, key, value)
    return from_config_dict(raw)


def test_secrets_are_reproducible_distinct_and_where_the_layout_says():
    cfg = _cfg(secret_at="random", secret_template=" my PIN is ", secret_symbols=4)
    first, second = load_dataset(cfg.data), load_dataset(cfg.data)
    np.testing.assert_array_equal(first.tokens_NxL, second.tokens_NxL)
    layout = first.secrets
    np.testing.assert_array_equal(layout.secrets_Nxm, second.secrets.secrets_Nxm)
    assert len({tuple(s) for s in layout.secrets_Nxm}) == cfg.data.num_samples  # distinct
    assert len(np.unique(layout.start_N)) > 1  # random places
    for n in range(cfg.data.num_samples):
        text = first.decode(first.tokens_NxL[n])
        start = int(layout.start_N[n])
        secret = "".join("0123456789"[d] for d in layout.secrets_Nxm[n])
        assert text[start - len(" my PIN is ") : start + 4] == " my PIN is " + secret
    mask_NxL = layout.mask_NxL(cfg.data.seq_len)
    assert mask_NxL.sum() == 4 * cfg.data.num_samples
    np.testing.assert_array_equal(
        first.tokens_NxL[mask_NxL].reshape(-1, 4), layout.alphabet_A[layout.secrets_Nxm]
    )
    # Another seed, other secrets; the secrets enter the fingerprint.
    other = load_dataset(_cfg(seed=1, secret_symbols=4).data)
    assert other.fingerprint["sha256"] != first.fingerprint["sha256"]
    assert first.fingerprint["secrets"]["symbols"] == 4


def test_the_default_pool_without_secrets_is_unchanged():
    raw = kjv_secrets.get_config("tiny")
    raw.data.secret_symbols = 0
    plain = load_dataset(from_config_dict(raw).data)
    assert plain.secrets is None and "secrets" not in plain.fingerprint


def test_in_and_out_models_train_on_the_same_carriers_with_different_secrets():
    cfg = _cfg(secret_repeats=3, secret_at="random")
    dataset = load_dataset(cfg.data)
    layout = dataset.secrets
    keep_SxN = membership.make_membership(cfg.num_shadow_models, cfg.data.num_samples, cfg.seed)
    table_TxL, rows_SxM = training_data(cfg, dataset, keep_SxN)
    num_models, num_samples = keep_SxN.shape
    assert rows_SxM.shape == (num_models, 3 * num_samples)
    mask_NxL = layout.mask_NxL(cfg.data.seq_len)
    for s in range(num_models):
        rows_N = rows_SxM[s].reshape(num_samples, 3)
        assert np.all(rows_N == rows_N[:, :1])  # each carrier r times, same secret
        seen_NxL = table_TxL[rows_N[:, 0]]
        # The carrier (everything but the secret) is the sample's, for IN and OUT alike.
        np.testing.assert_array_equal(seen_NxL[~mask_NxL], dataset.tokens_NxL[~mask_NxL])
        same_N = np.all(seen_NxL == dataset.tokens_NxL, axis=1)
        np.testing.assert_array_equal(same_N, keep_SxN[s])  # OUT: never the sample's secret
        symbols = seen_NxL[mask_NxL].reshape(num_samples, -1)
        assert np.isin(symbols, layout.alphabet_A).all()  # fresh secrets use the alphabet
    fresh_SxNxm = layout.fresh_secrets_SxNxm(num_models)
    np.testing.assert_array_equal(fresh_SxNxm, layout.fresh_secrets_SxNxm(num_models))
    assert not np.all(fresh_SxNxm == layout.secrets_Nxm[None], axis=-1).any()


@pytest.mark.parametrize(
    "data, message",
    [
        ({"secret_symbols": 30}, "do not fit in data.seq_len"),
        ({"secret_symbols": 28, "secret_template": " PIN "}, "do not fit in data.seq_len"),
        ({"secret_symbols": 2}, "too few for data.num_samples"),
        ({"secret_alphabet": "emoji"}, "data.secret_alphabet must be one of"),
        ({"secret_at": "middle"}, "data.secret_at must be one of"),
        ({"secret_repeats": 0}, "data.secret_repeats must be >= 1"),
        ({"canary_tokens": 2}, "cannot be combined"),
    ],
)
def test_impossible_secret_settings_are_refused_with_the_field(data, message):
    with pytest.raises(ConfigError, match=message):
        _cfg(**data)


def test_secrets_need_a_text_dataset_and_a_known_alphabet():
    cfg = _cfg()
    with pytest.raises(ConfigError, match="needs a text dataset"):
        from seqmia_jax.data.base import plant_secrets

        image = load_dataset(
            from_config_dict(
                {
                    "data": {"name": "digits", "seq_len": 64, "num_samples": 64},
                    "num_shadow_models": 8,
                    "train": {"batch_size": 8},
                }
            ).data
        )
        plant_secrets(image, cfg.data)
    with pytest.raises(ConfigError, match="one of digits"):
        secret_mode.alphabet_bytes("greek")

"""Synthetic per-token statistics with known structure, shared by the attack tests.

Legend: S shadow models, N samples, L positions.
"""

import numpy as np


def balanced_keep(rng: np.random.Generator, num_models: int, num_samples: int) -> np.ndarray:
    """keep_SxN with each sample IN for exactly half of the models."""
    keys = rng.random((num_models, num_samples))
    ranks = np.argsort(np.argsort(keys, axis=0), axis=0)
    return ranks < num_models // 2


def ar1_chol(length: int, rho: float) -> np.ndarray:
    lags = np.abs(np.arange(length)[:, None] - np.arange(length)[None, :])
    return np.linalg.cholesky(rho**lags)


def gaussian_stats(
    rng,
    num_models,
    num_samples,
    length,
    *,
    shift_std=0.0,
    rho=0.5,
    std_L=None,
    drop_NxL=None,
    keep_SxN=None,
):
    """x = mu[n] + b[s] + D e, e ~ AR(1); members of a model get + drop[n]."""
    std_L = np.ones(length) if std_L is None else std_L
    mu_NxL = rng.normal(size=(num_samples, length))
    b_S = shift_std * rng.normal(size=num_models)
    e = rng.normal(size=(num_models, num_samples, length)) @ ar1_chol(length, rho).T
    x = mu_NxL + b_S[:, None, None] + e * std_L
    if drop_NxL is not None:
        x = x + keep_SxN[..., None] * drop_NxL
    return x.astype(np.float32)

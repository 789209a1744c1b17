"""Summaries of exposure and extraction for IN and OUT models (``results.json``).

Legend: S shadow models, N samples, K samples with an exposure.

The S x N design measures counterfactual memorization directly: every sample
has IN models (trained on its secret) and OUT models (trained on the same
carrier with other secrets), so ``IN - OUT`` is what training on the secret
did. Pairs (model, sample) of one sample are not independent, so the 95%
intervals come from a bootstrap over samples, the unit the attack metrics
resample too.
"""

from pathlib import Path

import numpy as np

from seqmia_jax.workdir import read_json

MEMORIZATION_DIR = "memorization"  # under stats/ (written by the score stage)
MEASURES = ("exposure", "secret_extracted", "text_extracted")  # MEMORIZATION_DIR/<name>.npy


def measure_file(name: str) -> str:
    """A measure's path relative to stats/."""
    return f"{MEMORIZATION_DIR}/{name}.npy"


def _bootstrap(values_SxK, keep_SxK, stat, num: int, seed: int):
    """(IN, OUT, IN - OUT) of ``stat`` and their 95% intervals over resampled samples."""

    def sides(cols):
        v, k = values_SxK[:, cols], keep_SxK[:, cols]
        return stat(v[k]), stat(v[~k])

    num_samples = values_SxK.shape[1]
    point_in, point_out = sides(np.arange(num_samples))
    rng = np.random.default_rng([seed, 0x3E3])
    draws = np.array([sides(rng.integers(0, num_samples, num_samples)) for _ in range(num)])
    draws = draws.reshape(-1, 2)
    diffs = draws[:, 0] - draws[:, 1]

    def ci(x):
        return [float(np.quantile(x, 0.025)), float(np.quantile(x, 0.975))] if num else None

    return {
        "in": {"value": float(point_in), "ci": ci(draws[:, 0]), "num": int(keep_SxK.sum())},
        "out": {"value": float(point_out), "ci": ci(draws[:, 1]), "num": int((~keep_SxK).sum())},
        "difference": {"value": float(point_in - point_out), "ci": ci(diffs)},
    }


def exposure_summary(
    exposure_SxK: np.ndarray,
    keep_SxK: np.ndarray,
    num_candidates: int,
    exact: bool,
    *,
    bootstrap: int = 200,
    seed: int = 0,
) -> dict:
    """Mean exposure (bits) of IN and OUT models, and how often the secret ranks first."""
    exposure_SxK = np.asarray(exposure_SxK, np.float64)
    keep_SxK = np.asarray(keep_SxK, bool)
    top = float(np.log2(num_candidates))
    first_SxK = exposure_SxK >= top - 1e-9  # rank 1 (exact), or at the ceiling (estimated)
    return {
        "method": "exact rank" if exact else "skew-normal estimate (Carlini et al. 2019)",
        "num_candidates": int(num_candidates),
        "max_bits": top,
        "num_samples": int(exposure_SxK.shape[1]),
        "mean_bits": _bootstrap(exposure_SxK, keep_SxK, np.mean, bootstrap, seed),
        "ranked_first": _bootstrap(first_SxK.astype(float), keep_SxK, np.mean, bootstrap, seed),
    }


def extraction_summary(
    matched_SxN: np.ndarray,
    keep_SxN: np.ndarray,
    num_tokens: int,
    *,
    bootstrap: int = 200,
    seed: int = 0,
) -> dict:
    """Exact-extraction rates and mean tokens reproduced, IN and OUT."""
    matched_SxN = np.asarray(matched_SxN, np.float64)
    keep_SxN = np.asarray(keep_SxN, bool)
    exact_SxN = (matched_SxN == num_tokens).astype(float)
    return {
        "num_tokens": int(num_tokens),
        "exact_rate": _bootstrap(exact_SxN, keep_SxN, np.mean, bootstrap, seed),
        "mean_matched": _bootstrap(matched_SxN, keep_SxN, np.mean, bootstrap, seed),
    }


def load_measures(workdir: str | Path) -> dict[str, np.ndarray]:
    """The score stage's exposure and extraction arrays that exist, by file stem."""
    out = {}
    for stem in MEASURES:
        path = Path(workdir) / "stats" / measure_file(stem)
        if path.is_file():
            out[stem] = np.load(path, allow_pickle=False)
    return out


def sections(workdir: str | Path, keep_SxN: np.ndarray, *, bootstrap: int, seed: int) -> dict:
    """``results.json``'s ``exposure`` and ``extraction`` sections ({} without them)."""
    done_path = Path(workdir) / "stats" / "done.json"
    done = read_json(done_path) if done_path.exists() else {}
    settings = done.get("memorization", {})
    arrays = load_measures(workdir)
    keep_SxN = np.asarray(keep_SxN, bool)
    out = {}
    if "exposure" in arrays:
        exposure_SxK = arrays["exposure"]
        info = done.get("exposure", {})
        out["exposure"] = exposure_summary(
            exposure_SxK,
            keep_SxN[:, : exposure_SxK.shape[1]],
            info["num_candidates"],
            info["exact"],
            bootstrap=bootstrap,
            seed=seed,
        )
    extraction = {}
    if "secret_extracted" in arrays:
        extraction["secret"] = extraction_summary(
            arrays["secret_extracted"],
            keep_SxN,
            settings["secret_extraction"]["symbols"],
            bootstrap=bootstrap,
            seed=seed,
        )
    if "text_extracted" in arrays:
        text = settings["text_extraction"]
        extraction["text"] = {
            "prefix": text["prefix"],
            **extraction_summary(
                arrays["text_extracted"], keep_SxN, text["tokens"], bootstrap=bootstrap, seed=seed
            ),
        }
    if extraction:
        out["extraction"] = extraction
    return out

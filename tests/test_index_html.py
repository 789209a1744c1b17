"""results/index.html: every section, embedded images, and nothing fetched from elsewhere."""

import base64
import re
from pathlib import Path

import numpy as np

from seqmia_jax.attacks.runner import run_attacks
from seqmia_jax.config import DataConfig
from seqmia_jax.data import load_dataset
from seqmia_jax.report import write_report
from seqmia_jax.report.html import SECTIONS
from tests.synthetic import balanced_keep

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_index_page(path: Path, *, num_images: int) -> str:
    """Checks an index.html: its sections, its images, and no external reference; returns it."""
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for section in SECTIONS:
        assert page.count(f'<section id="{section}"') == 1, section
    # Every src is an embedded PNG; every href is the per-sample export.
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == num_images
    for src in sources:
        head, data = src.split(",", 1)
        assert head == "data:image/png;base64" and base64.b64decode(data)[:8] == PNG_MAGIC
    assert re.findall(r'href="([^"]*)"', page) == ["samples.csv"]
    assert (path.parent / "samples.csv").is_file()
    # No element that loads anything, and no style that does (the text shown may hold URLs).
    lowered = page.lower()
    for tag in ("<script", "<link", "<iframe", "<object", "<embed", "<audio", "<video", "<base"):
        assert tag not in lowered, tag
    (style,) = re.findall(r"<style>(.*?)</style>", page, re.DOTALL)
    assert "url(" not in style and "@import" not in style
    assert "srcset" not in lowered and "xlink:href" not in lowered
    return page


def _workdir(path: Path, seq_len: int) -> None:
    rng = np.random.default_rng(0)
    keep_SxN = balanced_keep(rng, 8, 40)
    loss = rng.gamma(2.0, 1.0, (8, 40, seq_len)) - 0.4 * keep_SxN[..., None] + 1.0
    (path / "stats").mkdir(parents=True)
    np.save(path / "membership.npy", keep_SxN)
    np.save(path / "stats" / "loss.npy", loss.astype(np.float32))
    np.save(path / "stats" / "logit.npy", (-loss).astype(np.float32))
    specs = ["lira", "seq:cov=diag", "profile", "loss"]
    run_attacks(path, specs, None, bootstrap=10, evidence_attack="profile")


def test_text_index_page(tmp_path):
    _workdir(tmp_path, 16)
    dataset = load_dataset(DataConfig(name="pydoc", seq_len=16, num_samples=40))
    paths = write_report(tmp_path, dataset, num_exposed=4)
    page = assert_index_page(paths["index.html"], num_images=3)  # ROC, intervals, per-sample
    assert page.count('<div class="sample"') == 4 and "<code>profile</code>" in page
    assert "best sequence-aware attack, <code>seq:cov=diag</code>" in page
    assert "Concentration: the largest single position" in page


def test_pixel_index_page(tmp_path):
    _workdir(tmp_path, 64)
    dataset = load_dataset(DataConfig(name="digits", seq_len=64, num_samples=40))
    paths = write_report(tmp_path, dataset, num_exposed=4)
    page = assert_index_page(paths["index.html"], num_images=4)  # and the leakage figure
    assert 'alt="most vulnerable images"' in page

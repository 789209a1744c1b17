"""The leakage view: the most vulnerable samples and the positions that carry the evidence.

Legend: T targets, N samples, L positions, K samples shown, H, W, C image
height, width and channels.

Two attacks, two roles (``writer`` picks them; the page names both):

- the *ranking* attack orders the samples by per-sample vulnerability
  (``samples``): their own AUC over the targets, ties broken by the mean
  rank when IN. The writer uses the strongest calibrated attack of the run.
- the *evidence* attack shades each sample's positions: its per-position
  evidence, averaged over the targets the sample is a member of. By default
  ``profile``, whose per-token weights are shared across a difficulty bin,
  so its terms are stable; ``seq`` terms divide by per-sample variances
  from a handful of shadows and pile up on single near-certain tokens.

Evidence sums over positions to a per-(target, sample) total (the attack's
docstring says which); positive values point to membership. The view states
how concentrated it is: the *largest share*, the largest position's evidence
divided by the sample's total (None when the total is not positive).
"""

import dataclasses
import html
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from seqmia_jax.attacks.specs import parse_spec
from seqmia_jax.data.base import Dataset
from seqmia_jax.data.tokenizer import BYTES, BYTES_SPEC

_POSITIVE_RGB = "220, 40, 40"
_NEGATIVE_RGB = "40, 90, 220"


@dataclasses.dataclass(frozen=True)
class Vulnerable:
    """One sample of the view: its per-sample vulnerability under the ranking attack."""

    sample: int
    auc: float
    pvalue: float
    tpr0: float
    rank_in: float
    in_targets: int
    cf_mem: float
    exposed: bool  # passes Benjamini-Hochberg at samples.FDR
    total: float | None = None  # mean evidence sum over member targets (None: no evidence)
    largest_share: float | None = None
    top_positions: tuple[int, ...] = ()  # positions of the largest evidence, largest first


def top_positions(evidence_L: np.ndarray, num: int = 5) -> tuple[int, ...]:
    """The ``num`` positions with the largest evidence, largest first (ties: earlier first)."""
    order = np.argsort(-np.asarray(evidence_L), kind="stable")[:num]
    return tuple(int(l) for l in order)


def rank_samples(auc_N: np.ndarray, rank_in_N: np.ndarray, num: int) -> np.ndarray:
    """Indices of the ``num`` most vulnerable samples: highest AUC, then lowest mean IN rank."""
    valid = np.flatnonzero(~np.isnan(auc_N))
    order = np.lexsort((np.nan_to_num(rank_in_N[valid], nan=np.inf), -auc_N[valid]))
    return valid[order][:num]


def member_evidence(
    evidence_TxNxL: np.ndarray, labels_TxN: np.ndarray, samples_K: np.ndarray
) -> np.ndarray:
    """evidence_KxL: each sample's evidence averaged over the targets it is a member of."""
    labels_TxK = np.asarray(labels_TxN, dtype=bool)[:, samples_K]
    evidence_TxKxL = np.asarray(evidence_TxNxL[:, samples_K], dtype=np.float64)
    weight_TxK = labels_TxK / np.maximum(labels_TxK.sum(0), 1)
    return np.einsum("tk,tkl->kl", weight_TxK, evidence_TxKxL)


def largest_share(evidence_L: np.ndarray) -> float | None:
    """The largest position's evidence over the total, or None when the total is not positive."""
    total = float(np.sum(evidence_L))
    return float(np.max(evidence_L)) / total if total > 0 else None


def evidence_definition(spec: str) -> str:
    """A plain-language definition of the evidence of ``spec``, as HTML-safe text."""
    name, options = parse_spec(spec)
    if name == "profile":
        return (
            "w<sub>l</sub> (x<sub>l</sub> &minus; m<sub>l</sub>) / (L&middot;sd): the profile "
            "weight of the token (shared by every token of its difficulty bin) times the "
            "target's deviation from the mean m of the sample's OUT shadows, divided by the "
            "OUT standard deviation of the weighted sequence mean; a sample's evidence sums "
            "to that mean's z-score against its OUT shadows"
        )
    if name != "seq":
        return (
            f"the per-position evidence returned by <code>{html.escape(spec)}</code> "
            "(its contribution to the score; see that attack's documentation)"
        )
    mode = options.get("mode", "online")
    order = (
        "exact per-position terms (independent positions)"
        if options.get("cov") == "diag"
        else "chain-rule terms in position order, so each position is credited given the "
        "positions before it"
    )
    if mode == "offline":
        what = "&minus;log p<sub>out</sub>(x<sub>l</sub> | x<sub>&lt;l</sub>)"
    elif mode == "gls":
        what = (
            "the position's share of the GLS uniform-shift statistic, "
            "d (C<sup>-1</sup>1)<sub>l</sub> (x &minus; &mu;)<sub>l</sub> / "
            "&radic;(1<sup>T</sup>C<sup>-1</sup>1)"
        )
    else:
        what = (
            "log p<sub>in</sub>(x<sub>l</sub> | x<sub>&lt;l</sub>) &minus; "
            "log p<sub>out</sub>(x<sub>l</sub> | x<sub>&lt;l</sub>)"
        )
    return f"{what}, {order}; the evidence of a sample sums to its score"


def _utf8_chars(data: bytes) -> list[tuple[str, int]]:
    """Each displayed character with its width in bytes (a UTF-8 character spans 1-4).

    A byte that does not start a valid UTF-8 character shows as U+FFFD on its own.
    """
    chars, b = [], 0
    while b < len(data):
        lead = data[b]
        width = 1 if lead < 0x80 else 2 if lead >> 5 == 6 else 3 if lead >> 4 == 14 else 4
        try:
            ch = data[b : b + width].decode("utf-8") if b + width <= len(data) else ""
        except UnicodeDecodeError:
            ch = ""
        if len(ch) != 1:
            ch, width = "\ufffd", 1
        chars.append((ch, width))
        b += width
    return chars


def _char_spans(tokens_L: np.ndarray, dataset: Dataset) -> list[tuple[str, list[int]]]:
    """Displayed text pieces and the positions (tokens) each covers.

    The tokens decode to bytes through the dataset's tokenizer (one byte per
    token for byte text), the bytes to characters. A piece is the fewest whole
    characters that cover whole tokens: one character over 1-4 byte tokens, or
    a BPE token's characters; a character split between BPE tokens joins them.
    """
    pieces = (dataset.tokenizer or BYTES).token_bytes(tokens_L)
    owner_B = np.repeat(np.arange(len(pieces)), [len(piece) for piece in pieces])
    spans, b = [], 0
    for ch, width in _utf8_chars(b"".join(pieces)):
        first, last = int(owner_B[b]), int(owner_B[b + width - 1])
        if spans and first <= spans[-1][1][-1]:  # shares a token with the previous piece
            text, positions = spans[-1]
            spans[-1] = (text + ch, positions + list(range(positions[-1] + 1, last + 1)))
        else:
            spans.append((ch, list(range(first, last + 1))))
        b += width
    return spans


def _show_text(text: str) -> str:
    """HTML for a piece of text, one ``_show`` per character."""
    return "".join(_show(ch) for ch in text)


def _show(ch: str) -> str:
    """HTML for one character: newlines as ⏎ (then a break), control characters as symbols."""
    if ch == "\n":
        return "⏎\n"
    if ch == "\t":
        return "→\t"
    if ord(ch) < 0x20:
        return chr(0x2400 + ord(ch))
    if ch == "\x7f":
        return "␡"
    return html.escape(ch)


def _token_span(text: str, positions: list[int], evidence_L, mask_L, scale: float) -> str:
    value = float(sum(evidence_L[p] for p in positions))
    present = mask_L is None or all(mask_L[p] for p in positions)
    where = f"pos {positions[0]}" + (f"–{positions[-1]}" if len(positions) > 1 else "")
    title = f"{where}: {value:+.4g}" + ("" if present else " (absent position)")
    if not present:
        style = "color:#999;text-decoration:line-through"
    elif value == 0 or scale == 0:
        style = ""
    else:
        rgb = _POSITIVE_RGB if value > 0 else _NEGATIVE_RGB
        style = f"background:rgba({rgb},{min(1.0, abs(value) / scale):.3f})"
    return f'<span title="{html.escape(title)}" style="{style}">{_show_text(text)}</span>'


def _share_text(item: Vulnerable) -> str:
    if item.total is None:
        return ""
    share = "–" if item.largest_share is None else f"{100 * item.largest_share:.0f}%"
    return f" &middot; evidence total {item.total:+.3g}, largest position {share}"


def _meta(rank: int, item: Vulnerable) -> str:
    flag = " &middot; <b>individually exposed</b>" if item.exposed else ""
    return (
        f"#{rank} &middot; sample {item.sample} &middot; AUC {item.auc:.3f} (p = "
        f"{item.pvalue:.2g}, member of {item.in_targets} targets) &middot; mean IN rank "
        f"{item.rank_in:.1f} &middot; counterfactual memorization {item.cf_mem:+.3f}"
        f"{_share_text(item)}{flag}"
    )


def leakage_blocks(
    dataset: Dataset,
    items: list[Vulnerable],
    evidence_KxL: np.ndarray | None,
    mask_NxL: np.ndarray | None = None,
) -> str:
    """One HTML block per text sample, its characters shaded by evidence (plain without it)."""
    blocks = []
    for rank, item in enumerate(items, start=1):
        tokens_L = dataset.tokens_NxL[item.sample]
        spans = _char_spans(tokens_L, dataset)
        if evidence_KxL is None:
            body = "".join(_show_text(text) for text, _ in spans)
        else:
            evidence_L = evidence_KxL[rank - 1]
            mask_L = None if mask_NxL is None else mask_NxL[item.sample]
            values = [sum(evidence_L[p] for p in positions) for _, positions in spans]
            scale = float(np.max(np.abs(values))) if values else 0.0
            body = "".join(_token_span(ch, pos, evidence_L, mask_L, scale) for ch, pos in spans)
        blocks.append(
            f'<div class="sample" id="rank-{rank}"><div class="meta">{_meta(rank, item)}</div>'
            f"<pre>{body}</pre></div>"
        )
    return "\n".join(blocks)


def _subword(dataset: Dataset) -> bool:
    return dataset.tokenizer is not None and dataset.tokenizer.spec != BYTES_SPEC


def legend_html(evidence_spec: str | None, subword: bool = False) -> str:
    """What the shading means, for the text view (``subword``: tokens of several bytes)."""
    if evidence_spec is None:
        return "<p>No attack recorded per-position evidence, so the samples are not shaded.</p>"
    return (
        f"<p>Each character is shaded by the evidence of <code>{html.escape(evidence_spec)}"
        f"</code>, averaged over the targets the sample is a member of: "
        f"{evidence_definition(evidence_spec)}. "
        f'<span class="key" style="background:rgba({_POSITIVE_RGB},0.8)">Red</span> points '
        f'to membership, <span class="key" style="background:rgba({_NEGATIVE_RGB},0.8)">blue'
        "</span> against it; opacity is |evidence| over the largest |evidence| in that "
        + (
            "sample. A token of several characters is shaded as one piece, and a character "
            "split between tokens shows the sum over them. Hover a piece for its positions "
            "and value."
            if subword
            else "sample. A multi-byte character shows the sum over its bytes. Hover a "
            "character for its position and value."
        )
        + " Newlines show as &#9166;; struck-through grey characters "
        "are absent (masked) positions.</p>"
    )


def leakage_html(
    dataset: Dataset,
    items: list[Vulnerable],
    evidence_KxL: np.ndarray | None,
    ranking_text: str,
    evidence_spec: str | None,
    mask_NxL: np.ndarray | None = None,
) -> str:
    """A self-contained HTML page of the text view (``ranking_text``: HTML, why this order)."""
    return _PAGE.format(
        dataset=html.escape(dataset.name),
        count=len(items),
        ranking=ranking_text,
        legend=legend_html(evidence_spec, _subword(dataset)),
        blocks=leakage_blocks(dataset, items, evidence_KxL, mask_NxL),
    )


STYLE = """.sample { border-top: 1px solid #ccc; padding: 0.6em 0; }
.meta { font-size: 0.9em; color: #555; margin-bottom: 0.3em; }
pre { white-space: pre-wrap; word-break: break-all; font-size: 0.95em; margin: 0; }
.key { padding: 0 0.3em; }"""

_PAGE = (
    """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Leakage: {dataset}</title>
<style>
body {{ font-family: sans-serif; max-width: 60em; margin: 2em auto; color: #222; }}
"""
    + STYLE.replace("{", "{{").replace("}", "}}")
    + """
</style></head><body>
<h1>Most vulnerable samples: {dataset}</h1>
<p>The {count} samples most exposed by their own membership test. {ranking}</p>
{legend}
{blocks}
</body></html>
"""
)


def leakage_figure(
    dataset: Dataset,
    items: list[Vulnerable],
    evidence_KxL: np.ndarray | None,
    evidence_spec: str | None,
    path: Path,
) -> None:
    """Save a grid of vulnerable images, each beside its member evidence (summed over channels)."""
    height, width, channels = dataset.image_shape
    with_heat = evidence_KxL is not None
    per_row = min(4, max(1, len(items)))
    num_rows = -(-len(items) // per_row)
    cols = (2 if with_heat else 1) * per_row
    fig = Figure(figsize=(2.4 * cols, 2.6 * num_rows + 0.8), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(num_rows, cols, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for k, item in enumerate(items):
        row, col = divmod(k, per_row)
        image = dataset.decode(dataset.tokens_NxL[item.sample])
        ax_image = axes[row, (2 if with_heat else 1) * col]
        if channels == 1:
            ax_image.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
        else:
            ax_image.imshow(image)
        mark = " *" if item.exposed else ""
        ax_image.set_title(
            f"#{k + 1} n={item.sample}{mark}\nAUC {item.auc:.2f}, p={item.pvalue:.1g}", fontsize=7
        )
        if with_heat:
            heat_HxW = evidence_KxL[k].reshape(height, width, channels).sum(axis=2)
            scale = float(np.abs(heat_HxW).max()) or 1.0
            ax_heat = axes[row, 2 * col + 1]
            ax_heat.imshow(heat_HxW, cmap="RdBu_r", vmin=-scale, vmax=scale)
            share = item.largest_share
            ax_heat.set_title(
                f"evidence, total {item.total:+.2g}\nlargest pixel "
                + ("–" if share is None else f"{100 * share:.0f}%"),
                fontsize=7,
            )
    what = (
        f"shaded by {evidence_spec} evidence over member targets (red: for membership, "
        "blue: against)"
        if with_heat
        else "no per-position evidence recorded"
    )
    fig.suptitle(
        f"{dataset.name}: most vulnerable samples (* individually exposed); {what}", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path)

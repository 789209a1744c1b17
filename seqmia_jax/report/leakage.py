"""The leakage view: the most exposed members and the positions that carry the evidence.

Legend: T targets, N samples, L positions, K exposed samples, H, W, C image
height, width and channels.

A sample's exposure is its highest score among the targets it is a member
of. Evidence is an attack's per-position contribution to the score (see the
attack's docstring; for ``seq`` it sums to the score). Positive evidence
points to membership, negative evidence against it.
"""

import dataclasses
import html
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from seqmia_jax.attacks.specs import parse_spec
from seqmia_jax.data.base import Dataset

_POSITIVE_RGB = "220, 40, 40"
_NEGATIVE_RGB = "40, 90, 220"


@dataclasses.dataclass(frozen=True)
class Exposed:
    """One exposed (target, sample) pair."""

    sample: int
    target_index: int  # row in the T axis of the scores and evidence
    target: int  # model index
    score: float


def most_exposed(
    scores_TxN: np.ndarray, labels_TxN: np.ndarray, targets_T: np.ndarray, num_exposed: int
) -> list[Exposed]:
    """The K distinct samples with the highest member score, each with its best target."""
    member_TxN = np.where(labels_TxN, scores_TxN, -np.inf)
    best_N = member_TxN.argmax(axis=0)
    best_scores_N = member_TxN[best_N, np.arange(member_TxN.shape[1])]
    candidates = np.flatnonzero(np.isfinite(best_scores_N))
    order = candidates[np.argsort(-best_scores_N[candidates], kind="stable")][:num_exposed]
    return [
        Exposed(int(n), int(best_N[n]), int(targets_T[best_N[n]]), float(best_scores_N[n]))
        for n in order
    ]


def evidence_definition(spec: str) -> str:
    """A plain-language definition of the evidence of ``spec``, as HTML-safe text."""
    name, options = parse_spec(spec)
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


def _char_spans(tokens_L: np.ndarray, dataset: Dataset) -> list[tuple[str, list[int]]]:
    """Displayed characters and the positions each covers (a UTF-8 character spans 1-4 bytes).

    A byte that does not start a valid UTF-8 character shows as U+FFFD on its own.
    """
    if dataset.vocab_size > 256:
        return [(dataset.decode(tokens_L[l : l + 1]), [l]) for l in range(len(tokens_L))]
    data = bytes(int(token) for token in tokens_L)
    spans, l = [], 0
    while l < len(data):
        lead = data[l]
        width = 1 if lead < 0x80 else 2 if lead >> 5 == 6 else 3 if lead >> 4 == 14 else 4
        try:
            ch = data[l : l + width].decode("utf-8") if l + width <= len(data) else ""
        except UnicodeDecodeError:
            ch = ""
        if len(ch) != 1:
            ch, width = "\ufffd", 1
        spans.append((ch, list(range(l, l + width))))
        l += width
    return spans


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


def _token_span(ch: str, positions: list[int], evidence_L, mask_L, scale: float) -> str:
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
    return f'<span title="{html.escape(title)}" style="{style}">{_show(ch)}</span>'


def leakage_html(
    dataset: Dataset,
    exposed: list[Exposed],
    evidence_KxL: np.ndarray,
    spec: str,
    mask_NxL: np.ndarray | None = None,
) -> str:
    """A self-contained HTML page: each exposed text sample with its tokens shaded by evidence."""
    blocks = []
    for rank, (item, evidence_L) in enumerate(zip(exposed, evidence_KxL), start=1):
        tokens_L = dataset.tokens_NxL[item.sample]
        mask_L = None if mask_NxL is None else mask_NxL[item.sample]
        spans = _char_spans(tokens_L, dataset)
        values = [sum(evidence_L[p] for p in positions) for _, positions in spans]
        scale = float(np.max(np.abs(values))) if values else 0.0
        body = "".join(_token_span(ch, pos, evidence_L, mask_L, scale) for ch, pos in spans)
        blocks.append(
            f'<div class="sample" id="rank-{rank}"><div class="meta">#{rank} &middot; '
            f"sample {item.sample} &middot; target model {item.target} &middot; score "
            f"{item.score:+.4g} &middot; evidence sum {float(evidence_L.sum()):+.4g} &middot; "
            f"max |evidence| {scale:.4g}</div><pre>{body}</pre></div>"
        )
    return _PAGE.format(
        dataset=html.escape(dataset.name),
        spec=html.escape(spec),
        definition=evidence_definition(spec),
        count=len(exposed),
        pos=_POSITIVE_RGB,
        neg=_NEGATIVE_RGB,
        blocks="\n".join(blocks),
    )


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Leakage: {dataset} / {spec}</title>
<style>
body {{ font-family: sans-serif; max-width: 60em; margin: 2em auto; color: #222; }}
.sample {{ border-top: 1px solid #ccc; padding: 0.6em 0; }}
.meta {{ font-size: 0.9em; color: #555; margin-bottom: 0.3em; }}
pre {{ white-space: pre-wrap; word-break: break-all; font-size: 0.95em; margin: 0; }}
.key {{ padding: 0 0.3em; }}
</style></head><body>
<h1>Most exposed samples: {dataset}</h1>
<p>The {count} member samples with the highest score under <code>{spec}</code>, each for the
target model where it scores highest. Each character is shaded by its
<em>evidence</em>: {definition}.
<span class="key" style="background:rgba({pos},0.8)">Red</span> evidence points to
membership, <span class="key" style="background:rgba({neg},0.8)">blue</span> against it;
opacity is |evidence| divided by the largest |evidence| in that sample. A multi-byte
character shows the sum over its bytes. Hover a character for its position and value.
Newlines show as &#9166;; struck-through grey characters are absent (masked) positions.</p>
{blocks}
</body></html>
"""


def leakage_figure(
    dataset: Dataset, exposed: list[Exposed], evidence_KxL: np.ndarray, spec: str, path: Path
) -> None:
    """Save a grid of exposed images, each beside its per-pixel evidence (summed over channels)."""
    height, width, channels = dataset.image_shape
    pairs_per_row = min(4, max(1, len(exposed)))
    num_rows = -(-len(exposed) // pairs_per_row)
    fig = Figure(figsize=(2.4 * 2 * pairs_per_row, 2.5 * num_rows + 0.7), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(num_rows, 2 * pairs_per_row, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for k, (item, evidence_L) in enumerate(zip(exposed, evidence_KxL)):
        row, col = divmod(k, pairs_per_row)
        image = dataset.decode(dataset.tokens_NxL[item.sample])
        heat_HxW = evidence_L.reshape(height, width, channels).sum(axis=2)
        scale = float(np.abs(heat_HxW).max()) or 1.0
        ax_image, ax_heat = axes[row, 2 * col], axes[row, 2 * col + 1]
        if channels == 1:
            ax_image.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
        else:
            ax_image.imshow(image)
        ax_image.set_title(
            f"#{k + 1} n={item.sample} t={item.target}\nscore {item.score:+.3g}", fontsize=7
        )
        ax_heat.imshow(heat_HxW, cmap="RdBu_r", vmin=-scale, vmax=scale)
        ax_heat.set_title(f"evidence\n|max| {scale:.3g}", fontsize=7)
    fig.suptitle(
        f"{dataset.name}: most exposed members under {spec} "
        "(red: evidence for membership, blue: against)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path)

"""``results/index.html``: the one page of a report, self-contained and readable offline.

Legend: N samples, A attacks.

The page holds, in order: the headline comparisons in words (with the
count of individually exposed samples); the run (config summary and stage
timings); the results table with CIs and negatives; the ROC and TPR-interval plots; the per-sample summary with a link
to samples.csv; the leakage view. Images are embedded as base64 data URIs
and the styles are inline, so the page needs no network and no other file
(only the samples.csv link is relative). Section ids: run, headline, results,
plots, samples, leakage.
"""

import base64
import html
import re
from collections.abc import Mapping, Sequence

from seqmia_jax.report import leakage
from seqmia_jax.report.families import family_of, in_family_order, styles
from seqmia_jax.report.headline import Headline, fpr_text
from seqmia_jax.report.samples import ATTACK_COLUMNS, SAMPLE_COLUMNS
from seqmia_jax.report.table import fmt

SECTIONS = ("headline", "run", "results", "plots", "samples", "leakage")


def inline(text: str) -> str:
    """Plain report text as HTML: escaped, with `backticked` specs as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))


def image(png: bytes, alt: str) -> str:
    """An <img> with the PNG embedded as a data URI."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _swatch(spec: str, style: dict) -> str:
    red, green, blue, _ = style[spec]["color"]
    rgb = f"rgb({int(255 * red)}, {int(255 * green)}, {int(255 * blue)})"
    return f'<span class="swatch" style="background:{rgb}"></span>'


def _with_ci(value, ci, digits: int) -> str:
    if not ci or None in ci:
        return fmt(value, digits)
    return f"{fmt(value, digits)} <small>[{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]</small>"


def results_table(results: dict) -> str:
    """The results table: family, AUC and TPR at each FPR with 95% CIs; negatives in the header."""
    attacks = results["attacks"]
    first = next(iter(attacks.values()))["tpr_at_fpr"]
    keys = sorted(first, key=float, reverse=True)
    head = ["attack", "family", "AUC [95% CI]"]
    for key in keys:
        point = first[key]
        status = "resolved" if point.get("resolved") else "unresolved †"
        head.append(
            f"TPR@{fpr_text(key)} [95% CI]<br><small>{point.get('num_negatives')} negatives, "
            f"{status}</small>"
        )
    rows = []
    order = in_family_order(list(attacks))
    style = styles(order)  # the shades of the plots
    for spec in order:
        entry = attacks[spec]
        cells = [
            f"{_swatch(spec, style)}<code>{html.escape(spec)}</code>",
            family_of(spec).label,
            _with_ci(entry.get("auc"), entry.get("auc_ci"), 3),
        ]
        for key in keys:
            point = entry["tpr_at_fpr"][key]
            mark = "" if point.get("resolved") else " †"
            cells.append(_with_ci(point.get("tpr"), point.get("ci"), 4) + mark)
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    notes = [
        (
            f"{first[keys[0]].get('num_negatives')} negatives (non-member target/sample pairs) "
            f"over {len(results.get('targets', []))} targets. TPR@f is the largest TPR at FPR "
            "&le; f; it is resolved only with at least 1/f negatives († otherwise: a single false "
            "positive already exceeds f)."
        )
    ]
    notes += [
        f"Skipped <code>{html.escape(spec)}</code>: {html.escape(reason)}"
        for spec, reason in results.get("skipped", {}).items()
    ]
    return (
        "<table><thead><tr>"
        + "".join(f"<th>{h}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        + "".join(f'<p class="note">{n}</p>' for n in notes)
    )


def run_summary(config: Mapping | None, facts: Sequence[str], timings: Sequence[str]) -> str:
    """Facts about the run, timings, and each config section as key = value."""
    parts = ["<ul>" + "".join(f"<li>{inline(f)}</li>" for f in facts) + "</ul>"]
    if timings:
        parts.append("<p><b>Timings:</b> " + inline("; ".join(timings)) + ".</p>")
    if config:
        rows = []
        for section, values in config.get("config", {}).items():
            if isinstance(values, Mapping):
                text = ", ".join(f"{k} = {v}" for k, v in values.items())
            else:
                text = str(values)
            rows.append(f"<tr><th>{html.escape(section)}</th><td>{html.escape(text)}</td></tr>")
        extra = {
            "git": config.get("git"),
            "versions": ", ".join(f"{k} {v}" for k, v in config.get("versions", {}).items()),
            "dataset sha256": (config.get("dataset") or {}).get("sha256"),
        }
        rows += [
            f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in extra.items() if v
        ]
        parts.append(
            "<details><summary>Resolved config (config.json)</summary>"
            f'<table class="config">{"".join(rows)}</table></details>'
        )
    return "".join(parts)


def column_guide(specs: Sequence[str]) -> str:
    """The samples.csv schema as a definition list."""
    items = [(name, text) for name, text in SAMPLE_COLUMNS.items()]
    items += [(f"{metric}[spec]", text) for metric, text in ATTACK_COLUMNS.items()]
    body = "".join(
        f"<dt><code>{html.escape(n)}</code></dt><dd>{html.escape(t)}</dd>" for n, t in items
    )
    return (
        "<details><summary>Columns of samples.csv</summary><dl>"
        + body
        + f"</dl><p>One column group per attack, in results.json order ({len(specs)} attacks); "
        "read columns by name, since later versions append columns.</p></details>"
    )


def index_page(
    *,
    title: str,
    lede: Sequence[str],
    run: str,
    head: Headline,
    ranking_reason: str,
    table: str,
    plots: Sequence[str],
    samples: str,
    leakage_view: str,
    secrets: str = "",
) -> str:
    """The whole page from its sections' HTML (``lede`` and reasons are plain report text).

    The headline comparisons open the page, followed by ``lede`` (more plain
    sentences for the top box).
    """
    sections = {
        "run": ("The run", run),
        "results": ("Results", table),
        "secrets": ("Secrets: exposure and extraction", secrets),
        "plots": ("Plots", "".join(f"<figure>{p}</figure>" for p in plots)),
        "samples": ("Per-sample vulnerability", samples),
        "leakage": ("Leakage view", f"<p>{inline(ranking_reason)}</p>{leakage_view}"),
    }
    body = "".join(
        f'<section id="{key}"><h2>{name}</h2>{content}</section>'
        for key, (name, content) in sections.items()
        if content or key != "secrets"
    )
    return _PAGE.format(
        title=html.escape(title),
        lede="".join(f"<p>{inline(s)}</p>" for s in [*head.sentences, *lede]),
        body=body,
        style=_STYLE + "\n" + leakage.STYLE,
    )


_STYLE = """body { font-family: sans-serif; max-width: 72em; margin: 1.5em auto; padding: 0 1em;
  color: #222; line-height: 1.4; }
h1 { font-size: 1.5em; margin-bottom: 0.3em; }
h2 { font-size: 1.2em; border-bottom: 2px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
.lede { background: #f4f6fa; border-left: 4px solid #4a6fa5; padding: 0.2em 1em; }
.lede h2 { border: none; margin-top: 0.5em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border-bottom: 1px solid #e2e2e2; padding: 0.25em 0.6em; text-align: left;
  vertical-align: top; }
thead th { background: #f0f0f0; }
td small { color: #666; }
table.config td { font-family: monospace; font-size: 0.95em; }
.swatch { display: inline-block; width: 0.8em; height: 0.8em; margin-right: 0.4em;
  vertical-align: middle; }
.note { font-size: 0.85em; color: #555; margin: 0.3em 0; }
figure { margin: 1em 0; }
img { max-width: 100%; height: auto; }
dt { font-weight: bold; margin-top: 0.3em; }
code { font-size: 0.95em; }"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
{style}
</style></head><body>
<h1>{title}</h1>
<section id="headline" class="lede"><h2>Headline comparisons</h2>{lede}</section>
{body}
</body></html>
"""

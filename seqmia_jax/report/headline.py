"""The run's headline in words, and the choice of the attack that ranks samples.

Legend: T targets, N samples.

Attacks are compared at one FPR: the lowest of the run's FPR levels that
its negatives resolve (at least 1/FPR of them), or the highest level when
none is resolved (then the sentence says so). "Best" means the highest
pooled TPR at that FPR, ties broken by AUC. All text is plain, with attack
specs in backticks; ``seqmia_jax.report.html`` turns those into code.
"""

import dataclasses

from seqmia_jax.report.families import family_of
from seqmia_jax.report.table import fmt


@dataclasses.dataclass(frozen=True)
class Headline:
    """The comparison FPR (a results.json key), the chosen attacks and the sentences."""

    fpr_key: str | None
    ranking_attack: str | None  # the strongest calibrated attack: it ranks the samples
    sentences: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.sentences)


def comparison_fpr(attacks: dict) -> str | None:
    """The FPR key to compare at: the lowest resolved one, else the highest."""
    if not attacks:
        return None
    points = next(iter(attacks.values()))["tpr_at_fpr"]
    keys = sorted(points, key=float)
    resolved = [k for k in keys if points[k].get("resolved")]
    return resolved[0] if resolved else keys[-1]


def _tpr(entry: dict, key: str) -> float | None:
    return entry["tpr_at_fpr"].get(key, {}).get("tpr")


def best(attacks: dict, key: str, specs: list[str]) -> str | None:
    """The spec among ``specs`` with the highest TPR at ``key`` (then AUC); None if empty."""

    def rank(spec):
        entry = attacks[spec]
        tpr, auc = _tpr(entry, key), entry.get("auc")
        return (-1.0 if tpr is None else tpr, -1.0 if auc is None else auc)

    return max(specs, key=rank, default=None)


def fpr_text(key: str) -> str:
    """ "0.001" -> "1e-3"."""
    mantissa, exponent = f"{float(key):.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _point(entry: dict, key: str) -> str:
    point = entry["tpr_at_fpr"][key]
    ci = point.get("ci") or [None, None]
    interval = f" [{fmt(ci[0], 4)}, {fmt(ci[1], 4)}]" if None not in ci else ""
    return f"{fmt(point.get('tpr'), 4)}{interval}"


def _overlap(a: dict, b: dict, key: str) -> str:
    ci_a, ci_b = a["tpr_at_fpr"][key].get("ci"), b["tpr_at_fpr"][key].get("ci")
    if not ci_a or not ci_b or None in (*ci_a, *ci_b):
        return "no CIs (bootstrap off)"
    overlap = ci_a[0] <= ci_b[1] and ci_b[0] <= ci_a[1]
    return "the 95% CIs overlap" if overlap else "the 95% CIs do not overlap"


def _ratio(a: dict, b: dict, key: str) -> str:
    ta, tb = _tpr(a, key), _tpr(b, key)
    if ta is None or tb is None:
        return "–"
    if tb == 0:
        return "undefined (both 0)" if ta == 0 else "∞×"
    return f"{ta / tb:.2f}×"


def headline(results: dict) -> Headline:
    """The headline comparisons of a results.json (see module docstring)."""
    attacks = results.get("attacks", {})
    key = comparison_fpr(attacks)
    if key is None:
        return Headline(None, None, ("No attack results.",))
    specs = list(attacks)
    sequence = [s for s in specs if family_of(s).label == "sequence-aware"]
    univariate = [s for s in specs if family_of(s).label == "univariate LiRA"]
    calibrated = [s for s in specs if family_of(s).calibrated]
    point = next(iter(attacks.values()))["tpr_at_fpr"][key]
    negatives = point.get("num_negatives")
    where = (
        f"At FPR {fpr_text(key)} (the lowest FPR this run resolves, with {negatives} negatives)"
        if point.get("resolved")
        else f"At FPR {fpr_text(key)} (unresolved: only {negatives} negatives)"
    )
    sentences = []
    seq, uni = best(attacks, key, sequence), best(attacks, key, univariate)
    if seq is None:
        sentences.append(f"{where}, no sequence-aware attack ran, so there is no comparison.")
    else:
        s = attacks[seq]
        parts = []
        if "lira" in attacks:
            parts.append(
                f"{_ratio(s, attacks['lira'], key)} plain `lira` "
                f"({_point(attacks['lira'], key)}; {_overlap(s, attacks['lira'], key)})"
            )
        if uni is not None and uni != "lira":
            parts.append(
                f"{_ratio(s, attacks[uni], key)} the best univariate LiRA, `{uni}` "
                f"({_point(attacks[uni], key)}; {_overlap(s, attacks[uni], key)})"
            )
        elif uni == "lira":
            parts[-1] += ", which is also the best univariate LiRA"
        against = " and ".join(parts) if parts else "no univariate LiRA ran to compare with"
        sentences.append(
            f"{where}, the best sequence-aware attack, `{seq}`, reaches TPR "
            f"{_point(s, key)}: {against}."
        )
    top = best(attacks, key, specs)
    e = attacks[top]
    sentences.append(
        f"The strongest attack of the run is `{top}` ({family_of(top).label}): TPR "
        f"{_point(e, key)}, AUC {fmt(e.get('auc'), 3)}."
    )
    ranking = best(attacks, key, calibrated) or top
    return Headline(key, ranking, tuple(sentences))


def ranking_reason(results: dict, head: Headline) -> str:
    """Why ``head.ranking_attack`` ranks the samples, in one sentence."""
    spec, key = head.ranking_attack, head.fpr_key
    if spec is None:
        return "No attack ranks the samples: there are no results."
    entry = results["attacks"][spec]
    if family_of(spec).calibrated:
        why = (
            "of the attacks calibrated against shadow models, it has the highest TPR at "
            f"FPR {fpr_text(key)} ({fmt(_tpr(entry, key), 4)}; AUC {fmt(entry.get('auc'), 3)})"
        )
    else:
        why = "no calibrated attack ran, and it is the strongest of those that did"
    return f"Samples are ranked under `{spec}`: {why}."

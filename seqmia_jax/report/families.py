"""Attack families: how the report groups, colours and chooses attacks.

An attack belongs to a family by its registered name (the part of the spec
before ':'). Families share a colour map and differ from each other in hue,
so 19 curves stay tellable apart: members of one family take successive
shades and line styles of their family's map.

A family is *calibrated* when its score compares the target's statistic with
shadow models that did and did not train on the sample (per-sample difficulty
calibration): univariate and sequence-aware LiRA, profile and the
reference-based attacks. The baselines (loss, zlib, Min-K%, Min-K%++) score
the target model alone. The base-model reference (``baseref``) compares the
target with the pretrained base its shadows were fine-tuned from: a
difficulty reference, but no shadow, so it is a baseline of its own and not
calibrated in this sense.
"""

import dataclasses

from matplotlib import colormaps

from seqmia_jax.attacks.specs import parse_spec


@dataclasses.dataclass(frozen=True)
class Family:
    """One attack family: its label, member attack names, colour map and calibration."""

    label: str
    names: tuple[str, ...]
    colormap: str
    calibrated: bool


FAMILIES: tuple[Family, ...] = (
    Family("univariate LiRA", ("lira", "carlini"), "Blues", True),
    Family("sequence-aware", ("seq",), "Reds", True),
    Family("profile", ("profile",), "Greens", True),
    Family("reference-based", ("refcal", "rmia"), "Purples", True),
    # The pretrained base as the one reference model. Not "calibrated": that flag means IN
    # and OUT shadows were compared, and the report ranks samples only by such an attack;
    # the base saw no audit sample, so target minus base mixes what fine-tuning taught on
    # every sample with what was memorized of this one. The agg=topk variant stays here
    # too: a Min-K%-like order statistic of per-token differences, which models no
    # dependence between positions, so it is not sequence-aware.
    Family("base-model reference", ("baseref",), "YlOrBr", False),
    Family("baselines", ("loss", "zlib", "mink", "minkpp"), "Greys", False),
)
OTHER = Family("other", (), "Oranges", False)  # attacks registered after this table was written

LINE_STYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (1, 1)))


def family_of(spec: str) -> Family:
    """The family of an attack spec (``OTHER`` for a name no family lists)."""
    name = parse_spec(spec)[0]
    return next((f for f in FAMILIES if name in f.names), OTHER)


def in_family_order(specs: list[str]) -> list[str]:
    """``specs`` grouped by family in ``FAMILIES`` order, keeping their order within a family."""
    rank = {f.label: i for i, f in enumerate((*FAMILIES, OTHER))}
    return sorted(specs, key=lambda spec: rank[family_of(spec).label])  # sorted() is stable


def styles(specs: list[str]) -> dict[str, dict]:
    """spec -> matplotlib line keywords (color, linestyle): hue by family, shade and dash within.

    Shades run from dark to mid so that even a six-member family stays
    readable on white; the first member of a family is its darkest.
    """
    out, seen = {}, {}
    counts = {}
    for spec in specs:
        counts[family_of(spec).label] = counts.get(family_of(spec).label, 0) + 1
    for spec in specs:
        family = family_of(spec)
        k = seen.get(family.label, 0)
        seen[family.label] = k + 1
        size = counts[family.label]
        shade = 0.95 - 0.45 * (k / (size - 1) if size > 1 else 0.0)
        out[spec] = {
            "color": colormaps[family.colormap](shade),
            "linestyle": LINE_STYLES[k % len(LINE_STYLES)],
        }
    return out

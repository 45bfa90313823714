"""Success-rate bar charts as SVG markup written on the server.

Why not a chart library in the browser: the site's Content Security Policy allows
only its own scripts and stylesheets (no inline `style`, no `<style>`), and an
evaluation page should be readable without script, printable and testable as
text. So the chart is plain SVG with presentation attributes (fill, stroke,
font-size), which the CSP does not govern; the review stylesheet recolours it
through its classes for the dark theme. Every piece of text in it comes from the
database (evaluation labels, format names) and is escaped here.

A chart has groups along the x axis (the action formats) and one bar per series
in each group (one series for one evaluation; A and B for a comparison, with a
legend). Each bar is the success rate on a 0-100% axis, with the 95% interval as
a whisker and the rate printed above it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from evals import stats
from evals.stats import FormatDelta, FormatSummary

# Geometry, in SVG user units (the chart scales to its box; these fix proportions).
PLOT_TOP = 28  # room for a value label above a whisker that reaches 100%
PLOT_HEIGHT = 200  # 100% of the axis
PLOT_LEFT = 48  # room for the tick labels
RIGHT = 16
AXIS_LABELS = 34  # below the axis: the group names
LEGEND_LINE = 20
BAR_WIDTH = 40
BAR_GAP = 8  # between the bars of one group
GROUP_GAP = 36  # the least room between groups, and at each end
MIN_WIDTH = 320
# Its size on the page, per unit: a little larger than the units, so that 11-unit
# tick labels read like the page's small text (a narrow screen shrinks it to fit).
SCALE = 1.25
TICKS = (0, 25, 50, 75, 100)
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
LEGEND_CHARS = 48  # longer legend names are cut (the full name is in their <title>)
CHAR_WIDTH = 6.6  # an average glyph at 12 units, to size the legend

# Fallback colours, for the SVG outside the page (the stylesheet overrides them).
SERIES_FILLS = ("#4f46e5", "#0d9488")
TEXT_FILL = "#1c1f24"
MUTED_FILL = "#667085"
GRID_STROKE = "#e2e5ea"


@dataclass(frozen=True)
class Bar:
    """One bar: a rate and its interval as fractions (rate None: no finished runs)."""

    rate: float | None
    low: float
    high: float
    detail: str = ""  # what the bar stands for, for its tooltip: "7/10 solved"

    def __post_init__(self) -> None:
        for name in ("rate", "low", "high"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"a bar's {name} must be a fraction in [0, 1], got {value}")
        if self.low > self.high:
            raise ValueError(f"a bar's interval is reversed: {self.low} > {self.high}")


@dataclass(frozen=True)
class Group:
    label: str  # under the axis, e.g. the format's name
    bars: Sequence[Bar]  # one per series


def _num(value: float) -> str:
    """A coordinate without float noise ("12.5", "200")."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _attrs(**values: str | float) -> str:
    """Attributes, escaped; a trailing underscore in a name is dropped and other
    underscores become hyphens (class_ -> class, font_size -> font-size)."""
    parts = []
    for key, value in values.items():
        name = key.rstrip("_").replace("_", "-")
        text = _num(value) if isinstance(value, float | int) else value
        parts.append(f'{name}="{escape(text, quote=True)}"')
    return " ".join(parts)


def _text(x: float, y: float, content: str, **extra: str | float) -> str:
    return f"<text {_attrs(x=x, y=y, **extra)}>{escape(content, quote=False)}</text>"


def _percent(value: float) -> str:
    return stats.format_percent(value)


def _shorten(label: str, limit: int = LEGEND_CHARS) -> str:
    return label if len(label) <= limit else label[: limit - 1].rstrip() + "\u2026"


def bar_chart(
    groups: Sequence[Group], *, title: str, series: Sequence[str] = (), description: str = ""
) -> str:
    """An SVG bar chart of success rates with interval whiskers.

    `series` names the bars of each group for the legend (shown when there are
    two or more; every group must then have that many bars). `title` becomes the
    chart's accessible name with `description`, or a generated reading of every
    bar when `description` is empty, so a screen reader gets the numbers too.
    """
    if not groups:
        raise ValueError("a chart needs at least one group")
    per_group = len(groups[0].bars)
    if per_group == 0 or any(len(g.bars) != per_group for g in groups):
        raise ValueError("every group needs the same number of bars, at least one")
    if series and len(series) != per_group:
        raise ValueError(f"{len(series)} series names for {per_group} bars per group")
    legend = list(series) if len(series) > 1 else []

    group_width = per_group * BAR_WIDTH + (per_group - 1) * BAR_GAP
    natural = len(groups) * group_width + (len(groups) + 1) * GROUP_GAP
    legend_width = max((len(_shorten(s)) * CHAR_WIDTH + 24 for s in legend), default=0)
    width = max(MIN_WIDTH, PLOT_LEFT + natural + RIGHT, PLOT_LEFT + legend_width + RIGHT)
    # The plot takes the whole width; the groups spread evenly over it.
    plot_width = width - PLOT_LEFT - RIGHT
    gap = (plot_width - len(groups) * group_width) / (len(groups) + 1)
    baseline = PLOT_TOP + PLOT_HEIGHT
    height = baseline + AXIS_LABELS + len(legend) * LEGEND_LINE + (6 if legend else 0)
    label = description or _reading(groups, legend)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="eval-chart" role="img" '
        f"{_attrs(width=width * SCALE, height=height * SCALE)} "
        f"{_attrs(viewBox=f'0 0 {_num(width)} {_num(height)}')} "
        f"{_attrs(aria_label=f'{title}. {label}')}"
        f' preserveAspectRatio="xMinYMin meet" font-family="{escape(FONT, quote=True)}">',
        f"<title>{escape(title, quote=False)}</title>",
        f"<desc>{escape(label, quote=False)}</desc>",
    ]
    # Gridlines and tick labels: 0, 25, 50, 75, 100%.
    out.append('<g class="chart-grid">')
    for tick in TICKS:
        y = baseline - tick / 100 * PLOT_HEIGHT
        out.append(
            f"<line {_attrs(x1=PLOT_LEFT, x2=PLOT_LEFT + plot_width, y1=y, y2=y)}"
            f' stroke="{GRID_STROKE}" stroke-width="1"/>'
        )
        out.append(
            _text(
                PLOT_LEFT - 8,
                y + 4,
                f"{tick}%",
                class_="chart-muted",
                text_anchor="end",
                font_size=11,
                fill=MUTED_FILL,
            )
        )
    out.append("</g>")

    for index, group in enumerate(groups):
        left = PLOT_LEFT + gap + index * (group_width + gap)
        out.append(f'<g class="chart-group" {_attrs(aria_label=group.label)}>')
        for position, bar in enumerate(group.bars):
            x = left + position * (BAR_WIDTH + BAR_GAP)
            out.extend(_bar(bar, x, baseline, position, legend[position] if legend else ""))
        out.append(
            _text(
                left + group_width / 2,
                baseline + 20,
                _shorten(group.label, 24),
                class_="chart-label",
                text_anchor="middle",
                font_size=13,
                font_weight=600,
                fill=TEXT_FILL,
            )
        )
        out.append("</g>")

    # The axis line over the bars' feet.
    out.append(
        f"<line {_attrs(x1=PLOT_LEFT, x2=PLOT_LEFT + plot_width, y1=baseline, y2=baseline)}"
        f' class="chart-axis" stroke="{MUTED_FILL}" stroke-width="1"/>'
    )
    if legend:
        out.append('<g class="chart-legend">')
        top = baseline + AXIS_LABELS + 4
        for position, name in enumerate(legend):
            y = top + position * LEGEND_LINE
            fill = SERIES_FILLS[position % len(SERIES_FILLS)]
            out.append(
                f"<rect {_attrs(x=PLOT_LEFT, y=y, width=12, height=12, rx=2)}"
                f' class="chart-series-{position}" fill="{fill}"/>'
            )
            out.append(
                f"<text {_attrs(x=PLOT_LEFT + 18, y=y + 10.5, font_size=12)}"
                f' class="chart-label" fill="{TEXT_FILL}">'
                f"<title>{escape(name, quote=False)}</title>"
                f"{escape(_shorten(name), quote=False)}</text>"
            )
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def _bar(bar: Bar, x: float, baseline: float, position: int, series: str) -> list[str]:
    """One bar, its whisker and its value label (or "no runs")."""
    centre = x + BAR_WIDTH / 2
    if bar.rate is None:
        return [
            _text(
                centre,
                baseline - 6,
                "no runs",
                class_="chart-muted",
                text_anchor="middle",
                font_size=11,
                fill=MUTED_FILL,
            )
        ]
    height = bar.rate * PLOT_HEIGHT
    fill = SERIES_FILLS[position % len(SERIES_FILLS)]
    tip = f"{series}: " if series else ""
    tip += f"{_percent(bar.rate)}, 95% interval {_percent(bar.low)}\u2013{_percent(bar.high)}"
    if bar.detail:
        tip += f" ({bar.detail})"
    y_low = baseline - bar.low * PLOT_HEIGHT
    y_high = baseline - bar.high * PLOT_HEIGHT
    cap = BAR_WIDTH / 4
    return [
        f"<rect {_attrs(x=x, y=baseline - height, width=BAR_WIDTH, height=height)}"
        f' class="chart-bar chart-series-{position}" fill="{fill}">'
        f"<title>{escape(tip, quote=False)}</title></rect>",
        f'<g class="chart-whisker" stroke="{TEXT_FILL}" stroke-width="1.5">'
        f"<line {_attrs(x1=centre, x2=centre, y1=y_low, y2=y_high)}/>"
        f"<line {_attrs(x1=centre - cap, x2=centre + cap, y1=y_high, y2=y_high)}/>"
        f"<line {_attrs(x1=centre - cap, x2=centre + cap, y1=y_low, y2=y_low)}/>"
        "</g>",
        _text(
            centre,
            y_high - 7,
            _percent(bar.rate),
            class_="chart-value",
            text_anchor="middle",
            font_size=12,
            font_weight=700,
            fill=TEXT_FILL,
        ),
    ]


def _reading(groups: Sequence[Group], series: Sequence[str]) -> str:
    """Every bar in words, for the chart's accessible description."""
    parts = []
    for group in groups:
        for position, bar in enumerate(group.bars):
            name = f"{group.label}, {series[position]}" if series else group.label
            if bar.rate is None:
                parts.append(f"{name}: no runs")
            else:
                parts.append(
                    f"{name}: {_percent(bar.rate)} "
                    f"(95% interval {_percent(bar.low)} to {_percent(bar.high)})"
                )
    return "; ".join(parts) + "."


def _bar_of(summary: FormatSummary | None) -> Bar:
    if summary is None or summary.rate is None:
        return Bar(None, 0.0, 1.0)
    return Bar(summary.rate, summary.low, summary.high, f"{summary.fraction} solved")


def evaluation_chart(summaries: Sequence[FormatSummary], title: str) -> str:
    """One evaluation: a bar per action format."""
    if not summaries:
        raise ValueError("an evaluation chart needs at least one format")
    return bar_chart([Group(s.format, [_bar_of(s)]) for s in summaries], title=title)


def comparison_chart(deltas: Sequence[FormatDelta], names: tuple[str, str], title: str) -> str:
    """Two evaluations: per action format, A's bar and B's side by side, with a legend."""
    if not deltas:
        raise ValueError("a comparison chart needs at least one format")
    groups = [Group(d.format, [_bar_of(d.a), _bar_of(d.b)]) for d in deltas]
    return bar_chart(groups, title=title, series=names)

"""evals.chart: the SVG is well-formed XML, bars are as tall as their rates,
whiskers span the intervals, text is escaped, and nothing in it needs the inline
styles the site's CSP forbids."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from evals import chart, stats

NS = {"svg": "http://www.w3.org/2000/svg"}
SVG = "{http://www.w3.org/2000/svg}"


def parse(markup: str) -> ET.Element:
    root = ET.fromstring(markup)
    assert root.tag == f"{SVG}svg"
    return root


def bars(root: ET.Element) -> list[ET.Element]:
    return [r for r in root.iter(f"{SVG}rect") if "chart-bar" in r.get("class", "")]


def legend_names(root: ET.Element) -> list[str]:
    """The legend's visible names (each <text> holds a <title> with the full name first)."""
    legend = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "chart-legend")
    return [
        "".join(t.itertext())[len(t.findtext("svg:title", "", NS)) :]
        for t in legend.iter(f"{SVG}text")
    ]


def summary(name: str, successes: int, runs: int) -> stats.FormatSummary:
    low, high = stats.wilson_interval(successes, runs)
    return stats.FormatSummary(
        format=name,
        runs=runs,
        successes=successes,
        unfinished=0,
        low=low,
        high=high,
        mean_turns=None,
        mean_executions=None,
        mean_tokens=None,
        mean_wall_time=None,
    )


def test_bar_heights_are_proportional_to_the_rates():
    summaries = [summary("code", 74, 100), summary("call", 5, 10), summary("text", 10, 10)]
    root = parse(chart.evaluation_chart(summaries, "Rates"))
    heights = [float(r.get("height", "")) for r in bars(root)]
    assert heights == pytest.approx([0.74 * chart.PLOT_HEIGHT, 0.5 * chart.PLOT_HEIGHT, 200.0])
    # Every bar stands on the same baseline.
    feet = {float(r.get("y", "")) + float(r.get("height", "")) for r in bars(root)}
    assert feet == {chart.PLOT_TOP + chart.PLOT_HEIGHT}
    # Each value label says its rate, left to right.
    values = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "chart-value"]
    assert values == ["74%", "50%", "100%"]
    labels = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "chart-label"]
    assert labels == ["code", "call", "text"]


def test_whiskers_span_the_interval():
    s = summary("code", 74, 100)
    root = parse(chart.evaluation_chart([s], "Rates"))
    (whisker,) = [g for g in root.iter(f"{SVG}g") if g.get("class") == "chart-whisker"]
    stem = whisker.find("svg:line", NS)
    assert stem is not None
    baseline = chart.PLOT_TOP + chart.PLOT_HEIGHT
    ys = sorted(float(stem.get(k, "")) for k in ("y1", "y2"))
    expected = sorted(baseline - v * chart.PLOT_HEIGHT for v in (s.low, s.high))
    assert ys == pytest.approx(expected, abs=0.01)


def test_axis_has_gridlines_and_ticks_from_0_to_100():
    root = parse(chart.evaluation_chart([summary("code", 1, 2)], "Rates"))
    grid = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "chart-grid")
    ticks = [t.text for t in grid.iter(f"{SVG}text")]
    assert ticks == ["0%", "25%", "50%", "75%", "100%"]
    ys = [float(line.get("y1", "")) for line in grid.iter(f"{SVG}line")]
    assert ys == pytest.approx([228, 178, 128, 78, 28])


def test_accessible_name_and_title_describe_every_bar():
    root = parse(chart.evaluation_chart([summary("code", 5, 10)], "Success per format"))
    assert root.get("role") == "img"
    label = root.get("aria-label", "")
    assert label.startswith("Success per format.")
    assert "code: 50% (95% interval 24% to 76%)" in label
    title = root.find("svg:title", NS)
    assert title is not None and title.text == "Success per format"
    assert next(iter(root)) is title  # the first child, where viewers look for it


def test_labels_are_escaped():
    evil = '<script>alert("x")</script> & co'
    markup = chart.bar_chart(
        [chart.Group(evil, [chart.Bar(0.5, 0.2, 0.8), chart.Bar(None, 0.0, 1.0)])],
        title=f"Title {evil}",
        series=[f"A: {evil}", "B: 'quoted'"],
    )
    assert "<script" not in markup
    root = parse(markup)  # well-formed despite <, >, &, quotes in every text
    assert root.get("aria-label", "").startswith(f"Title {evil}.")
    title = root.find("svg:title", NS)
    assert title is not None and title.text == f"Title {evil}"
    legend = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "chart-legend")
    names = [t.findtext("svg:title", namespaces=NS) for t in legend.iter(f"{SVG}text")]
    assert names == [f"A: {evil}", "B: 'quoted'"]
    groups = [g.get("aria-label") for g in root.iter(f"{SVG}g") if g.get("class") == "chart-group"]
    assert groups == [evil]


def test_nothing_needs_inline_styles():
    deltas = [stats.FormatDelta("code", summary("code", 3, 4), summary("code", 1, 4), None)]
    markup = chart.comparison_chart(deltas, ("A: one", "B: two"), "A and B")
    root = parse(markup)
    assert root.find(".//svg:style", NS) is None
    assert all("style" not in el.attrib for el in root.iter())
    assert all(not el.tag.endswith("script") for el in root.iter())


def test_grouped_chart_has_a_bar_per_side_and_a_legend():
    deltas = [
        stats.FormatDelta("code", summary("code", 8, 10), summary("code", 9, 10), None),
        stats.FormatDelta("call", summary("call", 2, 10), None, None),
    ]
    root = parse(chart.comparison_chart(deltas, ("A: base", "B: new"), "A and B"))
    heights = [float(r.get("height", "")) for r in bars(root)]
    assert heights == pytest.approx([160.0, 180.0, 40.0])  # call has no B bar
    series = [r.get("class") for r in bars(root)]
    assert series == [f"chart-bar chart-series-{i}" for i in (0, 1, 0)]
    muted = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "chart-muted"]
    assert "no runs" in muted
    assert legend_names(root) == ["A: base", "B: new"]
    # B's bar sits right of A's in the same group.
    xs = [float(r.get("x", "")) for r in bars(root)[:2]]
    assert xs[1] == xs[0] + chart.BAR_WIDTH + chart.BAR_GAP
    assert "call, B: new: no runs" in root.get("aria-label", "")


def test_long_legend_names_are_cut_and_the_chart_widens_for_them():
    long = "B: " + "a very long evaluation label " * 5
    root = parse(
        chart.bar_chart(
            [chart.Group("code", [chart.Bar(0.5, 0.2, 0.8)] * 2)], title="t", series=["A", long]
        )
    )
    width = float(root.get("viewBox", "").split()[2])
    assert width > chart.MIN_WIDTH
    shown = legend_names(root)
    assert shown[0] == "A"
    assert any(s and s.endswith("\u2026") and len(s) == chart.LEGEND_CHARS for s in shown)


@pytest.mark.parametrize(
    "groups,series,message",
    [
        ([], (), "at least one group"),
        ([chart.Group("x", [])], (), "same number"),
        ([chart.Group("x", [chart.Bar(0.5, 0, 1)]), chart.Group("y", [])], (), "same number"),
        ([chart.Group("x", [chart.Bar(0.5, 0, 1)])], ("A", "B"), "2 series names"),
    ],
)
def test_bad_chart_input_is_refused(groups, series, message):
    with pytest.raises(ValueError, match=message):
        chart.bar_chart(groups, title="t", series=series)


@pytest.mark.parametrize(
    "rate,low,high", [(1.5, 0.0, 1.0), (0.5, -0.1, 0.6), (0.5, 0.8, 0.6)], ids=str
)
def test_bars_refuse_values_outside_0_to_1(rate, low, high):
    with pytest.raises(ValueError, match="bar"):
        chart.Bar(rate, low, high)


def test_empty_summaries_are_refused():
    with pytest.raises(ValueError, match="at least one format"):
        chart.evaluation_chart([], "t")
    with pytest.raises(ValueError, match="at least one format"):
        chart.comparison_chart([], ("A", "B"), "t")

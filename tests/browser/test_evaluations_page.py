"""A reviewer reads evaluation results in Chromium: from the header to the list,
into one evaluation with its chart and tasks, to the comparison of two, and from
a task's run to the transcript of that conversation; on a desktop and a phone."""

from __future__ import annotations

import re
import shutil
from typing import Any

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import expect

from evals.models import Evaluation
from review.permissions import REVIEWERS_GROUP, ensure_reviewers_group
from tests.browser.conftest import screenshot
from tests.browser.test_layout import assert_fits, screen
from tests.browser.test_review_page import log_in
from tests.factories import (
    EvaluationFactory,
    EvaluationRunFactory,
    UserFactory,
    analysis_conversation,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.integration]

# task -> (solved in code, solved in call) for the baseline and the newer evaluation
BASELINE = {
    "sales-trend": (True, True),
    "median-price": (True, False),
    "top-region": (False, False),
    "monthly-growth-rate-by-region-and-quarter": (True, True),
}
NEWER = {
    "sales-trend": (True, True),
    "median-price": (True, True),
    "top-region": (True, False),
    "monthly-growth-rate-by-region-and-quarter": (False, True),
}
ERRORS = {"code": "code_error", "call": "malformed_action"}


def make_evaluation(
    owner: Any, label: str, outcomes: dict[str, tuple[bool, bool]], **kw: Any
) -> Evaluation:
    """An evaluation whose every run is a real conversation (a question, a cell with
    a plot and an answer), as `manage.py evaluate` leaves them."""
    evaluation = EvaluationFactory(label=label, task_count=len(outcomes), **kw)
    for task, solved in outcomes.items():
        for fmt, ok in zip(("code", "call"), solved, strict=True):
            conversation = analysis_conversation(owner, title=f"{label}: {task} [{fmt}]")
            EvaluationRunFactory(
                evaluation=evaluation,
                task=task,
                action_format=fmt,
                conversation=conversation,
                success=ok,
                error_class="" if ok else ERRORS[fmt],
                answer="Up 7 per month" if ok else "Down 3",
                expected="Up 7 per month",
                verdict="the value matches" if ok else "expected Up 7 per month, got Down 3",
                turns=2 if ok else 5,
                executions=1 if ok else 4,
                wall_time=4.2 if ok else 11.5,
            )
    return evaluation


def reviewer(name: str) -> Any:
    user = UserFactory(username=name, is_staff=True)
    ensure_reviewers_group()
    user.groups.add(Group.objects.get(name=REVIEWERS_GROUP))
    return user


def shot(page: Any, name: str, full_page: bool = True) -> None:
    """A screenshot in the run's artifacts and as /tmp/evals-<name>.png, to look at."""
    path = screenshot(page, f"evals-{name}", full_page=full_page)
    shutil.copyfile(path, f"/tmp/evals-{name}.png")


def test_a_reviewer_reads_and_compares_evaluations(page, web):
    evaluator = UserFactory(username="evaluator")
    base = make_evaluation(evaluator, "Baseline", BASELINE)
    newer = make_evaluation(
        evaluator,
        "Warmer",
        NEWER,
        settings={**base.settings, "temperature": 0.7},
        model_name="qwen2.5-coder-7b",
    )
    log_in(page, web, reviewer("rhea"))

    # The header leads to the list.
    page.goto(f"{web}/review/usage/?days=1")
    page.get_by_role("navigation", name="Review").get_by_role("link", name="Evaluations").click()
    expect(page.get_by_role("heading", name="Evaluations")).to_be_visible()
    listing = page.get_by_role("table", name="Evaluations")
    expect(listing.get_by_role("row").filter(has_text="Baseline")).to_contain_text("63%")
    expect(listing.get_by_role("row").filter(has_text="Baseline")).to_contain_text("5/8")
    expect(listing.get_by_role("row").filter(has_text="Warmer")).to_contain_text("75%")
    shot(page, "list")

    # One evaluation: the table per format, the chart, settings, errors, tasks.
    listing.get_by_role("link", name="Baseline").click()
    expect(page.get_by_role("heading", name="Baseline")).to_be_visible()
    results = page.get_by_role("table", name="Results per action format")
    expect(results.get_by_role("row", name=re.compile(r"^code "))).to_contain_text("75%")
    expect(results.get_by_role("row", name=re.compile(r"^call "))).to_contain_text("2/4")
    chart = page.get_by_role("img", name="Success rate per action format: Baseline")
    expect(chart).to_be_visible()
    assert chart.evaluate("svg => svg.tagName") == "svg"
    box = chart.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 200
    assert chart.locator("rect.chart-bar").count() == 2
    heights = chart.locator("rect.chart-bar").evaluate_all(
        "rects => rects.map(r => r.getBoundingClientRect().height)"
    )
    assert heights[0] == pytest.approx(heights[1] * 1.5, rel=0.02)  # 75% against 50%
    side = page.get_by_role("complementary", name="About this evaluation")
    expect(side).to_contain_text("Code kept failing")
    expect(side).to_contain_text("3f2a9c1d")
    expect(side.get_by_role("link", name="Runs (CSV)")).to_be_visible()
    tasks = page.get_by_role("table", name="Tasks")
    expect(tasks.get_by_role("row")).to_have_count(1 + len(BASELINE))
    expect(tasks.get_by_role("row").filter(has_text="top-region")).to_contain_text(
        "expected Up 7 per month, got Down 3"
    )
    shot(page, "detail")
    # In the dark theme the chart takes the page's colours from the stylesheet.
    page.emulate_media(color_scheme="dark")
    label_fill = chart.locator(".chart-label").first.evaluate("t => getComputedStyle(t).fill")
    assert label_fill != "rgb(28, 31, 36)", "the chart's text stays dark on a dark page"
    shot(page, "detail-dark", full_page=False)
    page.emulate_media(color_scheme="light")

    # A failed run's link opens its conversation's transcript.
    row = tasks.get_by_role("row").filter(has_text="top-region")
    row.get_by_role("cell").nth(1).get_by_role("link", name="Run 1").click()
    expect(page.get_by_role("heading", name="Baseline: top-region [code]")).to_be_visible()
    expect(page.locator(".msg-final")).to_contain_text("Sales rose.")
    expect(page.get_by_role("region", name="Code cell 1")).to_be_visible()
    shot(page, "transcript", full_page=False)
    page.go_back()

    # Compare, from the list's form.
    page.goto(f"{web}/review/evaluations/")
    form = page.get_by_role("form", name="Compare two evaluations")
    form.get_by_label("A").select_option(str(base.pk))
    form.get_by_label("B").select_option(str(newer.pk))
    form.get_by_role("button", name="Compare").click()
    expect(page.get_by_role("heading", name="Baseline vs")).to_be_visible()
    deltas = page.get_by_role("table", name="Success rate, A and B")
    expect(deltas.get_by_role("row", name=re.compile(r"^call "))).to_contain_text("+25 pp")
    grouped = page.get_by_role("img", name="Success rate per action format, A and B")
    expect(grouped).to_be_visible()
    assert grouped.locator("rect.chart-bar").count() == 4
    expect(grouped.locator(".chart-legend")).to_contain_text("B: Warmer")
    expect(page.get_by_role("table", name="Results of A")).to_be_visible()
    expect(page.get_by_role("table", name="Results of B")).to_be_visible()
    expect(page.get_by_text("Not like for like.")).to_be_visible()
    changed = page.get_by_role("table", name="Tasks in A and B").get_by_role("row")
    # Two header rows, then the task that got worse (in code) first.
    expect(changed.nth(2)).to_contain_text("monthly-growth-rate-by-region-and-quarter")
    expect(changed.nth(2)).to_contain_text("Worse")
    expect(changed.nth(3)).to_contain_text("median-price")
    expect(changed.nth(3)).to_contain_text("Better")
    expect(changed.last).to_contain_text("sales-trend")
    shot(page, "compare")

    # A bad address gets the form and the reason.
    page.goto(f"{web}/review/evaluations/compare/?a={base.pk}&b=nope")
    expect(page.get_by_role("alert")).to_contain_text("“nope” is not an evaluation number")
    shot(page, "compare-error", full_page=False)


@pytest.mark.parametrize("size", ["phone", "desktop"])
def test_the_evaluation_pages_fit(browser, web, size):
    evaluator = UserFactory(username=f"evaluator-{size}")
    long_label = "An evaluation with a rather long label that goes on " * 2
    base = make_evaluation(evaluator, long_label, BASELINE)
    newer = make_evaluation(evaluator, "Warmer", NEWER)
    user = reviewer(f"ruby-{size}")
    pages = {
        "list": "/review/evaluations/",
        "detail": f"/review/evaluations/{base.pk}/",
        "compare": f"/review/evaluations/compare/?a={base.pk}&b={newer.pk}",
    }
    with screen(browser, size) as page:
        log_in(page, web, user)
        for name, path in pages.items():
            page.goto(f"{web}{path}")
            chart = page.locator("svg.eval-chart")
            if name != "list":
                expect(chart).to_be_visible()
                box = chart.bounding_box()
                assert box is not None and box["x"] + box["width"] <= page.viewport_size["width"]
            assert_fits(page, f"evaluations {name} ({size})")
            shot(page, f"{name}-{size}")

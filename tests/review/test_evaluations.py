"""The evaluation pages: who may see them, that their numbers are evals.stats'
numbers, the comparison and its errors, and the CSV and JSON exports."""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from chat.models import AuditRecord, Message
from evals import stats
from evals.models import Evaluation, EvaluationRun
from review.evaluations import spreadsheet_safe
from tests.factories import (
    ConversationFactory,
    EvaluationFactory,
    EvaluationRunFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def run(evaluation: Evaluation, task: str, fmt: str, ok: bool, **kw: Any) -> EvaluationRun:
    """A run whose conversation holds the task's question and the model's answer."""
    answer = kw.pop("answer", "42" if ok else "41")
    if not ok:
        kw.setdefault("error_class", "wrong_answer")
        kw.setdefault("verdict", f"expected 42, got {answer}")
    conversation = ConversationFactory(owner=evaluation_account(), title=f"{task} [{fmt}]")
    Message.objects.create(conversation=conversation, role="user", content=f"Solve {task}")
    Message.objects.create(
        conversation=conversation, role="assistant", content=f"ANSWER: {answer}", final=True
    )
    return EvaluationRunFactory(
        evaluation=evaluation,
        task=task,
        action_format=fmt,
        success=ok,
        answer=answer,
        conversation=conversation,
        **kw,
    )


def evaluation_account() -> Any:
    from django.contrib.auth.models import User

    return User.objects.filter(username="evaluator").first() or UserFactory(username="evaluator")


@pytest.fixture
def base() -> Evaluation:
    """A: code solves 2 of 3 tasks, call 1 of 3."""
    evaluation = EvaluationFactory(label="Baseline <b>bold</b>", model_name="qwen-7b")
    run(evaluation, "sum", "code", True, turns=2, prompt_tokens=1000, completion_tokens=200)
    run(evaluation, "mean", "code", True, turns=3, prompt_tokens=1500, completion_tokens=300)
    run(evaluation, "median", "code", False, turns=6, error_class="code_error", wall_time=9.0)
    run(evaluation, "sum", "call", True)
    run(evaluation, "mean", "call", False, error_class="malformed_action", answer="")
    run(evaluation, "median", "call", False)
    return evaluation


@pytest.fixture
def newer(base: Evaluation) -> Evaluation:
    """B: the same suite at a higher temperature; median now solved, mean lost in code."""
    settings = dict(base.settings) | {"temperature": 0.7}
    evaluation = EvaluationFactory(label="Warmer", settings=settings)
    run(evaluation, "sum", "code", True)
    run(evaluation, "mean", "code", False)
    run(evaluation, "median", "code", True)
    run(evaluation, "sum", "call", True)
    run(evaluation, "mean", "call", True)
    run(evaluation, "median", "call", True)
    return evaluation


def urls(evaluation: Evaluation, other: Evaluation | None = None) -> dict[str, str]:
    other = other or evaluation
    return {
        "list": reverse("review:evaluations"),
        "detail": reverse("review:evaluation", args=[evaluation.pk]),
        "compare": reverse("review:evaluation_compare") + f"?a={evaluation.pk}&b={other.pk}",
        "csv": reverse("review:evaluation_export", args=[evaluation.pk, "csv"]),
        "json": reverse("review:evaluation_export", args=[evaluation.pk, "json"]),
    }


# ---- who may see what ------------------------------------------------------------------


@pytest.mark.parametrize(
    "who,pages,exports",
    [
        ("anonymous", 302, 302),
        ("other_user", 403, 403),
        ("staff", 403, 403),  # staff status alone shows no content
        ("reviewer", 200, 200),
        ("superuser", 200, 200),
    ],
)
def test_permission_matrix(client, request, base, newer, who, pages, exports):
    if who != "anonymous":
        client.force_login(request.getfixturevalue(who))
    for name, url in urls(base, newer).items():
        response = client.get(url)
        want = exports if name in ("csv", "json") else pages
        assert response.status_code == want, (name, response.status_code)
        if want == 302:
            assert response["Location"].startswith(reverse("login"))


def test_reviewing_without_the_export_permission_shows_no_export(client, base):
    reader = UserFactory(username="reader", is_staff=True)
    reader.user_permissions.add(Permission.objects.get(codename="review_conversation"))
    client.force_login(reader)
    page = client.get(urls(base)["detail"])
    assert page.status_code == 200
    assert "export.csv" not in page.content.decode()
    assert client.get(urls(base)["csv"]).status_code == 403
    assert client.get(urls(base)["json"]).status_code == 403


def test_the_header_links_to_evaluations_for_reviewers_only(client, reviewer, staff):
    link = f'href="{reverse("review:evaluations")}"'
    client.force_login(reviewer)
    assert link in client.get(reverse("review:usage")).content.decode()
    client.force_login(staff)
    assert link not in client.get(reverse("review:usage")).content.decode()


# ---- the list ------------------------------------------------------------------------


def test_the_list_shows_each_evaluation_with_its_overall_rate(client, reviewer, base, newer):
    running = EvaluationFactory(label="Still going", status="running", formats=["text"])
    EvaluationRunFactory(evaluation=running, action_format="text", success=True)
    # started, no verdict yet: not counted
    EvaluationRunFactory(evaluation=running, action_format="text", success=False, finished_at=None)
    client.force_login(reviewer)
    response = client.get(urls(base)["list"])
    page = response.content.decode()
    rows = {r.evaluation.pk: r for r in response.context["rows"]}
    assert [r.evaluation.pk for r in response.context["rows"]] == [running.pk, newer.pk, base.pk]
    assert (rows[base.pk].successes, rows[base.pk].runs) == (3, 6)
    assert (rows[newer.pk].successes, rows[newer.pk].runs) == (5, 6)
    assert (rows[running.pk].successes, rows[running.pk].runs) == (1, 1)
    assert rows[base.pk].rate_text == stats.overall(list(base.runs.all())).rate_text == "50%"
    low, high = stats.wilson_interval(3, 6)
    assert f"3/6, {low * 100:.0f}–{high * 100:.0f}%" in page
    assert "Baseline &lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold</b>" not in page
    assert "qwen-7b" in page and "code, call" in page and "Running" in page
    # The comparison form offers both, newest as B.
    assert re.search(rf'<option value="{newer.pk}"[^>]*>', page)
    assert (response.context["default_a"], response.context["default_b"]) == (newer.pk, running.pk)


def test_an_empty_list_says_how_to_make_one(client, reviewer):
    client.force_login(reviewer)
    page = client.get(reverse("review:evaluations")).content.decode()
    assert "No evaluations yet" in page and "manage.py evaluate" in page


# ---- one evaluation --------------------------------------------------------------------


def test_the_detail_page_shows_the_numbers_of_evals_stats(client, reviewer, base):
    client.force_login(reviewer)
    response = client.get(urls(base)["detail"])
    assert response.status_code == 200
    assert response["Cache-Control"] == "private, no-store"
    page = response.content.decode()
    runs = list(base.runs.order_by("id"))
    expected = stats.summarize(base.formats, runs)
    assert response.context["summaries"] == expected
    code, call = expected
    assert (code.fraction, call.fraction) == ("2/3", "1/3")
    table = re.search(r'<table[^>]*aria-label="Results per action format".*?</table>', page, re.S)
    assert table is not None
    cells = [
        re.sub(r"<[^>]+>", "", c).strip()
        for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", table[0], re.S)
    ]
    code_row = cells[cells.index("code") : cells.index("code") + 8]
    assert code_row == [
        "code",
        code.rate_text,  # 67%
        code.interval_text,
        "2/3",
        f"{code.mean_turns:.1f}",
        f"{code.mean_executions:.1f}",
        f"{code.mean_tokens:,.0f}",
        f"{code.mean_wall_time:.1f} s",
    ]
    assert code_row[1] == "67%" and code_row[2] == "21–94%"
    assert "All formats" in cells and "50%" in cells  # the footer: 3 of 6

    # The chart: inline SVG, well-formed, a bar per format.
    svg = re.search(r"<svg.*?</svg>", page, re.S)
    assert svg is not None
    root = ET.fromstring(svg[0])
    assert root.get("role") == "img" and "code: 67%" in root.get("aria-label", "")
    assert len([r for r in root.iter() if "chart-bar" in r.get("class", "")]) == 2

    # Error classes, settings.
    assert "Code kept failing" in page and "Malformed action" in page and "Wrong answer" in page
    assert response.context["errors"][0].count == 1
    settings = dict(response.context["settings_rows"])
    assert settings["Temperature"] == "0.0" and settings["Prompt digest"] == "3f2a9c1d"
    assert settings["Model's own code format"] == "execute"
    assert "Max executions" in page and "3f2a9c1d" in page

    # Each run links to its transcript; expected, given answer and verdict are shown.
    for r in runs:
        assert reverse("review:transcript", args=[r.conversation_id]) in page
    assert "expected 42, got 41" in page
    assert page.count("<code>42</code>") >= 4  # expected and correct answers
    assert "export.csv" in page and "export.json" in page
    assert 'style="' not in page  # the CSP allows no inline styles


def test_the_task_filter_hides_tasks_solved_everywhere(client, reviewer, base):
    client.force_login(reviewer)
    every = client.get(urls(base)["detail"]).context["task_rows"]
    assert [r.task for r in every] == ["sum", "mean", "median"]
    failing = client.get(urls(base)["detail"], {"tasks": "failed"}).context["task_rows"]
    assert [r.task for r in failing] == ["mean", "median"]
    # an unknown filter shows everything rather than failing
    assert len(client.get(urls(base)["detail"], {"tasks": "nope"}).context["task_rows"]) == 3


def test_a_run_without_a_conversation_and_an_unfinished_one(client, reviewer):
    evaluation = EvaluationFactory(formats=["code"], status="stopped")
    EvaluationRunFactory(
        evaluation=evaluation,
        task="lost",
        conversation=None,
        success=False,
        error_class="sandbox_error",
    )
    EvaluationRunFactory(evaluation=evaluation, task="cut", success=False, finished_at=None)
    client.force_login(reviewer)
    response = client.get(urls(evaluation)["detail"])
    page = response.content.decode()
    (code,) = response.context["summaries"]
    assert (code.runs, code.unfinished) == (1, 1)
    assert "Sandbox failed" in page and "Unfinished" in page and "+1 unfinished" in page
    assert "Stopped" in page


def test_an_evaluation_with_no_runs_yet(client, reviewer):
    evaluation = EvaluationFactory(status="running", settings={})
    client.force_login(reviewer)
    response = client.get(urls(evaluation)["detail"])
    page = response.content.decode()
    assert response.status_code == 200 and "No runs yet" in page and "None recorded" in page
    assert "0 of 6 runs recorded" in page


def test_an_unknown_evaluation_is_404(client, reviewer):
    client.force_login(reviewer)
    assert client.get(reverse("review:evaluation", args=[999_999])).status_code == 404
    assert client.get(reverse("review:evaluation_export", args=[999_999, "csv"])).status_code == 404


# ---- comparison ------------------------------------------------------------------------


def test_the_comparison_shows_both_and_what_changed(client, reviewer, base, newer):
    client.force_login(reviewer)
    response = client.get(urls(base, newer)["compare"])
    assert response.status_code == 200
    page = response.content.decode()
    comparison = response.context["comparison"]
    code, call = comparison.deltas
    assert (code.a.fraction, code.b.fraction, code.difference_text) == ("2/3", "2/3", "0 pp")
    assert (call.a.fraction, call.b.fraction, call.difference_text) == ("1/3", "3/3", "+67 pp")
    assert call.interval_text in page
    # Both tables, the grouped chart with its legend, the tasks that changed first.
    assert 'aria-label="Results of A"' in page and 'aria-label="Results of B"' in page
    svg = ET.fromstring(re.search(r"<svg.*?</svg>", page, re.S)[0])  # type: ignore[index]
    assert "chart-legend" in {g.get("class") for g in svg.iter()}
    assert len([r for r in svg.iter() if "chart-bar" in r.get("class", "")]) == 4
    assert [(t.task, t.change) for t in comparison.tasks] == [
        ("mean", "mixed"),  # code lost, call won
        ("median", "better"),
        ("sum", "same"),
    ]
    assert page.index("<code>mean</code>") < page.index("<code>median</code>")
    assert "2 of 3 tasks changed" in page
    # Not like for like: the temperature differs.
    differences = response.context["differences"]
    assert differences == [("Temperature", 0.0, 0.7)]
    assert "Not like for like" in page
    for r in [*base.runs.all(), *newer.runs.all()]:
        assert reverse("review:transcript", args=[r.conversation_id]) in page


@pytest.mark.parametrize(
    "query,status,message",
    [
        ("", 400, "Choose evaluation A"),
        ("?a=1", 400, "Choose evaluation B"),
        ("?a=&b=x", 400, "Choose evaluation A: the address has no “a=”."),
        ("?a=&b=x", 400, "“x” is not an evaluation number (for B)"),
        ("?a=987654&b=987655", 404, "There is no evaluation 987655 (for B)"),
        ("?a=abc&b=1", 400, "“abc” is not an evaluation number (for A)"),
        ("?a={a}&b=-3", 400, "“-3” is not an evaluation number (for B)"),
        ("?a={a}&b=99999999999999999999999", 400, "is not an evaluation number"),
        ("?a={a}&b=987654", 404, "There is no evaluation 987654 (for B)"),
        ("?a={a}&b={a}", 400, "Choose two different evaluations"),
    ],
)
def test_a_bad_comparison_says_what_is_wrong(client, reviewer, base, query, status, message):
    client.force_login(reviewer)
    url = reverse("review:evaluation_compare") + query.format(a=base.pk)
    response = client.get(url)
    assert response.status_code == status
    page = response.content.decode()
    assert message in page
    assert 'role="alert"' in page and "<form" in page  # and the form to choose again


# ---- exports ---------------------------------------------------------------------------


def test_the_csv_export_has_a_row_per_run(client, reviewer, base):
    client.force_login(reviewer)
    response = client.get(urls(base)["csv"])
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert f'filename="evaluation-{base.pk}.csv"' in response["Content-Disposition"]
    assert response["Cache-Control"] == "private, no-store"
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert list(rows[0]) == [
        "evaluation_id", "label", "suite", "model_key", "model_name", "endpoint", "task",
        "format", "repetition", "success", "error_class", "answer", "expected", "turns",
        "executions", "prompt_tokens", "completion_tokens", "wall_time", "conversation_id",
    ]  # fmt: skip
    runs = list(base.runs.order_by("id"))
    assert len(rows) == len(runs) == 6
    first = rows[0]
    assert first["evaluation_id"] == str(base.pk)
    assert first["label"] == "Baseline <b>bold</b>"
    assert (first["suite"], first["model_key"], first["model_name"]) == (
        "analysis", "default", "qwen-7b",
    )  # fmt: skip
    assert (first["task"], first["format"], first["repetition"], first["success"]) == (
        "sum", "code", "0", "true",
    )  # fmt: skip
    assert (first["prompt_tokens"], first["completion_tokens"], first["turns"]) == (
        "1000", "200", "2",
    )  # fmt: skip
    assert first["conversation_id"] == str(runs[0].conversation_id)
    failed = rows[2]
    assert (failed["success"], failed["error_class"], failed["answer"]) == (
        "false", "code_error", "41",
    )  # fmt: skip
    assert failed["wall_time"] == "9.000"
    record = AuditRecord.objects.get(action=AuditRecord.Action.EXPORT_JSON)
    assert record.detail == {"evaluation": base.pk, "format": "csv"}
    assert sorted(record.conversations) == sorted(str(r.conversation_id) for r in runs)


def test_the_json_export_has_settings_summary_and_runs(client, reviewer, base):
    client.force_login(reviewer)
    response = client.get(urls(base)["json"])
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    document = json.loads(response.content)
    assert document["evaluation"]["id"] == base.pk
    assert document["evaluation"]["settings"]["prompt_digest"] == "3f2a9c1d"
    assert document["evaluation"]["formats"] == ["code", "call"]
    runs = list(base.runs.order_by("id"))
    assert document["summary"] == [s.as_dict() for s in stats.summarize(base.formats, runs)]
    assert document["summary"][0]["success_rate"] == pytest.approx(2 / 3)
    assert document["overall"]["successes"] == 3
    assert document["errors"] == {"code_error": 1, "malformed_action": 1, "wrong_answer": 1}
    assert len(document["runs"]) == 6
    assert document["runs"][2]["verdict"] == "expected 42, got 41"
    assert document["runs"][0]["conversation_id"] == str(runs[0].conversation_id)


def test_an_unknown_export_format_is_404(client, reviewer, base):
    client.force_login(reviewer)
    url = reverse("review:evaluation_export", args=[base.pk, "xlsx"])
    assert client.get(url).status_code == 404
    assert not AuditRecord.objects.exists()


def test_csv_cells_cannot_become_formulas(client, reviewer):
    evaluation = EvaluationFactory(label="=cmd|' /C calc'!A0", formats=["code"])
    EvaluationRunFactory(evaluation=evaluation, answer='=HYPERLINK("http://x")', expected="-3.5")
    client.force_login(reviewer)
    (row,) = csv.DictReader(io.StringIO(client.get(urls(evaluation)["csv"]).content.decode()))
    assert row["label"] == "'=cmd|' /C calc'!A0"
    assert row["answer"] == '\'=HYPERLINK("http://x")'
    assert row["expected"] == "-3.5"  # numbers are answers, left as they are


@pytest.mark.parametrize(
    "value,safe",
    [
        ("42", "42"),
        ("-3.5", "-3.5"),
        ("+1e-3", "+1e-3"),
        ("-12%", "-12%"),
        ("=1+1", "'=1+1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("-cmd", "'-cmd"),
        ("\tx", "'\tx"),
        ("", ""),
    ],
)
def test_spreadsheet_safe(value, safe):
    assert spreadsheet_safe(value) == safe

"""The suites are well formed and reproducible: sizes, ids, files that are the same
bytes every time, checks that accept their own answers, tool calls that the
toolbox can make, and a toolbox module that stands on its own."""

from __future__ import annotations

import ast
import hashlib
import io
import json
import re
import subprocess
import sys
import time
import types
import zipfile
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from chat.agent.functions import call_code, call_of
from evals import data
from evals.checkers import answer_of
from evals.suite import ANSWER_INSTRUCTION, Suite
from evals.suites import SUITES, analysis, compute, get_suite, suite_names, tools
from evals.toolbox import json_schema, signature_of, spec_of, toolbox_of
from evals.toolboxes import travel

SIZES = {"analysis": (18, 22), "compute": (9, 12), "tools": (13, 17)}


@pytest.fixture(scope="module", params=sorted(SUITES))
def suite(request: pytest.FixtureRequest) -> Suite:
    return get_suite(request.param)


def test_the_suites_are_named_and_cached() -> None:
    assert suite_names() == ["analysis", "compute", "tools"]
    assert get_suite("tools") is get_suite("tools")
    with pytest.raises(ValueError, match="analysis, compute, tools"):
        get_suite("nope")


def test_sizes_and_ids(suite: Suite) -> None:
    low, high = SIZES[suite.name]
    assert low <= len(suite.tasks) <= high
    ids = [task.id for task in suite.tasks]
    assert len(set(ids)) == len(ids)
    for task_id in ids:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", task_id) and len(task_id) <= 32, task_id
    assert suite.task(ids[0]) is suite.tasks[0]
    assert suite.description


def test_every_task_is_complete(suite: Suite) -> None:
    for task in suite.tasks:
        assert task.question.strip() and ANSWER_INSTRUCTION not in task.question
        assert "ANSWER:" not in task.question
        assert task.reference.strip(), task.id
        ast.parse(task.reference)
        for name in task.files:
            assert name in task.question, f"{task.id} does not mention {name}"
        if suite.name == "tools":
            assert task.calls, task.id
        else:
            assert not task.calls


def test_each_check_accepts_its_own_expected_answer(suite: Suite) -> None:
    for task in suite.tasks:
        verdict = task.check(task.check.expected)
        assert verdict.ok, (task.id, task.check.expected, verdict.reason)
        # ...also as a model writes it on its last line.
        assert task.check(answer_of(f"Done.\nANSWER: {task.check.expected}") or "").ok


def test_each_check_refuses_a_wrong_answer(suite: Suite) -> None:
    for task in suite.tasks:
        verdict = task.check("definitely not it 0.000017")
        assert not verdict.ok and verdict.reason, task.id


def _fingerprint(suite: Suite) -> list[Any]:
    return [
        (t.id, t.question, t.check.expected, dict(t.files), t.reference, t.calls)
        for t in suite.tasks
    ]


@pytest.mark.parametrize("name", sorted(SUITES))
def test_building_twice_gives_the_same_suite(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _fingerprint(SUITES[name]())
    later = time.time() + 400 * 86400  # a different day: nothing may depend on the clock
    monkeypatch.setattr(time, "time", lambda: later)
    assert _fingerprint(SUITES[name]()) == first


def digest() -> str:
    """A hash of everything the suites are made of."""
    state = hashlib.sha256()
    for name in suite_names():
        state.update(repr(_fingerprint(SUITES[name]())).encode())
    return state.hexdigest()


def test_another_process_builds_the_same_bytes() -> None:
    """Across runs, not only within one: another interpreter, with another hash seed
    (set and dict orders of strings change with it), gives the same suites."""
    done = subprocess.run(
        [sys.executable, "-c", "from tests.evals.test_suites import digest; print(digest())"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "12345", "SECRET_KEY": "x"},
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == digest()


def test_tasks_in_a_suite_share_the_bytes_of_a_shared_file() -> None:
    contents: dict[str, bytes] = {}
    for task in get_suite("analysis").tasks:
        for name, content in task.files.items():
            assert contents.setdefault(name, content) == content, name


# --------------------------------------------------------------------------- data


def test_workbooks_are_pinned_to_a_fixed_time(monkeypatch: pytest.MonkeyPatch) -> None:
    staff, reviews = data.staff()
    first = data.workbook_bytes({"staff": staff, "reviews": reviews})
    later = time.time() + 3 * 86400
    monkeypatch.setattr(time, "time", lambda: later)
    assert data.workbook_bytes({"staff": staff, "reviews": reviews}) == first
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        assert {info.date_time for info in archive.infolist()} == {(2025, 1, 1, 0, 0, 0)}
        core = archive.read("docProps/core.xml").decode()
    assert "2025-01-01T00:00:00Z" in core


def test_the_workbook_has_two_sheets_with_dates_and_missing_cells() -> None:
    staff, reviews = data.staff()
    book = load_workbook(io.BytesIO(data.workbook_bytes({"staff": staff, "reviews": reviews})))
    assert book.sheetnames == ["staff", "reviews"]
    rows = list(book["staff"].iter_rows(values_only=True))
    assert rows[0] == staff.columns and len(rows) == len(staff.rows) + 1
    assert rows[1][3].date() == staff.rows[0][3]
    scores = [row[2] for row in book["reviews"].iter_rows(min_row=2, values_only=True)]
    assert None in scores and scores == [row[2] for row in reviews.rows]


def test_csv_round_trips_the_values_the_checks_use() -> None:
    table = data.sensors()
    lines = table.csv_bytes().decode().splitlines()
    assert lines[0] == "timestamp,sensor,temperature_c"
    assert len(lines) == len(table.rows) + 1
    for line, row in zip(lines[1:], table.rows, strict=True):
        stamp, sensor, value = line.split(",")
        assert stamp == row[0].strftime("%Y-%m-%d %H:%M") and sensor == row[1]
        assert (float(value) if value else None) == row[2]


def test_other_seeds_give_other_data() -> None:
    assert data.sales(seed=1).csv_bytes() != data.sales().csv_bytes()
    assert data.sales().csv_bytes() == data.sales().csv_bytes()


# --------------------------------------------------------------------------- tools


def test_tool_calls_use_the_toolbox_with_its_argument_names() -> None:
    suite = get_suite("tools")
    assert suite.toolbox is not None and suite.toolbox.module == "travel"
    specs = {spec.name: spec for spec in suite.toolbox.functions}
    for task in suite.tasks:
        for name, arguments in task.calls:
            spec = specs[name]
            properties = spec.parameters["properties"]
            assert set(arguments) <= set(properties), (task.id, name, arguments)
            assert set(spec.parameters["required"]) <= set(arguments), (task.id, name)
            json.dumps(arguments)  # what the call format sends
            getattr(travel, name)(**arguments)  # the real function takes them
            assert call_of(call_code("travel", name, arguments)) == (name, dict(arguments))


def test_tool_calls_replayed_in_order_lead_to_the_answer() -> None:
    """The calls are those the reference makes: replaying them gives the same results
    the reference saw, so a solver that makes them has what it needs."""
    for spec in tools._SPECS:
        run = tools.run_reference(spec.reference, travel)
        task = get_suite("tools").task(spec.id)
        assert run.calls == task.calls
        assert task.check(str(run.answer)).ok


def test_tool_references_run_against_the_module_source_alone(tmp_path: Path) -> None:
    """Each reference, run by a plain Python process next to the toolbox's source (as
    in /workspace), prints an answer its check accepts: the module needs nothing of
    this project."""
    suite = get_suite("tools")
    assert suite.toolbox is not None
    (tmp_path / "travel.py").write_text(suite.toolbox.source)
    for task in suite.tasks:
        (tmp_path / "reference.py").write_text(task.reference)
        done = subprocess.run(
            [sys.executable, "reference.py"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
            env={"PATH": "/usr/bin:/bin"},
        )
        assert done.returncode == 0, (task.id, done.stderr)
        last = done.stdout.strip().splitlines()[-1]
        assert task.check(last).ok, (task.id, last, task.check(last).reason)


def test_the_toolbox_module_imports_only_the_standard_library() -> None:
    tree = ast.parse(Path(travel.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module
            names = [node.module]
        else:
            continue
        for name in names:
            assert name.split(".")[0] in sys.stdlib_module_names, name


def test_toolbox_functions_refuse_bad_arguments_clearly() -> None:
    with pytest.raises(ValueError, match="unknown city 'Atlantis'; the cities are Lisbon"):
        travel.find_flights("Atlantis", "Paris", "2025-06-02")
    with pytest.raises(ValueError, match="write it as YYYY-MM-DD"):
        travel.weather("Paris", "June 2")
    with pytest.raises(ValueError, match="the days are 2025-06-02 to 2025-06-15"):
        travel.weather("Paris", "2025-07-01")
    with pytest.raises(ValueError, match="same city"):
        travel.find_flights("Paris", "paris", "2025-06-02")
    with pytest.raises(ValueError, match="unknown currency"):
        travel.convert(10, "EUR", "XYZ")
    with pytest.raises(ValueError, match="nights"):
        travel.hotel_quote("Hotel Limmat", "2025-06-02", 0)
    with pytest.raises(ValueError, match="unknown hotel"):
        travel.hotel_quote("Hotel Nowhere", "2025-06-02", 1)


def test_toolbox_functions_are_pure() -> None:
    first = travel.find_hotels("Paris")
    first[0]["price_per_night"] = 0
    assert travel.find_hotels("paris")[0]["price_per_night"] > 0
    assert travel.find_flights("Lisbon", "Madrid", "2025-06-02") == travel.find_flights(
        origin="lisbon", destination="MADRID", day="2025-06-02"
    )
    flight = travel.find_flights("Lisbon", "Paris", "2025-06-02")[0]
    assert (flight["depart"], flight["arrive"]) == ("06:55", "10:15")  # UTC+1 to UTC+2
    assert travel.hotel_quote("Hotel Limmat", "2025-06-06", 2)["total"] == round(265 * 2.4, 2)


# --------------------------------------------------------------------------- toolbox_of


def test_toolbox_of_describes_the_travel_module() -> None:
    toolbox = toolbox_of("travel", travel)
    assert toolbox.module == "travel"
    assert [spec.name for spec in toolbox.functions] == travel.__all__
    assert toolbox.source == Path(travel.__file__).read_text()
    specs = {spec.name: spec for spec in toolbox.functions}
    flights = specs["find_flights"]
    assert (
        flights.signature
        == "find_flights(origin: str, destination: str, day: str) -> list[dict[str, Any]]"
    )
    assert flights.parameters == {
        "type": "object",
        "properties": {
            "origin": {"type": "string"},
            "destination": {"type": "string"},
            "day": {"type": "string"},
        },
        "required": ["origin", "destination", "day"],
    }
    assert flights.description.startswith("Direct flights from origin to destination")
    hotels = specs["find_hotels"]
    assert (
        hotels.signature
        == "find_hotels(city: str, min_rating: float = 0.0) -> list[dict[str, Any]]"
    )
    assert hotels.parameters["required"] == ["city"]
    assert hotels.parameters["properties"]["min_rating"] == {"type": "number"}
    assert specs["hotel_quote"].parameters["properties"]["nights"] == {"type": "integer"}
    assert specs["list_cities"].parameters == {"type": "object", "properties": {}, "required": []}
    assert (
        "- convert(amount: float, from_currency: str, to_currency: str) -> float: "
        in toolbox.describe()
    )


def _example(
    names: list[str], tags: list[int], options: dict, strict: bool = False, note: str | None = None
) -> dict[str, int]:
    """An example.

    Over two lines."""
    return {}


def test_json_schemas_of_the_supported_types() -> None:
    assert json_schema(list[str]) == {"type": "array", "items": {"type": "string"}}
    assert json_schema(list[int]) == {"type": "array", "items": {"type": "integer"}}
    assert json_schema(dict) == {"type": "object"}
    assert json_schema(dict[str, int]) == {"type": "object"}
    assert json_schema(bool) == {"type": "boolean"}
    assert json_schema(str | None) == {"type": "string"}
    with pytest.raises(TypeError):
        json_schema(set[int])
    spec = spec_of(_example)
    assert spec.parameters["required"] == ["names", "tags", "options"]
    assert spec.parameters["properties"]["strict"] == {"type": "boolean"}
    assert spec.parameters["properties"]["note"] == {"type": "string"}
    assert spec.description == "An example. Over two lines."  # one line in the question
    assert signature_of(_example) == (
        "_example(names: list[str], tags: list[int], options: dict, strict: bool = False, "
        "note: str | None = None) -> dict[str, int]"
    )


def test_toolbox_of_refuses_what_it_cannot_describe() -> None:
    def untyped(x):  # type: ignore[no-untyped-def]
        """Doc."""

    def undocumented(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="no type hint"):
        spec_of(untyped)
    with pytest.raises(TypeError, match="no docstring"):
        spec_of(undocumented)
    with pytest.raises(ValueError, match="no __all__"):
        toolbox_of("empty", types.ModuleType("empty"))


# --------------------------------------------------------------------------- analysis, compute


def test_analysis_data_is_what_the_questions_say() -> None:
    suite = get_suite("analysis")
    files = {name: content for task in suite.tasks for name, content in task.files.items()}
    assert set(files) == {
        "sales.csv", "products.csv", "sensors.csv", "staff.xlsx", "traffic.csv", "trips.csv",
    }  # fmt: skip
    assert files["sales.csv"].startswith(b"order_id,order_date,region,product_id,units,unit_price")
    sensors = files["sensors.csv"].decode().splitlines()
    assert any(line.endswith(",") for line in sensors)  # missing readings are empty fields
    assert files["staff.xlsx"].startswith(b"PK")


def test_analysis_guards_refuse_ties() -> None:
    with pytest.raises(ValueError, match="no clear winner"):
        analysis._top({"a": 1, "b": 1})
    with pytest.raises(ValueError, match="too close"):
        analysis._clear_of([2.9, 5.0], 3.0, 0.25)
    assert analysis._top({"a": 1, "b": 2}) == "b"


def test_compute_helpers_agree_with_known_values() -> None:
    assert compute._sieve(30) == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
    assert compute._distinct_partitions(10) == 10
    assert [compute._derangements(n) for n in range(6)] == [1, 0, 1, 2, 9, 44]
    assert compute._determinant([[2, 1], [7, 4]]) == 1
    assert compute._determinant([[0, 1], [1, 0]]) == -1

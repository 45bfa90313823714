"""Checkers accept the ways a right answer is written and refuse wrong ones, at
the edges of their tolerances too; answer_of finds the value in a reply."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

import pytest

from evals.checkers import Date, Exact, Integer, Numeric, Rational, SetOf, answer_of

# --------------------------------------------------------------------------- answer_of


@pytest.mark.parametrize(
    ("reply", "value"),
    [
        ("The total is large.\nANSWER: 42", "42"),
        ("answer: 42", "42"),
        ("**ANSWER:** 42", "42"),
        ("**ANSWER**: 42", "42"),
        ("**ANSWER: 42**", "42"),
        ("*ANSWER: 42*", "42"),
        ("ANSWER: `42`", "42"),
        ("ANSWER: 42.  ", "42"),
        ("ANSWER: 3.5", "3.5"),
        ("- ANSWER: North", "North"),
        ("> Final answer: Paris", "Paris"),
        ("ANSWER: $\\frac{3}{4}$", "\\frac{3}{4}"),
        ("ANSWER: \\boxed{17}", "17"),
        ("ANSWER: 1\nthen I checked again\nANSWER: 2", "2"),
        ("ANSWER:\n\n  17\n", "17"),
        ("ANSWER: 12\r\n", "12"),
        ("Here it is. <solution> 5 </solution>", "5"),
        ("<solution>1</solution> and better <solution>2</solution>", "2"),
        ("<solution>\n42\n", "42"),
        ("<solution>7</solution>\nANSWER: 8", "8"),  # the ANSWER line wins
    ],
)
def test_answer_of_finds_the_value(reply: str, value: str) -> None:
    assert answer_of(reply) == value


@pytest.mark.parametrize(
    "reply",
    ["", "The answer is 42.", "My answers: 42", "print('ANSWER:', x)", "<solution></solution>"],
)
def test_answer_of_is_none_without_an_answer_line_or_solution(reply: str) -> None:
    assert answer_of(reply) is None


# --------------------------------------------------------------------------- Numeric


@pytest.mark.parametrize(
    "answer",
    [
        "1234.5",
        "1,234.5",
        "$1,234.50",
        "1 234.5",
        "1_234.5",
        "≈ 1234.5",
        "1234.5 EUR",
        "1.2345e3",
        "x = 1234.5",
    ],
)
def test_numeric_reads_common_formats(answer: str) -> None:
    assert Numeric(1234.5)(answer).ok


def test_numeric_reads_signs_currencies_and_fractions() -> None:
    assert Numeric(-30000)("-3e4").ok
    assert Numeric(-1234)("-$1,234").ok
    assert Numeric(-1234)("$-1,234").ok
    assert Numeric(-48384)("−48,384").ok  # a Unicode minus
    assert Numeric(0.75)("3/4").ok
    assert Numeric(42)("42 units").ok
    assert Numeric(42)("42 (= 6 × 7)").ok
    assert Numeric(1024)("2^10 = 1024").ok
    assert Numeric(0.5)(".5").ok


def test_numeric_relative_tolerance_edges_are_exact() -> None:
    check = Numeric(100, rel_tol=0.01)
    assert check("101").ok and check("99").ok  # exactly at the tolerance
    assert not check("101.0000001").ok and not check("98.9999999").ok
    # 1234.5 ± 0.1%: 1.2345 either side, which floats would get wrong at the edge.
    check = Numeric(1234.5, rel_tol=0.001)
    assert check("1235.7345").ok and check("1233.2655").ok
    assert not check("1235.7346").ok


def test_numeric_places_allow_one_unit_in_the_last_place() -> None:
    check = Numeric(12.3456, places=2)
    assert check.expected == "12.35"
    assert check("12.35").ok and check("12.34").ok and check("12.3356").ok
    assert not check("12.3355").ok and not check("12.36").ok
    assert Numeric(1234.5, places=2).expected == "1,234.50"
    assert Numeric(3240.4, places=0).expected == "3,240"


def test_numeric_absolute_tolerance() -> None:
    check = Numeric(0, abs_tol=0.5)
    assert check("0.5").ok and check("-0.5").ok and not check("0.51").ok


def test_numeric_default_tolerance_is_float_noise_only() -> None:
    check = Numeric(0.1 + 0.2)
    assert check("0.3").ok
    assert not check("0.3001").ok


def test_numeric_percentages() -> None:
    share = Numeric(12.5, places=1, percent=True)
    assert share.expected == "12.5%"
    assert share("12.5%").ok and share("12.5").ok and share("12.5 percent").ok
    assert share("12.6%").ok and not share("12.7%").ok
    verdict = share("0.125")
    assert not verdict.ok and "fraction where a percentage" in verdict.reason
    # Not a percentage: an answer written with % is divided by 100.
    fraction = Numeric(0.125, places=3)
    assert fraction("12.5%").ok and fraction("0.125").ok and not fraction("12.5").ok


def test_numeric_reasons_say_what_was_expected_and_how_far_off() -> None:
    verdict = Numeric(1234.5, rel_tol=0.001)("1,240")
    assert not verdict.ok
    assert verdict.reason == "expected 1,234.5 (±0.1%), got 1,240 (off by 5.5)"
    assert "no number" in Numeric(1)("none").reason
    assert Numeric(1234.5, rel_tol=0.001)("1234.6").reason == "1,234.6 is within ±0.1% of 1,234.5"


def test_numeric_takes_fractions_and_shows_them_readably() -> None:
    check = Numeric(Fraction(1, 3), places=4)
    assert check.expected == "0.3333"
    assert check("0.33333").ok and check("1/3").ok


# --------------------------------------------------------------------------- Integer


@pytest.mark.parametrize(
    "answer",
    [
        "1234567",
        "1,234,567",
        "1 234 567",
        "1_234_567",
        "1234567.0",
        "1.234567e6",
        "**1,234,567**",
        "1234567 ways",
    ],
)
def test_integer_accepts_separators_and_integral_decimals(answer: str) -> None:
    assert Integer(1234567)(answer).ok


def test_integer_is_exact() -> None:
    check = Integer(1234567)
    assert not check("1234568").ok
    assert "off by +1" in check("1234568").reason
    verdict = check("1234567.5")
    assert not verdict.ok and "not a whole number" in verdict.reason
    assert not check("1.2345e3").ok
    assert not check("no idea").ok


def test_integer_handles_big_numbers_and_negatives() -> None:
    big = 3**200
    assert Integer(big)(str(big)).ok
    assert Integer(big)(f"{big:,}").ok
    assert not Integer(big)(str(big + 1)).ok
    assert Integer(10**30)("1e30").ok
    assert Integer(-48384)("-48384").ok and Integer(-48384)("−48,384").ok
    assert Integer(-5)("(-5)").ok
    assert Integer(1500).expected == "1,500"
    with pytest.raises(TypeError):
        Integer(True)


def test_integer_uses_the_part_after_an_equals_sign() -> None:
    assert Integer(1024)("2^10 = 1024").ok
    assert Integer(1024)("1024 (= 2^10)").ok


# --------------------------------------------------------------------------- Exact


def test_exact_normalises_case_spacing_quotes_and_a_period() -> None:
    check = Exact("Bluetooth Speaker")
    for answer in [
        "bluetooth speaker",
        "  Bluetooth   Speaker ",
        '"Bluetooth Speaker"',
        "`Bluetooth Speaker`",
        "Bluetooth Speaker.",
        "**Bluetooth Speaker**",
        "'bluetooth speaker'",
    ]:
        assert check(answer).ok, answer
    assert not check("Bluetooth Speakers").ok
    assert check("Speaker").reason == "expected 'Bluetooth Speaker', got 'Speaker'"


def test_exact_accepts_listed_alternatives() -> None:
    check = Exact("18:10", "6:10 pm")
    assert check("18:10").ok and check("6:10 PM").ok and not check("18:11").ok
    assert check.expected == "18:10"


# --------------------------------------------------------------------------- SetOf


@pytest.mark.parametrize(
    "answer",
    [
        "Paris, Rome, Berlin",
        "berlin; rome; paris",
        "Paris, Rome and Berlin",
        "Paris, Rome, and Berlin",
        "Paris\nRome\nBerlin",
        "- Paris\n- Rome\n- Berlin",
        "1. Paris\n2. Rome\n3. Berlin",
        '["Paris", "Rome", "Berlin"]',
        "['Rome', 'Berlin', 'Paris']",
        "('Rome', 'Berlin', 'Paris')",
        "[Paris, Rome, Berlin]",
        "Paris & Rome & Berlin",
    ],
)
def test_set_of_accepts_any_order_and_separator(answer: str) -> None:
    assert SetOf(["Paris", "Rome", "Berlin"])(answer).ok


def test_set_of_names_missing_extra_and_repeated_items() -> None:
    check = SetOf(["Paris", "Rome", "Berlin"])
    verdict = check("Paris, Rome")
    assert not verdict.ok and verdict.reason == "expected Paris, Rome, Berlin; missing Berlin"
    verdict = check("Paris, Rome, Berlin, Madrid")
    assert not verdict.ok and "not expected Madrid" in verdict.reason
    verdict = check("Paris, Rome, Berlin, rome")
    assert not verdict.ok and "listed more than once Rome" in verdict.reason
    verdict = check("Paris; Lisbon")
    assert "missing Rome, Berlin" in verdict.reason and "not expected Lisbon" in verdict.reason


def test_set_of_numbers_and_the_empty_set() -> None:
    assert SetOf(["3", "5", "7"])("[7, 3, 5]").ok
    empty = SetOf([])
    assert empty.expected == "none"
    assert empty("none").ok and empty("[]").ok and not empty("Paris").ok


def test_set_of_refuses_items_it_could_not_tell_apart() -> None:
    with pytest.raises(ValueError):
        SetOf(["Trinidad and Tobago"])
    with pytest.raises(ValueError):
        SetOf(["Smith, John"])
    with pytest.raises(ValueError):
        SetOf(["Rome", "rome"])


# --------------------------------------------------------------------------- Date


@pytest.mark.parametrize(
    "answer",
    [
        "2024-03-05",
        "2024-3-5",
        "2024/03/05",
        "March 5, 2024",
        "March 5th, 2024",
        "Mar 5 2024",
        "Mar. 5, 2024",
        "5 March 2024",
        "5th of March, 2024",
        "Tuesday, March 5, 2024",
        "2024-03-05 (a Tuesday)",
        "2024-03-05T00:00:00",
    ],
)
def test_date_reads_common_formats(answer: str) -> None:
    assert Date("2024-03-05")(answer).ok


def test_date_refuses_ambiguous_and_wrong_dates() -> None:
    check = Date("2024-03-05")
    verdict = check("03/05/2024")
    assert not verdict.ok and "could be day/month or month/day" in verdict.reason
    assert Date("2024-03-13")("13/03/2024").ok  # only one reading is a date
    assert Date("2024-03-13")("03/13/2024").ok
    assert Date("2024-05-05")("05/05/2024").ok  # both readings agree
    verdict = check("2024-03-06")
    assert not verdict.ok and verdict.reason == "expected 2024-03-05, got 2024-03-06 (+1 days)"
    assert not check("2024-02-30").ok
    assert "no date" in check("soon").reason
    assert Date(dt.date(2024, 3, 5)).expected == "2024-03-05"


# --------------------------------------------------------------------------- Rational


@pytest.mark.parametrize(
    "answer",
    [
        "-7/12",
        "−7/12",
        "-7 / 12",
        "-14/24",
        "-0.583333333333",
        "-0.58333333333333",
        "$-\\frac{7}{12}$",
        "\\frac{-7}{12}",
        "-\\dfrac{7}{12}",
    ],
)
def test_rational_accepts_fractions_and_close_decimals(answer: str) -> None:
    assert Rational(-7, 12)(answer).ok


def test_rational_refusals() -> None:
    check = Rational(-7, 12)
    assert check.expected == "-7/12"
    verdict = check("-0.5833")
    assert not verdict.ok and "within 1e-9 relative" in verdict.reason
    assert not check("7/12").ok
    assert not check("-7/13").ok
    assert Rational(84)("84").ok and Rational(84).expected == "84"
    assert not Rational(1, 3)("0.3333333").ok
    assert Rational(1, 3)("0.3333333333").ok  # within 1e-9 relative


def test_checkers_accept_their_own_expected_text() -> None:
    checks = [
        Numeric(1234.5678, places=2),
        Numeric(36.04, places=1, percent=True),
        Numeric(-0.000123),
        Integer(-12345678901234567890),
        Exact("2024-11"),
        SetOf(["Ben Almeida", "Kira Berg"]),
        Date("2025-06-11"),
        Rational(-873, 5),
    ]
    for check in checks:
        assert check(check.expected).ok, check.expected

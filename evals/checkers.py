"""Checkers: whether the value a model gave is the right answer, and why.

A checker sees only the value (`answer_of` reads it from the final reply), so it
must accept the ways a careful person writes a right answer ("1,234.5", "$1,234",
"March 5, 2024", "3/4") and refuse a wrong one, with a reason a reviewer can read
next to the answer without redoing the task. Comparisons of numbers are exact
(Fractions read from the text), so a value exactly at the tolerance passes and
the smallest step beyond it fails, whatever binary floating point would say.

Pure: no I/O, no Django; the suites build checkers when they are imported.
"""

from __future__ import annotations

import ast
import calendar
import contextlib
import datetime as dt
import json
import re
from collections import Counter
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction

from evals.suite import Verdict

__all__ = [
    "Date",
    "Exact",
    "Integer",
    "Numeric",
    "Rational",
    "SetOf",
    "answer_of",
]

# --------------------------------------------------------------------------- answer_of

# `ANSWER: 42`, `**ANSWER:** 42`, `**Answer**: 42`, `> Final answer: 42`, `- ANSWER: 42`.
_ANSWER_LINE = re.compile(
    r"^[ \t>*_#`\-]*(?:final[ \t]+)?answer[ \t*_`]*:[ \t*_]*(?P<value>.*?)[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
_SOLUTION = re.compile(r"<solution>(?P<value>.*?)</solution>", re.IGNORECASE | re.DOTALL)
_OPEN_SOLUTION = re.compile(r"<solution>(?P<value>.*)\Z", re.IGNORECASE | re.DOTALL)
_BOXED = re.compile(r"^\\boxed\{(?P<value>.*)\}$", re.DOTALL)


def _unwrap(value: str) -> str:
    """The value without the markdown or LaTeX a model wraps it in: emphasis,
    backticks, `$...$`, `\\boxed{...}`, and one trailing period."""
    previous = None
    value = value.strip()
    while value != previous:
        previous = value
        value = value.strip()
        for mark in ("**", "__", "`", "*", "_"):
            if len(value) > 2 * len(mark) and value.startswith(mark) and value.endswith(mark):
                value = value[len(mark) : -len(mark)]
        value = value.rstrip("*").removesuffix("__").strip()
        if len(value) > 2 and value.startswith("$") and value.endswith("$"):
            value = value.strip("$")
        if match := _BOXED.match(value):
            value = match.group("value")
        if value.endswith(".") and not value.endswith(".."):
            value = value[:-1]
    return value.strip()


def answer_of(final_text: str) -> str | None:
    """The value of the last `ANSWER: value` line of a reply, else the content of its
    last <solution> tags, else None.

    Markdown around the line and the value is tolerated (`**ANSWER:** 42`,
    `ANSWER: \\`42\\``, a trailing period); when the value is on the next line
    (`ANSWER:` alone, then `42`), that line is the value.
    """
    lines = final_text.splitlines()
    found: str | None = None
    for match in _ANSWER_LINE.finditer(final_text):
        value = _unwrap(match.group("value"))
        if not value:
            line_no = final_text.count("\n", 0, match.start())
            rest = [line for line in lines[line_no + 1 :] if line.strip()]
            value = _unwrap(rest[0]) if rest else ""
        if value:
            found = value
    if found is not None:
        return found
    solutions = _SOLUTION.findall(final_text)
    if solutions:
        return _unwrap(solutions[-1]) or None
    unclosed = _OPEN_SOLUTION.search(final_text)  # the reply stopped inside the tags
    return (_unwrap(unclosed.group("value")) or None) if unclosed else None


# --------------------------------------------------------------------------- numbers

_MINUS = "-\u2212\u2013"  # hyphen-minus, the minus sign, an en dash
_GROUP = ",_ \u00a0\u202f\u2009"  # separators of thousands: comma, underscore, spaces
_NUMBER = re.compile(
    rf"(?P<sign>(?<![\w.])[{_MINUS}+])?\s*(?:[$€£¥]\s*(?P<sign2>[{_MINUS}+])?)?"
    rf"(?P<int>\d{{1,3}}(?:[{_GROUP}]\d{{3}})+(?!\d)|\d+)?"
    r"(?P<frac>\.\d+)?"
    r"(?P<exp>(?<=[\d.])[eE][+\-]?\d+)?"
    r"(?:\s*/\s*(?P<den>\d+))?"
    r"(?P<percent>\s*(?:%|percent\b))?"
)


class _Number:
    """A number read from an answer: its exact value and how it was written."""

    def __init__(self, value: Fraction, text: str, *, is_fraction: bool, percent: bool) -> None:
        self.value = value
        self.text = text.strip()
        self.is_fraction = is_fraction  # written as p/q (or an integer): exact
        self.percent = percent


def _numeric_part(answer: str) -> str:
    """Where the number of an answer is: parenthesised asides are skipped ("42
    (= 6 * 7)"), and after an `=` or `≈` only what follows the last one counts
    ("2^10 = 1024"), as long as a digit is left to read."""
    text = answer
    without_asides = re.sub(r"\([^()]*\)", " ", text)
    if re.search(r"\d", without_asides):
        text = without_asides
    for mark in ("=", "≈", "~"):
        if mark in text:
            tail = text.rsplit(mark, 1)[1]
            if re.search(r"\d", tail):
                text = tail
    return text


def _first_number(answer: str) -> _Number | None:
    """The first number of an answer, read exactly: thousands separators (commas,
    underscores, spaces in groups of three), a currency sign, an exponent, a
    fraction p/q, a trailing % or "percent"."""
    text = _numeric_part(answer)
    for match in _NUMBER.finditer(text):
        if not match.group("int") and not match.group("frac"):
            continue
        digits = re.sub(f"[{_GROUP}]", "", match.group("int") or "0")
        literal = digits + (match.group("frac") or "") + (match.group("exp") or "")
        value = Fraction(literal)
        den = match.group("den")
        is_fraction = False
        if den is not None and not match.group("frac") and not match.group("exp"):
            if int(den) == 0:
                return None
            value /= int(den)
            is_fraction = True
        elif not match.group("frac") and not match.group("exp"):
            is_fraction = True  # an integer is exact too
        if (match.group("sign") or match.group("sign2") or "+") in _MINUS:
            value = -value
        return _Number(
            value, match.group(0), is_fraction=is_fraction, percent=bool(match.group("percent"))
        )
    return None


def _show(value: Fraction | Decimal | int | float, places: int | None = None) -> str:
    """A number as a reviewer reads it: thousands grouped with commas, no exponent,
    no trailing zeros unless `places` asks for them."""
    if isinstance(value, Fraction):
        with localcontext() as context:
            context.prec = 17  # enough for any answer, short enough to read
            number = Decimal(value.numerator) / Decimal(value.denominator)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    else:
        number = Decimal(value)
    if places is not None:
        number = number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
        return f"{number:,.{places}f}"
    text = f"{number:,f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text if text != "-0" else "0"


def _exact(value: float | int | Fraction | str) -> Fraction:
    """A number given to a checker, exactly: a float by its shortest repr (0.1 is
    1/10, as the suite's author wrote it), so tolerances are not float artefacts."""
    if isinstance(value, float):
        return Fraction(repr(value))
    return Fraction(value)


# --------------------------------------------------------------------------- checkers


class Numeric:
    """A real number, within a tolerance.

    The answer's first number counts ("≈ 42", "42 units", "$1,234", "-3e4",
    "1 234.5"; "3/4" is read as 0.75; European decimal commas are not read).
    It passes when |answer - value| <= max(abs_tol, rel_tol * |value|): exactly at
    the tolerance passes. rel_tol defaults to 1e-6 (float noise) for a bare value,
    to 0 when abs_tol or places is given.

    `places` is the rounding the question asks for: the value is shown rounded to
    it, and abs_tol becomes at least one unit in that place (0.01 for 2 places), so
    a different rounding of a tie or of an intermediate result passes and a
    different value does not.

    Percentages: with `percent=True` the value is in percent (12.5 means 12.5%),
    and the answer's number is read in percent whether or not it carries a `%`
    ("12.5%" and "12.5" pass, the fraction "0.125" fails). With `percent=False`
    an answer written with `%` is divided by 100 ("12.5%" is 0.125).
    """

    def __init__(
        self,
        value: float | int | Fraction | str,
        *,
        rel_tol: float | None = None,
        abs_tol: float = 0.0,
        places: int | None = None,
        percent: bool = False,
    ) -> None:
        self.value = _exact(value)
        if rel_tol is None:  # a bare value: as close as floating point computes it
            rel_tol = 0.0 if abs_tol or places is not None else 1e-6
        self.rel_tol = _exact(rel_tol)
        self.abs_tol = _exact(abs_tol)
        if places is not None:
            self.abs_tol = max(self.abs_tol, Fraction(1, 10**places))
        self.places = places
        self.percent = percent

    @property
    def expected(self) -> str:
        return _show(self.value, self.places) + ("%" if self.percent else "")

    def _tolerance(self) -> str:
        absolute = f"{_show(self.abs_tol)}" + (" percentage points" if self.percent else "")
        relative = f"{_show(self.rel_tol * 100)}%" + (" relative" if self.percent else "")
        if self.abs_tol and self.rel_tol:
            return f"±{absolute} or ±{relative}, whichever is larger"
        if self.abs_tol:
            return f"±{absolute}"
        if self.rel_tol:
            return f"±{relative}"
        return "exactly"

    def __call__(self, answer: str) -> Verdict:
        number = _first_number(answer)
        wanted = f"expected {self.expected} ({self._tolerance()})"
        if number is None:
            return Verdict(False, f"{wanted}, got no number in {answer!r}")
        got = number.value
        if number.percent and not self.percent:
            got /= 100
        allowed = max(self.abs_tol, self.rel_tol * abs(self.value))
        off = abs(got - self.value)
        shown = _show(got) + ("%" if self.percent else "")
        if off <= allowed:
            return Verdict(True, f"{shown} is within {self._tolerance()} of {self.expected}")
        reason = f"{wanted}, got {shown} (off by {_show(off)})"
        if self.percent and not number.percent and abs(got * 100 - self.value) <= allowed:
            reason += "; it looks like a fraction where a percentage was asked for"
        return Verdict(False, reason)


class Integer:
    """A whole number, exactly (big integers included).

    Thousands separators may be commas, spaces or underscores in groups of three
    ("1,234,567", "1 234 567", "1_234_567"); a decimal or an exponent is accepted
    only when its value is whole ("1234.0", "1.5e3" is 1500, "1.2345e3" fails).
    The answer's first number counts, after an `=` the last part ("2^10 = 1024").
    """

    def __init__(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"Integer needs an int, not {value!r}")
        self.value = value

    @property
    def expected(self) -> str:
        return f"{self.value:,}"

    def __call__(self, answer: str) -> Verdict:
        number = _first_number(answer)
        if number is None:
            return Verdict(False, f"expected {self.expected}, got no number in {answer!r}")
        if number.value.denominator != 1:
            return Verdict(
                False, f"expected {self.expected}, got {number.text}, which is not a whole number"
            )
        got = number.value.numerator
        if got == self.value:
            return Verdict(True, f"{got:,} is {self.expected}")
        return Verdict(
            False, f"expected {self.expected}, got {got:,} (off by {got - self.value:+,})"
        )


_QUOTES = "\"'`“”‘’«»"


def _normal(text: str) -> str:
    """Text as compared: case and spacing folded, wrapping quotes, backticks and
    markdown emphasis removed, one trailing period dropped."""
    text = _unwrap(text)
    text = text.strip().strip(_QUOTES + "*_").strip()
    text = text.removesuffix(".").strip()
    return " ".join(text.split()).casefold()


class Exact:
    """A word or a name (a region, a flight number, a month as YYYY-MM), compared
    case-insensitively with spacing, quotes, backticks and a trailing period
    normalised. `also` lists other spellings that are just as right ("Sept")."""

    def __init__(self, text: str, *also: str) -> None:
        self.text = text
        self.accepted = {_normal(text), *(_normal(alt) for alt in also)}

    @property
    def expected(self) -> str:
        return self.text

    def __call__(self, answer: str) -> Verdict:
        if _normal(answer) in self.accepted:
            return Verdict(True, f"{answer.strip()!r} is {self.text!r}")
        return Verdict(False, f"expected {self.text!r}, got {answer.strip()!r}")


_SPLIT = re.compile(r",\s*and\s+|\s*[,;\n]\s*|\s+and\s+|\s*&\s*", re.IGNORECASE)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_EMPTY = {"", "none", "nothing", "empty", "no items", "-", "[]", "{}", "()", "set()"}


def _items(answer: str) -> list[str]:
    """The items of a list answer: a Python/JSON list literal, else the text split at
    commas, semicolons, newlines, " and " and "&" (bullets and numbering dropped)."""
    text = _unwrap(answer)
    if _normal(text) in _EMPTY:
        return []
    if text[:1] in "[({" and text[-1:] in "])}":
        parsed: object = None
        for parse in (json.loads, ast.literal_eval):
            try:
                parsed = parse(text)
                break
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
        if isinstance(parsed, list | tuple | set | frozenset):
            return [str(item) for item in parsed]
        if parsed is None:
            text = text[1:-1]
    parts = _SPLIT.split(text)
    return [_BULLET.sub("", part) for part in parts if _normal(_BULLET.sub("", part))]


class SetOf:
    """Several items in any order, each compared as Exact compares; the reason names
    the missing, extra and repeated items. Items must not themselves contain a
    separator (comma, semicolon, " and "), or answers could not be split."""

    def __init__(self, items: Iterable[str]) -> None:
        self.items = tuple(items)
        for item in self.items:
            if _items(item) != [item]:
                raise ValueError(f"{item!r} cannot be an item: it would be split")
        if len({_normal(item) for item in self.items}) != len(self.items):
            raise ValueError(f"repeated items in {self.items}")

    @property
    def expected(self) -> str:
        return ", ".join(self.items) if self.items else "none"

    def __call__(self, answer: str) -> Verdict:
        given = _items(answer)
        counts = Counter(_normal(item) for item in given)
        wanted = {_normal(item): item for item in self.items}
        missing = [item for key, item in wanted.items() if key not in counts]
        extra = [item for item in dict.fromkeys(given) if _normal(item) not in wanted]
        repeated = list(
            {
                _normal(item): wanted.get(_normal(item), item)
                for item in given
                if counts[_normal(item)] > 1
            }.values()
        )
        problems = []
        if missing:
            problems.append("missing " + ", ".join(missing))
        if extra:
            problems.append("not expected " + ", ".join(extra))
        if repeated:
            problems.append("listed more than once " + ", ".join(repeated))
        if problems:
            return Verdict(False, f"expected {self.expected}; " + "; ".join(problems))
        return Verdict(True, f"all {len(self.items)} items, in any order: {self.expected}")


_MONTHS = {name.casefold(): number for number, name in enumerate(calendar.month_name) if name}
_MONTHS |= {name.casefold(): number for number, name in enumerate(calendar.month_abbr) if name}
_MONTHS["sept"] = 9
_MONTH = "(?P<month>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<day>\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"(?P<year>\d{4})"
_DATE_FORMS = [
    re.compile(rf"\b{_YEAR}[-/.](?P<mnum>\d{{1,2}})[-/.](?P<day>\d{{1,2}})(?!\d)"),
    re.compile(rf"\b{_MONTH}\s+{_DAY},?\s+{_YEAR}\b", re.IGNORECASE),
    re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH},?\s+{_YEAR}\b", re.IGNORECASE),
    re.compile(r"\b(?P<a>\d{1,2})[/.](?P<b>\d{1,2})[/.]" + _YEAR + r"\b"),
]


def _read_date(answer: str) -> dt.date | str:
    """The first date in an answer, or why there is none. Day-first and month-first
    forms with slashes (03/05/2024) are read only when they cannot be misread: the
    two readings agree, or only one is a real date."""
    found: list[tuple[int, dt.date | str]] = []
    for form in _DATE_FORMS:
        match = form.search(answer)
        if match is None:
            continue
        year = int(match.group("year"))
        groups = match.groupdict()
        try:
            if groups.get("a") is not None:
                a, b = int(match.group("a")), int(match.group("b"))
                readings = set()
                for month, day in ((a, b), (b, a)):
                    with contextlib.suppress(ValueError):
                        readings.add(dt.date(year, month, day))
                if len(readings) == 1:
                    found.append((match.start(), readings.pop()))
                elif readings:
                    found.append(
                        (match.start(), f"{match.group(0)} could be day/month or month/day")
                    )
                else:
                    found.append((match.start(), f"{match.group(0)} is not a date"))
                continue
            if groups.get("mnum") is not None:
                month = int(match.group("mnum"))
            else:
                month = _MONTHS[match.group("month").casefold()]
            found.append((match.start(), dt.date(year, month, int(match.group("day")))))
        except ValueError:
            found.append((match.start(), f"{match.group(0)} is not a date"))
    if not found:
        return f"no date in {answer.strip()!r}"
    return min(found, key=lambda item: item[0])[1]


class Date:
    """A calendar date, given as ISO (2024-03-05); answers may write it 2024-03-05,
    2024/03/05, "March 5, 2024", "Mar 5th 2024", "5 March 2024", with or without a
    weekday; 05/03/2024-style dates only when unambiguous."""

    def __init__(self, iso: str | dt.date) -> None:
        self.value = iso if isinstance(iso, dt.date) else dt.date.fromisoformat(iso)

    @property
    def expected(self) -> str:
        return self.value.isoformat()

    def __call__(self, answer: str) -> Verdict:
        read = _read_date(answer)
        if isinstance(read, str):
            return Verdict(False, f"expected {self.expected}; {read}")
        if read == self.value:
            return Verdict(True, f"{answer.strip()!r} is {self.expected}")
        off = (read - self.value).days
        return Verdict(False, f"expected {self.expected}, got {read.isoformat()} ({off:+d} days)")


class Rational:
    """An exact rational number p/q: the answer may be a fraction ("-7/12", LaTeX
    "\\frac{7}{12}") or an integer, compared exactly (an equal fraction not in
    lowest terms passes), or a decimal within 1e-9 relative."""

    REL_TOL = Fraction(1, 10**9)

    def __init__(self, p: int, q: int = 1) -> None:
        self.value = Fraction(p, q)

    @property
    def expected(self) -> str:
        return str(self.value)

    def __call__(self, answer: str) -> Verdict:
        text = re.sub(
            r"\\[dt]?frac\s*\{\s*([^{}]*?)\s*\}\s*\{\s*([^{}]*?)\s*\}", r"(\1)/(\2)", answer
        )
        text = re.sub(r"\((-?\s*\d+)\)/\((\d+)\)", r"\1/\2", text)
        number = _first_number(text)
        if number is None:
            return Verdict(False, f"expected {self.expected}, got no number in {answer!r}")
        got = number.value
        if number.is_fraction:
            if got == self.value:
                return Verdict(True, f"{number.text} is exactly {self.expected}")
            return Verdict(False, f"expected {self.expected}, got {got} (exactly)")
        off = abs(got - self.value)
        if off <= self.REL_TOL * abs(self.value):
            return Verdict(True, f"{number.text} is within 1e-9 relative of {self.expected}")
        return Verdict(
            False,
            f"expected {self.expected} (≈ {_show(round(self.value, 12))}; a decimal must be "
            f"within 1e-9 relative), got {number.text}",
        )

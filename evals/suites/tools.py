"""The tools suite: multi-step travel questions answered by combining several calls
of the functions in evals/toolboxes/travel.py, where a loop or a condition saves
work (the kind of task on which the CodeAct paper compares code actions with
JSON and text calls).

Each task is written once, as its reference solution: plain Python that imports
the functions from `travel` and sets `answer`. Building the suite runs it against
the real module with its functions wrapped, which gives the expected answer and
the exact calls, in order, a solver making one call per step makes (`calls`).
So the answer, the calls and the reference cannot disagree; the data of the
module is chosen so that no task hinges on a tie or a rounding.
"""

from __future__ import annotations

import builtins
import functools
import inspect
import io
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from evals.checkers import Date, Exact, Integer, Numeric, SetOf
from evals.suite import Checker, Suite, Task
from evals.toolbox import toolbox_of
from evals.toolboxes import travel

MODULE = "travel"

DESCRIPTION = (
    "Multi-step travel planning over a fixed toolbox (flights, hotels, weather, sights, "
    "currencies, distances): each task needs several calls combined, with loops or conditions."
)

Call = tuple[str, Mapping[str, Any]]


@dataclass(frozen=True)
class Run:
    """What a reference did when it ran against the module."""

    answer: Any
    calls: tuple[Call, ...]
    stdout: str


def run_reference(code: str, module: types.ModuleType, name: str = MODULE) -> Run:
    """Run a reference solution in a namespace of its own, where `import <name>` gives
    `module`'s exported functions, each recording its calls (by parameter name, as
    passed), and `print` writes to a buffer. Nothing outside the run is touched."""
    calls: list[Call] = []
    recorded = types.ModuleType(name)
    for function_name in module.__all__:
        setattr(recorded, function_name, _recording(getattr(module, function_name), calls))

    def importer(
        target: str,
        globals_: Mapping[str, object] | None = None,
        locals_: Mapping[str, object] | None = None,
        fromlist: tuple[str, ...] = (),
        level: int = 0,
    ) -> Any:
        if target == name and level == 0:
            return recorded
        return builtins.__import__(target, globals_, locals_, fromlist, level)

    out = io.StringIO()
    overrides = {"__import__": importer, "print": functools.partial(builtins.print, file=out)}
    namespace: dict[str, Any] = {
        "__builtins__": {**vars(builtins), **overrides},
        "__name__": "__main__",
    }
    exec(compile(code, "<reference>", "exec"), namespace)  # our own code, run in its own namespace
    if "answer" not in namespace:
        raise ValueError("a reference must set `answer`")
    return Run(namespace["answer"], tuple(calls), out.getvalue())


def _recording(function: Callable[..., Any], calls: list[Call]) -> Callable[..., Any]:
    signature = inspect.signature(function)

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        arguments = dict(signature.bind(*args, **kwargs).arguments)
        calls.append((function.__name__, arguments))
        return function(*args, **kwargs)

    return call


@dataclass(frozen=True)
class _Spec:
    id: str
    question: str
    reference: str
    check: Callable[[Any], Checker]  # the checker of the answer the reference computed


def _money(answer: Any) -> Checker:
    return Numeric(answer, places=2)


_SPECS = (
    _Spec(
        "cheapest-of-three",
        "I'm in Lisbon and want to fly on 2025-06-06 to Paris, Rome or Berlin, whichever "
        "is cheapest. Of all direct flights that day from Lisbon to any of those three "
        "cities, which one has the lowest price? Answer with its flight number.",
        """\
from travel import find_flights

flights = []
for city in ["Paris", "Rome", "Berlin"]:
    flights += find_flights(origin="Lisbon", destination=city, day="2025-06-06")
answer = min(flights, key=lambda f: f["price_eur"])["flight"]
print(answer)
""",
        Exact,
    ),
    _Spec(
        "prague-weekend-cost",
        "I'll fly Madrid → Prague on 2025-06-06 and back Prague → Madrid on 2025-06-09, "
        "taking the cheapest direct flight each way, and stay those 3 nights (checking in "
        "on 2025-06-06) at the Prague hotel with the highest guest rating. What does the "
        "trip cost in EUR: both flight prices plus the hotel's total from hotel_quote, "
        "converted to EUR with convert? Round to 2 decimal places.",
        """\
from travel import convert, find_flights, find_hotels, hotel_quote

cheapest = lambda flights: min(flights, key=lambda f: f["price_eur"])
out = cheapest(find_flights(origin="Madrid", destination="Prague", day="2025-06-06"))
back = cheapest(find_flights(origin="Prague", destination="Madrid", day="2025-06-09"))
hotel = max(find_hotels(city="Prague"), key=lambda h: h["rating"])
quote = hotel_quote(hotel=hotel["hotel"], check_in="2025-06-06", nights=3)
stay = convert(amount=quote["total"], from_currency=quote["currency"], to_currency="EUR")
answer = round(out["price_eur"] + back["price_eur"] + stay, 2)
print(answer)
""",
        _money,
    ),
    _Spec(
        "warmest-city",
        "Which of Paris, Berlin, London and Prague has the highest average daily high "
        "temperature over 2025-06-09, 2025-06-10 and 2025-06-11, by the weather forecast? "
        "Answer with the city's name.",
        """\
from travel import weather

days = ["2025-06-09", "2025-06-10", "2025-06-11"]
average = {}
for city in ["Paris", "Berlin", "London", "Prague"]:
    highs = [weather(city=city, day=day)["high_c"] for day in days]
    average[city] = sum(highs) / len(highs)
answer = max(average, key=average.get)
print(answer)
""",
        Exact,
    ),
    _Spec(
        "first-dry-day",
        "I want to spend a day in Zurich, on the first day from 2025-06-02 onwards with no "
        "rain at all (0 mm in the forecast). Which date is that? Answer as YYYY-MM-DD.",
        """\
import datetime
from travel import weather

day = datetime.date(2025, 6, 2)
while weather(city="Zurich", day=day.isoformat())["rain_mm"] > 0:
    day += datetime.timedelta(days=1)
answer = day.isoformat()
print(answer)
""",
        Date,
    ),
    _Spec(
        "cheapest-day-paris-london",
        "Between 2025-06-09 and 2025-06-15 (inclusive), on which day is the cheapest direct "
        "flight from Paris to London cheapest? Answer with the date as YYYY-MM-DD.",
        """\
import datetime
from travel import find_flights

best = {}
for offset in range(7):
    day = (datetime.date(2025, 6, 9) + datetime.timedelta(days=offset)).isoformat()
    prices = [f["price_eur"] for f in find_flights(origin="Paris", destination="London", day=day)]
    if prices:
        best[day] = min(prices)
answer = min(best, key=best.get)
print(answer)
""",
        Date,
    ),
    _Spec(
        "cheapest-good-hotel",
        "Among the hotels in London, Zurich and Prague with a guest rating of at least 8.5, "
        "which has the lowest price per night once converted to EUR (use each city's "
        "cheapest such hotel's price_per_night and convert)? Answer with the hotel's name.",
        """\
from travel import convert, find_hotels

in_eur = {}
for city in ["London", "Zurich", "Prague"]:
    hotel = min(find_hotels(city=city, min_rating=8.5), key=lambda h: h["price_per_night"])
    in_eur[hotel["hotel"]] = convert(
        amount=hotel["price_per_night"], from_currency=hotel["currency"], to_currency="EUR"
    )
answer = min(in_eur, key=in_eur.get)
print(answer)
""",
        Exact,
    ),
    _Spec(
        "zurich-sights-budget",
        "I have 120 EUR for sightseeing tickets in Zurich. Converting the 120 EUR to the "
        "local currency with convert, how many different attractions can I buy one ticket "
        "each for at most, without going over budget?",
        """\
from travel import convert, find_attractions

sights = find_attractions(city="Zurich")
budget = convert(amount=120, from_currency="EUR", to_currency=sights[0]["currency"])
count = spent = 0
for price in sorted(s["price"] for s in sights):
    if spent + price > budget:
        break
    spent += price
    count += 1
answer = count
print(answer)
""",
        Integer,
    ),
    _Spec(
        "route-distance",
        "What is the total great-circle distance of the route Lisbon → Madrid → Paris → "
        "Berlin → Prague → Zurich, adding up distance_km of each leg? Round to the nearest km.",
        """\
from travel import distance_km

route = ["Lisbon", "Madrid", "Paris", "Berlin", "Prague", "Zurich"]
total = sum(distance_km(from_city=a, to_city=b) for a, b in zip(route, route[1:]))
answer = round(total)
print(answer)
""",
        lambda answer: Numeric(answer, places=0),
    ),
    _Spec(
        "farthest-direct-from-prague",
        "Of the cities with at least one direct flight from Prague on 2025-06-12, which one "
        "is farthest from Prague by distance_km? Answer with the city's name.",
        """\
from travel import distance_km, find_flights, list_cities

reachable = [
    city for city in list_cities()
    if city != "Prague" and find_flights(origin="Prague", destination=city, day="2025-06-12")
]
answer = max(reachable, key=lambda city: distance_km(from_city="Prague", to_city=city))
print(answer)
""",
        Exact,
    ),
    _Spec(
        "lisbon-prague-connection",
        "I need to get from Lisbon to Prague on 2025-06-05, either directly or with one "
        "change of plane in Madrid, Paris, London or Zurich, all on that day. A connection "
        "needs at least 60 minutes between the first flight's arrival and the second "
        "flight's departure (both are local times of the connecting city). What is the "
        "earliest possible arrival time in Prague? Answer as HH:MM (24-hour, local time).",
        """\
from travel import find_flights

day = "2025-06-05"
minutes = lambda hhmm: int(hhmm[:2]) * 60 + int(hhmm[3:])
arrivals = [f["arrive"] for f in find_flights(origin="Lisbon", destination="Prague", day=day)]
for hub in ["Madrid", "Paris", "London", "Zurich"]:
    first_legs = find_flights(origin="Lisbon", destination=hub, day=day)
    second_legs = find_flights(origin=hub, destination="Prague", day=day)
    for first in first_legs:
        for second in second_legs:
            if minutes(second["depart"]) - minutes(first["arrive"]) >= 60:
                arrivals.append(second["arrive"])
answer = min(arrivals, key=minutes)
print(answer)
""",
        Exact,
    ),
    _Spec(
        "two-stays-in-chf",
        "What do these two hotel stays cost together in CHF: 2 nights at The Southbank Hotel "
        "(London) checking in on 2025-06-12, then 3 nights at Hotel Limmat (Zurich) checking "
        "in on 2025-06-14? Price each stay with hotel_quote and convert the London one to "
        "CHF with convert. Round to 2 decimal places.",
        """\
from travel import convert, hotel_quote

london = hotel_quote(hotel="The Southbank Hotel", check_in="2025-06-12", nights=2)
zurich = hotel_quote(hotel="Hotel Limmat", check_in="2025-06-14", nights=3)
london_chf = convert(amount=london["total"], from_currency=london["currency"], to_currency="CHF")
answer = round(london_chf + zurich["total"], 2)
print(answer)
""",
        _money,
    ),
    _Spec(
        "wet-cities",
        "Which cities are forecast to get at least 8 mm of rain in total over 2025-06-04 and "
        "2025-06-05 together? Check every city there is data for, and list the names.",
        """\
from travel import list_cities, weather

answer = []
for city in list_cities():
    rain = sum(weather(city=city, day=day)["rain_mm"] for day in ["2025-06-04", "2025-06-05"])
    if rain >= 8:
        answer.append(city)
answer = ", ".join(answer)
print(answer)
""",
        lambda answer: SetOf(answer.split(", ")),
    ),
    _Spec(
        "berlin-getaway-budget",
        "From Berlin I'd leave on 2025-06-13 on the cheapest direct flight, and stay 2 nights "
        "(checking in on 2025-06-13) at the destination's hotel with the lowest "
        "price_per_night, priced with hotel_quote. Which of Lisbon, Rome and London fit a "
        "budget of 400 EUR for that flight plus the stay (a stay priced in another currency "
        "converted to EUR with convert)? List the cities.",
        """\
from travel import convert, find_flights, find_hotels, hotel_quote

answer = []
for city in ["Lisbon", "Rome", "London"]:
    flight = min(
        find_flights(origin="Berlin", destination=city, day="2025-06-13"),
        key=lambda f: f["price_eur"],
    )
    hotel = min(find_hotels(city=city), key=lambda h: h["price_per_night"])
    quote = hotel_quote(hotel=hotel["hotel"], check_in="2025-06-13", nights=2)
    stay = quote["total"]
    if quote["currency"] != "EUR":
        stay = convert(amount=stay, from_currency=quote["currency"], to_currency="EUR")
    if flight["price_eur"] + stay <= 400:
        answer.append(city)
answer = ", ".join(answer)
print(answer)
""",
        lambda answer: SetOf(answer.split(", ")),
    ),
    _Spec(
        "warmer-destination-fare",
        "On 2025-06-07 I'll fly from Berlin to whichever of Rome and Lisbon has the higher "
        "forecast high temperature that day. What is the price of the cheapest direct flight "
        "there that day, in GBP (convert the EUR price with convert)? Round to 2 decimal "
        "places.",
        """\
from travel import convert, find_flights, weather

day = "2025-06-07"
highs = {city: weather(city=city, day=day)["high_c"] for city in ["Rome", "Lisbon"]}
city = max(highs, key=highs.get)
price = min(f["price_eur"] for f in find_flights(origin="Berlin", destination=city, day=day))
answer = convert(amount=price, from_currency="EUR", to_currency="GBP")
print(answer)
""",
        _money,
    ),
    _Spec(
        "latest-london-departure",
        "Of all direct flights leaving London on 2025-06-10 (to any other city), which "
        "departs latest among those arriving before 17:00 local time at their destination? "
        "Answer with its flight number.",
        """\
from travel import find_flights, list_cities

flights = []
for city in list_cities():
    if city != "London":
        flights += find_flights(origin="London", destination=city, day="2025-06-10")
early = [f for f in flights if f["arrive"] < "17:00"]
answer = max(early, key=lambda f: f["depart"])["flight"]
print(answer)
""",
        Exact,
    ),
    _Spec(
        "museum-tickets",
        "What does one ticket to every museum (attractions of category museum) in Paris, "
        "Prague and Zurich cost in total in EUR? Add up each city's museum tickets in its own "
        "currency, convert each city's total to EUR with convert (a EUR total stays as it "
        "is), and round the sum to 2 decimal places.",
        """\
from travel import convert, find_attractions

total = 0.0
for city in ["Paris", "Prague", "Zurich"]:
    museums = [s for s in find_attractions(city=city) if s["category"] == "museum"]
    amount = sum(s["price"] for s in museums)
    currency = museums[0]["currency"]
    if currency != "EUR":
        amount = convert(amount=amount, from_currency=currency, to_currency="EUR")
    total += amount
answer = round(total, 2)
print(answer)
""",
        _money,
    ),
)


def _task(spec: _Spec) -> Task:
    run = run_reference(spec.reference, travel)
    printed = run.stdout.strip().splitlines()
    if not printed or printed[-1] != str(run.answer):
        raise ValueError(f"{spec.id}: the reference must print its answer last")
    return Task(
        id=spec.id,
        question=spec.question,
        check=spec.check(run.answer),
        reference=spec.reference,
        calls=run.calls,
    )


def build() -> Suite:
    return Suite(
        name="tools",
        description=DESCRIPTION,
        tasks=tuple(_task(spec) for spec in _SPECS),
        toolbox=toolbox_of(MODULE, travel),
    )

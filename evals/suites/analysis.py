"""The analysis suite: questions about generated CSV and Excel files, of the kind a
user of a code interpreter asks (totals, group-bys, a join, dates, a trend, outliers,
missing values, a workbook with two sheets).

Every expected value is computed here in plain Python from the same rows the files
are written from (the app has no pandas); the references answer with pandas in the
sandbox, so the test that runs them checks the two against each other. Answers
that pick a winner are checked to have no tie, and thresholds to sit clear of the
data, so that a question never hinges on a rounding.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from fractions import Fraction

from evals import data
from evals.checkers import Date, Exact, Integer, Numeric, SetOf
from evals.data import Table
from evals.suite import Suite, Task

DESCRIPTION = (
    "Data analysis on seeded CSV and Excel files: aggregations, group-bys, a join, "
    "dates and intervals, a least-squares trend, outliers, missing values."
)


def _top(totals: Mapping[str, Fraction | float | int], margin: float = 0.0) -> str:
    """The key with the largest value, refusing a tie (or a lead under `margin`):
    a question whose winner depends on float noise would be unfair."""
    ranked = sorted(totals.items(), key=lambda item: item[1], reverse=True)
    if len(ranked) > 1 and ranked[0][1] - ranked[1][1] <= margin:
        raise ValueError(f"no clear winner: {ranked[:2]}")
    return ranked[0][0]


def _clear_of(values: Iterable[Fraction | float | int], threshold: float, gap: float) -> None:
    """Refuse a threshold that some value comes within `gap` of."""
    for value in values:
        if abs(value - threshold) < gap:
            raise ValueError(f"{value} is too close to the threshold {threshold}")


def _money(price: object) -> Fraction:
    """A price from a table, exactly as the file writes it."""
    assert isinstance(price, float | int)
    return Fraction(repr(price))


def _date(value: object) -> dt.date:
    assert isinstance(value, dt.date)
    return value


def _text(value: object) -> str:
    assert isinstance(value, str)
    return value


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value


def _moment(value: object) -> dt.datetime:
    assert isinstance(value, dt.datetime)
    return value


# --------------------------------------------------------------------------- sales


def _sales_tasks(sales: Table, products: Table) -> list[Task]:
    files = {"sales.csv": sales.csv_bytes()}
    joined = {"sales.csv": sales.csv_bytes(), "products.csv": products.csv_bytes()}
    orders = sales.records()
    revenue = [_int(o["units"]) * _money(o["unit_price"]) for o in orders]
    catalogue = {_text(p["product_id"]): p for p in products.records()}
    name_of = {pid: _text(p["name"]) for pid, p in catalogue.items()}
    read = "import pandas as pd\ndf = pd.read_csv('sales.csv')\n"
    read_dates = "import pandas as pd\ndf = pd.read_csv('sales.csv', parse_dates=['order_date'])\n"
    read_joined = (
        "import pandas as pd\n"
        "df = pd.read_csv('sales.csv').merge(pd.read_csv('products.csv'), on='product_id')\n"
    )
    tasks = []

    tasks.append(
        Task(
            id="sales-total-revenue",
            question=(
                "sales.csv has one row per order. An order's revenue is units × unit_price. "
                "What is the total revenue of all orders? Round to 2 decimal places."
            ),
            files=files,
            check=Numeric(sum(revenue, Fraction(0)), places=2),
            reference=read + "print(round((df.units * df.unit_price).sum(), 2))",
        )
    )

    by_region: dict[str, Fraction] = defaultdict(Fraction)
    for order, value in zip(orders, revenue, strict=True):
        by_region[_text(order["region"])] += value
    tasks.append(
        Task(
            id="sales-top-region",
            question=(
                "In sales.csv, which region had the highest total revenue, where an order's "
                "revenue is units × unit_price? Answer with the region's name."
            ),
            files=files,
            check=Exact(_top(by_region)),
            reference=read
            + "df['revenue'] = df.units * df.unit_price\n"
            + "print(df.groupby('region').revenue.sum().idxmax())",
        )
    )

    by_month: dict[str, Fraction] = defaultdict(Fraction)
    for order, value in zip(orders, revenue, strict=True):
        by_month[_date(order["order_date"]).strftime("%Y-%m")] += value
    tasks.append(
        Task(
            id="sales-best-month",
            question=(
                "In sales.csv, which calendar month had the highest total revenue "
                "(units × unit_price summed over the month's orders, by order_date)? "
                "Answer with the month written as YYYY-MM."
            ),
            files=files,
            check=Exact(_top(by_month)),
            reference=read_dates
            + "df['revenue'] = df.units * df.unit_price\n"
            + "print(df.groupby(df.order_date.dt.strftime('%Y-%m')).revenue.sum().idxmax())",
        )
    )

    units = [_int(o["units"]) for o in orders]
    weekend = sum(
        u for o, u in zip(orders, units, strict=True) if _date(o["order_date"]).weekday() >= 5
    )
    tasks.append(
        Task(
            id="sales-weekend-share",
            question=(
                "What percentage of all units sold in sales.csv were in orders placed on a "
                "Saturday or a Sunday (by order_date)? Round to 1 decimal place."
            ),
            files=files,
            check=Numeric(Fraction(100 * weekend, sum(units)), places=1, percent=True),
            reference=read_dates
            + "share = df[df.order_date.dt.day_of_week >= 5].units.sum() / df.units.sum()\n"
            + "print(round(100 * share, 1))",
        )
    )

    tasks.append(
        Task(
            id="sales-median-order",
            question=(
                "What is the median order revenue in sales.csv (one value per order: "
                "units × unit_price)? Round to 2 decimal places."
            ),
            files=files,
            check=Numeric(statistics.median(revenue), places=2),
            reference=read + "print(round((df.units * df.unit_price).median(), 2))",
        )
    )

    orders_of: dict[str, list[dt.date]] = defaultdict(list)
    for order in orders:
        orders_of[_text(order["customer_id"])].append(_date(order["order_date"]))
    regulars = sum(1 for days in orders_of.values() if len(days) >= 20)
    tasks.append(
        Task(
            id="sales-regular-customers",
            question=(
                "In sales.csv, how many customers (customer_id) placed at least 20 orders "
                "each (one row is one order)?"
            ),
            files=files,
            check=Integer(regulars),
            reference=read + "print(int((df.customer_id.value_counts() >= 20).sum()))",
        )
    )

    gaps = [
        (b - a).days
        for days in orders_of.values()
        for a, b in zip(sorted(days), sorted(days)[1:], strict=False)
    ]
    tasks.append(
        Task(
            id="sales-longest-gap",
            question=(
                "In sales.csv, take each customer's orders in order_date order and count the "
                "days between each order and the customer's next one (two orders on the same "
                "day are 0 days apart). What is the longest such gap, in days, over all "
                "customers?"
            ),
            files=files,
            check=Integer(max(gaps)),
            reference=read_dates
            + "df = df.sort_values(['customer_id', 'order_date'])\n"
            + "print(int(df.groupby('customer_id').order_date.diff().dt.days.max()))",
        )
    )

    margin: dict[str, Fraction] = defaultdict(Fraction)
    income: dict[str, Fraction] = defaultdict(Fraction)
    for order, value in zip(orders, revenue, strict=True):
        pid = _text(order["product_id"])
        cost = _int(order["units"]) * _money(catalogue[pid]["unit_cost"])
        margin[pid] += value - cost
        income[pid] += value
    electronics = sum(
        (m for pid, m in margin.items() if catalogue[pid]["category"] == "Electronics"), Fraction(0)
    )
    tasks.append(
        Task(
            id="sales-electronics-margin",
            question=(
                "sales.csv lists orders and products.csv the products, joined on product_id. "
                "An order's gross margin is units × (unit_price − unit_cost). What is the total "
                "gross margin of the orders of products in the Electronics category? Round to "
                "2 decimal places."
            ),
            files=joined,
            check=Numeric(electronics, places=2),
            reference=read_joined
            + "e = df[df.category == 'Electronics']\n"
            + "print(round((e.units * (e.unit_price - e.unit_cost)).sum(), 2))",
        )
    )

    rates = {name_of[pid]: margin[pid] / income[pid] for pid in margin}
    tasks.append(
        Task(
            id="sales-best-margin-rate",
            question=(
                "Using sales.csv and products.csv (joined on product_id), which product has the "
                "highest margin rate, that is its total gross margin (units × (unit_price − "
                "unit_cost) summed over its orders) divided by its total revenue (units × "
                "unit_price summed)? Answer with the product's name from products.csv."
            ),
            files=joined,
            check=Exact(_top(rates, margin=0.001)),
            reference=read_joined
            + "df['revenue'] = df.units * df.unit_price\n"
            + "df['margin'] = df.units * (df.unit_price - df.unit_cost)\n"
            + "g = df.groupby('name')[['margin', 'revenue']].sum()\n"
            + "print((g.margin / g.revenue).idxmax())",
        )
    )

    south_q4: dict[str, int] = defaultdict(int)
    for order in orders:
        if order["region"] == "South" and _date(order["order_date"]).month >= 10:
            south_q4[name_of[_text(order["product_id"])]] += _int(order["units"])
    _clear_of(south_q4.values(), 30, 3)
    tasks.append(
        Task(
            id="sales-south-q4-products",
            question=(
                "Using sales.csv and products.csv (joined on product_id), which products sold "
                "more than 30 units in total in the South region in the fourth quarter of 2024 "
                "(order dates from October 1 to December 31)? List the product names."
            ),
            files=joined,
            check=SetOf(sorted(name for name, total in south_q4.items() if total > 30)),
            reference=read_joined
            + "df['order_date'] = pd.to_datetime(df.order_date)\n"
            + "q4 = df[(df.region == 'South') & (df.order_date >= '2024-10-01')]\n"
            + "totals = q4.groupby('name').units.sum()\n"
            + "print(', '.join(sorted(totals[totals > 30].index)))",
        )
    )
    return tasks


# --------------------------------------------------------------------------- sensors


def _interpolated(values: list[float | None]) -> list[float]:
    """Missing values filled linearly between their nearest known neighbours (equal
    spacing); the ends are known by construction of the data."""
    filled: list[float] = []
    for i, value in enumerate(values):
        if value is not None:
            filled.append(value)
            continue
        before = max(j for j in range(i) if values[j] is not None)
        after = min(j for j in range(i + 1, len(values)) if values[j] is not None)
        low, high = values[before], values[after]
        assert low is not None and high is not None
        filled.append(low + (high - low) * (i - before) / (after - before))
    return filled


def _sensor_tasks(sensors: Table) -> list[Task]:
    files = {"sensors.csv": sensors.csv_bytes()}
    readings = sensors.records()
    read = "import pandas as pd\ndf = pd.read_csv('sensors.csv', parse_dates=['timestamp'])\n"
    tasks = []
    series: dict[str, list[float | None]] = defaultdict(list)
    for r in readings:
        value = r["temperature_c"]
        series[_text(r["sensor"])].append(float(value) if isinstance(value, float | int) else None)

    incomplete = {_moment(r["timestamp"]) for r in readings if r["temperature_c"] is None}
    tasks.append(
        Task(
            id="sensors-incomplete-hours",
            question=(
                "sensors.csv has hourly temperature readings of three sensors (S1, S2, S3), "
                "one row per sensor and timestamp; an empty temperature_c is a missing reading. "
                "At how many distinct timestamps is at least one sensor's reading missing?"
            ),
            files=files,
            check=Integer(len(incomplete)),
            reference=read + "print(df[df.temperature_c.isna()].timestamp.nunique())",
        )
    )

    outliers = 0
    for values in series.values():
        known = [v for v in values if v is not None]
        mean, std = statistics.fmean(known), statistics.pstdev(known)
        z = [abs(v - mean) / std for v in known]
        _clear_of(z, 3.0, 0.25)
        outliers += sum(1 for score in z if score > 3)
    tasks.append(
        Task(
            id="sensors-outliers",
            question=(
                "In sensors.csv (hourly readings of sensors S1, S2, S3; empty temperature_c "
                "means missing), treat each sensor separately: compute the mean and the "
                "population standard deviation (ddof=0) of its non-missing readings, and call "
                "a reading an outlier when |reading − mean| > 3 × standard deviation. How many "
                "outliers are there over all three sensors?"
            ),
            files=files,
            check=Integer(outliers),
            reference=read
            + "df = df.dropna(subset=['temperature_c'])\n"
            + "g = df.groupby('sensor').temperature_c\n"
            + "std = g.transform(lambda s: s.std(ddof=0))\n"
            + "z = (df.temperature_c - g.transform('mean')).abs() / std\n"
            + "print(int((z > 3).sum()))",
        )
    )

    daily: dict[dt.date, list[float]] = defaultdict(list)
    for r in readings:
        if r["sensor"] == "S1" and r["temperature_c"] is not None:
            daily[_moment(r["timestamp"]).date()].append(float(_money(r["temperature_c"])))
    means = {day.isoformat(): statistics.fmean(v) for day, v in daily.items()}
    tasks.append(
        Task(
            id="sensors-warmest-day",
            question=(
                "In sensors.csv, on which calendar day was the daily mean temperature of sensor "
                "S1 highest? The daily mean is the mean of that day's non-missing hourly S1 "
                "readings (empty temperature_c is missing). Answer with the date as YYYY-MM-DD."
            ),
            files=files,
            check=Date(_top(means, margin=1e-6)),
            reference=read
            + "s1 = df[df.sensor == 'S1']\n"
            + "print(s1.groupby(s1.timestamp.dt.date).temperature_c.mean().idxmax())",
        )
    )

    s3 = _interpolated(series["S3"])
    tasks.append(
        Task(
            id="sensors-interpolated-mean",
            question=(
                "sensors.csv has hourly readings of sensors S1, S2 and S3 with some missing "
                "(empty) temperature_c values. Fill each missing reading of sensor S3 by linear "
                "interpolation between the nearest earlier and the nearest later non-missing S3 "
                "readings (the readings are evenly spaced, one per hour), then compute the mean "
                "of all S3 readings over the whole period. Round to 3 decimal places."
            ),
            files=files,
            check=Numeric(statistics.fmean(s3), places=3),
            reference=read
            + "s3 = df[df.sensor == 'S3'].sort_values('timestamp').temperature_c\n"
            + "print(round(s3.interpolate().mean(), 3))",
        )
    )
    return tasks


# --------------------------------------------------------------------------- staff


def _staff_tasks(staff: Table, reviews: Table) -> list[Task]:
    files = {"staff.xlsx": data.workbook_bytes({"staff": staff, "reviews": reviews})}
    people = staff.records()
    read = (
        "import pandas as pd\n"
        "staff = pd.read_excel('staff.xlsx', sheet_name='staff')\n"
        "reviews = pd.read_excel('staff.xlsx', sheet_name='reviews')\n"
    )
    tasks = []

    salaries: dict[str, list[int]] = defaultdict(list)
    for person in people:
        salaries[_text(person["department"])].append(_int(person["salary"]))
    medians = {department: statistics.median(values) for department, values in salaries.items()}
    tasks.append(
        Task(
            id="staff-top-median-salary",
            question=(
                "staff.xlsx has two sheets, staff and reviews. Which department has the "
                "highest median salary (sheet staff)? Answer with the department's name."
            ),
            files=files,
            check=Exact(_top(medians)),
            reference=read + "print(staff.groupby('department').salary.median().idxmax())",
        )
    )

    department_of = {_text(p["employee_id"]): _text(p["department"]) for p in people}
    scores_2023 = [
        _money(r["score"])
        for r in reviews.records()
        if r["year"] == 2023
        and r["score"] is not None
        and department_of[_text(r["employee_id"])] == "Sales"
    ]
    tasks.append(
        Task(
            id="staff-sales-review-2023",
            question=(
                "staff.xlsx has a sheet staff (employee_id, name, department, hire_date, "
                "salary) and a sheet reviews (employee_id, year, score). What is the average "
                "2023 review score of the employees of the Sales department? Empty scores are "
                "missing and do not count. Round to 2 decimal places."
            ),
            files=files,
            check=Numeric(sum(scores_2023, Fraction(0)) / len(scores_2023), places=2),
            reference=read
            + "r = reviews.merge(staff, on='employee_id')\n"
            + "print(round(r[(r.year == 2023) & (r.department == 'Sales')].score.mean(), 2))",
        )
    )

    scored_2024 = {
        _text(r["employee_id"])
        for r in reviews.records()
        if r["year"] == 2024 and r["score"] is not None
    }
    unscored = sorted(
        _text(p["name"])
        for p in people
        if _date(p["hire_date"]).year < 2024 and _text(p["employee_id"]) not in scored_2024
    )
    tasks.append(
        Task(
            id="staff-missing-2024-scores",
            question=(
                "staff.xlsx has a sheet staff (employee_id, name, department, hire_date, "
                "salary) and a sheet reviews (employee_id, year, score). Which employees hired "
                "before 2024 have no 2024 review score, either because they have no 2024 row in "
                "reviews or because its score is empty? List their names."
            ),
            files=files,
            check=SetOf(unscored),
            reference=read
            + "scored = reviews[(reviews.year == 2024) & reviews.score.notna()].employee_id\n"
            + "old = staff[staff.hire_date < '2024-01-01']\n"
            + "print(', '.join(sorted(old[~old.employee_id.isin(scored)].name)))",
        )
    )

    mondays = sum(1 for p in people if _date(p["hire_date"]).weekday() == 0)
    tasks.append(
        Task(
            id="staff-monday-hires",
            question=(
                "In staff.xlsx (sheets staff and reviews), how many employees of the staff "
                "sheet were hired on a Monday (by hire_date)?"
            ),
            files=files,
            check=Integer(mondays),
            reference=read + "print(int((staff.hire_date.dt.day_of_week == 0).sum()))",
        )
    )
    return tasks


# --------------------------------------------------------------------------- traffic, trips


def _slope(points: list[tuple[int, int]]) -> Fraction:
    """The least-squares slope of y on x, exactly."""
    n = len(points)
    sx = sum(x for x, _ in points)
    sy = sum(y for _, y in points)
    sxx = sum(x * x for x, _ in points)
    sxy = sum(x * y for x, y in points)
    return Fraction(n * sxy - sx * sy, n * sxx - sx * sx)


def _time_tasks(traffic: Table, trips: Table) -> list[Task]:
    tasks = []
    start = dt.date(2024, 1, 1)
    points = [((_date(r["date"]) - start).days, _int(r["visits"])) for r in traffic.records()]
    tasks.append(
        Task(
            id="traffic-trend-slope",
            question=(
                "traffic.csv has the number of website visits per day. Fit a straight line "
                "visits = a + b × t by ordinary least squares, where t is the number of days "
                "since 2024-01-01 (t = 0 on 2024-01-01). What is the slope b, in visits per "
                "day? Round to 2 decimal places."
            ),
            files={"traffic.csv": traffic.csv_bytes()},
            check=Numeric(_slope(points), places=2),
            reference=(
                "import numpy as np, pandas as pd\n"
                "df = pd.read_csv('traffic.csv', parse_dates=['date'])\n"
                "t = (df.date - pd.Timestamp('2024-01-01')).dt.days\n"
                "print(round(np.polyfit(t, df.visits, 1)[0], 2))"
            ),
        )
    )

    files = {"trips.csv": trips.csv_bytes()}
    read = "import pandas as pd\ndf = pd.read_csv('trips.csv', parse_dates=['pickup', 'dropoff'])\n"
    rides = trips.records()
    rush = [
        Fraction(int((_moment(r["dropoff"]) - _moment(r["pickup"])).total_seconds()), 60)
        for r in rides
        if _moment(r["pickup"]).weekday() < 5 and 7 <= _moment(r["pickup"]).hour <= 9
    ]
    tasks.append(
        Task(
            id="trips-rush-duration",
            question=(
                "trips.csv lists taxi trips with pickup and dropoff times. A trip's duration is "
                "dropoff minus pickup. What is the mean duration, in minutes, of the trips picked "
                "up on a weekday (Monday to Friday) between 07:00 and 09:59 inclusive? Round to "
                "1 decimal place."
            ),
            files=files,
            check=Numeric(sum(rush, Fraction(0)) / len(rush), places=1),
            reference=read
            + "p = df.pickup\n"
            + "r = df[(p.dt.day_of_week < 5) & p.dt.hour.between(7, 9)]\n"
            + "print(round(((r.dropoff - r.pickup).dt.total_seconds() / 60).mean(), 1))",
        )
    )

    per_hour: dict[str, int] = defaultdict(int)
    for r in rides:
        per_hour[str(_moment(r["pickup"]).hour)] += 1
    tasks.append(
        Task(
            id="trips-busiest-hour",
            question=(
                "In trips.csv, which hour of the day has the most pickups over the whole month? "
                "Count each trip in the hour of its pickup time (0 to 23; 18 means 18:00–18:59) "
                "and answer with that hour as a number."
            ),
            files=files,
            check=Integer(int(_top(per_hour))),
            reference=read + "print(df.pickup.dt.hour.value_counts().idxmax())",
        )
    )

    overnight = sum(1 for r in rides if _moment(r["dropoff"]).date() > _moment(r["pickup"]).date())
    tasks.append(
        Task(
            id="trips-past-midnight",
            question=(
                "In trips.csv, how many trips end on a later calendar day than the day they "
                "were picked up?"
            ),
            files=files,
            check=Integer(overnight),
            reference=read + "print(int((df.dropoff.dt.date > df.pickup.dt.date).sum()))",
        )
    )
    return tasks


def build() -> Suite:
    staff, reviews = data.staff()
    parts: list[Callable[[], list[Task]]] = [
        lambda: _sales_tasks(data.sales(), data.products()),
        lambda: _sensor_tasks(data.sensors()),
        lambda: _staff_tasks(staff, reviews),
        lambda: _time_tasks(data.traffic(), data.trips()),
    ]
    return Suite(
        name="analysis",
        description=DESCRIPTION,
        tasks=tuple(task for part in parts for task in part()),
    )

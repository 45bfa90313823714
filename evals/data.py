"""The data of the analysis suite: tables generated from fixed seeds, written as
CSV or Excel bytes that are the same on every run and every machine.

A suite computes its expected answers from the same `Table` rows it writes, in
plain Python, so what a model reads from the file and what the checker expects
cannot drift apart. Floats are rounded before they are stored, so the decimal a
file holds is the float the checker used (repr round-trips exactly).

Excel needs care to be reproducible: openpyxl stamps the save time into
docProps/core.xml and every zip entry; `workbook_bytes` pins both.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import random
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from openpyxl import Workbook
from openpyxl.writer.excel import ExcelWriter

Cell = str | int | float | dt.date | dt.datetime | None

# The time a generated workbook says it was created and modified, and the time
# of its zip entries: any fixed moment will do, this one is the suites' epoch.
PINNED_TIME = dt.datetime(2025, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Table:
    """Rows under named columns; None is a missing value (an empty cell)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(f"row {row} does not have the columns {self.columns}")

    def records(self) -> list[dict[str, Cell]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def column(self, name: str) -> list[Cell]:
        index = self.columns.index(name)
        return [row[index] for row in self.rows]

    def csv_bytes(self) -> bytes:
        return csv_bytes(self)


def _csv_cell(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):  # before date: a datetime is a date too
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def csv_bytes(table: Table) -> bytes:
    """The table as UTF-8 CSV with a header line, "\\n" line ends, dates as ISO
    (datetimes as "YYYY-MM-DD HH:MM") and missing values as empty fields."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.columns)
    for row in table.rows:
        writer.writerow([_csv_cell(value) for value in row])
    return out.getvalue().encode()


def workbook_bytes(sheets: Mapping[str, Table]) -> bytes:
    """An .xlsx file with one sheet per table, in order, header in the first row.
    Dates are real Excel dates (formatted yyyy-mm-dd), missing values empty cells.
    The same tables give the same bytes whenever they are written."""
    book = Workbook()
    book.remove(book.active)
    for title, table in sheets.items():
        sheet = book.create_sheet(title)
        sheet.append(list(table.columns))
        for row in table.rows:
            sheet.append(list(row))
        for cells in sheet.iter_rows(min_row=2):
            for cell in cells:
                if isinstance(cell.value, dt.datetime):
                    cell.number_format = "yyyy-mm-dd hh:mm"
                elif isinstance(cell.value, dt.date):
                    cell.number_format = "yyyy-mm-dd"
    book.properties.creator = "codeact-evals"
    book.properties.created = PINNED_TIME
    book.properties.modified = PINNED_TIME
    raw = io.BytesIO()
    # ExcelWriter rather than Workbook.save, which sets `modified` to the time now.
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
        ExcelWriter(book, archive).write_data()
    return _pin_zip_times(raw.getvalue())


def _pin_zip_times(data: bytes) -> bytes:
    """The same zip with every entry dated PINNED_TIME (zipfile dates entries
    written from a name with the current local time)."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            pinned = zipfile.ZipInfo(info.filename, date_time=PINNED_TIME.timetuple()[:6])
            pinned.compress_type = zipfile.ZIP_DEFLATED
            pinned.external_attr = 0o600 << 16
            pinned.create_system = 3  # unix, whatever the machine
            target.writestr(pinned, source.read(info.filename))
    return out.getvalue()


# --------------------------------------------------------------------------- datasets
#
# Each generator takes its seed as a default argument: the suite calls it without
# one, tests may call it with another to see that the checks follow the data.

REGIONS = ("North", "South", "East", "West")

# (product_id, name, category, list price, unit cost): prices are the generator's
# inputs; the file products.csv carries id, name, category and cost.
_PRODUCTS = (
    ("P01", "Headphones", "Electronics", 89.0, 52.0),
    ("P02", "Bluetooth Speaker", "Electronics", 129.0, 81.0),
    ("P03", "USB-C Charger", "Electronics", 35.0, 14.5),
    ("P04", "Webcam", "Electronics", 64.0, 41.0),
    ("P05", "Phone Case", "Accessories", 19.0, 4.2),
    ("P06", "HDMI Cable", "Accessories", 12.5, 3.1),
    ("P07", "Laptop Stand", "Accessories", 42.0, 22.0),
    ("P08", "Screen Protector", "Accessories", 9.5, 1.8),
    ("P09", "Notebook", "Office", 6.0, 2.4),
    ("P10", "Desk Lamp", "Office", 38.0, 24.5),
    ("P11", "Pen Set", "Office", 14.0, 5.6),
    ("P12", "Desk Organizer", "Office", 27.0, 12.0),
)


def products() -> Table:
    """products.csv: the catalogue, joined to sales.csv on product_id."""
    return Table(
        ("product_id", "name", "category", "unit_cost"),
        tuple((pid, name, category, cost) for pid, name, category, _, cost in _PRODUCTS),
    )


def sales(seed: int = 2024, orders: int = 600) -> Table:
    """sales.csv: one row per order of 2024, by 90 customers in four regions.

    Orders are more frequent in late autumn and on weekends, regions and products
    are weighted, a few customers are regulars; the price is the list price less
    a discount of 0, 5, 10 or 15 percent.
    """
    rng = random.Random(seed)
    start = dt.date(2024, 1, 1)
    days = [start + dt.timedelta(days=i) for i in range(366)]
    day_weights = [
        (1.0 + 0.6 * math.exp(-(((d.timetuple().tm_yday - 320) / 35) ** 2)))
        * (1.35 if d.weekday() >= 5 else 1.0)
        for d in days
    ]
    customers = [f"C{i:03d}" for i in range(1, 91)]
    customer_weights = [6.0 if i % 11 == 0 else 2.5 if i % 7 == 0 else 1.0 for i in range(1, 91)]
    product_weights = [rng.uniform(0.6, 2.0) for _ in _PRODUCTS]
    rows = []
    for number, day in enumerate(sorted(rng.choices(days, day_weights, k=orders))):
        region = rng.choices(REGIONS, (1.3, 1.0, 0.9, 1.15))[0]
        product = rng.choices(_PRODUCTS, product_weights)[0]
        units = min(1 + int(rng.expovariate(1 / 4)), 25)
        discount = rng.choice((0, 0, 0, 5, 5, 10, 15))
        price = round(product[3] * (100 - discount) / 100, 2)
        customer = rng.choices(customers, customer_weights)[0]
        rows.append((1001 + number, day, region, product[0], units, price, customer))
    return Table(
        ("order_id", "order_date", "region", "product_id", "units", "unit_price", "customer_id"),
        tuple(rows),
    )


SENSORS = ("S1", "S2", "S3")


def sensors(seed: int = 7) -> Table:
    """sensors.csv: hourly temperatures (°C) of three sensors over two weeks of
    May 2024, in long form (timestamp, sensor, temperature_c).

    Readings follow a daily cycle with noise; about 3% are missing (empty), never
    the first or last reading of a sensor, and a few are spikes far from the rest
    (a failing sensor), so that a z-score rule finds them without doubt.
    """
    rng = random.Random(seed)
    start = dt.datetime(2024, 5, 6, 0, 0)
    hours = [start + dt.timedelta(hours=h) for h in range(14 * 24)]
    base = {"S1": 19.0, "S2": 21.5, "S3": 17.0}
    amplitude = {"S1": 4.0, "S2": 3.0, "S3": 5.0}
    spikes = {("S2", h) for h in rng.sample(range(24, len(hours) - 24), 4)}
    spikes |= {("S3", h) for h in rng.sample(range(24, len(hours) - 24), 3)}
    rows: list[tuple[Cell, ...]] = []
    for h, moment in enumerate(hours):
        drift = 0.08 * (h / 24)  # the weather warms a little over the fortnight
        for sensor in SENSORS:
            cycle = math.sin((moment.hour - 9) / 24 * 2 * math.pi)
            value = base[sensor] + drift + amplitude[sensor] * cycle + rng.gauss(0, 0.6)
            if (sensor, h) in spikes:
                value += rng.choice((-1, 1)) * rng.uniform(18, 24)
            missing = 0 < h < len(hours) - 1 and rng.random() < 0.03
            rows.append((moment, sensor, None if missing else round(value, 2)))
    return Table(("timestamp", "sensor", "temperature_c"), tuple(rows))


DEPARTMENTS = ("Engineering", "Sales", "Marketing", "Support", "Finance")
_FIRST = (
    "Ada", "Ben", "Chloe", "Dario", "Elena", "Farid", "Greta", "Hugo", "Ines", "Jonas",
    "Kira", "Luis", "Mara", "Nils", "Olga", "Pavel", "Quinn", "Rosa", "Sami", "Tara",
)  # fmt: skip
_LAST = (
    "Almeida", "Berg", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Horvat",
    "Ivanova", "Jensen", "Kovacs", "Larsen", "Moreau", "Novak", "Okafor", "Petrov",
)  # fmt: skip


def staff(seed: int = 31, people: int = 64) -> tuple[Table, Table]:
    """staff.xlsx: sheet "staff" (employee_id, name, department, hire_date, salary)
    and sheet "reviews" (employee_id, year, score), a yearly score from 1.0 to 5.0.

    Nobody is reviewed for a year before the one after they were hired; a few
    reviews of 2024 are missing (no row) and a few scores are empty cells.
    """
    rng = random.Random(seed)
    names = rng.sample([f"{first} {last}" for first in _FIRST for last in _LAST], people)
    pay = {
        "Engineering": 78000,
        "Sales": 61000,
        "Marketing": 64000,
        "Support": 48000,
        "Finance": 70000,
    }
    first_day = dt.date(2012, 1, 2)
    span = (dt.date(2024, 6, 30) - first_day).days
    staff_rows = []
    review_rows: list[tuple[Cell, ...]] = []
    for number, name in enumerate(names, start=1):
        employee = f"E{number:03d}"
        department = rng.choices(DEPARTMENTS, (5, 4, 2, 3, 2))[0]
        hired = first_day + dt.timedelta(days=rng.randrange(span))
        years = (dt.date(2024, 12, 31) - hired).days / 365.25
        salary = round(pay[department] * (1 + 0.025 * years) * rng.uniform(0.85, 1.2), -2)
        staff_rows.append((employee, name, department, hired, int(salary)))
        for year in (2022, 2023, 2024):
            if year <= hired.year:
                continue
            if year == 2024 and rng.random() < 0.07:
                continue  # the review did not happen
            score = round(min(5.0, max(1.0, rng.gauss(3.5, 0.7))), 1)
            review_rows.append((employee, year, None if rng.random() < 0.04 else score))
    return (
        Table(("employee_id", "name", "department", "hire_date", "salary"), tuple(staff_rows)),
        Table(("employee_id", "year", "score"), tuple(review_rows)),
    )


def traffic(seed: int = 11) -> Table:
    """traffic.csv: daily website visits over the first half of 2024: a linear
    rise, a weekly pattern (quiet weekends) and noise."""
    rng = random.Random(seed)
    start = dt.date(2024, 1, 1)
    rows = []
    for i in range(182):
        day = start + dt.timedelta(days=i)
        weekly = -380 if day.weekday() >= 5 else 90
        rows.append((day, round(2150 + 6.3 * i + weekly + rng.gauss(0, 140))))
    return Table(("date", "visits"), tuple(rows))


def trips(seed: int = 5, count: int = 480) -> Table:
    """trips.csv: taxi trips of March 2024 (trip_id, pickup, dropoff, distance_km,
    fare_eur), more of them at rush hours, some past midnight."""
    rng = random.Random(seed)
    start = dt.datetime(2024, 3, 1)
    hour_weights = [
        1,
        1,
        0.5,
        0.3,
        0.3,
        0.6,
        2,
        5,
        6,
        4,
        2.5,
        2.5,
        3,
        2.5,
        2.5,
        3,
        4,
        5.5,
        7.5,
        4,
        3,
        2.5,
        2,
        1.5,
    ]
    rows = []
    for _ in range(count):
        day = rng.randrange(31)
        hour = rng.choices(range(24), hour_weights)[0]
        pickup = start + dt.timedelta(days=day, hours=hour, minutes=rng.randrange(60))
        distance = round(rng.lognormvariate(1.4, 0.6), 1)
        rush = pickup.weekday() < 5 and (7 <= hour <= 9 or 17 <= hour <= 19)
        speed = rng.uniform(14, 22) if rush else rng.uniform(22, 34)  # km/h
        minutes = max(3, round(distance / speed * 60 + rng.uniform(1, 4)))
        dropoff = pickup + dt.timedelta(minutes=minutes)
        fare = round(3.9 + 1.35 * distance + 0.35 * minutes, 2)
        rows.append((pickup, dropoff, distance, fare))
    rows.sort()
    return Table(
        ("trip_id", "pickup", "dropoff", "distance_km", "fare_eur"),
        tuple((f"T{i:04d}", *row) for i, row in enumerate(rows, start=1)),
    )


def rows_by(table: Table, key: str) -> dict[Cell, list[dict[str, Cell]]]:
    """The table's records grouped by one column, groups in first-seen order."""
    groups: dict[Cell, list[dict[str, Cell]]] = {}
    for record in table.records():
        groups.setdefault(record[key], []).append(record)
    return groups


def present(values: Sequence[Cell]) -> list[float]:
    """The numbers among values (missing ones left out), as floats."""
    return [float(v) for v in values if isinstance(v, int | float)]

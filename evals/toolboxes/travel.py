"""Travel information for eight European cities over two weeks of June 2025
(2025-06-02 to 2025-06-15): direct flights, hotels, weather forecasts, sights,
exchange rates and distances.

All data is fixed in this module: every function gives the same answer for the
same arguments and changes nothing. City names are matched without regard to
case; bad arguments raise ValueError saying what is allowed.
"""

import datetime
import math
from typing import Any

__all__ = [
    "city_info",
    "convert",
    "distance_km",
    "exchange_rate",
    "find_attractions",
    "find_flights",
    "find_hotels",
    "hotel_quote",
    "list_cities",
    "weather",
]

FIRST_DAY = datetime.date(2025, 6, 2)
LAST_DAY = datetime.date(2025, 6, 15)

# city: (country, currency, UTC offset in June, population, latitude, longitude)
_CITIES = {
    "Lisbon": ("Portugal", "EUR", 1, 545_000, 38.7223, -9.1393),
    "Madrid": ("Spain", "EUR", 2, 3_332_000, 40.4168, -3.7038),
    "Paris": ("France", "EUR", 2, 2_103_000, 48.8566, 2.3522),
    "Rome": ("Italy", "EUR", 2, 2_749_000, 41.9028, 12.4964),
    "Berlin": ("Germany", "EUR", 2, 3_878_000, 52.5200, 13.4050),
    "London": ("United Kingdom", "GBP", 1, 8_866_000, 51.5072, -0.1276),
    "Prague": ("Czech Republic", "CZK", 2, 1_357_000, 50.0755, 14.4378),
    "Zurich": ("Switzerland", "CHF", 2, 443_000, 47.3769, 8.5417),
}

# Units of each currency one euro buys.
_PER_EUR = {"EUR": 1.0, "GBP": 0.85, "CHF": 0.94, "CZK": 24.8, "USD": 1.13}

# flight, airline, origin, destination, weekdays flown (1 = Monday), departure
# (local time), duration in minutes, base fare in EUR.
_FLIGHTS = (
    ("TP1022", "TAP", "Lisbon", "Madrid", "1234567", "07:10", 75, 95),
    ("IB3101", "Iberia", "Lisbon", "Madrid", "12345", "18:40", 75, 82),
    ("TP0440", "TAP", "Lisbon", "Paris", "1234567", "06:55", 140, 138),
    ("U27651", "easyJet", "Lisbon", "Paris", "2467", "13:20", 145, 96),
    ("TP0842", "TAP", "Lisbon", "Rome", "13567", "09:35", 170, 154),
    ("FR1911", "Ryanair", "Lisbon", "Rome", "246", "15:05", 175, 89),
    ("TP0538", "TAP", "Lisbon", "Berlin", "12345", "08:20", 200, 171),
    ("U25594", "easyJet", "Lisbon", "Berlin", "357", "17:45", 205, 118),
    ("TP1350", "TAP", "Lisbon", "London", "1234567", "10:15", 160, 149),
    ("BA0501", "British Airways", "Lisbon", "London", "1357", "16:30", 160, 176),
    ("LX2087", "Swiss", "Lisbon", "Zurich", "1234567", "11:40", 155, 187),
    ("IB3104", "Iberia", "Madrid", "Lisbon", "1234567", "09:05", 75, 84),
    ("IB3402", "Iberia", "Madrid", "Paris", "1234567", "07:30", 120, 121),
    ("AF1301", "Air France", "Madrid", "Paris", "1357", "14:15", 125, 109),
    ("IB0655", "Iberia", "Madrid", "Rome", "12345", "10:50", 150, 132),
    ("FR4021", "Ryanair", "Madrid", "Rome", "67", "06:45", 155, 71),
    ("IB3660", "Iberia", "Madrid", "Berlin", "1234567", "12:25", 180, 162),
    ("IB3166", "Iberia", "Madrid", "London", "1234567", "08:55", 140, 144),
    ("FR5447", "Ryanair", "Madrid", "London", "2357", "19:10", 145, 67),
    ("QS1091", "Smartwings", "Madrid", "Prague", "1357", "11:35", 170, 128),
    ("LX2027", "Swiss", "Madrid", "Zurich", "123456", "13:05", 125, 168),
    ("TP0441", "TAP", "Paris", "Lisbon", "1234567", "11:45", 145, 131),
    ("IB3403", "Iberia", "Paris", "Madrid", "1234567", "11:15", 120, 118),
    ("AF1104", "Air France", "Paris", "Rome", "1234567", "08:05", 125, 145),
    ("AF1204", "Air France", "Paris", "Berlin", "1234567", "09:40", 105, 139),
    ("U24291", "easyJet", "Paris", "Berlin", "246", "16:55", 105, 79),
    ("AF1080", "Air France", "Paris", "London", "1234567", "07:20", 75, 112),
    ("BA0309", "British Airways", "Paris", "London", "1234567", "12:45", 75, 124),
    ("U28412", "easyJet", "Paris", "London", "357", "18:30", 80, 74),
    ("AF1382", "Air France", "Paris", "Prague", "12345", "10:30", 100, 133),
    ("AF1314", "Air France", "Paris", "Zurich", "1234567", "08:45", 70, 126),
    ("TP0843", "TAP", "Rome", "Lisbon", "13567", "13:10", 185, 149),
    ("IB0654", "Iberia", "Rome", "Madrid", "12345", "14:30", 160, 127),
    ("AF1105", "Air France", "Rome", "Paris", "1234567", "11:25", 130, 142),
    ("FR6127", "Ryanair", "Rome", "Paris", "1357", "19:40", 130, 68),
    ("AZ0430", "ITA Airways", "Rome", "Berlin", "12345", "09:15", 130, 136),
    ("AZ0204", "ITA Airways", "Rome", "London", "1234567", "10:40", 155, 158),
    ("AZ0512", "ITA Airways", "Rome", "Prague", "246", "12:20", 110, 119),
    ("LX1727", "Swiss", "Rome", "Zurich", "1234567", "07:55", 85, 121),
    ("TP0539", "TAP", "Berlin", "Lisbon", "12345", "12:50", 215, 165),
    ("U25595", "easyJet", "Berlin", "Lisbon", "357", "06:30", 215, 112),
    ("IB3661", "Iberia", "Berlin", "Madrid", "1234567", "16:40", 185, 155),
    ("AF1205", "Air France", "Berlin", "Paris", "1234567", "13:15", 105, 135),
    ("AZ0431", "ITA Airways", "Berlin", "Rome", "12345", "12:35", 130, 131),
    ("FR8544", "Ryanair", "Berlin", "Rome", "67", "08:10", 135, 84),
    ("BA0983", "British Airways", "Berlin", "London", "1234567", "07:45", 110, 133),
    ("LX0973", "Swiss", "Berlin", "Zurich", "1234567", "15:20", 90, 117),
    ("TP1351", "TAP", "London", "Lisbon", "1234567", "13:55", 165, 146),
    ("IB3167", "Iberia", "London", "Madrid", "1234567", "12:40", 140, 139),
    ("BA0304", "British Airways", "London", "Paris", "1234567", "08:10", 80, 118),
    ("U28413", "easyJet", "London", "Paris", "246", "20:05", 80, 71),
    ("AZ0205", "ITA Airways", "London", "Rome", "1234567", "14:20", 150, 155),
    ("BA0984", "British Airways", "London", "Berlin", "1234567", "11:35", 110, 129),
    ("BA0856", "British Airways", "London", "Prague", "12345", "09:50", 115, 137),
    ("LX0455", "Swiss", "London", "Zurich", "1234567", "17:05", 100, 152),
    ("BA0714", "British Airways", "London", "Zurich", "2467", "06:40", 100, 139),
    ("QS1092", "Smartwings", "Prague", "Madrid", "1357", "15:10", 185, 122),
    ("AF1383", "Air France", "Prague", "Paris", "12345", "13:40", 105, 129),
    ("AZ0513", "ITA Airways", "Prague", "Rome", "246", "15:05", 115, 116),
    ("BA0857", "British Airways", "Prague", "London", "12345", "13:15", 120, 134),
    ("LX1485", "Swiss", "Prague", "Zurich", "12345", "07:35", 80, 109),
    ("LX2086", "Swiss", "Zurich", "Lisbon", "1234567", "07:50", 165, 182),
    ("LX2026", "Swiss", "Zurich", "Madrid", "123456", "09:10", 130, 161),
    ("AF1315", "Air France", "Zurich", "Paris", "1234567", "11:20", 75, 119),
    ("LX1726", "Swiss", "Zurich", "Rome", "1234567", "10:05", 90, 118),
    ("LX0974", "Swiss", "Zurich", "Berlin", "1234567", "18:35", 90, 113),
    ("LX0454", "Swiss", "Zurich", "London", "1234567", "08:05", 105, 147),
    ("LX1484", "Swiss", "Zurich", "Prague", "12345", "16:50", 80, 104),
)

# Fares move with demand: the base fare times the day's factor.
_DEMAND = (1.00, 0.92, 0.95, 1.08, 1.22, 1.10, 1.18, 0.97, 0.90, 0.94, 1.05, 1.25, 1.12, 1.20)

# name, city, stars, guest rating (0-10), price per night in the city's currency,
# distance from the centre in km, breakfast included.
_HOTELS = (
    ("Casa do Alecrim", "Lisbon", 4, 8.9, 142, 0.6, True),
    ("Hotel Tejo Azul", "Lisbon", 3, 8.1, 96, 1.4, True),
    ("Palacio Graca", "Lisbon", 5, 9.3, 265, 1.1, True),
    ("Alfama Nest", "Lisbon", 2, 7.6, 68, 0.9, False),
    ("Hotel Prado Real", "Madrid", 4, 8.7, 158, 0.8, True),
    ("Hostal Lavapies", "Madrid", 2, 7.9, 59, 1.3, False),
    ("Gran Via Suites", "Madrid", 5, 9.1, 289, 0.3, True),
    ("Hotel Retiro Verde", "Madrid", 3, 8.4, 104, 2.0, True),
    ("Hotel Saint-Martin", "Paris", 3, 8.2, 139, 2.1, False),
    ("Le Petit Marais", "Paris", 4, 9.0, 215, 0.9, True),
    ("Maison Montmartre", "Paris", 3, 8.6, 128, 3.4, True),
    ("Hotel des Invalides", "Paris", 5, 9.4, 420, 1.5, True),
    ("Paris Gare Lodge", "Paris", 2, 7.1, 89, 3.0, False),
    ("Albergo Trastevere", "Rome", 3, 8.8, 119, 1.8, True),
    ("Hotel Colosseo View", "Rome", 4, 8.5, 176, 0.7, True),
    ("Villa Borghese Palace", "Rome", 5, 9.2, 340, 2.2, True),
    ("Roma Termini Inn", "Rome", 2, 7.4, 72, 2.5, False),
    ("Hotel Spreeblick", "Berlin", 4, 8.6, 134, 1.2, True),
    ("Kreuzberg Loft", "Berlin", 3, 8.9, 98, 3.1, False),
    ("Mitte Grand", "Berlin", 5, 9.0, 248, 0.5, True),
    ("Hostel Friedrichshain", "Berlin", 2, 7.8, 55, 4.0, False),
    ("The Southbank Hotel", "London", 4, 8.7, 189, 1.0, True),
    ("Camden Rooms", "London", 3, 8.0, 122, 4.2, False),
    ("Kensington Crown", "London", 5, 9.2, 365, 3.6, True),
    ("Shoreditch Nest", "London", 3, 8.6, 138, 3.3, True),
    ("Paddington Budget", "London", 2, 7.2, 84, 4.8, False),
    ("Hotel Vltava", "Prague", 4, 8.8, 3450, 0.9, True),
    ("Mala Strana Residence", "Prague", 5, 9.4, 6200, 1.1, True),
    ("Zizkov Rooms", "Prague", 2, 7.7, 1490, 2.6, False),
    ("Hotel Karlin", "Prague", 3, 8.5, 2290, 2.2, True),
    ("Hotel Limmat", "Zurich", 4, 8.9, 265, 0.7, True),
    ("Zurichberg Lodge", "Zurich", 3, 8.6, 198, 3.0, True),
    ("Baur am See", "Zurich", 5, 9.5, 610, 0.4, True),
    ("Langstrasse Inn", "Zurich", 2, 7.5, 129, 1.5, False),
)

# Nights from Friday to Saturday and Saturday to Sunday cost this much more.
_WEEKEND_SURCHARGE = 0.2

# Daily forecast from 2025-06-02 to 2025-06-15: (high °C, low °C, rain mm), a line
# for each Monday to Thursday and each Friday to Sunday.
_WEATHER = {
    "Lisbon": (
        (23, 16, 0.0), (26, 17, 0.0), (25, 17, 0.0), (30, 18, 0.0),
        (27, 17, 3.6), (26, 16, 0.0), (24, 13, 0.0),
        (23, 14, 0.0), (29, 16, 0.0), (26, 18, 7.7), (24, 17, 0.0),
        (24, 17, 0.0), (22, 16, 0.0), (22, 17, 0.0),
    ),
    "Madrid": (
        (29, 15, 0.0), (28, 15, 0.0), (33, 15, 0.0), (27, 16, 0.0),
        (30, 18, 0.0), (27, 16, 0.0), (30, 19, 0.0),
        (28, 19, 0.0), (31, 15, 0.0), (28, 17, 0.0), (30, 19, 0.0),
        (27, 16, 0.0), (30, 18, 0.0), (27, 16, 0.0),
    ),
    "Paris": (
        (26, 14, 0.8), (25, 16, 0.0), (23, 17, 5.0), (23, 13, 0.0),
        (23, 16, 0.0), (25, 15, 2.7), (24, 11, 0.0),
        (22, 13, 0.0), (21, 16, 0.0), (21, 15, 0.3), (25, 13, 0.0),
        (21, 13, 0.0), (21, 16, 0.0), (28, 13, 9.9),
    ),
    "Rome": (
        (27, 20, 0.0), (30, 20, 1.0), (27, 20, 8.7), (30, 18, 0.0),
        (27, 17, 0.0), (28, 16, 0.0), (31, 19, 0.0),
        (29, 17, 0.0), (27, 21, 0.0), (35, 15, 0.1), (25, 17, 0.0),
        (28, 18, 0.0), (26, 16, 0.0), (27, 19, 0.5),
    ),
    "Berlin": (
        (24, 12, 0.0), (27, 11, 0.0), (18, 12, 2.1), (21, 15, 9.2),
        (21, 13, 2.1), (23, 15, 4.9), (22, 15, 5.5),
        (25, 13, 0.0), (27, 14, 0.0), (25, 13, 0.0), (24, 14, 0.0),
        (23, 13, 0.0), (17, 12, 4.7), (25, 13, 0.0),
    ),
    "London": (
        (23, 14, 0.0), (21, 14, 0.0), (23, 14, 0.0), (22, 14, 0.0),
        (20, 14, 0.3), (21, 12, 0.8), (20, 15, 17.9),
        (24, 11, 0.8), (21, 10, 0.0), (22, 12, 0.0), (22, 12, 7.5),
        (22, 13, 6.3), (20, 12, 0.0), (22, 13, 0.0),
    ),
    "Prague": (
        (21, 16, 0.0), (18, 10, 0.0), (21, 10, 0.0), (20, 9, 2.1),
        (24, 12, 0.0), (24, 14, 0.0), (22, 12, 0.0),
        (23, 13, 0.9), (23, 11, 0.0), (21, 14, 0.0), (23, 15, 0.0),
        (21, 9, 0.0), (23, 13, 3.6), (24, 12, 0.0),
    ),
    "Zurich": (
        (20, 11, 6.3), (20, 14, 1.2), (21, 14, 6.7), (24, 13, 17.4),
        (22, 11, 0.0), (22, 11, 0.0), (20, 14, 1.0),
        (20, 12, 0.0), (23, 13, 0.0), (22, 12, 6.2), (21, 11, 6.9),
        (20, 11, 1.9), (23, 13, 4.5), (20, 11, 2.9),
    ),
}  # fmt: skip

# city: (name, category, ticket price in the city's currency, hours a visit takes)
_ATTRACTIONS = {
    "Lisbon": (
        ("Belem Tower", "monument", 10, 1.0),
        ("Jeronimos Monastery", "monument", 12, 1.5),
        ("Oceanarium", "museum", 25, 2.5),
        ("Tram 28 Ride", "tour", 3, 1.0),
    ),
    "Madrid": (
        ("Prado Museum", "museum", 15, 3.0),
        ("Royal Palace", "monument", 14, 2.0),
        ("Reina Sofia Museum", "museum", 12, 2.5),
        ("Retiro Boat Hire", "leisure", 8, 1.0),
    ),
    "Paris": (
        ("Louvre", "museum", 22, 4.0),
        ("Eiffel Tower Summit", "monument", 36, 2.0),
        ("Musee d'Orsay", "museum", 16, 3.0),
        ("Seine Cruise", "tour", 17, 1.0),
    ),
    "Rome": (
        ("Colosseum", "monument", 18, 2.5),
        ("Vatican Museums", "museum", 20, 4.0),
        ("Borghese Gallery", "museum", 15, 2.0),
        ("Pantheon", "monument", 5, 0.5),
    ),
    "Berlin": (
        ("Pergamon Museum", "museum", 14, 2.5),
        ("Reichstag Dome", "monument", 0, 1.0),
        ("TV Tower", "monument", 26, 1.0),
        ("Spree Boat Tour", "tour", 19, 1.0),
    ),
    "London": (
        ("British Museum", "museum", 0, 3.0),
        ("Tower of London", "monument", 34, 3.0),
        ("London Eye", "leisure", 29, 1.0),
        ("Westminster Abbey", "monument", 29, 1.5),
    ),
    "Prague": (
        ("Prague Castle", "monument", 450, 3.0),
        ("Jewish Museum", "museum", 500, 2.0),
        ("Petrin Tower", "monument", 220, 1.0),
        ("Vltava Cruise", "tour", 390, 1.0),
    ),
    "Zurich": (
        ("Kunsthaus", "museum", 24, 2.5),
        ("Swiss National Museum", "museum", 13, 2.0),
        ("Uetliberg Railway", "leisure", 18, 2.0),
        ("Lake Zurich Cruise", "tour", 35, 1.5),
        ("FIFA Museum", "museum", 26, 2.0),
        ("Lindt Home of Chocolate", "museum", 15, 1.5),
    ),
}


def _city(name: str) -> str:
    for city in _CITIES:
        if city.lower() == str(name).strip().lower():
            return city
    raise ValueError(f"unknown city {name!r}; the cities are {', '.join(_CITIES)}")


def _day(day: str) -> datetime.date:
    try:
        date = datetime.date.fromisoformat(str(day).strip())
    except ValueError:
        raise ValueError(f"bad date {day!r}: write it as YYYY-MM-DD, e.g. 2025-06-02") from None
    if not FIRST_DAY <= date <= LAST_DAY:
        raise ValueError(f"no data for {date}: the days are {FIRST_DAY} to {LAST_DAY}")
    return date


def _currency(code: str) -> str:
    upper = str(code).strip().upper()
    if upper not in _PER_EUR:
        raise ValueError(f"unknown currency {code!r}; the currencies are {', '.join(_PER_EUR)}")
    return upper


def list_cities() -> list[str]:
    """The names of the cities covered, in a fixed order."""
    return list(_CITIES)


def city_info(city: str) -> dict[str, Any]:
    """Facts about a city: country, currency (ISO code), UTC offset in hours in June,
    population, latitude and longitude."""
    name = _city(city)
    country, currency, offset, population, lat, lon = _CITIES[name]
    return {
        "city": name,
        "country": country,
        "currency": currency,
        "utc_offset_hours": offset,
        "population": population,
        "latitude": lat,
        "longitude": lon,
    }


def find_flights(origin: str, destination: str, day: str) -> list[dict[str, Any]]:
    """Direct flights from origin to destination on a day (YYYY-MM-DD, from 2025-06-02
    to 2025-06-15), earliest departure first; an empty list when there are none.
    Each flight has its number, airline, departure and arrival in local times
    (HH:MM), duration in minutes and price in EUR for one adult."""
    start, end, date = _city(origin), _city(destination), _day(day)
    if start == end:
        raise ValueError("origin and destination are the same city")
    demand = _DEMAND[(date - FIRST_DAY).days]
    flights = []
    for number, airline, source, target, weekdays, depart, minutes, fare in _FLIGHTS:
        if source != start or target != end or str(date.isoweekday()) not in weekdays:
            continue
        leave = datetime.datetime.combine(date, datetime.time.fromisoformat(depart))
        shift = _CITIES[target][2] - _CITIES[source][2]
        arrive = leave + datetime.timedelta(minutes=minutes, hours=shift)
        flights.append(
            {
                "flight": number,
                "airline": airline,
                "origin": source,
                "destination": target,
                "date": date.isoformat(),
                "depart": depart,
                "arrive": arrive.strftime("%H:%M"),
                "duration_min": minutes,
                "price_eur": round(fare * demand, 2),
            }
        )
    return sorted(flights, key=lambda flight: flight["depart"])


def find_hotels(city: str, min_rating: float = 0.0) -> list[dict[str, Any]]:
    """Hotels in a city with a guest rating (0 to 10) of at least min_rating,
    cheapest first. Each has its stars, rating, price per night in the city's
    currency (a base price: hotel_quote gives the price of a stay), distance from
    the centre in km, and whether breakfast is included."""
    name = _city(city)
    currency = _CITIES[name][1]
    hotels = [
        {
            "hotel": hotel,
            "city": name,
            "stars": stars,
            "rating": rating,
            "price_per_night": price,
            "currency": currency,
            "distance_km": distance,
            "breakfast": breakfast,
        }
        for hotel, town, stars, rating, price, distance, breakfast in _HOTELS
        if town == name and rating >= float(min_rating)
    ]
    return sorted(hotels, key=lambda hotel: (hotel["price_per_night"], hotel["hotel"]))


def hotel_quote(hotel: str, check_in: str, nights: int) -> dict[str, Any]:
    """The price of a stay of 1 to 14 nights at a hotel (its exact name), checking in
    on a day from 2025-06-02 to 2025-06-15: the nightly price, 20% more for the
    nights of Friday and Saturday, totalled in the hotel's currency."""
    wanted = str(hotel).strip().lower()
    found = [row for row in _HOTELS if row[0].lower() == wanted]
    if not found:
        raise ValueError(f"unknown hotel {hotel!r}; find_hotels(city) lists the hotels of a city")
    name, city, _, _, price, _, _ = found[0]
    date = _day(check_in)
    if isinstance(nights, bool) or not isinstance(nights, int) or not 1 <= nights <= 14:
        raise ValueError(f"nights must be a whole number from 1 to 14, not {nights!r}")
    total = 0.0
    for i in range(nights):
        night = date + datetime.timedelta(days=i)
        total += price * (1 + _WEEKEND_SURCHARGE if night.isoweekday() in (5, 6) else 1)
    return {
        "hotel": name,
        "city": city,
        "check_in": date.isoformat(),
        "check_out": (date + datetime.timedelta(days=nights)).isoformat(),
        "nights": nights,
        "total": round(total, 2),
        "currency": _CITIES[city][1],
    }


def weather(city: str, day: str) -> dict[str, Any]:
    """The forecast for a city on a day (YYYY-MM-DD, from 2025-06-02 to 2025-06-15):
    high and low temperature in °C, rain in mm, and a summary ("dry" without rain,
    "light rain" under 2 mm, else "rain")."""
    name, date = _city(city), _day(day)
    high, low, rain = _WEATHER[name][(date - FIRST_DAY).days]
    summary = "dry" if rain == 0 else "light rain" if rain < 2 else "rain"
    return {
        "city": name,
        "date": date.isoformat(),
        "high_c": high,
        "low_c": low,
        "rain_mm": rain,
        "summary": summary,
    }


def find_attractions(city: str) -> list[dict[str, Any]]:
    """The sights of a city: name, category, ticket price for one adult in the
    city's currency (0 is free) and the hours a visit takes."""
    name = _city(city)
    currency = _CITIES[name][1]
    return [
        {"name": sight, "category": category, "price": price, "currency": currency, "hours": hours}
        for sight, category, price, hours in _ATTRACTIONS[name]
    ]


def exchange_rate(from_currency: str, to_currency: str) -> float:
    """How many units of to_currency one unit of from_currency buys (ISO codes:
    EUR, GBP, CHF, CZK, USD), rounded to 6 decimal places."""
    source, target = _currency(from_currency), _currency(to_currency)
    return round(_PER_EUR[target] / _PER_EUR[source], 6)


def convert(amount: float, from_currency: str, to_currency: str) -> float:
    """An amount of from_currency in to_currency: amount * exchange_rate(from_currency,
    to_currency), rounded to 2 decimal places."""
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        raise ValueError(f"amount must be a number, not {amount!r}")
    return round(amount * exchange_rate(from_currency, to_currency), 2)


def distance_km(from_city: str, to_city: str) -> float:
    """The great-circle distance between two cities' centres in km (a sphere of
    radius 6371 km), rounded to 1 decimal place."""
    a, b = _CITIES[_city(from_city)], _CITIES[_city(to_city)]
    lat1, lon1, lat2, lon2 = map(math.radians, (a[4], a[5], b[4], b[5]))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return round(2 * 6371.0 * math.asin(math.sqrt(h)), 1)

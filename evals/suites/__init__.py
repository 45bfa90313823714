"""The evaluation suites by name.

A suite is built on first use and kept: building generates its files and runs
its checks' computations (a second or so for all), and the result never changes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from evals.suite import Suite
from evals.suites import analysis, compute, tools

SUITES: dict[str, Callable[[], Suite]] = {
    "analysis": analysis.build,
    "compute": compute.build,
    "tools": tools.build,
}


def suite_names() -> list[str]:
    return list(SUITES)


@functools.cache
def get_suite(name: str) -> Suite:
    """The suite of that name, built once per process."""
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; the suites are {', '.join(SUITES)}")
    return SUITES[name]()

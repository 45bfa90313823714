"""The compute suite: exact answers to mathematical questions (number theory,
combinatorics, algebra, calculus) that are slow or error-prone by hand and quick
with code. Expected values are computed here in plain Python (integers and
Fractions); the references use what the sandbox offers (sympy among it), so the
test that runs them compares two independent computations.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

from evals.checkers import Integer, Rational
from evals.suite import Suite, Task

DESCRIPTION = (
    "Exact computation: number theory, combinatorics and algebra with integer or "
    "rational answers, checked exactly."
)

Poly = list[Fraction]  # coefficients, lowest degree first


def _mul(a: Poly, b: Poly) -> Poly:
    out = [Fraction(0)] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            out[i + j] += x * y
    return out


def _power(p: Poly, n: int) -> Poly:
    out: Poly = [Fraction(1)]
    for _ in range(n):
        out = _mul(out, p)
    return out


def _integral(p: Poly, low: int, high: int) -> Fraction:
    def antiderivative(x: int) -> Fraction:
        return sum((c * Fraction(x) ** (k + 1) / (k + 1) for k, c in enumerate(p)), Fraction(0))

    return antiderivative(high) - antiderivative(low)


def _sieve(limit: int) -> list[int]:
    """The primes below limit."""
    flags = bytearray([1]) * limit
    flags[0:2] = b"\x00\x00"
    for n in range(2, math.isqrt(limit - 1) + 1):
        if flags[n]:
            flags[n * n :: n] = bytes(len(range(n * n, limit, n)))
    return [n for n in range(limit) if flags[n]]


def _distinct_partitions(n: int) -> int:
    ways = [1] + [0] * n
    for part in range(1, n + 1):
        for total in range(n, part - 1, -1):
            ways[total] += ways[total - part]
    return ways[n]


def _derangements(n: int) -> int:
    counts = [1, 0]
    for k in range(2, n + 1):
        counts.append((k - 1) * (counts[-1] + counts[-2]))
    return counts[n]


def _determinant(matrix: list[list[int]]) -> int:
    rows = [[Fraction(x) for x in row] for row in matrix]
    n, det = len(rows), Fraction(1)
    for col in range(n):
        pivot = next((r for r in range(col, n) if rows[r][col] != 0), None)
        if pivot is None:
            return 0
        if pivot != col:
            rows[col], rows[pivot] = rows[pivot], rows[col]
            det = -det
        det *= rows[col][col]
        for r in range(col + 1, n):
            factor = rows[r][col] / rows[col][col]
            rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col], strict=True)]
    assert det.denominator == 1
    return det.numerator


def _series(coefficient: list[Fraction], other: list[Fraction]) -> list[Fraction]:
    """The product of two power series, truncated to the shorter length."""
    n = min(len(coefficient), len(other))
    return [
        sum((coefficient[i] * other[k - i] for i in range(k + 1)), Fraction(0)) for k in range(n)
    ]


def _matrix(seed: int = 17, size: int = 6) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randint(-9, 9) for _ in range(size)] for _ in range(size)]


def build() -> Suite:
    tasks = []

    base = [Fraction(1), Fraction(2), Fraction(-3)]
    tasks.append(
        Task(
            id="expansion-coefficient",
            question="What is the coefficient of x^6 in the expansion of (1 + 2x − 3x^2)^9?",
            check=Integer(int(_power(base, 9)[6])),
            reference=(
                "from sympy import symbols, expand\n"
                "x = symbols('x')\n"
                "print(expand((1 + 2*x - 3*x**2)**9).coeff(x, 6))"
            ),
        )
    )

    integrand = _mul(
        _mul([Fraction(-3), Fraction(0), Fraction(1)], [Fraction(5), Fraction(2)]),
        [Fraction(5), Fraction(2)],
    )
    value = _integral(integrand, -1, 2)
    tasks.append(
        Task(
            id="definite-integral",
            question=(
                "Compute the exact value of the definite integral of (x^2 − 3)(2x + 5)^2 dx "
                "from x = −1 to x = 2. Give it as a fraction p/q in lowest terms (or an integer)."
            ),
            check=Rational(value.numerator, value.denominator),
            reference=(
                "from sympy import symbols, integrate\n"
                "x = symbols('x')\n"
                "print(integrate((x**2 - 3)*(2*x + 5)**2, (x, -1, 2)))"
            ),
        )
    )

    tasks.append(
        Task(
            id="sum-of-primes",
            question="What is the sum of all prime numbers below 3,000,000?",
            check=Integer(sum(_sieve(3_000_000))),
            reference="from sympy import primerange\nprint(sum(primerange(2, 3_000_000)))",
        )
    )

    tasks.append(
        Task(
            id="nth-prime",
            question="What is the 7,777th prime number (counting 2 as the 1st)?",
            check=Integer(_sieve(100_000)[7776]),
            reference="from sympy import prime\nprint(prime(7777))",
        )
    )

    tasks.append(
        Task(
            id="distinct-partitions",
            question=(
                "In how many ways can 200 be written as a sum of distinct positive integers, "
                "where the order of the terms does not matter (200 itself counts as one way)?"
            ),
            check=Integer(_distinct_partitions(200)),
            reference=(
                "ways = [1] + [0] * 200\n"
                "for part in range(1, 201):\n"
                "    for total in range(200, part - 1, -1):\n"
                "        ways[total] += ways[total - part]\n"
                "print(ways[200])"
            ),
        )
    )

    tasks.append(
        Task(
            id="three-fixed-points",
            question=(
                "How many permutations of the numbers 1 to 11 leave exactly 3 of the numbers "
                "in their original position?"
            ),
            check=Integer(math.comb(11, 3) * _derangements(8)),
            reference=(
                "from itertools import permutations\n"
                "from math import comb\n"
                "d8 = sum(1 for p in permutations(range(8)) if all(p[i] != i for i in range(8)))\n"
                "print(comb(11, 3) * d8)"
            ),
        )
    )

    tasks.append(
        Task(
            id="power-tower-mod",
            question="What is 7^(7^7) modulo 100,000,000 (that is, 10^8)?",
            check=Integer(pow(7, 7**7, 10**8)),
            reference="print(pow(7, 7**7, 10**8))",
        )
    )

    tasks.append(
        Task(
            id="coprime-pairs",
            question=(
                "How many ordered pairs (a, b) of integers with 1 ≤ a ≤ 600 and 1 ≤ b ≤ 600 "
                "have gcd(a, b) = 1?"
            ),
            check=Integer(
                sum(1 for a in range(1, 601) for b in range(1, 601) if math.gcd(a, b) == 1)
            ),
            reference=(
                "from sympy import totient\nprint(2 * sum(totient(n) for n in range(1, 601)) - 1)"
            ),
        )
    )

    # x^3 - 2x^2 + 5x - 7: by Vieta e1 = 2, e2 = 5, e3 = 7, and
    # sum 1/r^2 = (sum 1/r)^2 - 2 sum 1/(r s) = (e2/e3)^2 - 2 e1/e3.
    e1, e2, e3 = Fraction(2), Fraction(5), Fraction(7)
    reciprocal_squares = (e2 / e3) ** 2 - 2 * e1 / e3
    tasks.append(
        Task(
            id="root-reciprocal-squares",
            question=(
                "Let r1, r2, r3 be the three (complex) roots of x^3 − 2x^2 + 5x − 7 = 0. What is "
                "the exact value of 1/r1^2 + 1/r2^2 + 1/r3^2? Give it as a fraction p/q in "
                "lowest terms (or an integer)."
            ),
            check=Rational(reciprocal_squares.numerator, reciprocal_squares.denominator),
            reference=(
                "import numpy as np\n"
                "from fractions import Fraction\n"
                "roots = np.roots([1, -2, 5, -7])\n"
                "value = sum(1 / r**2 for r in roots).real\n"
                "print(Fraction(value).limit_denominator(10_000))"
            ),
        )
    )

    matrix = _matrix()
    tasks.append(
        Task(
            id="determinant-6x6",
            question=(
                "What is the determinant of this 6×6 integer matrix (given row by row)?\n"
                + "\n".join(str(row) for row in matrix)
            ),
            check=Integer(_determinant(matrix)),
            reference=(f"from sympy import Matrix\nprint(Matrix({matrix!r}).det())"),
        )
    )

    terms = 10
    exp = [Fraction(1, math.factorial(k)) for k in range(terms)]
    sin2 = [
        Fraction((-1) ** (k // 2) * 2**k, math.factorial(k)) if k % 2 else Fraction(0)
        for k in range(terms)
    ]
    geometric = [Fraction(1)] * terms
    coefficient = _series(_series(exp, sin2), geometric)[7]
    tasks.append(
        Task(
            id="series-coefficient",
            question=(
                "What is the coefficient of x^7 in the Maclaurin series (Taylor series at 0) of "
                "e^x · sin(2x) / (1 − x)? Give it as an exact fraction p/q in lowest terms."
            ),
            check=Rational(coefficient.numerator, coefficient.denominator),
            reference=(
                "from sympy import symbols, exp, sin, series\n"
                "x = symbols('x')\n"
                "print(series(exp(x) * sin(2*x) / (1 - x), x, 0, 8).removeO().coeff(x, 7))"
            ),
        )
    )

    return Suite(name="compute", description=DESCRIPTION, tasks=tuple(tasks))

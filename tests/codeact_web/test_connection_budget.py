"""make run sizes its workers to the database it finds, so their pools fit."""

from codeact_web.database import fitting_concurrency


def test_it_keeps_the_wanted_threads_when_the_pools_fit():
    # 2 workers x (32 + 4) + 25 = 97 of 100 - 3 reserved: just fits
    assert fitting_concurrency(32, workers=2, max_connections=100, reserved=3) == 32


def test_it_lowers_the_threads_until_every_pool_fits():
    # 4 workers x (32 + 4) + 25 = 169 > 97: 4 x (14 + 4) + 25 = 97
    threads = fitting_concurrency(32, workers=4, max_connections=100, reserved=3)
    assert threads == 14
    assert 4 * (threads + 4) + 25 <= 100 - 3


def test_it_counts_connections_others_already_hold_and_never_goes_below_one():
    assert fitting_concurrency(32, workers=2, max_connections=100, reserved=3, in_use=40) == 12
    assert fitting_concurrency(32, workers=4, max_connections=20, reserved=3) == 1

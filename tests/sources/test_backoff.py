"""Backoff: exponential ceiling, full jitter above a floor, reset, determinism."""

from __future__ import annotations

import random

import pytest

from daemon.sources.backoff import Backoff


def test_delays_stay_under_a_ceiling_that_doubles_up_to_the_max() -> None:
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    for seed in range(50):
        backoff = Backoff(0.5, 4.0, 2.0, rng=random.Random(seed))
        delays = [backoff.next() for _ in ceilings]
        assert all(backoff.floor_s <= d <= c for d, c in zip(delays, ceilings, strict=True)), delays
        assert backoff.attempts == len(ceilings)


def test_jitter_spreads_delays_over_the_whole_range() -> None:
    delays = []
    for seed in range(400):
        backoff = Backoff(1.0, 1.0, rng=random.Random(seed))
        delays.append(backoff.next())
    assert min(delays) < 0.1 and max(delays) > 0.9  # full jitter, not "ceiling +- a little"
    assert all(d >= 0.05 for d in delays)


def test_reset_starts_from_the_initial_ceiling() -> None:
    backoff = Backoff(0.5, 30.0, rng=random.Random(2))
    for _ in range(10):
        backoff.next()
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.next() <= 0.5


def test_same_seed_same_delays() -> None:
    a = Backoff(rng=random.Random(42))
    b = Backoff(rng=random.Random(42))
    assert [a.next() for _ in range(20)] == [b.next() for _ in range(20)]


def test_many_attempts_never_overflow() -> None:
    backoff = Backoff(0.5, 30.0, 10.0, rng=random.Random(3))
    for _ in range(10_000):
        assert backoff.next() <= 30.0


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"initial_s": 0}, "initial_s must be > 0"),
        ({"initial_s": 2.0, "max_s": 1.0}, "max_s must be >= initial_s"),
        ({"factor": 0.5}, "factor must be >= 1"),
        ({"floor_s": 1.0}, "floor_s must be in"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Backoff(**kwargs)

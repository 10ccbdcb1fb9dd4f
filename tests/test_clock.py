"""Clocks: ReplayClock fires timers deterministically as replay time moves; LiveClock on the loop."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from daemon.clock import LiveClock, ReplayClock, TimerFn, next_boundary

MS = 1_000_000


def recorder(clock: ReplayClock | LiveClock, log: list[tuple[str, int, int]], name: str) -> TimerFn:
    """A timer callback that logs (name, time it was given, clock.now() while it runs)."""
    def fn(t: int) -> None:
        log.append((name, t, clock.now()))
    return fn


# --- ReplayClock: one-shot timers ------------------------------------------------------------------


def test_timers_fire_in_due_then_scheduling_order_with_now_at_due() -> None:
    clock = ReplayClock()
    clock.advance_to(0)
    log: list[tuple[str, int, int]] = []
    clock.call_at(30, recorder(clock, log, "c"))
    clock.call_at(10, recorder(clock, log, "a1"))
    clock.call_at(20, recorder(clock, log, "b"))
    clock.call_at(10, recorder(clock, log, "a2"))

    clock.advance_to(100)

    assert log == [("a1", 10, 10), ("a2", 10, 10), ("b", 20, 20), ("c", 30, 30)]
    assert clock.now() == 100


def test_advance_fires_every_timer_due_at_or_before_t_and_no_later_one() -> None:
    clock = ReplayClock()
    clock.advance_to(0)
    log: list[tuple[str, int, int]] = []
    for when in (5, 10, 11):
        clock.call_at(when, recorder(clock, log, str(when)))

    clock.advance_to(10)

    assert [name for name, _, _ in log] == ["5", "10"]
    assert clock.next_due() == 11


def test_cancelled_timer_never_fires() -> None:
    clock = ReplayClock()
    clock.advance_to(0)
    log: list[tuple[str, int, int]] = []
    handle = clock.call_at(10, recorder(clock, log, "x"))
    clock.call_at(20, recorder(clock, log, "y"))

    handle.cancel()
    clock.advance_to(100)

    assert [name for name, _, _ in log] == ["y"]


def test_next_due_skips_cancelled_timers() -> None:
    clock = ReplayClock()
    clock.advance_to(0)
    clock.call_at(10, lambda t: None).cancel()
    clock.call_at(20, lambda t: None)

    assert clock.next_due() == 20


def test_call_at_in_the_past_fires_at_the_next_advance() -> None:
    clock = ReplayClock()
    clock.advance_to(100)
    log: list[tuple[str, int, int]] = []

    clock.call_at(50, recorder(clock, log, "late"))
    assert log == []
    clock.advance_to(101)

    assert log == [("late", 100, 100)]


def test_timer_scheduled_inside_a_callback_fires_in_the_same_advance() -> None:
    clock = ReplayClock()
    clock.advance_to(0)
    log: list[tuple[str, int, int]] = []
    clock.call_at(10, lambda t: clock.call_at(t + 5, recorder(clock, log, "child")))

    clock.advance_to(20)

    assert log == [("child", 15, 15)]


def test_time_never_goes_backwards() -> None:
    clock = ReplayClock()
    clock.advance_to(100)
    log: list[tuple[str, int, int]] = []
    clock.call_at(150, recorder(clock, log, "x"))

    clock.advance_to(50)
    seen = clock.now()
    clock.advance_to(150)

    assert seen == 100
    assert log == [("x", 150, 150)]


def test_first_advance_does_not_go_back_before_start() -> None:
    clock = ReplayClock(start_ns=1_000)

    clock.advance_to(500)

    assert clock.now() == 1_000


def test_started_only_after_first_advance() -> None:
    clock = ReplayClock()
    assert not clock.started

    clock.advance_to(7)

    assert clock.started
    assert clock.now() == 7


# --- ReplayClock: periodic timers -------------------------------------------------------------------


def test_periodic_timer_fires_on_period_multiples_from_first_boundary_at_or_after_first_advance() -> None:
    clock = ReplayClock()
    log: list[tuple[str, int, int]] = []
    clock.call_every(100, recorder(clock, log, "p"))

    clock.advance_to(250)
    clock.advance_to(520)

    assert [t for _, t, _ in log] == [300, 400, 500]
    assert all(t == now for _, t, now in log)


def test_periodic_timer_fires_at_first_advance_when_it_is_on_a_boundary() -> None:
    clock = ReplayClock()
    log: list[tuple[str, int, int]] = []
    clock.call_every(100, recorder(clock, log, "p"))

    clock.advance_to(200)
    clock.advance_to(300)

    assert [t for _, t, _ in log] == [200, 300]


def test_periodic_timer_scheduled_after_start_fires_on_the_grid() -> None:
    clock = ReplayClock()
    clock.advance_to(130)
    log: list[tuple[str, int, int]] = []

    clock.call_every(50, recorder(clock, log, "p"))
    clock.advance_to(300)

    assert [t for _, t, _ in log] == [150, 200, 250, 300]


def test_periodic_timer_catches_up_over_a_long_gap() -> None:
    clock = ReplayClock()
    clock.advance_to(0)
    log: list[tuple[str, int, int]] = []
    clock.call_every(10, recorder(clock, log, "p"))

    clock.advance_to(55)

    assert [t for _, t, _ in log] == [10, 20, 30, 40, 50]


def test_cancelled_periodic_timer_stops() -> None:
    clock = ReplayClock()
    clock.advance_to(0)
    log: list[tuple[str, int, int]] = []
    handle = clock.call_every(10, recorder(clock, log, "p"))
    clock.advance_to(25)

    handle.cancel()
    clock.advance_to(100)

    assert [t for _, t, _ in log] == [10, 20]


def test_periodic_timer_can_cancel_itself_from_its_callback() -> None:
    clock = ReplayClock()
    clock.advance_to(0)
    fired: list[int] = []

    def fn(t: int) -> None:
        fired.append(t)
        if len(fired) == 2:
            handle.cancel()

    handle = clock.call_every(10, fn)
    clock.advance_to(100)

    assert fired == [10, 20]


def test_periodic_and_one_shot_due_together_fire_in_scheduling_order() -> None:
    clock = ReplayClock()
    clock.advance_to(0)
    log: list[tuple[str, int, int]] = []
    clock.call_every(10, recorder(clock, log, "p"))
    clock.call_at(10, recorder(clock, log, "once"))

    clock.advance_to(10)

    assert [name for name, _, _ in log] == ["p", "once"]


@pytest.mark.parametrize("period", [0, -5])
def test_non_positive_period_is_refused(period: int) -> None:
    with pytest.raises(ValueError, match="period"):
        ReplayClock().call_every(period, lambda t: None)


def test_next_boundary_is_strictly_after() -> None:
    assert [next_boundary(t, 10) for t in (0, 9, 10, 11)] == [10, 10, 20, 20]


# --- LiveClock ---------------------------------------------------------------------------------------


async def test_live_call_at_fires_near_its_wall_time() -> None:
    clock = LiveClock()
    done = asyncio.Event()
    fired: list[tuple[int, int]] = []
    when = clock.now() + 50 * MS

    def fn(t: int) -> None:
        fired.append((t, clock.now()))
        done.set()

    clock.call_at(when, fn)
    await asyncio.wait_for(done.wait(), timeout=1.0)

    (given, at), = fired
    assert given == when
    assert when - 5 * MS <= at <= when + 100 * MS


async def test_live_cancelled_call_at_never_fires() -> None:
    clock = LiveClock()
    fired: list[int] = []

    clock.call_at(clock.now() + 20 * MS, fired.append).cancel()
    await asyncio.sleep(0.06)

    assert fired == []


async def test_live_call_every_fires_repeatedly_on_the_grid_until_cancelled() -> None:
    clock = LiveClock()
    period = 30 * MS
    fired: list[int] = []

    handle = clock.call_every(period, fired.append)
    await asyncio.sleep(0.2)
    handle.cancel()
    count = len(fired)
    await asyncio.sleep(0.07)

    assert count >= 3
    assert len(fired) == count
    assert all(t % period == 0 for t in fired)
    assert all(b - a == period for a, b in itertools.pairwise(fired))


async def test_live_call_every_refuses_non_positive_period() -> None:
    with pytest.raises(ValueError, match="period"):
        LiveClock().call_every(0, lambda t: None)


def test_a_quiet_periodic_timer_skips_the_boundaries_of_a_long_gap() -> None:
    clock = ReplayClock()
    fired: list[int] = []
    clock.call_every(100, fired.append, quiet_after_ns=250)

    clock.advance_to(1_000)
    clock.advance_to(10**15)

    assert fired == [1_000, 1_100, 1_200], "boundaries up to 250 ns after the last advance, then none"
    clock.advance_to(10**15 + 150)
    assert fired[3:] == [10**15 + 100]


def test_a_quiet_periodic_timer_fires_every_boundary_while_advances_keep_coming() -> None:
    clock = ReplayClock()
    fired: list[int] = []
    clock.call_every(100, fired.append, quiet_after_ns=250)

    for t in range(0, 1_001, 200):
        clock.advance_to(t)

    assert fired == list(range(0, 1_001, 100))

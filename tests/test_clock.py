"""Clocks: ReplayClock fires timers deterministically as replay time moves; LiveClock on the loop."""

from __future__ import annotations

import asyncio
import itertools
import time

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


# --- LiveClock: pin and release ----------------------------------------------------------------------

HOUR = 3_600_000 * MS


def test_pin_fires_the_timers_due_at_or_before_t_in_order_before_returning() -> None:
    clock = LiveClock()
    base = clock.now() + HOUR  # far ahead of the wall clock: only the pin can fire them
    log: list[tuple[str, int, int]] = []
    clock.call_at(base + 30, recorder(clock, log, "c"))
    clock.call_at(base + 10, recorder(clock, log, "a1"))
    clock.call_at(base + 20, recorder(clock, log, "b"))
    clock.call_at(base + 10, recorder(clock, log, "a2"))
    clock.call_at(base + 31, recorder(clock, log, "later"))

    clock.pin(base + 30)

    assert log == [("a1", base + 10, base + 10), ("a2", base + 10, base + 10), ("b", base + 20, base + 20),
                   ("c", base + 30, base + 30)]
    assert clock.now() == base + 30
    assert clock.next_due() == base + 31
    clock.release()


def test_pin_holds_now_at_the_receive_time_while_the_wall_clock_moves_on() -> None:
    clock = LiveClock()
    t = clock.now()
    time.sleep(0.002)

    clock.pin(t)
    held = [clock.now(), clock.now()]
    clock.release()

    assert held == [t, t]
    assert clock.now() >= t + 2 * MS, "released: wall time again"


def test_after_release_now_never_goes_below_the_last_pinned_time() -> None:
    clock = LiveClock()
    t = clock.now() + HOUR

    clock.pin(t)
    clock.release()
    after = clock.now()
    clock.pin(t - 10 * 1_000 * MS)  # an earlier receive time (another connection's message)
    repinned = clock.now()
    clock.release()

    assert after == t and repinned == t and clock.now() == t


def test_a_timer_between_two_pins_fires_on_the_second_with_its_due_time() -> None:
    clock = LiveClock()
    base = clock.now() + HOUR
    log: list[tuple[str, int, int]] = []
    clock.pin(base)
    clock.call_at(base + 5, recorder(clock, log, "x"))
    clock.release()

    clock.pin(base + 4)
    first = list(log)
    clock.release()
    clock.pin(base + 9)
    now_after = clock.now()
    clock.release()

    assert first == []
    assert log == [("x", base + 5, base + 5)]
    assert now_after == base + 9


def test_a_timer_scheduled_in_the_past_while_pinned_fires_at_the_pinned_time_on_the_next_pin() -> None:
    clock = LiveClock()
    base = clock.now() + HOUR
    log: list[tuple[str, int, int]] = []
    clock.pin(base)
    clock.call_at(base - 100, recorder(clock, log, "late"))
    clock.release()

    clock.pin(base + 1)
    clock.release()

    assert log == [("late", base, base)]


def test_a_callback_fired_by_a_pin_sees_its_due_time_and_later_code_sees_the_pinned_time() -> None:
    clock = LiveClock()
    base = clock.now() + HOUR
    seen: list[int] = []
    clock.call_at(base + 1, lambda t: seen.append(clock.now()))

    clock.pin(base + 50)
    seen.append(clock.now())
    clock.release()

    assert seen == [base + 1, base + 50]


def test_pins_drive_periodic_timers_on_their_grid() -> None:
    clock = LiveClock()
    period = 10 * MS
    base = (clock.now() + HOUR) // period * period
    clock.pin(base)
    fired: list[int] = []
    clock.call_every(period, fired.append)
    clock.release()

    clock.pin(base + 35 * MS)
    clock.release()

    assert fired == [base + 10 * MS, base + 20 * MS, base + 30 * MS]


async def test_a_timer_a_pin_fired_does_not_fire_again_on_the_loop() -> None:
    clock = LiveClock()
    fired: list[int] = []
    due = clock.now() + 20 * MS
    clock.call_at(due, fired.append)

    clock.pin(due)  # a message received at the timer's due time comes first
    clock.release()
    await asyncio.sleep(0.06)

    assert fired == [due]


async def test_a_timer_due_after_the_pinned_time_waits_for_the_wall_clock() -> None:
    clock = LiveClock()
    done = asyncio.Event()
    fired: list[tuple[int, int]] = []
    now = clock.now()
    when = now + 30 * MS

    def fn(t: int) -> None:
        fired.append((t, clock.now()))
        done.set()

    clock.call_at(when, fn)
    clock.pin(now)
    clock.release()
    on_pin = list(fired)
    await asyncio.wait_for(done.wait(), timeout=2.0)

    assert on_pin == []
    assert fired == [(when, when)]


async def test_no_timer_fires_on_the_loop_while_a_message_is_pinned() -> None:
    clock = LiveClock()
    fired: list[int] = []
    t = clock.now()
    due = t + 10 * MS
    clock.call_at(due, fired.append)

    clock.pin(t)
    await asyncio.sleep(0.04)  # the wall clock passes the timer, but time is held at t
    held = list(fired)
    clock.pin(due)  # the next message, at a later receive time, fires it
    clock.release()

    assert held == [] and fired == [due]


async def test_a_timer_that_came_due_while_pinned_fires_on_the_loop_after_release() -> None:
    clock = LiveClock()
    fired: list[int] = []
    t = clock.now()
    due = t + 10 * MS
    clock.call_at(due, fired.append)

    clock.pin(t)
    await asyncio.sleep(0.03)
    clock.release()
    await asyncio.sleep(0.1)

    assert fired == [due]


async def test_a_periodic_timer_scheduled_after_a_quiet_spell_starts_from_now() -> None:
    clock = LiveClock()
    await asyncio.sleep(0.1)  # the clock is not pinned by any message meanwhile
    fired: list[int] = []
    scheduled_at = clock.now()

    handle = clock.call_every(20 * MS, fired.append)
    await asyncio.sleep(0.005)
    handle.cancel()

    assert [t for t in fired if t <= scheduled_at] == []

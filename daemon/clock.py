"""Clocks: the one source of time (DESIGN rule 2), and the timers scheduled through it.

`ReplayClock` is driven by recorded receive times: `advance_to(t)` fires every timer due at or
before t, in (due time, scheduling order), with `now()` equal to each timer's due time while it
runs, so replays are deterministic. `LiveClock` reads wall time and schedules on the asyncio loop.
Timer callbacks receive the time they fire at, in ns.

A periodic timer may say that it does nothing once the clock has been quiet for `quiet_after_ns`
(no advance for that long: a feed gap, a weekend, two files days apart). The replay clock then
skips those boundaries instead of firing each one, so a gap costs nothing; a live clock fires them
and the callback ignores them itself.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol

TimerFn = Callable[[int], None]


class TimerHandle(Protocol):
    """What scheduling a timer returns."""

    def cancel(self) -> None:
        """Stop the timer; a cancelled timer never fires again."""


class Clock(Protocol):
    """What the core may ask of time."""

    def now(self) -> int:
        """The current time in ns since the epoch."""

    def call_at(self, when_ns: int, fn: TimerFn) -> TimerHandle:
        """Call fn(when_ns) at that time (at once if it has passed)."""

    def call_every(self, period_ns: int, fn: TimerFn, quiet_after_ns: int | None = None) -> TimerHandle:
        """Call fn(t) at every multiple t of period_ns from now on."""


class _Timer:
    __slots__ = ("cancelled", "fn", "period", "quiet_after", "when")

    def __init__(self, when: int, fn: TimerFn, period: int = 0, quiet_after: int | None = None) -> None:
        self.when = when
        self.fn = fn
        self.period = period
        self.quiet_after = quiet_after
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def next_boundary(t: int, period: int) -> int:
    """The first multiple of period strictly after t: periodic timers fire on a fixed grid."""
    return (t // period + 1) * period


class ReplayClock:
    """Time is whatever the replay says it is; timers fire as the replay moves past them."""

    def __init__(self, start_ns: int = 0) -> None:
        self._now = start_ns
        self._heap: list[tuple[int, int, _Timer]] = []
        self._seq = itertools.count()
        self._started = False
        self._pending: list[_Timer] = []

    def now(self) -> int:
        """The receive time of the event being replayed (or of the timer firing)."""
        return self._now

    @property
    def started(self) -> bool:
        """False until the first event has set the time; periodic timers wait for it."""
        return self._started

    def call_at(self, when_ns: int, fn: TimerFn) -> _Timer:
        """Fire fn at when_ns, or at the next advance if that time has passed."""
        timer = _Timer(max(when_ns, self._now), fn)
        heapq.heappush(self._heap, (timer.when, next(self._seq), timer))
        return timer

    def call_every(self, period_ns: int, fn: TimerFn, quiet_after_ns: int | None = None) -> _Timer:
        """Fire fn on every multiple of period_ns, from the first boundary at or after the first event."""
        if period_ns <= 0:
            raise ValueError(f"timer period must be > 0 ns, got {period_ns}")
        timer = _Timer(next_boundary(self._now, period_ns) if self._started else -1, fn, period_ns,
                       quiet_after_ns)
        if self._started:
            heapq.heappush(self._heap, (timer.when, next(self._seq), timer))
        else:
            self._pending.append(timer)
        return timer

    def next_due(self) -> int | None:
        """When the next live timer is due, or None."""
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def advance_to(self, t: int) -> None:
        """Move time forward to t, firing every timer due at or before t. Time never goes back."""
        heap = self._heap
        if self._started and (not heap or heap[0][0] > t):
            if t > self._now:
                self._now = t
            return
        last_advance = self._now if self._started else t
        if not self._started:
            self._started = True
            self._now = max(self._now, t)
            for timer in self._pending:
                timer.when = next_boundary(t - 1, timer.period)
                heapq.heappush(self._heap, (timer.when, next(self._seq), timer))
            self._pending.clear()
        while heap and heap[0][0] <= t:
            when, _, timer = heapq.heappop(heap)
            if timer.cancelled:
                continue
            if timer.quiet_after is not None and when - last_advance > timer.quiet_after:
                # Quiet since the last advance: skip to the first boundary after t.
                timer.when = next_boundary(t, timer.period)
                heapq.heappush(heap, (timer.when, next(self._seq), timer))
                continue
            self._now = when
            timer.fn(when)
            if timer.period and not timer.cancelled:
                timer.when = when + timer.period
                heapq.heappush(heap, (timer.when, next(self._seq), timer))
        if t > self._now:
            self._now = t


class LiveClock(ReplayClock):
    """Wall time, with the replay clock's timer rules, so a live session and its replay agree.

    A timer fires on the loop once the wall clock reaches it, or earlier in event order: the live
    session calls `pin(ts_recv)` before routing each received message, which fires every timer due
    at or before that receive time first (exactly what a replay of the recording does) and holds
    `now()` at ts_recv until `release()`, so what the message causes is stamped as in the replay.
    Between messages `now()` is the wall time (never behind the last pinned time).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(time.time_ns())
        self._started = True  # live timers run from now on, not from the first event
        self._loop = loop
        self._pinned = False
        self._holding = False
        self._wake: asyncio.TimerHandle | None = None
        self._wake_at: int | None = None
        self._pump_missed = False

    def now(self) -> int:
        """The pinned receive time (or the firing timer's due time), else wall time in ns."""
        if self._pinned:
            return self._now
        wall = time.time_ns()
        return wall if wall > self._now else self._now

    def pin(self, t: int) -> None:
        """Fire the timers due at or before t, then hold now() at t until `release()`."""
        self._holding = True
        self.advance_to(t)

    def release(self) -> None:
        """Let now() follow the wall clock again (and fire, on the loop, a timer that came due meanwhile)."""
        self._holding = False
        self._pinned = False
        if self._pump_missed:
            self._pump_missed = False
            self._arm()

    def advance_to(self, t: int) -> None:
        """Fire every timer due at or before t (now() reads each one's due time), then re-arm the loop."""
        self._pinned = True
        try:
            super().advance_to(t)
        finally:
            self._pinned = self._holding
        self._arm()

    def call_at(self, when_ns: int, fn: TimerFn) -> _Timer:
        """Fire fn(when_ns) once the wall clock (or a pinned receive time) reaches when_ns."""
        timer = super().call_at(when_ns, fn)
        self._arm()
        return timer

    def call_every(self, period_ns: int, fn: TimerFn, quiet_after_ns: int | None = None) -> _Timer:
        """Fire fn(t) on every multiple t of period_ns from now on (wall time, when not pinned)."""
        if not self._pinned:
            self._now = self.now()  # time has moved on since the last message: start from now
        timer = super().call_every(period_ns, fn, quiet_after_ns)
        self._arm()
        return timer

    def _arm(self) -> None:
        """Schedule one loop wake-up for the earliest due timer (none without a running loop yet)."""
        due = self.next_due()
        if due == self._wake_at and self._wake is not None:
            return
        if self._wake is not None:
            self._wake.cancel()
            self._wake = self._wake_at = None
        if due is None:
            return
        try:
            loop = self._loop or asyncio.get_running_loop()
        except RuntimeError:
            return  # armed by the next call made on a running loop
        self._wake = loop.call_later(max(0.0, (due - time.time_ns()) / 1e9), self._pump)
        self._wake_at = due

    def _pump(self) -> None:
        self._wake = self._wake_at = None
        if self._holding:
            self._pump_missed = True  # re-armed by release()
        else:
            self.advance_to(max(time.time_ns(), self._now))

    def start(self) -> None:
        """Arm the loop for timers scheduled before it ran."""
        self._arm()

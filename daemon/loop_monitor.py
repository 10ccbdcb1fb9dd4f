"""LoopMonitor: event-loop lag, and systemd's watchdog pinged from the loop itself.

A task sleeps `tick_s` and measures how late it wakes: that lateness is the loop's lag (a long callback,
a blocking call, GC), kept as a histogram for `/metrics` and as the last value for `/health`. The same
task sends WATCHDOG=1 every half watchdog interval, so a loop that is stuck sends nothing and systemd
restarts the service (`WatchdogSec=` in the unit).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog

from daemon.latency import LatencyHistogram
from daemon.sdnotify import Notifier

log = structlog.get_logger("depthd.loop")

LAG_BUCKETS_S = (1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SLOW_LAG_S = 0.25  # a wake-up this late is logged


class LoopMonitor:
    """Measures event-loop lag on a timer and pings systemd's watchdog from the loop."""

    def __init__(self, notifier: Notifier | None = None, tick_s: float = 0.1,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.notifier = notifier
        interval = notifier.watchdog_interval_s if notifier is not None else None
        self.watchdog_interval_s = interval
        self.tick_s = min(tick_s, interval / 2) if interval else tick_s
        self.lag = LatencyHistogram(LAG_BUCKETS_S)
        self.last_lag_s = 0.0
        self.max_lag_s = 0.0
        self.pings = 0
        self._now = now
        self.last_tick = now()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start measuring (and pinging) on the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-monitor")

    async def stop(self) -> None:
        """Stop the task."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def seconds_since_tick(self) -> float:
        """How long ago the monitor last woke: above a few ticks, the loop is stuck (or the monitor died)."""
        return self._now() - self.last_tick

    async def _run(self) -> None:
        next_ping = 0.0
        interval, notifier = self.watchdog_interval_s, self.notifier
        while True:
            t0 = self._now()
            await asyncio.sleep(self.tick_s)
            t1 = self.last_tick = self._now()
            lag = max(0.0, t1 - t0 - self.tick_s)
            self.last_lag_s = lag
            self.max_lag_s = max(self.max_lag_s, lag)
            self.lag.observe_ns(int(lag * 1e9))
            if lag >= SLOW_LAG_S:
                log.warning("event_loop_lag", lag_s=round(lag, 3))
            if interval and notifier is not None and t1 >= next_ping:
                notifier.watchdog()
                self.pings += 1
                next_ping = t1 + interval

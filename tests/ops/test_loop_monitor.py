"""LoopMonitor: lag measured, WATCHDOG=1 from the loop, none while the loop is blocked."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from daemon.loop_monitor import LoopMonitor
from daemon.sdnotify import Notifier
from tests.ops.notify_socket import NotifySocket


async def test_pings_while_the_loop_runs_and_none_while_it_is_blocked(tmp_path: Path) -> None:
    sock = NotifySocket(tmp_path / "notify")
    mon = LoopMonitor(Notifier({"NOTIFY_SOCKET": sock.name, "WATCHDOG_USEC": "200000"}))  # ping every 0.1 s
    mon.start()
    await asyncio.sleep(0.6)
    before = len(sock.messages("WATCHDOG=1"))
    assert before >= 4, "pings every half watchdog interval"
    blocked_at = time.monotonic()
    time.sleep(0.8)  # the loop is stuck: a blocking call
    unblocked_at = time.monotonic()
    await asyncio.sleep(0.3)
    pings = sock.messages("WATCHDOG=1")
    assert not [t for t in pings if blocked_at < t < unblocked_at], "no ping while the loop was blocked"
    assert len(pings) > before, "pings again once the loop runs"
    assert mon.max_lag_s >= 0.6 and mon.lag.count >= 5
    await mon.stop()
    sock.close()


async def test_without_systemd_it_only_measures() -> None:
    mon = LoopMonitor(Notifier({}), tick_s=0.01)
    mon.start()
    await asyncio.sleep(0.1)
    await mon.stop()
    assert mon.pings == 0 and mon.lag.count >= 3 and mon.seconds_since_tick() < 1

"""Health and readiness of a running session, for `/health` and `/ready` (and systemd's READY=1).

- health: the process answers and its event loop is responsive (the loop monitor woke recently and
  was not badly late). A failing health check means "restart me".
- ready: the session can do its job: every feed connected (live), every book LIVE, the broker connected,
  the journal recovered. A failing readiness check lists what is missing; nothing is restarted for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from daemon.app import TradingPath
from daemon.book import BookState
from daemon.loop_monitor import LoopMonitor
from daemon.venues.health import FeedHealth

STUCK_AFTER_S = 5.0  # the loop monitor silent this long: the loop is stuck
MAX_LAG_S = 1.0  # the last wake-up later than this: not healthy


@dataclass
class Probes:
    """The checks of one session; each returns (ok, details)."""

    path: TradingPath
    loop: LoopMonitor
    feeds: list[FeedHealth] = field(default_factory=list)
    broker_connected: Callable[[], bool] | None = None
    journal_recovered: Callable[[], bool] | None = None

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Alive, and the event loop responsive."""
        silent = self.loop.seconds_since_tick()
        ok = silent < STUCK_AFTER_S and self.loop.last_lag_s < MAX_LAG_S
        return ok, {"ok": ok, "loop_lag_s": round(self.loop.last_lag_s, 6),
                    "loop_max_lag_s": round(self.loop.max_lag_s, 6), "loop_silent_s": round(silent, 3)}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """Feeds connected, books LIVE, broker connected, journal recovered; `missing` says what is not."""
        missing: list[str] = []
        for feed in self.feeds:
            if feed.live and not feed.connected:
                missing.append(f"feed {feed.venue} not connected")
        books = {s: str(sync.state) for s, sync in sorted(self.path.engine.syncs.items())}
        missing += [f"book {s} {state}" for s, state in books.items() if state != str(BookState.LIVE)]
        if not books:
            missing.append("no book yet")
        broker = self.broker_connected() if self.broker_connected is not None else True
        if not broker:
            missing.append("broker not connected")
        journal = self.journal_recovered() if self.journal_recovered is not None else None
        if journal is False:
            missing.append("journal not recovered")
        ok = not missing
        return ok, {"ok": ok, "missing": missing, "books": books, "broker_connected": broker,
                    "journal_recovered": journal, "feeds": {f.venue: f.connected for f in self.feeds if f.live}}

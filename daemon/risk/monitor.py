"""RiskMonitor: gathers the facts the triggers judge and moves the trading state accordingly.

The engine tells it of market events (per-symbol feed time and venue/receive skew), book state
changes, orders sent, broker rejects and acks, and fills; at every evaluation (the sampling tick,
and right after a fill or a broker error) it builds RiskFacts, asks the TriggerSet what state they
want and hands that to the TradingStateMachine. PnL is marked only at the mid of a LIVE book: while
a symbol with a position has no LIVE book, the daily loss is unknown (and the book-invalid trigger
speaks instead). The daily PnL restarts at `reset_time` in `reset_zone`, from the first valid mark
after it. An operator's resume acknowledges what nothing else could clear while halted (the run of
broker errors, a fill's breach, the drawdown's peak) and releases triggers whose condition is gone;
a condition that still holds fires again at once.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Callable, Mapping
from zoneinfo import ZoneInfo

from daemon.clock import Clock
from daemon.config import RiskSettings
from daemon.instruments import Instrument
from daemon.portfolio import Portfolio
from daemon.risk.gate import RiskGate
from daemon.risk.state import TradingStateMachine
from daemon.risk.triggers import RiskFacts, TriggerSet
from daemon.venues.health import FeedHealth


def day_start(now_ns: int, reset_time: str, zone: str) -> int:
    """The latest reset instant (ns since epoch) at or before now: reset_time (HH:MM) local to zone.

    The wall time is what counts across a DST change (a day may last 23 or 25 hours); a reset time
    that happens twice (clocks going back) counts at its first occurrence; one that does not happen
    (clocks going forward) is read with the offset before the jump (02:30 in a 02:00 -> 03:00 gap is
    03:30 of the new offset).
    """
    tz = ZoneInfo(zone)
    hh, mm = (int(x) for x in reset_time.split(":"))
    now_s = now_ns // 1_000_000_000  # whole seconds: a reset instant is a whole minute, so this is exact
    local = dt.datetime.fromtimestamp(now_s, tz)
    at = dt.time(hh, mm)
    start = int(dt.datetime.combine(local.date(), at, tz).timestamp())
    if start > now_s:
        start = int(dt.datetime.combine(local.date() - dt.timedelta(days=1), at, tz).timestamp())
    return start * 1_000_000_000


class RiskMonitor:
    """Facts for the triggers, and the link from triggers to trading state."""

    def __init__(self, settings: RiskSettings, clock: Clock, machine: TradingStateMachine, gate: RiskGate,
                 portfolio: Portfolio, instrument: Callable[[str], Instrument],
                 live_books: Callable[[], Mapping[str, bool]],
                 broker_connected: Callable[[], bool] = lambda: True) -> None:
        self.settings = settings
        self.clock = clock
        self.machine = machine
        self.gate = gate
        self.portfolio = portfolio
        self._instrument = instrument
        self._live_books = live_books
        self._broker_connected = broker_connected
        self.triggers = TriggerSet(settings.triggers)
        self.last_event: dict[str, int] = {}
        self.skew_ns: dict[str, int] = {}
        self.not_live_since: dict[str, int] = {}
        self._day_start: int | None = None
        self._day_equity: float | None = None  # None: the day's opening mark is still to be taken
        self._resumes_seen = machine.resumes
        self._peak: float | None = None
        self.broker_errors = 0
        self._sent: deque[int] = deque()
        self._rejected: deque[int] = deque()
        self.fill_breach: str | None = None
        self.last_facts = RiskFacts()
        self.feeds: list[FeedHealth] = []  # the venue feeds' health (connection, untradeable symbols)

    def reload(self, settings: RiskSettings) -> None:
        """New trigger settings (SIGHUP): triggers still configured keep their fired state and counts."""
        old = self.triggers
        self.settings = settings
        self.triggers = TriggerSet(settings.triggers)
        self.triggers.fire_counts = old.fire_counts
        self.triggers.fired = {name: f for name, f in old.fired.items() if name in self.triggers.names}

    # --- what the engine reports -----------------------------------------------------------------

    def on_market(self, symbol: str, ts_recv: int, ts_venue: int) -> None:
        """A market event of the symbol arrived (receive and venue time)."""
        if symbol not in self.last_event:  # not LIVE until its first snapshot says so
            self.not_live_since[symbol] = ts_recv
        self.last_event[symbol] = ts_recv
        self.skew_ns[symbol] = ts_recv - ts_venue  # signed; its size is judged

    def watch_broker(self, connected: Callable[[], bool]) -> None:
        """Judge this broker's connection from now on (a live gateway replacing the paper broker)."""
        self._broker_connected = connected

    def register(self, symbol: str, ts: int) -> None:
        """A feed subscribed to the symbol at ts: from now on its silence and a missing book count,
        even if it never sends a message."""
        if symbol not in self.last_event:
            self.last_event[symbol] = ts
            self.not_live_since.setdefault(symbol, ts)

    def on_book_state(self, symbol: str, live: bool, ts: int) -> None:
        """The symbol's book became LIVE, or stopped being LIVE, at ts."""
        if live:
            self.not_live_since.pop(symbol, None)
        else:
            self.not_live_since.setdefault(symbol, ts)

    def on_order_sent(self, ts: int) -> None:
        """An order left for the broker."""
        self._sent.append(ts)

    def on_broker_reject(self, ts: int) -> None:
        """The broker refused an order (counts toward consecutive errors and the reject rate)."""
        self.broker_errors += 1
        self._rejected.append(ts)
        self.evaluate(ts)

    def on_broker_ok(self) -> None:
        """An ack or a fill: the broker is working; the run of errors ends."""
        self.broker_errors = 0

    def on_fill(self, symbol: str, ts: int) -> None:
        """After the portfolio took a fill: a position or notional over its limit is a breach; the triggers
        are judged at once (a fill also moves the daily PnL and drawdown)."""
        self.on_broker_ok()
        lim = self.gate.limits(symbol)  # the gate's own limits, in lots
        lots = abs(self.portfolio.position(symbol))
        qty = lots * lim.lot
        px = self.portfolio.avg_price(symbol) or 0.0
        if lots > lim.max_position:
            self.fill_breach = (f"{symbol}: position {qty:g} after a fill exceeds max_position "
                                f"{lim.max_position * lim.lot:g}")
        elif qty * px > lim.max_notional:
            self.fill_breach = (f"{symbol}: position notional {qty * px:.2f} after a fill exceeds max_notional "
                                f"{lim.max_notional:.2f}")
        else:
            self.fill_breach = None
        self.evaluate(ts)

    # --- evaluation ------------------------------------------------------------------------------

    def facts(self, now: int) -> RiskFacts:
        """The facts of this moment."""
        f = RiskFacts(fill_breach=self.fill_breach, broker_errors=self.broker_errors,
                      model_problem=self.gate.model_problem, broker_connected=self._broker_connected())
        equity = self.portfolio.equity()
        dl = self.settings.triggers.daily_loss
        start = day_start(now, dl.reset_time, dl.reset_zone)
        if start != self._day_start:
            self._day_start = start
            self._day_equity = None
        live = self._live_books()
        blind = [s for s in self.portfolio.open_symbols() if not live.get(s, False)]
        if not blind:  # every position is marked at the mid of a LIVE book
            if self._day_equity is None:  # the day opens at the first valid mark after the reset
                self._day_equity = equity
            f.daily_pnl = equity - self._day_equity
            self._peak = equity if self._peak is None else max(self._peak, equity)
            f.drawdown = self._peak - equity
        window = self.settings.triggers.reject_rate.window_ms * 1_000_000
        for q in (self._sent, self._rejected):
            while q and q[0] <= now - window:
                q.popleft()
        if len(self._sent) >= self.settings.triggers.reject_rate.min_orders:
            f.reject_rate = len(self._rejected) / len(self._sent)
        for sym, last in self.last_event.items():
            ms = (now - last) / 1e6
            if ms > f.feed_stale_ms:
                f.feed_stale_ms, f.worst["feed"] = ms, sym
        for sym, since in self.not_live_since.items():
            ms = (now - since) / 1e6
            if ms > f.book_invalid_ms:
                f.book_invalid_ms, f.worst["book"] = ms, sym
        for sym, skew in self.skew_ns.items():
            if abs(skew) / 1e6 > f.clock_skew_ms:
                f.clock_skew_ms, f.worst["skew"] = abs(skew) / 1e6, sym
        for feed in self.feeds:
            problem = feed.problem(now)
            if problem is not None:
                f.feed_problem = problem
                break
        return f

    def _acknowledge_resume(self, now: int) -> None:
        """An operator resumed: the facts that only an operator can clear are cleared (the run of
        broker errors, a fill's breach, the drawdown's peak: trading is halted, so none of them could
        clear on its own), and every trigger whose condition no longer holds is released at once."""
        self._resumes_seen = self.machine.resumes
        self.broker_errors = 0
        self.fill_breach = None
        self._peak = None
        self.triggers.release(self.facts(now))

    def evaluate(self, now: int) -> None:
        """Judge the facts and move the trading state if the triggers want it."""
        if self.machine.resumes != self._resumes_seen:
            self._acknowledge_resume(now)
        facts = self.last_facts = self.facts(now)
        wanted, reason, by = self.triggers.evaluate(facts, now)
        self.machine.from_triggers(wanted, reason, by, flatten=self.settings.flatten_on_halt)

    def status(self) -> dict[str, object]:
        """For /status and report.json: the state, the fired triggers and the last facts."""
        f = self.last_facts
        return {"state": str(self.machine.state), "fired": self.triggers.status(),
                "facts": {"daily_pnl": f.daily_pnl, "drawdown": f.drawdown, "reject_rate": f.reject_rate,
                          "broker_errors": f.broker_errors, "feed_stale_ms": round(f.feed_stale_ms, 3),
                          "book_invalid_ms": round(f.book_invalid_ms, 3), "clock_skew_ms": round(f.clock_skew_ms, 3),
                          "model_problem": f.model_problem, "fill_breach": f.fill_breach,
                          "broker_connected": f.broker_connected, "feed_problem": f.feed_problem}}

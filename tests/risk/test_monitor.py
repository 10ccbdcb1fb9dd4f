"""RiskMonitor: the facts the triggers judge, measured from engine events, and the trading state they move.

Daily PnL with its reset time and zone (DST included), unknown while a position has no LIVE book;
drawdown from peak; reject-rate window; consecutive broker errors; fill breach; feed stale, book
invalid and clock skew per symbol; an operator's resume acknowledging latched facts.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pydantic import ValidationError

from daemon.clock import ReplayClock
from daemon.config import RiskSettings
from daemon.events import Fill, Liquidity, Side
from daemon.instruments import Instrument
from daemon.portfolio import Portfolio
from daemon.risk import RiskGate
from daemon.risk.monitor import RiskMonitor, day_start
from daemon.risk.state import TradingState, TradingStateMachine
from daemon.venues.health import FeedHealth, ResyncPolicy

MS = 1_000_000
SEC = 1_000 * MS
A, R, H = TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED
OFF = {"enabled": False}
ALL_OFF = {name: OFF for name in ("daily_loss", "drawdown", "fill_breach", "reject_rate", "broker_errors",
                                  "feed_stale_ms", "book_invalid_ms", "model", "clock_skew_ms",
                                  "broker_disconnected")}


def utc_ns(*args: int, tz: str = "UTC") -> int:
    from zoneinfo import ZoneInfo

    return int(dt.datetime(*args, tzinfo=ZoneInfo(tz)).timestamp()) * SEC  # type: ignore[misc]


T0 = utc_ns(2024, 1, 15, 10, 0)


class Rig:
    """A monitor with its machine, gate and portfolio, and the world it looks at (books, broker)."""

    def __init__(self, triggers: dict[str, Any] | None = None, start: int = T0, **risk: Any) -> None:
        self.settings = RiskSettings.model_validate({"max_position": 2.0, "max_order_qty": 1.0,
                                                     "max_notional": 1_000.0, **risk,
                                                     "triggers": {**ALL_OFF, **(triggers or {})}})
        self.clock = ReplayClock(start)
        self.inst = {s: Instrument(s, 0.01, 0.001) for s in ("X", "Y")}
        self.machine = TradingStateMachine(self.clock)
        self.gate = RiskGate(self.settings, self.inst.__getitem__, self.clock)
        self.machine.set_listener(lambda t: setattr(self.gate, "state", t.new))
        self.portfolio = Portfolio(self.inst)
        self.live = {"X": True, "Y": True}
        self.connected = True
        self.mon = RiskMonitor(self.settings, self.clock, self.machine, self.gate, self.portfolio,
                               self.inst.__getitem__, lambda: self.live, lambda: self.connected)
        self._fills = 0

    def at(self, ts: int) -> int:
        self.clock.advance_to(ts)
        return ts

    def fill(self, side: Side, lots: int, price: float, symbol: str = "X", fee: float = 0.0) -> None:
        self._fills += 1
        now = self.clock.now()
        self.portfolio.on_fill(Fill(f"c{self._fills}", symbol, now, side, round(price * 100), lots, fee,
                                    Liquidity.TAKER, f"t{self._fills}"))
        self.mon.on_fill(symbol, now)

    def mark(self, price: float, symbol: str = "X") -> None:
        self.portfolio.mark(symbol, price)

    def pnl(self, ts: int) -> float | None:
        return self.mon.facts(self.at(ts)).daily_pnl


# --- daily PnL -------------------------------------------------------------------------------------


def test_daily_pnl_restarts_at_the_reset_time() -> None:
    rig = Rig()
    assert rig.pnl(T0) == 0.0
    rig.fill(Side.BUY, 1000, 100.0)
    rig.mark(90.0)

    before = rig.pnl(utc_ns(2024, 1, 15, 23, 59))
    at_reset = rig.pnl(utc_ns(2024, 1, 16, 0, 0))
    rig.mark(85.0)
    next_day = rig.pnl(utc_ns(2024, 1, 16, 9, 0))

    assert before == pytest.approx(-10.0)
    assert at_reset == 0.0, "the day opens at the equity of the reset"
    assert next_day == pytest.approx(-5.0)


def test_daily_pnl_counts_realised_pnl_and_fees_of_the_day() -> None:
    rig = Rig()
    rig.pnl(T0)
    rig.fill(Side.BUY, 1000, 100.0, fee=0.5)
    rig.fill(Side.SELL, 1000, 97.0, fee=0.5)

    assert rig.pnl(T0 + SEC) == pytest.approx(-4.0)


def test_daily_pnl_resets_at_reset_time_in_a_non_utc_zone() -> None:
    rig = Rig({"daily_loss": {"threshold": 5.0, "reset_time": "17:00", "reset_zone": "America/New_York"}})
    rig.at(utc_ns(2024, 1, 15, 12, 0, tz="America/New_York"))
    rig.mon.evaluate(rig.clock.now())
    rig.fill(Side.BUY, 1000, 100.0)
    rig.mark(94.0)

    before = rig.pnl(utc_ns(2024, 1, 15, 16, 59, tz="America/New_York"))
    midnight_utc = rig.pnl(utc_ns(2024, 1, 15, 19, 0, tz="America/New_York"))  # 00:00 UTC: no reset there

    assert before == pytest.approx(-6.0)
    assert midnight_utc == 0.0, "17:00 New York (22:00 UTC) opened a new day"
    assert rig.mon.facts(utc_ns(2024, 1, 16, 0, 0)).daily_pnl == 0.0


def test_the_daily_loss_trigger_halts_and_the_next_day_does_not_lift_the_halt() -> None:
    rig = Rig({"daily_loss": {"threshold": 5.0}})
    rig.mon.evaluate(T0)
    rig.fill(Side.BUY, 1000, 100.0)
    rig.mark(94.0)

    rig.mon.evaluate(rig.at(T0 + SEC))
    halted = rig.machine.state
    rig.mon.evaluate(rig.at(utc_ns(2024, 1, 16, 0, 1)))

    assert halted is H
    assert rig.machine.transitions[0].by == "trigger:daily_loss"
    assert rig.mon.last_facts.daily_pnl == 0.0 and rig.machine.state is H, "only an operator leaves HALTED"


def test_daily_loss_is_unknown_while_a_symbol_with_a_position_has_no_live_book() -> None:
    rig = Rig({"daily_loss": {"threshold": 5.0}})
    rig.mon.evaluate(T0)
    rig.fill(Side.BUY, 1000, 100.0)
    rig.mark(90.0)
    rig.live["X"] = False

    rig.mon.evaluate(rig.at(T0 + SEC))
    blind = rig.mon.last_facts
    rig.live["X"] = True
    rig.mon.evaluate(rig.at(T0 + 2 * SEC))

    assert blind.daily_pnl is None and blind.drawdown == 0.0
    assert rig.machine.transitions[0].ts == T0 + 2 * SEC, "the loss speaks once the book is LIVE again"


def test_a_symbol_without_a_position_does_not_blind_the_daily_loss() -> None:
    rig = Rig()
    rig.pnl(T0)
    rig.fill(Side.BUY, 1000, 100.0)
    rig.mark(95.0)
    rig.fill(Side.BUY, 500, 10.0, symbol="Y")
    rig.fill(Side.SELL, 500, 10.0, symbol="Y")
    rig.live["Y"] = False

    assert rig.pnl(T0 + SEC) == pytest.approx(-5.0)


def test_a_day_that_opens_blind_opens_at_the_first_valid_mark() -> None:
    rig = Rig()
    rig.pnl(T0)
    rig.fill(Side.BUY, 1000, 100.0)
    rig.mark(90.0)
    rig.live["X"] = False

    at_reset = rig.pnl(utc_ns(2024, 1, 16, 0, 0))
    rig.live["X"] = True
    rig.mark(80.0)  # the first LIVE mark of the new day
    first_valid = rig.pnl(utc_ns(2024, 1, 16, 0, 5))
    rig.mark(78.0)
    later = rig.pnl(utc_ns(2024, 1, 16, 1, 0))

    assert at_reset is None
    assert first_valid == 0.0, "not measured from the stale mark of 90"
    assert later == pytest.approx(-2.0)


# --- day_start ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("now", "reset", "zone", "expected"), [
    (utc_ns(2024, 1, 15, 10, 0), "00:00", "UTC", utc_ns(2024, 1, 15, 0, 0)),
    (utc_ns(2024, 1, 15, 0, 0), "00:00", "UTC", utc_ns(2024, 1, 15, 0, 0)),
    (utc_ns(2024, 1, 15, 0, 0) - 1, "00:00", "UTC", utc_ns(2024, 1, 14, 0, 0)),
    (utc_ns(2024, 1, 15, 21, 59), "17:00", "America/New_York", utc_ns(2024, 1, 14, 22, 0)),
    (utc_ns(2024, 1, 15, 22, 0), "17:00", "America/New_York", utc_ns(2024, 1, 15, 22, 0)),
    # Europe/Berlin springs forward on 2024-03-31 (a 23 h day) and falls back on 2024-10-27 (25 h)
    (utc_ns(2024, 3, 31, 12, 0), "00:00", "Europe/Berlin", utc_ns(2024, 3, 30, 23, 0)),
    (utc_ns(2024, 4, 1, 12, 0), "00:00", "Europe/Berlin", utc_ns(2024, 3, 31, 22, 0)),
    (utc_ns(2024, 10, 27, 12, 0), "00:00", "Europe/Berlin", utc_ns(2024, 10, 26, 22, 0)),
    (utc_ns(2024, 10, 28, 12, 0), "00:00", "Europe/Berlin", utc_ns(2024, 10, 27, 23, 0)),
    (utc_ns(2024, 3, 31, 12, 0), "08:00", "Europe/Berlin", utc_ns(2024, 3, 31, 6, 0)),
    # 02:30 does not exist in New York on 2024-03-10: read with the offset before the jump (EST)
    (utc_ns(2024, 3, 10, 7, 29), "02:30", "America/New_York", utc_ns(2024, 3, 9, 7, 30)),
    (utc_ns(2024, 3, 10, 7, 30), "02:30", "America/New_York", utc_ns(2024, 3, 10, 7, 30)),
    # 01:30 happens twice in New York on 2024-11-03: the day starts at the first one (EDT, 05:30 UTC)
    (utc_ns(2024, 11, 3, 5, 40), "01:30", "America/New_York", utc_ns(2024, 11, 3, 5, 30)),
    (utc_ns(2024, 11, 3, 6, 15), "01:30", "America/New_York", utc_ns(2024, 11, 3, 5, 30)),
    (utc_ns(2024, 11, 3, 6, 45), "01:30", "America/New_York", utc_ns(2024, 11, 3, 5, 30)),
])
def test_day_start(now: int, reset: str, zone: str, expected: int) -> None:
    assert day_start(now, reset, zone) == expected


def test_the_day_resets_once_across_a_dst_change() -> None:
    starts = {day_start(utc_ns(2024, 3, 30, 12, 0) + i * 10 * 60 * SEC, "00:00", "Europe/Berlin")
              for i in range(6 * 48)}

    assert sorted(starts) == [utc_ns(2024, 3, 29, 23, 0), utc_ns(2024, 3, 30, 23, 0), utc_ns(2024, 3, 31, 22, 0)]


# --- drawdown ----------------------------------------------------------------------------------------


def test_drawdown_is_measured_from_the_peak_of_valid_marks() -> None:
    rig = Rig({"drawdown": {"threshold": 12.0, "state": "HALTED"}})
    rig.mon.evaluate(T0)
    rig.fill(Side.BUY, 1000, 100.0)
    rig.mark(120.0)
    rig.mon.evaluate(rig.at(T0 + SEC))
    rig.live["X"] = False
    rig.mark(150.0)  # a stale mark: not a peak
    rig.mon.evaluate(rig.at(T0 + 2 * SEC))
    rig.live["X"] = True
    rig.mark(110.0)
    rig.mon.evaluate(rig.at(T0 + 3 * SEC))
    ten_down = (rig.mon.last_facts.drawdown, rig.machine.state)
    rig.mark(107.0)
    rig.mon.evaluate(rig.at(T0 + 4 * SEC))

    assert ten_down == (pytest.approx(10.0), A)
    assert rig.mon.last_facts.drawdown == pytest.approx(13.0)
    assert rig.machine.state is H and rig.machine.transitions[-1].by == "trigger:drawdown"


# --- reject rate and broker errors ------------------------------------------------------------------


def test_reject_rate_over_its_window_needs_min_orders() -> None:
    rig = Rig({"reject_rate": {"threshold": 0.5, "window_ms": 10_000, "min_orders": 4, "state": "REDUCING"}})
    for i in range(3):
        rig.mon.on_order_sent(rig.at(T0 + i * SEC))
        rig.mon.on_broker_reject(T0 + i * SEC)

    too_few = (rig.mon.last_facts.reject_rate, rig.machine.state)
    rig.mon.on_order_sent(rig.at(T0 + 3 * SEC))
    rig.mon.evaluate(T0 + 3 * SEC)
    judged = (rig.mon.last_facts.reject_rate, rig.machine.state)
    rig.mon.evaluate(rig.at(T0 + 11 * SEC))  # the first two left the window: 2 orders, too few again
    later = rig.mon.last_facts.reject_rate

    assert too_few == (None, A)
    assert judged == (0.75, R)
    assert later is None


def test_consecutive_broker_errors_are_reset_by_an_ack_or_a_fill() -> None:
    rig = Rig({"broker_errors": {"threshold": 3, "state": "HALTED"}})

    rig.mon.on_broker_reject(T0)
    rig.mon.on_broker_reject(T0)
    rig.mon.on_broker_ok()
    rig.mon.on_broker_reject(T0)
    rig.mon.on_broker_reject(T0)
    rig.fill(Side.BUY, 10, 100.0)
    rig.mon.on_broker_reject(T0)
    rig.mon.on_broker_reject(T0)

    assert rig.mon.broker_errors == 2 and rig.machine.state is A
    rig.mon.on_broker_reject(T0)
    assert rig.machine.state is H and rig.mon.last_facts.broker_errors == 3


# --- fill breach -------------------------------------------------------------------------------------


def test_a_fill_that_leaves_the_position_over_max_position_is_a_breach() -> None:
    rig = Rig({"fill_breach": {"threshold": 0, "state": "HALTED"}}, max_notional=1e9)

    rig.fill(Side.BUY, 2000, 100.0)
    at_limit = rig.mon.fill_breach
    rig.fill(Side.BUY, 1, 100.0)

    assert at_limit is None
    assert rig.mon.fill_breach is not None and "position 2.001" in rig.mon.fill_breach
    assert rig.machine.state is H


def test_a_fill_that_leaves_the_notional_over_max_notional_is_a_breach_until_a_fill_cures_it() -> None:
    rig = Rig({"fill_breach": {"threshold": 0, "state": "REDUCING", "clear_after_ms": 0}}, max_notional=150.0)

    rig.fill(Side.SELL, 1000, 149.0)
    rig.fill(Side.SELL, 100, 149.0)  # 1.1 short at 149 = 163.9
    breached = (rig.mon.fill_breach, rig.machine.state)
    rig.fill(Side.BUY, 500, 149.0)

    assert breached[0] is not None and "notional 163.90" in breached[0] and breached[1] is R
    assert rig.mon.fill_breach is None and rig.machine.state is A


# --- per-symbol market facts ---------------------------------------------------------------------------


def test_feed_staleness_is_the_worst_symbols_silence() -> None:
    rig = Rig({"feed_stale_ms": {"threshold": 800, "state": "REDUCING"}})
    rig.mon.on_market("X", T0, T0)
    rig.mon.on_market("Y", T0 + 500 * MS, T0 + 500 * MS)

    rig.mon.evaluate(rig.at(T0 + 700 * MS))
    quiet = rig.mon.last_facts
    rig.mon.evaluate(rig.at(T0 + 801 * MS))

    assert (quiet.feed_stale_ms, quiet.worst["feed"]) == (700.0, "X")
    assert rig.machine.state is R and "feed X silent for 801 ms" in rig.machine.transitions[0].reason


def test_book_invalid_time_is_per_symbol_from_its_first_event_until_live() -> None:
    rig = Rig({"book_invalid_ms": {"threshold": 200, "state": "HALTED"}})
    rig.mon.on_market("X", T0, T0)  # first event: not LIVE until a snapshot says so
    rig.mon.on_book_state("X", True, T0)
    rig.mon.on_market("Y", T0 + 50 * MS, T0 + 50 * MS)
    rig.mon.on_market("X", T0 + 100 * MS, T0 + 100 * MS)
    rig.mon.on_book_state("X", False, T0 + 100 * MS)  # a crossed delta
    rig.mon.on_book_state("X", False, T0 + 150 * MS)  # still invalid: the first time counts

    rig.mon.evaluate(rig.at(T0 + 200 * MS))
    first = rig.mon.last_facts
    rig.mon.evaluate(rig.at(T0 + 251 * MS))

    assert (first.book_invalid_ms, first.worst["book"]) == (150.0, "Y")
    assert rig.machine.state is H and "book Y not LIVE for 201 ms" in rig.machine.transitions[0].reason


def test_a_book_that_goes_live_stops_counting() -> None:
    rig = Rig()
    rig.mon.on_market("X", T0, T0)
    rig.mon.on_book_state("X", True, T0 + 10 * MS)

    assert rig.mon.facts(rig.at(T0 + 5 * SEC)).book_invalid_ms == 0.0


def test_clock_skew_is_the_worst_symbols_last_event() -> None:
    rig = Rig({"clock_skew_ms": {"threshold": 50, "state": "REDUCING"}})
    rig.mon.on_market("X", T0, T0 - 30 * MS)
    rig.mon.on_market("Y", T0, T0 + 40 * MS)  # a venue clock ahead of ours counts as well
    rig.mon.evaluate(T0)
    within = rig.mon.last_facts
    rig.mon.on_market("X", T0 + MS, T0 + MS - 60 * MS)
    rig.mon.evaluate(rig.at(T0 + MS))

    assert (within.clock_skew_ms, within.worst["skew"], rig.machine.transitions[0].new) == (40.0, "Y", R)
    assert rig.mon.last_facts.clock_skew_ms == 60.0 and rig.mon.last_facts.worst["skew"] == "X"


def test_clock_skew_is_only_the_latest_events() -> None:
    rig = Rig()
    rig.mon.on_market("X", T0, T0 - 500 * MS)
    rig.mon.on_market("X", T0 + MS, T0 + MS)

    assert rig.mon.facts(rig.at(T0 + MS)).clock_skew_ms == 0.0


def test_broker_disconnected_and_model_problems_reach_their_triggers() -> None:
    rig = Rig({"broker_disconnected": {"threshold": 0, "state": "HALTED"},
               "model": {"threshold": 0, "state": "REDUCING", "clear_after_ms": 0}})

    rig.gate.model_problem = "scores failing"
    rig.mon.evaluate(T0)
    reducing = rig.machine.state
    rig.gate.model_problem = None
    rig.mon.evaluate(rig.at(T0 + MS))
    cleared = rig.machine.state
    rig.connected = False
    rig.mon.evaluate(rig.at(T0 + 2 * MS))

    assert (reducing, cleared, rig.machine.state) == (R, A, H)
    assert rig.gate.state is H


# --- operator resume ------------------------------------------------------------------------------


def test_a_resume_acknowledges_a_run_of_broker_errors() -> None:
    rig = Rig({"broker_errors": {"threshold": 3, "state": "HALTED", "clear_after_ms": 60_000}})
    for _ in range(3):
        rig.mon.on_broker_reject(T0)
    assert rig.machine.state is H

    rig.machine.operator_resume("gateway restarted", "alice")
    rig.mon.evaluate(rig.at(T0 + SEC))

    assert rig.machine.state is A and rig.mon.broker_errors == 0 and not rig.mon.triggers.fired


def test_a_resume_releases_a_cleared_trigger_but_a_condition_that_holds_halts_again() -> None:
    rig = Rig({"broker_disconnected": {"threshold": 0, "state": "HALTED", "clear_after_ms": 60_000},
               "feed_stale_ms": {"threshold": 1000, "state": "HALTED", "clear_after_ms": 60_000}})
    rig.mon.on_market("X", T0, T0)
    rig.connected = False
    rig.mon.evaluate(rig.at(T0 + 2 * SEC))
    rig.connected = True
    rig.mon.on_market("X", T0 + 3 * SEC, T0 + 3 * SEC)
    rig.machine.operator_resume("reconnected", "alice")
    rig.mon.evaluate(rig.at(T0 + 3 * SEC))
    resumed = rig.machine.state

    rig.machine.operator_halt("x", "alice")
    rig.machine.operator_resume("try again", "alice")
    rig.connected = False
    rig.mon.evaluate(rig.at(T0 + 4 * SEC))

    assert resumed is A, "both conditions are gone: their clear period does not undo the resume"
    assert rig.machine.state is H and rig.machine.transitions[-1].by == "trigger:broker_disconnected"


def test_a_resume_rebases_the_drawdown_peak() -> None:
    rig = Rig({"drawdown": {"threshold": 5.0, "state": "HALTED", "clear_after_ms": 60_000}})
    rig.mon.evaluate(T0)
    rig.fill(Side.BUY, 1000, 100.0)
    rig.mark(110.0)
    rig.mon.evaluate(rig.at(T0 + SEC))
    rig.mark(100.0)
    rig.mon.evaluate(rig.at(T0 + 2 * SEC))
    assert rig.machine.state is H

    rig.machine.operator_resume("accepted the loss", "alice")
    rig.mon.evaluate(rig.at(T0 + 3 * SEC))
    rig.mark(96.0)
    rig.mon.evaluate(rig.at(T0 + 4 * SEC))

    assert rig.machine.state is A and rig.mon.last_facts.drawdown == pytest.approx(4.0)


def test_status_shows_state_fired_triggers_and_facts() -> None:
    rig = Rig({"broker_disconnected": {"threshold": 0, "state": "HALTED"}})
    rig.connected = False
    rig.mon.evaluate(T0)

    status = rig.mon.status()

    assert status["state"] == "HALTED"
    assert status["fired"] == {"broker_disconnected": {"state": "HALTED", "detail": "broker disconnected",
                                                       "since": T0}}
    assert status["facts"]["broker_connected"] is False  # type: ignore[index]


# --- symbols registered by a feed -----------------------------------------------------------------------


def test_a_registered_symbol_that_never_sends_goes_stale() -> None:
    rig = Rig({"feed_stale_ms": {"threshold": 1000, "state": "REDUCING"}})
    rig.mon.register("X", T0)

    rig.mon.evaluate(rig.at(T0 + 1000 * MS))
    at_limit = rig.machine.state
    rig.mon.evaluate(rig.at(T0 + 1001 * MS))

    assert at_limit is A
    assert (rig.mon.last_facts.feed_stale_ms, rig.mon.last_facts.worst["feed"]) == (1001.0, "X")
    assert rig.machine.state is R and "feed X silent for 1001 ms" in rig.machine.transitions[0].reason


def test_a_registered_symbol_without_a_book_counts_as_not_live() -> None:
    rig = Rig({"book_invalid_ms": {"threshold": 500, "state": "HALTED"}})
    rig.mon.register("Y", T0)

    rig.mon.evaluate(rig.at(T0 + 501 * MS))

    assert (rig.mon.last_facts.book_invalid_ms, rig.mon.last_facts.worst["book"]) == (501.0, "Y")
    assert rig.machine.state is H and "book Y not LIVE for 501 ms" in rig.machine.transitions[0].reason


def test_a_registered_symbol_is_judged_by_its_events_once_they_come() -> None:
    rig = Rig()
    rig.mon.register("X", T0)
    rig.mon.on_market("X", T0 + 2 * SEC, T0 + 2 * SEC)
    rig.mon.on_book_state("X", True, T0 + 2 * SEC)

    facts = rig.mon.facts(rig.at(T0 + 3 * SEC))

    assert (facts.feed_stale_ms, facts.book_invalid_ms) == (1000.0, 0.0)


def test_a_registered_symbols_book_counts_as_not_live_from_registration_not_its_first_event() -> None:
    rig = Rig()
    rig.mon.register("X", T0)
    rig.mon.on_market("X", T0 + 2 * SEC, T0 + 2 * SEC)  # a delta, still no snapshot

    assert rig.mon.facts(rig.at(T0 + 3 * SEC)).book_invalid_ms == 3000.0


def test_registering_a_symbol_that_already_sent_changes_nothing() -> None:
    rig = Rig()
    rig.mon.on_market("X", T0 + SEC, T0 + SEC)
    rig.mon.on_book_state("X", True, T0 + SEC)

    rig.mon.register("X", T0)
    rig.mon.register("X", T0 + 5 * SEC)

    assert rig.mon.last_event == {"X": T0 + SEC}
    assert rig.mon.not_live_since == {}


def test_registering_twice_keeps_the_first_time() -> None:
    rig = Rig()
    rig.mon.register("X", T0)
    rig.mon.register("X", T0 + SEC)

    facts = rig.mon.facts(rig.at(T0 + 2 * SEC))

    assert (facts.feed_stale_ms, facts.book_invalid_ms) == (2000.0, 2000.0)


# --- feed health ------------------------------------------------------------------------------------


def feed(venue: str = "okx", **kw: Any) -> FeedHealth:
    return FeedHealth(venue, **kw)


def test_no_feeds_or_healthy_feeds_are_no_feed_problem() -> None:
    rig = Rig()
    assert rig.mon.facts(T0).feed_problem is None

    rig.mon.feeds += [feed(live=True, connected=True), feed("binance", live=False)]

    assert rig.mon.facts(T0).feed_problem is None
    rig.mon.evaluate(T0)
    assert rig.machine.state is A


def test_a_disconnected_live_feed_is_the_feed_problem_and_fires_feed_down() -> None:
    rig = Rig({"feed_down": {"threshold": 0, "state": "HALTED"}})
    rig.mon.feeds.append(feed(live=True, connected=False))

    rig.mon.evaluate(T0)

    assert rig.mon.last_facts.feed_problem.startswith("okx: feed down for ")
    assert rig.machine.state is H
    last = rig.machine.transitions[-1]
    assert last.by == "trigger:feed_down" and last.reason.startswith("okx: feed down for ")
    assert rig.mon.triggers.fire_counts["feed_down"] == 1


def test_an_untradeable_symbol_is_the_feed_problem() -> None:
    rig = Rig({"feed_down": {"threshold": 0, "state": "REDUCING"}})
    okx = feed(live=True, connected=True)
    policy = ResyncPolicy(max_resyncs=1, window_ns=10 * SEC)
    policy.on_resync(okx.symbol("ETH-USDT"), T0, "gap")
    policy.on_resync(okx.symbol("ETH-USDT"), T0 + MS, "checksum")
    rig.mon.feeds.append(okx)

    rig.mon.evaluate(rig.at(T0 + MS))

    assert rig.mon.last_facts.feed_problem == "okx ETH-USDT untradeable: 2 resyncs within 10 s (last: checksum)"
    assert rig.machine.state is R


def test_the_first_feed_with_a_problem_is_named() -> None:
    rig = Rig()
    rig.mon.feeds += [feed("kraken", live=True, connected=True), feed("binance", live=True, banned=True),
                      feed("okx", live=True, connected=False)]

    assert rig.mon.facts(T0).feed_problem == "binance: the venue banned our IP (HTTP 418)"


def test_feed_down_clears_after_its_clear_period_once_the_feed_is_back() -> None:
    rig = Rig({"feed_down": {"threshold": 0, "state": "REDUCING", "clear_after_ms": 1000}})
    okx = feed(live=True, connected=False)
    rig.mon.feeds.append(okx)
    rig.mon.evaluate(T0)

    okx.connected = True
    rig.mon.evaluate(rig.at(T0 + 500 * MS))
    held = rig.machine.state
    rig.mon.evaluate(rig.at(T0 + 1000 * MS))

    assert held is R, "cleared for less than clear_after_ms"
    assert rig.machine.state is A
    assert rig.mon.last_facts.feed_problem is None


def test_feed_down_is_on_by_default_and_leads_to_reducing() -> None:
    rig = Rig()  # the other triggers are off; [risk.triggers.feed_down] is left at its default
    rig.mon.feeds.append(feed(live=True, connected=False))

    rig.mon.evaluate(T0)

    assert "feed_down" in rig.mon.triggers.names
    assert rig.machine.state is R and rig.machine.transitions[-1].by == "trigger:feed_down"


def test_a_disabled_feed_down_trigger_leaves_the_state_alone_but_the_fact_is_kept() -> None:
    rig = Rig({"feed_down": {"enabled": False}})
    rig.mon.feeds.append(feed(live=True, connected=False))

    rig.mon.evaluate(T0)

    assert rig.machine.state is A
    assert rig.mon.last_facts.feed_problem.startswith("okx: feed down for ")
    assert rig.mon.status()["facts"]["feed_problem"].startswith("okx: feed down")  # type: ignore[index,union-attr]


def test_an_unknown_key_under_feed_down_is_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="bogus"):
        RiskSettings.model_validate({"triggers": {"feed_down": {"threshold": 0, "bogus": 1}}})

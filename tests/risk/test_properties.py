"""Property-based tests of the risk layer over the REAL path (build_path + ReplayClock + PaperBroker).

Hypothesis draws a config (trigger states, hysteresis, latency, flatten on halt) and a random session:
book snapshots and deltas (some crossed), trades that fill our resting orders, intents sent through
`engine.submit`, targets through `engine.pursue`, clock steps, operator halts and resumes, a failing
model, a broker that disconnects, venue clock skew. After every step:

- the worst case never exceeds max_position: position + every open buy filling, and position - every
  open sell filling (in-flight cancels included: they may still fill);
- no 1 s window holds more passed orders than max_orders_per_second, no 60 s window more than
  max_orders_per_minute;
- nothing passes while HALTED but a flatten order (reduce-only, tagged, reducing); only reductions
  pass while REDUCING;
- after every evaluate(), each trigger whose condition holds has the state at least at its configured one;
- the gate follows the state machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.app import TradingPath, build_path
from daemon.book import NO_PRICE
from daemon.clock import ReplayClock
from daemon.config import settings_from_dict
from daemon.events import (
    BookDelta,
    BookSnapshot,
    Fill,
    Liquidity,
    OrderIntent,
    OrderType,
    RiskReject,
    Side,
    TargetPosition,
    Trade,
)
from daemon.risk.gate import FLATTEN_TAG, RiskView
from daemon.risk.state import TradingState
from daemon.risk.triggers import CONDITIONS

MS = 1_000_000
SEC = 1_000 * MS
T0 = 1_700_000_000 * SEC
SYM = "X"
MAX_POSITION = 500  # lots (0.5 at a lot of 0.001)
PER_SECOND, PER_MINUTE = 3, 20
SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}
THRESHOLDS: dict[str, float] = {"daily_loss": 2.0, "drawdown": 3.0, "fill_breach": 0, "reject_rate": 0.5,
                                "broker_errors": 3, "feed_stale_ms": 700, "book_invalid_ms": 300, "model": 0,
                                "clock_skew_ms": 100, "broker_disconnected": 0}
STATES = ("REDUCING", "HALTED")


def arr(xs: list[int]) -> np.ndarray:
    return np.array(xs, dtype=np.int64)


@st.composite
def configs(draw: st.DrawFn, triggers_on: bool = True) -> dict[str, Any]:
    triggers: dict[str, Any] = {}
    for name, threshold in THRESHOLDS.items():
        spec: dict[str, Any] = {"enabled": triggers_on, "threshold": threshold,
                                "state": draw(st.sampled_from(["REDUCING", "REDUCING", "HALTED"])),
                                "clear_after_ms": draw(st.sampled_from([0, 200, 1_500]))}
        if name == "reject_rate":
            spec |= {"window_ms": 5_000, "min_orders": 4}
        triggers[name] = spec
    return {
        "daemon": {"log_level": "error"},
        "instruments": {SYM: {"tick_size": 0.01, "lot_size": 0.001}},
        "execution": {"order_type": draw(st.sampled_from(["market", "limit"]))},
        "risk": {"max_position": 0.5, "max_order_qty": 0.3, "max_notional": draw(st.sampled_from([45.0, 500.0])),
                 "max_order_notional": 30.0,
                 "max_open_orders": 4, "max_orders_per_second": PER_SECOND, "max_orders_per_minute": PER_MINUTE,
                 "price_band_bps": 50.0, "min_order_qty": 0.005, "feed_stale_ms": 500,
                 "flatten_on_halt": draw(st.booleans()), "triggers": triggers},
        "paper": {"latency_us": draw(st.sampled_from([0, 1_000, 80_000]))},
    }


levels = st.lists(st.integers(1, 400), min_size=1, max_size=4)
SNAPSHOT = st.tuples(st.just("snapshot"), st.integers(9_950, 10_050), st.integers(1, 4), levels, levels,
                     st.sampled_from([False] * 9 + [True]))
DELTA = st.tuples(st.just("delta"), st.sampled_from(Side), st.integers(-3, 3), st.integers(0, 400))
TRADE = st.tuples(st.just("trade"), st.sampled_from(Side), st.integers(-4, 4), st.integers(1, 1_500))
# how: market; a passive limit (rests `offset` // 2 ticks behind its touch); an aggressive limit (`offset`
# bps through mid, beyond the band past 50); a flatten-like limit at the touch (reduce-only, tagged)
INTENT = st.tuples(st.just("intent"), st.sampled_from(Side), st.one_of(st.integers(1, 300), st.integers(1, 450)),
                   st.sampled_from(["market", "passive", "passive", "passive", "aggressive", "flatten"]),
                   st.integers(0, 80))
PURSUE = st.tuples(st.just("pursue"), st.integers(-800, 800))
ADVANCE = st.tuples(st.just("advance"), st.sampled_from([1, 10, 50, 120, 250, 400, 1_000, 3_000]))
RARE = st.one_of(
    st.tuples(st.just("halt"), st.booleans()),
    st.tuples(st.just("resume")),
    st.tuples(st.just("resume")),
    st.tuples(st.just("model"), st.sampled_from([None, None, "scores failing"])),
    st.tuples(st.just("broker"), st.sampled_from([True, True, False])),
    st.tuples(st.just("skew"), st.sampled_from([0, 0, 30, 150])),
)
# one_of picks a branch uniformly: repeats weigh the common steps
MARKET_AND_ORDERS = st.one_of(SNAPSHOT, DELTA, TRADE, TRADE, INTENT, INTENT, INTENT, INTENT, INTENT, PURSUE, PURSUE,
                              PURSUE, ADVANCE, ADVANCE)
STEPS = st.one_of(MARKET_AND_ORDERS, MARKET_AND_ORDERS, MARKET_AND_ORDERS, MARKET_AND_ORDERS, RARE)


@dataclass
class Session:
    """A path under test, with every check of the gate recorded."""

    path: TradingPath
    clock: ReplayClock
    passed_at: list[int] = field(default_factory=list)
    skew_ns: int = 0
    evaluations: int = 0

    @property
    def engine(self) -> Any:
        return self.path.engine

    def worst_cases(self) -> tuple[int, int, int]:
        """(position, position + open buys, position - open sells), from the broker and the portfolio."""
        pos = self.path.portfolio.position(SYM)
        buys = sum(o.leaves_qty for o in self.path.broker.open_orders(SYM) if o.order.side is Side.BUY)
        sells = sum(o.leaves_qty for o in self.path.broker.open_orders(SYM) if o.order.side is Side.SELL)
        return pos, pos + buys, pos - sells

    def on_check(self, intent: OrderIntent, view: RiskView, result: RiskReject | None) -> None:
        """One gate check, judged against facts taken independently of the view the engine built."""
        pos, long_worst, short_worst = self.worst_cases()
        assert (view.position, view.position + view.open_buy, view.position - view.open_sell) == (
            pos, long_worst, short_worst), "the engine's view of the symbol is the broker's and portfolio's"
        if result is not None:
            return
        worst = (long_worst if intent.side is Side.BUY else short_worst) + int(intent.side) * intent.qty
        reduces = worst == 0 or ((worst > 0) == (pos > 0) and abs(worst) < abs(pos))
        state = self.path.state.state
        assert abs(worst) <= MAX_POSITION or reduces, f"{intent} passed with a worst case of {worst}"
        if state is TradingState.HALTED:
            assert intent.tag == FLATTEN_TAG and intent.reduce_only and reduces, f"{intent} passed while HALTED"
        elif state is TradingState.REDUCING:
            assert reduces, f"{intent} added exposure while REDUCING"
        self.passed_at.append(self.clock.now())

    def after_evaluate(self) -> None:
        """Every trigger whose condition holds has brought the state at least to its configured one."""
        self.evaluations += 1
        mon = self.path.monitor
        facts = mon.last_facts
        for name, cond in CONDITIONS.items():
            spec = getattr(mon.settings.triggers, name)
            if spec.enabled and spec.threshold is not None and cond(facts, float(spec.threshold)) is not None:
                wanted = TradingState(spec.state)
                assert SEVERITY[self.path.state.state] >= SEVERITY[wanted], (
                    f"{name} holds ({cond(facts, float(spec.threshold))}) but the state is {self.path.state.state}")

    def check_invariants(self) -> None:
        pos, long_worst, short_worst = self.worst_cases()
        assert long_worst <= MAX_POSITION and short_worst >= -MAX_POSITION, (pos, long_worst, short_worst)
        assert self.path.risk.state is self.path.state.state
        times = self.passed_at
        for n, span in ((PER_SECOND, SEC), (PER_MINUTE, 60 * SEC)):
            for i in range(len(times) - n):
                assert times[i + n] - times[i] >= span, f"{n + 1} orders passed within {span // SEC} s"


def start(config: dict[str, Any]) -> Session:
    clock = ReplayClock()
    path = build_path(settings_from_dict(config), clock, [SYM])
    path.engine.strategy.on_sample = lambda sample: None  # the test sends the intents
    s = Session(path, clock)
    gate_check = path.risk.check

    def check(intent: OrderIntent, view: RiskView) -> RiskReject | None:
        result = gate_check(intent, view)
        s.on_check(intent, view, result)
        return result

    evaluate = path.monitor.evaluate

    def evaluated(now: int) -> None:
        evaluate(now)
        s.after_evaluate()

    path.risk.check = check  # type: ignore[method-assign]
    path.monitor.evaluate = evaluated  # type: ignore[method-assign]
    clock.advance_to(T0)
    return s


def feed(s: Session, make: Callable[[int, int], Any], dt_ms: int = 5) -> None:
    ts = s.clock.now() + dt_ms * MS
    s.clock.advance_to(ts)
    s.engine.on_market(make(ts - s.skew_ns, ts))


def touch(s: Session) -> tuple[int, int]:
    book = s.engine.books[SYM]
    bid, ask = book.best_bid_px, book.best_ask_px
    return (bid if bid != NO_PRICE else 10_000), (ask if ask != NO_PRICE else 10_001)


def step(s: Session, action: tuple) -> None:
    kind = action[0]
    if kind == "snapshot":
        _, bid, spread, bq, aq, crossed = action
        ask = bid - 1 if crossed else bid + spread
        feed(s, lambda v, r: BookSnapshot(SYM, v, r, arr([bid - i for i in range(len(bq))]), arr(bq),
                                          arr([ask + i for i in range(len(aq))]), arr(aq)))
    elif kind == "delta":
        _, side, offset, qty = action
        bid, ask = touch(s)
        if side is Side.BUY:
            feed(s, lambda v, r: BookDelta(SYM, v, r, arr([bid + offset]), arr([qty]), arr([]), arr([])))
        else:
            feed(s, lambda v, r: BookDelta(SYM, v, r, arr([]), arr([]), arr([ask + offset]), arr([qty])))
    elif kind == "trade":
        _, side, offset, qty = action
        bid, ask = touch(s)
        px = (ask if side is Side.BUY else bid) + offset
        feed(s, lambda v, r: Trade(SYM, v, r, px, qty, side))
    elif kind == "intent":
        _, side, qty, how, offset = action
        now = s.clock.now()
        bid, ask = touch(s)
        sign = int(side)
        if how == "market":
            intent = OrderIntent(SYM, now, side, qty, OrderType.MARKET)
        elif how == "aggressive":
            px = round((bid + ask) / 2 * (1 + sign * offset / 1e4))
            intent = OrderIntent(SYM, now, side, qty, OrderType.LIMIT, px, tag="test")
        else:
            px = (bid if side is Side.BUY else ask) - sign * (offset // 2 if how == "passive" else 0)
            flat = how == "flatten"
            intent = OrderIntent(SYM, now, side, qty, OrderType.LIMIT, px, reduce_only=flat,
                                 tag=FLATTEN_TAG if flat else "test")
        s.engine.submit(intent)
    elif kind == "pursue":
        s.engine.pursue(TargetPosition(SYM, s.clock.now(), action[1], 1.0, "test"))
    elif kind == "advance":
        s.clock.advance_to(s.clock.now() + action[1] * MS)
    elif kind == "halt":
        s.path.state.operator_halt("property test", "hypothesis", flatten=action[1])
    elif kind == "resume":
        s.path.state.operator_resume("property test", "hypothesis")
    elif kind == "model":
        s.path.risk.model_problem = action[1]
    elif kind == "broker":
        s.path.broker.connected = action[1]  # type: ignore[attr-defined]
    elif kind == "skew":
        s.skew_ns = action[1] * MS


def run(config: dict[str, Any], actions: list[tuple]) -> Session:
    s = start(config)
    step(s, ("snapshot", 10_000, 1, [200, 200, 200], [200, 200, 200], False))  # a LIVE book to start from
    for action in actions:
        step(s, action)
        s.check_invariants()
    s.clock.advance_to(s.clock.now() + 2 * SEC)  # let in-flight orders and cancels land
    s.check_invariants()
    return s


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs(triggers_on=False), actions=st.lists(MARKET_AND_ORDERS, min_size=40, max_size=120))
def test_no_sequence_of_orders_and_market_data_breaks_a_limit(config: dict[str, Any], actions: list[tuple]) -> None:
    run(config, actions)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs(), actions=st.lists(STEPS, min_size=40, max_size=120))
def test_no_sequence_with_halts_resumes_and_triggers_breaks_a_state_rule(config: dict[str, Any],
                                                                         actions: list[tuple]) -> None:
    run(config, actions)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs(), bursts=st.lists(st.tuples(st.integers(1, 8), st.sampled_from([0, 1, 100, 333, 999, 1_000])),
                                         min_size=1, max_size=40))
def test_bursts_of_orders_never_beat_the_rate_limits(config: dict[str, Any], bursts: list[tuple[int, int]]) -> None:
    config["risk"] |= {"max_notional": 1e9, "max_order_notional": 1e9, "max_open_orders": 10_000}
    s = start(config)
    step(s, ("snapshot", 10_000, 1, [400] * 4, [400] * 4, False))
    side = Side.BUY
    for n, gap_ms in bursts:
        for _ in range(n):
            s.engine.submit(OrderIntent(SYM, s.clock.now(), side, 5, OrderType.MARKET))
            side = side.opposite
        step(s, ("snapshot", 10_000, 1, [400] * 4, [400] * 4, False))  # keeps the book LIVE and the feed fresh
        s.clock.advance_to(s.clock.now() + gap_ms * MS)
        s.check_invariants()
    assert s.passed_at, "some orders passed"


def provoke(s: Session, trigger: str) -> None:
    """Make the trigger's condition hold on the path, the way it would happen."""
    if trigger == "book_invalid_ms":
        step(s, ("snapshot", 10_000, 1, [200], [200], True))  # crossed: INVALID until a good snapshot
    elif trigger == "model":
        s.path.risk.model_problem = "scores failing"
    elif trigger == "clock_skew_ms":
        s.skew_ns = 150 * MS  # the venue's times fall behind ours from now on
    elif trigger == "broker_disconnected":
        s.path.broker.connected = False  # type: ignore[attr-defined]
    elif trigger in ("broker_errors", "reject_rate"):
        rounds = 3 if trigger == "broker_errors" else 4  # 4 = the reject rate's min_orders
        for _ in range(rounds):  # the asks vanish while a market buy is in flight: the paper broker rejects it
            step(s, ("snapshot", 10_000, 1, [200] * 3, [200] * 3, False))
            assert s.engine.submit(OrderIntent(SYM, s.clock.now(), Side.BUY, 10, OrderType.MARKET)) is not None
            feed(s, lambda v, r: BookDelta(SYM, v, r, arr([]), arr([]), arr([10_001, 10_002, 10_003]), arr([0] * 3)))
            s.clock.advance_to(s.clock.now() + 400 * MS)
        assert s.path.broker.stats["rejects"] == {"no_liquidity": rounds}
        step(s, ("snapshot", 10_000, 1, [200] * 3, [200] * 3, False))
    elif trigger in ("daily_loss", "drawdown"):
        assert s.engine.submit(OrderIntent(SYM, s.clock.now(), Side.BUY, 290, OrderType.MARKET)) is not None
        s.clock.advance_to(s.clock.now() + 100 * MS)
        assert s.path.portfolio.position(SYM) == 290
        if trigger == "drawdown":  # up 5.00 (a peak of +1.45), then down to 93.00: 3.48 off the peak
            step(s, ("snapshot", 10_500, 1, [200] * 3, [200] * 3, False))
            for _ in range(7):
                step(s, ("advance", 100))
                step(s, ("delta", Side.BUY, -10, 5))
        step(s, ("snapshot", 9_300, 1, [200] * 3, [200] * 3, False))  # 0.29 long, 7.00 down: -2.03
    elif trigger == "fill_breach":  # the venue fills more than we asked (or a fill we never sent)
        s.engine.on_broker_event(Fill("ghost-1", SYM, s.clock.now(), Side.BUY, 10_001, MAX_POSITION + 100, 0.0,
                                      Liquidity.TAKER, "v-1"))


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("trigger", sorted(THRESHOLDS))
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs())
def test_each_trigger_leads_to_its_configured_state_on_the_path(config: dict[str, Any], trigger: str,
                                                                state: str) -> None:
    for name, spec in config["risk"]["triggers"].items():
        spec["enabled"] = name == trigger
    config["risk"]["triggers"][trigger]["state"] = state
    config["paper"]["latency_us"] = 50_000
    s = start(config)
    step(s, ("snapshot", 10_000, 1, [200] * 3, [200] * 3, False))
    s.clock.advance_to(s.clock.now() + 200 * MS)
    assert s.path.state.state is TradingState.ACTIVE

    provoke(s, trigger)
    for _ in range(12):
        step(s, ("advance", 100))
        if trigger != "feed_stale_ms":  # silence is that one's condition
            step(s, ("delta", Side.BUY, -10, 5))  # market data keeps flowing
        if trigger != "fill_breach":  # the breach is a position over the limit
            s.check_invariants()

    assert s.path.state.state is TradingState(state)
    assert s.path.state.transitions[-1].by == f"trigger:{trigger}"
    assert s.evaluations > 0

"""The engine routes events along the path: book -> features -> strategy -> risk -> broker -> portfolio.

Sans-I/O: events are built in the test and handed over after the ReplayClock is advanced, the
way the replay runner does it.
"""

from __future__ import annotations

import numpy as np

from daemon.app import build_path
from daemon.clock import ReplayClock
from daemon.config import settings_from_dict
from daemon.events import BookDelta, BookSnapshot, OrderType, Side, TargetPosition, Trade

MS = 1_000_000
T0 = 1_000 * MS


def settings(**over):
    raw = {
        "daemon": {"log_level": "error"},
        "instruments": {"X": {"tick_size": 0.01, "lot_size": 0.001}},
        "strategy": {"params": {"threshold": 0.3, "persistence_ms": 200, "full_persistence_ms": 400,
                                "max_position": 1.0, "position_step": 0.5}},
        "risk": {"max_position": 1.0, "max_order_qty": 1.0, "max_notional": 1000.0},
        "paper": {"latency_us": 1000},
    }
    for key, value in over.items():
        raw[key] = {**raw.get(key, {}), **value}
    return settings_from_dict(raw)


def arr(*xs: int) -> np.ndarray:
    return np.array(xs, dtype=np.int64)


def snap(ts: int, bid_qty: int = 5000, ask_qty: int = 1000) -> BookSnapshot:
    return BookSnapshot("X", ts, ts, arr(10000, 9999), arr(bid_qty, bid_qty), arr(10001, 10002),
                        arr(ask_qty, ask_qty))


def feed(clock: ReplayClock, engine, ev) -> None:
    clock.advance_to(ev.ts_recv)
    engine.on_market(ev)


def test_no_orders_until_a_snapshot_makes_the_book_live() -> None:
    clock = ReplayClock()
    path = build_path(settings(), clock, ["X"])
    for i in range(20):
        feed(clock, path.engine, BookDelta("X", T0 + i * 50 * MS, T0 + i * 50 * MS, arr(10000), arr(9000),
                                           arr(10001), arr(100)))

    assert path.engine.syncs["X"].state == "INVALID"
    assert path.engine.counts["orders"] == 0
    assert np.isnan(path.features.sample("X", clock.now()).values).all()


def test_a_persistent_bid_imbalance_becomes_a_buy_that_fills_after_latency() -> None:
    clock = ReplayClock()
    path = build_path(settings(), clock, ["X"])
    feed(clock, path.engine, snap(T0))

    for i in range(1, 12):
        feed(clock, path.engine, BookDelta("X", T0 + i * 50 * MS, T0 + i * 50 * MS, arr(9998), arr(1000 + i),
                                           arr(), arr()))

    eng = path.engine
    assert eng.counts["orders"] >= 1
    assert eng.fills and eng.fills[0].side is Side.BUY
    first = eng.fills[0]
    assert first.price == 10001, "a market buy takes the best ask"
    assert path.portfolio.position("X") > 0
    assert path.portfolio.position("X") <= 1000, "never beyond max_position"


def test_a_filled_order_arrives_latency_after_it_was_sent() -> None:
    clock = ReplayClock()
    path = build_path(settings(), clock, ["X"])
    feed(clock, path.engine, snap(T0))
    path.engine.pursue(TargetPosition("X", clock.now(), 500, 1.0, "test"))

    assert path.engine.fills == []
    clock.advance_to(T0 + MS - 1)
    assert path.engine.fills == []
    clock.advance_to(T0 + MS)
    assert [f.qty for f in path.engine.fills] == [500]


def test_limit_policy_joins_the_touch() -> None:
    clock = ReplayClock()
    path = build_path(settings(execution={"order_type": "limit"}), clock, ["X"])
    feed(clock, path.engine, snap(T0))

    order = path.engine.submit(path.engine._intent("X", Side.BUY, 500, TargetPosition("X", T0, 500, 1.0)))

    assert order is not None and order.order_type is OrderType.LIMIT and order.limit_px == 10000


def test_a_new_target_cancels_orders_working_against_it() -> None:
    clock = ReplayClock()
    path = build_path(settings(execution={"order_type": "limit"}), clock, ["X"])
    feed(clock, path.engine, snap(T0))
    path.engine.pursue(TargetPosition("X", T0, 1000, 1.0))
    clock.advance_to(T0 + 2 * MS)
    assert [o.order.side for o in path.broker.open_orders("X")] == [Side.BUY]

    path.engine.pursue(TargetPosition("X", T0 + 2 * MS, -500, 1.0))

    assert path.engine.counts["cancels_sent"] == 1
    clock.advance_to(T0 + 4 * MS)
    assert [o.order.side for o in path.broker.open_orders("X")] == [Side.SELL]


def test_risk_rejects_are_counted_and_never_sent() -> None:
    clock = ReplayClock()
    path = build_path(settings(risk={"max_notional": 50.0}), clock, ["X"])
    feed(clock, path.engine, snap(T0))

    path.engine.pursue(TargetPosition("X", T0, 1000, 1.0))
    clock.advance_to(T0 + 5 * MS)

    assert path.risk.rejects == {"max_notional": 1}
    assert path.engine.counts["orders"] == 0 and path.broker.open_orders() == []


def test_trades_reach_the_features_and_the_paper_matcher() -> None:
    clock = ReplayClock()
    path = build_path(settings(execution={"order_type": "limit"}), clock, ["X"])
    feed(clock, path.engine, snap(T0))
    path.engine.pursue(TargetPosition("X", T0, 500, 1.0))
    clock.advance_to(T0 + 2 * MS)

    feed(clock, path.engine, Trade("X", T0 + 3 * MS, T0 + 3 * MS, 10000, 2000, Side.SELL))

    assert [(f.price, f.qty, str(f.liquidity)) for f in path.engine.fills] == [(10000, 500, "maker")]
    assert path.engine.counts["trade"] == 1


def test_equity_is_marked_at_the_mid_on_every_sample() -> None:
    clock = ReplayClock()
    path = build_path(settings(strategy={"symbols": ["OTHER"]}), clock, ["X"])
    feed(clock, path.engine, snap(T0))
    path.engine.pursue(TargetPosition("X", T0, 1000, 1.0))
    clock.advance_to(T0 + 2 * MS)

    feed(clock, path.engine, BookDelta("X", T0 + 150 * MS, T0 + 150 * MS, arr(10010), arr(10),
                                       arr(10001, 10002, 10011), arr(0, 0, 10)))
    clock.advance_to(T0 + 300 * MS)

    pnl = path.portfolio.pnl()
    assert pnl["unrealised"] > 0, "bought at 100.01, marked at the new mid 100.105"
    assert path.portfolio.equity_curve[-1][0] == T0 + 300 * MS


def test_a_limit_order_left_behind_by_the_touch_is_cancelled_for_a_new_one() -> None:
    clock = ReplayClock()
    path = build_path(settings(execution={"order_type": "limit"}), clock, ["X"])
    feed(clock, path.engine, snap(T0))
    path.engine.pursue(TargetPosition("X", T0, 500, 1.0))
    clock.advance_to(T0 + 2 * MS)
    feed(clock, path.engine, BookDelta("X", T0 + 3 * MS, T0 + 3 * MS, arr(10000), arr(0), arr(), arr()))

    path.engine.pursue(TargetPosition("X", T0 + 3 * MS, 500, 1.0))
    clock.advance_to(T0 + 5 * MS)
    path.engine.pursue(TargetPosition("X", T0 + 5 * MS, 500, 1.0))

    assert path.engine.counts["cancels_sent"] == 1
    assert [o.order.limit_px for o in path.broker.open_orders("X")] == [9999], "re-joined the new best bid"


def test_sampling_pauses_when_the_feed_has_been_quiet_for_pause_after() -> None:
    clock = ReplayClock()
    path = build_path(settings(features={"pause_after_ms": 1000}), clock, ["X"])
    feed(clock, path.engine, snap(T0))
    before = path.engine.counts["samples"]

    path.engine.on_sample_tick(T0 + 900 * MS)
    path.engine.on_sample_tick(T0 + 1100 * MS)

    assert path.engine.counts["samples"] == before + 1, "a live clock's tick after the pause is ignored"


def test_a_failing_strategy_is_counted_and_logged_and_sends_nothing() -> None:
    clock = ReplayClock()
    path = build_path(settings(), clock, ["X"])

    def broken(sample):
        raise ZeroDivisionError("strategy bug")

    path.engine.strategy.on_sample = broken
    feed(clock, path.engine, snap(T0))
    clock.advance_to(T0 + 350 * MS)

    assert path.engine.counts["strategy_errors"] == 4
    assert path.engine.counts["orders"] == 0

"""What a halt does on the path: every open order cancelled, and with flatten, positions closed by
reduce-only orders inside the price band once the cancels are through; the strategy gets nothing out."""

from __future__ import annotations

from daemon.clock import ReplayClock
from daemon.events import Side, TargetPosition
from daemon.risk.state import TradingState
from tests.test_engine import MS, T0, build_path, feed, settings, snap


def long_position(order_type: str = "market"):
    clock = ReplayClock()
    path = build_path(settings(execution={"order_type": order_type}, strategy={"symbols": ["Y"]}), clock, ["X"])
    feed(clock, path.engine, snap(T0))
    path.engine.pursue(TargetPosition("X", clock.now(), 500, 1.0, "test"))
    clock.advance_to(T0 + 2 * MS)
    assert path.portfolio.position("X") == 500
    return clock, path


def test_a_halt_cancels_every_open_order() -> None:
    clock, path = long_position()
    eng = path.engine
    eng.policy = type(eng.policy)(order_type=type(eng.policy.order_type)("limit"))
    eng.pursue(TargetPosition("X", clock.now(), 900, 1.0, "more"))  # a limit buy rests at the bid
    assert len(eng.broker.open_orders("X")) == 1

    path.state.operator_halt("test", "ops")
    clock.advance_to(clock.now() + 2 * MS)

    assert eng.counts["halt_cancels"] == 1
    assert eng.broker.open_orders("X") == []
    assert path.risk.state is TradingState.HALTED
    assert eng.submit(eng._intent("X", Side.BUY, 100, TargetPosition("X", clock.now(), 1, 1.0))) is None
    assert path.risk.rejects["halted"] == 1


def test_kill_with_flatten_closes_the_position_inside_the_band() -> None:
    clock, path = long_position()

    path.state.operator_halt("test", "ops", flatten=True)
    clock.advance_to(clock.now() + 2 * MS)

    eng = path.engine
    assert eng.counts["flatten_orders"] == 1
    assert path.portfolio.position("X") == 0
    sell = eng.fills[-1]
    assert sell.side is Side.SELL and sell.price == 10000  # the best bid, well inside the 100 bps band
    assert path.risk.state is TradingState.HALTED


def test_flatten_waits_for_the_cancels_of_the_orders_still_working() -> None:
    clock, path = long_position()
    eng = path.engine
    eng.policy = type(eng.policy)(order_type=type(eng.policy.order_type)("limit"))
    eng.pursue(TargetPosition("X", clock.now(), 0, 1.0, "exit"))  # a limit sell of 500 rests at the ask
    assert len(eng.broker.open_orders("X")) == 1

    path.state.operator_halt("test", "ops", flatten=True)
    assert eng.counts["flatten_orders"] == 0  # its cancel is in flight
    clock.advance_to(clock.now() + 3 * MS)

    assert eng.counts["flatten_orders"] == 1
    assert path.portfolio.position("X") == 0

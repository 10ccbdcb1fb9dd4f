"""wind_down: no new orders after a stop; cancels asked and awaited; a broker that fails to cancel does not
stop the rest of the shutdown."""

from __future__ import annotations

from daemon.app import build_path
from daemon.clock import ReplayClock
from daemon.config import load_settings
from daemon.events import Order, OrderIntent, OrderType, Side
from daemon.shutdown import wind_down
from tests.conftest import REPO


class RefusingCancels:
    """The path's real paper broker, except that cancel raises (a gateway gone bad at the worst moment)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def submit(self, order: Order) -> None:
        self.inner.submit(order)

    def cancel(self, client_id: str) -> None:
        raise RuntimeError("venue unreachable")

    def open_orders(self, symbol: str | None = None):
        return self.inner.open_orders(symbol)


def path_with_an_order(broker_wrapper=None):
    path = build_path(load_settings(REPO / "config.toml"), ReplayClock(), ["SIMUSD"])
    engine = path.engine
    if broker_wrapper is not None:
        engine.use_broker(broker_wrapper(engine.broker))
    engine.broker.submit(Order("dd-0-1", "SIMUSD", 0, Side.BUY, 10, OrderType.LIMIT, 9_000))
    return engine


async def test_a_stop_refuses_new_orders_and_cancels_the_open_ones() -> None:
    engine = path_with_an_order()
    assert [v.order.client_id for v in engine.open_orders()] == ["dd-0-1"]
    result = await wind_down(engine, cancel=True, wait_s=0.0)
    assert result.open_at_stop == ["dd-0-1"] and engine.trading_stopped
    assert engine.submit(OrderIntent("SIMUSD", 1, Side.BUY, 10, OrderType.LIMIT, 9_000)) is None
    assert engine.counts["intents_after_stop"] == 1


async def test_leave_keeps_the_orders_working() -> None:
    engine = path_with_an_order()
    result = await wind_down(engine, cancel=False, wait_s=5.0)
    assert result.left_open == ["dd-0-1"] and result.seconds < 1.0


async def test_a_cancel_that_raises_is_logged_and_the_stop_goes_on() -> None:
    engine = path_with_an_order(RefusingCancels)
    result = await wind_down(engine, cancel=True, wait_s=0.05)
    assert result.left_open == ["dd-0-1"], "reported as still open, not lost"

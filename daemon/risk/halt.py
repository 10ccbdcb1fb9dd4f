"""What the daemon does when trading halts: cancel every open order, and flatten if asked.

The trading state machine calls `on_transition`; the gate follows the new state. On HALTED every
open order is cancelled; when flattening was asked for (`depthd kill --flatten`, or
`flatten_on_halt` for automatic halts) each open position is closed by one reduce-only limit
order at the far touch, never beyond the price band, once the symbol's cancels have gone through.
The gate lets exactly these orders through while HALTED.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from daemon.brokers.lifecycle import OrderState
from daemon.events import OrderIntent, OrderType, Side
from daemon.risk.gate import FLATTEN_TAG
from daemon.risk.state import TradingState, Transition

if TYPE_CHECKING:
    from daemon.engine import Engine


class HaltActions:
    """The engine's halt procedure."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def on_transition(self, t: Transition) -> None:
        """The trading state changed: the gate follows; HALTED cancels every open order (then flattens)."""
        eng = self.engine
        eng.risk.state = t.new
        if t.new is not TradingState.HALTED or eng.broker is None:
            return
        for symbol in sorted(eng.syncs):
            for oo in list(eng.broker.open_orders(symbol)):
                if oo.state is not OrderState.PENDING_CANCEL:
                    eng.broker.cancel(oo.order.client_id)
                    eng.counts["cancels_sent"] += 1
                    eng.counts["halt_cancels"] += 1
        if self.flattening():
            self.flatten()

    def flattening(self) -> bool:
        """HALTED with flattening asked for."""
        eng = self.engine
        return (eng.risk.state is TradingState.HALTED and eng.monitor is not None
                and eng.monitor.machine.flatten_requested)

    def flatten(self) -> None:
        """Close every open position (each symbol once its cancels are through)."""
        for symbol in sorted(self.engine.syncs):
            self.flatten_symbol(symbol)

    def flatten_symbol(self, symbol: str) -> None:
        """One reduce-only limit order for the symbol's position, at the far touch within the band."""
        eng = self.engine
        assert eng.broker is not None
        if eng.broker.open_orders(symbol):  # cancels still in flight, or a flatten order already working
            return
        pos = eng.portfolio.position(symbol)
        book = eng.books[symbol]
        mid = book.mid_ticks()
        if pos == 0 or mid is None or not eng.syncs[symbol].live:
            return
        band = eng.risk.limits(symbol).band
        if pos > 0:
            px, side = max(book.best_bid_px, math.ceil(mid * (1.0 - band))), Side.SELL
        else:
            px, side = min(book.best_ask_px, math.floor(mid * (1.0 + band))), Side.BUY
        eng.counts["flatten_orders"] += 1
        eng.submit(OrderIntent(symbol, eng.clock.now(), side, abs(pos), OrderType.LIMIT, px, reduce_only=True,
                               tag=FLATTEN_TAG))

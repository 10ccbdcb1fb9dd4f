"""RiskGate: no intent becomes an order unless every limit holds.

Checks run in a fixed order, each its own method with a stable reason code; the first failure is
the RiskReject (counted by reason, never sent):

    halted / reducing_only   trading state (HALTED: nothing; REDUCING: only exposure-reducing orders)
    book_not_live            the symbol's book is not provably in sync
    feed_stale               no market data for the symbol for `feed_stale_ms`
    model_unhealthy          the model's scores fail or its features drift (new exposure only)
    bad_qty / min_order_qty  not a positive whole number of lots, or under the minimum size
    bad_price                a limit order without a positive whole-tick price
    max_order_qty / max_order_notional
    max_open_orders          too many of our orders already working in the symbol
    price_band               a limit price further than `price_band_bps` from mid
    book_too_thin            a market order larger than the opposite side within the band
    self_trade               the order would cross one of our own resting orders
    max_position / max_notional   the worst case (every open order on the side filling) over the limit
    order_rate               more than N orders in any 1 s or M in any 60 s (sliding windows)

Limits are per symbol (`[risk.symbols.SYM]` over `[risk]`), in lots and ticks of the instrument.
Pure: time comes from the clock; the engine supplies the facts of the moment as a RiskView.
The one exception to "nothing passes in HALTED" is the engine's own flatten order (reduce-only,
tagged `flatten`), which the halt procedure sends when flattening was asked for.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable, Mapping
from typing import NamedTuple

from daemon.clock import Clock
from daemon.config import RiskLimits, RiskSettings
from daemon.events import OrderIntent, OrderType, RiskReject, Side
from daemon.instruments import Instrument
from daemon.risk.state import TradingState

_BUY = Side.BUY
_LIMIT = OrderType.LIMIT
_HALTED = TradingState.HALTED
_REDUCING = TradingState.REDUCING
FLATTEN_TAG = "flatten"
_SECOND = 1_000_000_000
_MINUTE = 60 * _SECOND
# Notionals are lots x lot size x ticks x tick size in floats; a limit is only exceeded beyond float noise.
_SLACK = 1.0 + 1e-12


class RiskView(NamedTuple):
    """What the gate needs to know about a symbol at the moment of the check (ticks and lots).

    A NamedTuple like the market events: the engine builds one per intent, at a quarter of a frozen
    dataclass's cost."""

    position: int
    open_buy: int
    open_sell: int
    book_live: bool
    ref_price: int | None  # the far touch: best ask for a buy, best bid for a sell
    open_orders: int = 0
    mid: float | None = None  # ticks
    far_depth: int | None = None  # lots on the far side within the price band
    own_bid: int | None = None  # our highest resting buy price
    own_ask: int | None = None  # our lowest resting sell price
    last_market_ts: int | None = None


class _Limits:
    """One symbol's limits in its own units (lots, ticks) plus its order-rate windows."""

    __slots__ = ("band", "feed_stale_ns", "lot", "max_notional", "max_open", "max_order", "max_order_notional",
                 "max_position", "min_order", "per_minute", "per_second", "sent_minute", "sent_second", "tick")

    def __init__(self, lim: RiskLimits, inst: Instrument) -> None:
        self.lot = inst.lot_size
        self.tick = inst.tick_size
        # Floor to whole lots, with slack for float division (0.29 / 1e-8 = 28999999.999999996).
        self.max_position = math.floor(lim.max_position / inst.lot_size + 1e-6)
        self.max_order = math.floor(lim.max_order_qty / inst.lot_size + 1e-6)
        self.min_order = max(1, math.ceil(lim.min_order_qty / inst.lot_size - 1e-6))
        self.max_notional = lim.max_notional
        self.max_order_notional = lim.max_order_notional
        self.max_open = lim.max_open_orders
        self.band = lim.price_band_bps / 1e4
        self.feed_stale_ns = lim.feed_stale_ms * 1_000_000
        self.per_second = max(1, math.floor(lim.max_orders_per_second + 1e-9))
        self.per_minute = max(1, math.floor(lim.max_orders_per_minute + 1e-9))
        self.sent_second: deque[int] = deque()
        self.sent_minute: deque[int] = deque()


class RiskGate:
    """Pre-trade checks; `check` returns None when the intent may pass (and then counts it as sent)."""

    def __init__(self, settings: RiskSettings, instrument: Callable[[str], Instrument],
                 clock: Clock | None = None) -> None:
        self._settings = settings
        self._instrument = instrument
        self._clock = clock
        self._limits: dict[str, _Limits] = {}
        self.rejects: Counter[str] = Counter()
        self.passed = 0
        self.state = TradingState.ACTIVE  # set by the engine from the trading state machine
        # set by the model runtime: why the model cannot be trusted now (a failing score, drift), or None
        self.model_problem: str | None = None

    def reload(self, settings: RiskSettings) -> None:
        """New limits from a reloaded config (SIGHUP); the order-rate windows carry over, so a reload does not
        reset the rate limit."""
        old = self._limits
        self._settings = settings
        self._limits = {}
        for symbol, lim in old.items():
            new = self.limits(symbol)
            new.sent_second, new.sent_minute = lim.sent_second, lim.sent_minute

    def limits(self, symbol: str) -> _Limits:
        """The symbol's limits in lots/ticks (built once)."""
        lim = self._limits.get(symbol)
        if lim is None:
            lim = self._limits[symbol] = _Limits(self._settings.limits_for(symbol), self._instrument(symbol))
        return lim

    def check(self, intent: OrderIntent, view: RiskView) -> RiskReject | None:
        """Run every check in order; the first failure is the reject. A pass is recorded for the rate limit."""
        lim = self._limits.get(intent.symbol) or self.limits(intent.symbol)
        now = self._clock.now() if self._clock is not None else intent.ts
        for check in self._CHECKS:
            detail = check(self, intent, view, lim, now)
            if detail is not None:
                reason, text = detail
                self.rejects[reason] += 1
                return RiskReject(intent, reason, text)
        self.passed += 1
        lim.sent_second.append(now)
        lim.sent_minute.append(now)
        return None

    # --- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _worst_position(intent: OrderIntent, view: RiskView) -> int:
        if intent.side is _BUY:
            return view.position + view.open_buy + intent.qty
        return view.position - view.open_sell - intent.qty

    @staticmethod
    def _only_reduces(worst: int, view: RiskView) -> bool:
        """True when the worst case stays on the position's side and is smaller: a pure reduction."""
        return worst == 0 or ((worst > 0) == (view.position > 0) and abs(worst) < abs(view.position))

    def _reduces(self, intent: OrderIntent, view: RiskView) -> bool:
        return self._only_reduces(self._worst_position(intent, view), view)

    def _qty(self, symbol: str, lots: int) -> float:
        return self._instrument(symbol).qty(lots)

    # --- the checks ------------------------------------------------------------------------------

    def _trading_state(self, intent: OrderIntent, view: RiskView, lim: _Limits, now: int) -> tuple[str, str] | None:
        state = self.state
        if state is _HALTED:
            if intent.tag == FLATTEN_TAG and intent.reduce_only and self._reduces(intent, view):
                return None
            return "halted", f"{intent.symbol}: trading is HALTED"
        if state is _REDUCING and not self._reduces(intent, view):
            return "reducing_only", f"{intent.symbol}: trading is REDUCING and this order adds exposure"
        return None

    def _book_live(self, intent: OrderIntent, view: RiskView, lim: _Limits, now: int) -> tuple[str, str] | None:
        if not view.book_live:
            return "book_not_live", f"{intent.symbol}: the book is not LIVE"
        return None

    def _feed_fresh(self, intent: OrderIntent, view: RiskView, lim: _Limits, now: int) -> tuple[str, str] | None:
        last = view.last_market_ts
        if last is not None and now - last > lim.feed_stale_ns:
            return "feed_stale", (f"{intent.symbol}: no market data for {(now - last) / 1e6:.0f} ms "
                                  f"(feed_stale_ms {lim.feed_stale_ns // 1_000_000})")
        return None

    def _model_healthy(self, intent: OrderIntent, view: RiskView, lim: _Limits, now: int) -> tuple[str, str] | None:
        problem = self.model_problem
        if problem is not None and not self._reduces(intent, view):
            return "model_unhealthy", f"{intent.symbol}: {problem}"
        return None

    def _order_size(self, intent: OrderIntent, view: RiskView, lim: _Limits, now: int) -> tuple[str, str] | None:
        qty = intent.qty
        if type(qty) is not int or qty <= 0:
            return "bad_qty", f"{intent.symbol}: order qty {qty!r} is not a positive whole number of lots"
        # the reduce_only flag is not trusted: only an order that really reduces may be smaller
        if qty < lim.min_order and not self._reduces(intent, view):
            return "min_order_qty", (f"{intent.symbol}: order qty {self._qty(intent.symbol, qty)} is below "
                                     f"min_order_qty {self._qty(intent.symbol, lim.min_order)}")
        if qty > lim.max_order:
            return "max_order_qty", (f"{intent.symbol}: order qty {self._qty(intent.symbol, qty)} exceeds "
                                     f"max_order_qty {self._qty(intent.symbol, lim.max_order)}")
        return None

    def _price(self, intent: OrderIntent, view: RiskView, lim: _Limits, now: int) -> tuple[str, str] | None:
        if intent.order_type is _LIMIT and (type(intent.limit_px) is not int or intent.limit_px <= 0):
            return "bad_price", f"{intent.symbol}: limit price {intent.limit_px!r} is not a positive whole tick"
        return None

    def _order_notional(self, intent: OrderIntent, view: RiskView, lim: _Limits,
                        now: int) -> tuple[str, str] | None:
        px = intent.limit_px if intent.order_type is _LIMIT else view.ref_price
        if px is None:
            return "no_price", f"{intent.symbol}: no price to value the order at"
        notional = intent.qty * lim.lot * (px * lim.tick)
        if notional > lim.max_order_notional * _SLACK:
            return "max_order_notional", (f"{intent.symbol}: order notional {notional:.2f} exceeds "
                                          f"max_order_notional {lim.max_order_notional:.2f}")
        return None

    def _open_orders(self, intent: OrderIntent, view: RiskView, lim: _Limits, now: int) -> tuple[str, str] | None:
        if view.open_orders >= lim.max_open:
            return "max_open_orders", (f"{intent.symbol}: {view.open_orders} orders open "
                                       f"(max_open_orders {lim.max_open})")
        return None

    def _price_band(self, intent: OrderIntent, view: RiskView, lim: _Limits, now: int) -> tuple[str, str] | None:
        mid = view.mid
        if mid is None:
            return "no_price", f"{intent.symbol}: no mid to check the price band against"
        if intent.order_type is _LIMIT:
            off = abs(intent.limit_px - mid) / mid
            if off > lim.band:
                return "price_band", (f"{intent.symbol}: limit price is {off * 1e4:.1f} bps from mid "
                                      f"(price_band_bps {lim.band * 1e4:g})")
        elif view.far_depth is not None and view.far_depth < intent.qty:
            return "book_too_thin", (f"{intent.symbol}: market order of {self._qty(intent.symbol, intent.qty)} "
                                     f"against {self._qty(intent.symbol, view.far_depth)} within "
                                     f"{lim.band * 1e4:g} bps of mid")
        return None

    def _self_trade(self, intent: OrderIntent, view: RiskView, lim: _Limits, now: int) -> tuple[str, str] | None:
        market = intent.order_type is not _LIMIT
        if intent.side is _BUY:
            own = view.own_ask
            if own is not None and (market or intent.limit_px >= own):
                return "self_trade", f"{intent.symbol}: a buy would cross our own resting sell at {own} ticks"
        else:
            own = view.own_bid
            if own is not None and (market or intent.limit_px <= own):
                return "self_trade", f"{intent.symbol}: a sell would cross our own resting buy at {own} ticks"
        return None

    def _position(self, intent: OrderIntent, view: RiskView, lim: _Limits, now: int) -> tuple[str, str] | None:
        worst = self._worst_position(intent, view)
        if abs(worst) > lim.max_position and not self._only_reduces(worst, view):
            return "max_position", (f"{intent.symbol}: worst-case position {self._qty(intent.symbol, worst)} "
                                    f"would exceed max_position {self._qty(intent.symbol, lim.max_position)}")
        return None

    def _notional(self, intent: OrderIntent, view: RiskView, lim: _Limits, now: int) -> tuple[str, str] | None:
        px = intent.limit_px if intent.order_type is _LIMIT else view.ref_price
        worst = self._worst_position(intent, view)
        notional = abs(worst * lim.lot * (px * lim.tick))
        if notional > lim.max_notional * _SLACK and not self._only_reduces(worst, view):
            return "max_notional", (f"{intent.symbol}: worst-case notional {notional:.2f} would exceed "
                                    f"max_notional {lim.max_notional:.2f}")
        return None

    def _order_rate(self, intent: OrderIntent, view: RiskView, lim: _Limits, now: int) -> tuple[str, str] | None:
        sent = lim.sent_second
        while sent and sent[0] <= now - _SECOND:
            sent.popleft()
        if len(sent) >= lim.per_second:
            return "order_rate", f"{intent.symbol}: {len(sent)} orders in the last 1 s (max_orders_per_second)"
        sent = lim.sent_minute
        while sent and sent[0] <= now - _MINUTE:
            sent.popleft()
        if len(sent) >= lim.per_minute:
            return "order_rate", f"{intent.symbol}: {len(sent)} orders in the last 60 s (max_orders_per_minute)"
        return None

    _CHECKS = (_trading_state, _book_live, _feed_fresh, _model_healthy, _order_size, _price, _order_notional,
               _open_orders, _price_band, _self_trade, _position, _notional, _order_rate)


def snapshot_rejects(gate: RiskGate) -> Mapping[str, int]:
    """Rejects by reason, sorted by reason (stable for reports)."""
    return dict(sorted(gate.rejects.items()))

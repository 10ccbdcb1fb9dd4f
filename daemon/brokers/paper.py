"""PaperBroker: simulated execution against the replayed (or live) book, with latency and fees.

Pure (DESIGN rule 1): no I/O and no wall time; every timestamp comes from the clock and every
delay is a clock timer, so a replay gives the same events run after run (rule 3).

Model:

- An order or a cancel reaches the book `latency_ns` after `submit` / `cancel`. With a latency of
  0 it still goes through a clock timer, due at the submit time, so it lands at the next clock
  advance and sees the book as it was when it was sent.
- On arrival an order is accepted and matched. A MARKET order walks the opposite side from its
  best level and takes at most what is shown; the unfilled rest is cancelled
  ("insufficient_depth"); with nothing to take it is rejected ("no_liquidity") instead of accepted.
  A LIMIT order takes what it can up to its limit as a taker (each level at its own price), and the
  rest rests at its limit as a maker order.
- A resting LIMIT order fills at its own limit price (maker) when a market trade from the other
  side prints at or through its price (up to the trade's size, shared among our orders in price
  then arrival order), or when the book crosses it (up to the crossing levels' shown size).
  Queue position is ignored: a resting order is assumed to be first at its price, so maker fills
  are optimistic.
- Liquidity our own orders took is remembered per level until the feed changes that level
  (`paper_matching.ConsumedLiquidity`), so two orders cannot take the same shown size.
- Invalid orders are rejected on the spot, inside `submit`: "unknown_symbol", "invalid_qty",
  "missing_limit_price", "unexpected_limit_price", "duplicate_client_id". Client ids are single
  use, even after the order ends (among the last USED_ID_WINDOW ids, so that memory stays
  bounded). A cancel of an unknown or finished order sends nothing and emits nothing; it is
  counted in `stats` ("cancel_unknown", "cancel_duplicate" for a second cancel in flight,
  "cancel_late" when the order finished before the cancel arrived).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from operator import attrgetter

from daemon.book.book import NO_PRICE, Book
from daemon.brokers.base import BrokerEventSink, OpenOrder
from daemon.brokers.lifecycle import TERMINAL, OrderEvent, OrderState, next_state
from daemon.brokers.paper_matching import ConsumedLiquidity, take
from daemon.clock import Clock
from daemon.events import (
    Fill,
    Liquidity,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderRejected,
    OrderType,
    Side,
    Trade,
)
from daemon.instruments import Instrument

USED_ID_WINDOW = 1 << 16  # client ids remembered for the duplicate check, most recent first


@dataclass(slots=True, eq=False)
class _Working:
    """The broker's record of one order."""

    order: Order
    seq: int
    state: OrderState = OrderState.PENDING_NEW
    filled: int = 0
    resting: bool = False

    @property
    def leaves(self) -> int:
        """Lots still to fill."""
        return self.order.qty - self.filled

    @property
    def limit(self) -> int:
        """The limit price of a LIMIT order (only those rest or get crossed)."""
        px = self.order.limit_px
        assert px is not None, "only limit orders have a limit"
        return px

    @property
    def rank(self) -> tuple[int, int]:
        """Sort key among resting orders of one side: best price first, then arrival."""
        return (-self.limit if self.order.side is Side.BUY else self.limit, self.seq)

    def reaches(self, px: int) -> bool:
        """True when a price is at or through this resting order's limit from the other side."""
        return px <= self.limit if self.order.side is Side.BUY else px >= self.limit


class _Venue:
    """Matching state of one symbol: its book, grid, consumed liquidity and our resting orders."""

    __slots__ = ("book", "buys", "consumed", "instrument", "sells")

    def __init__(self, book: Book, instrument: Instrument) -> None:
        self.book = book
        self.instrument = instrument
        self.consumed = ConsumedLiquidity()
        self.buys: list[_Working] = []
        self.sells: list[_Working] = []

    def resting(self, side: Side) -> list[_Working]:
        """Our resting orders of one side, best price first, then arrival."""
        return self.buys if side is Side.BUY else self.sells


class PaperBroker:
    """A Broker that fills orders against the book it is given, after a latency, with fees."""

    def __init__(self, clock: Clock, books: Mapping[str, Book], instruments: Mapping[str, Instrument],
                 on_event: BrokerEventSink, latency_ns: int = 0, taker_fee_bps: float = 0.0,
                 maker_fee_bps: float = 0.0) -> None:
        if latency_ns < 0:
            raise ValueError(f"latency_ns must be >= 0, got {latency_ns}")
        if not (math.isfinite(taker_fee_bps) and math.isfinite(maker_fee_bps)):
            raise ValueError("fee bps must be finite numbers")
        self._clock = clock
        self._on_event = on_event
        self._latency = int(latency_ns)
        self._fee_bps = {Liquidity.TAKER: float(taker_fee_bps), Liquidity.MAKER: float(maker_fee_bps)}
        self._books = books
        self._instruments = instruments
        self._venues: dict[str, _Venue] = {}
        self._live: dict[str, _Working] = {}
        # Client ids seen, oldest first, bounded so that a long replay's memory does not grow with it.
        self._used_ids: dict[str, None] = {}
        self._seq = itertools.count()
        self._counts = dict.fromkeys(("orders", "fills", "maker_fills", "taker_fills", "cancels",
                                      "cancel_requests", "cancel_unknown", "cancel_duplicate",
                                      "cancel_late"), 0)
        self._rejects: dict[str, int] = {}

    def rebind(self, on_event: BrokerEventSink) -> None:
        """Report events to another sink from now on (a journal placed between broker and engine)."""
        self._on_event = on_event

    # --- the Broker port -------------------------------------------------------------------------

    def submit(self, order: Order) -> None:
        """Send an order: invalid ones are rejected now, the rest arrive at the book after latency."""
        self._counts["orders"] += 1
        now = self._clock.now()
        if order.client_id in self._used_ids or order.client_id in self._live:
            self._count_reject("duplicate_client_id")
            self._on_event(OrderRejected(order.client_id, order.symbol, now, "duplicate_client_id"))
            return
        self._used_ids[order.client_id] = None
        if len(self._used_ids) > USED_ID_WINDOW:
            del self._used_ids[next(iter(self._used_ids))]
        w = _Working(order, next(self._seq))
        reason = self._invalid_reason(order)
        if reason is not None:
            self._reject(w, now, reason)
            return
        self._live[order.client_id] = w
        self._clock.call_at(now + self._latency, partial(self._arrive, w))

    def cancel(self, client_id: str) -> None:
        """Ask to cancel a live order; the cancel reaches the book after latency."""
        w = self._live.get(client_id)
        if w is None:
            self._counts["cancel_unknown"] += 1
            return
        if w.state is OrderState.PENDING_CANCEL:
            self._counts["cancel_duplicate"] += 1
            return
        self._move(w, OrderEvent.CANCEL_REQUEST)
        self._counts["cancel_requests"] += 1
        self._clock.call_at(self._clock.now() + self._latency, partial(self._cancel_arrives, w))

    def open_orders(self, symbol: str | None = None) -> list[OpenOrder]:
        """Orders not yet filled, cancelled or rejected (in flight included), in submission order."""
        return [OpenOrder(w.order, w.filled, w.leaves, w.state) for w in self._live.values()
                if symbol is None or w.order.symbol == symbol]

    # --- market data from the engine -------------------------------------------------------------

    def on_book(self, symbol: str, snapshot: bool = False) -> None:
        """After a book change: forget stale consumed liquidity and fill resting orders it crosses.

        Pass snapshot=True after a snapshot (or a resync) so every consumed record is dropped.
        """
        v = self._venue(symbol)
        if v is None:
            return
        if snapshot:
            v.consumed.clear()
        elif len(v.consumed):
            v.consumed.refresh(v.book)
        if not (v.buys or v.sells):
            return
        plan = self._crossed(v, Side.BUY) + self._crossed(v, Side.SELL)
        now = self._clock.now()
        for w, qty in plan:
            self._fill(w, now, w.limit, qty, Liquidity.MAKER)

    def on_trade(self, trade: Trade) -> None:
        """After a market trade: fill our resting orders on the other side at or through its price."""
        v = self._venues.get(trade.symbol)
        if v is None or not (v.buys or v.sells):
            return
        side = trade.side.opposite
        plan: list[tuple[_Working, int]] = []
        left = trade.qty
        for w in v.resting(side):
            if left <= 0 or not w.reaches(trade.price):
                break
            qty = min(w.leaves, left)
            plan.append((w, qty))
            left -= qty
        now = self._clock.now()
        for w, qty in plan:
            self._fill(w, now, w.limit, qty, Liquidity.MAKER)

    @property
    def stats(self) -> dict:
        """Counters for metrics and the report: orders, fills by liquidity, cancels, rejects by reason."""
        return {**self._counts, "rejects": dict(sorted(self._rejects.items()))}

    # --- arrivals (clock timers) -----------------------------------------------------------------

    def _arrive(self, w: _Working, t: int) -> None:
        """An order reaches the book: accept and match it (or reject a market order with no book)."""
        if w.state in TERMINAL:
            return
        v = self._venues[w.order.symbol]
        order = w.order
        is_market = order.order_type is OrderType.MARKET
        taken = take(v.book, v.consumed, order.side, w.leaves, None if is_market else order.limit_px)
        if is_market and not taken:
            self._reject(w, t, "no_liquidity")
            return
        self._move(w, OrderEvent.ACCEPT)
        self._on_event(OrderAccepted(order.client_id, order.symbol, t))
        for px, qty in taken:
            self._fill(w, t, px, qty, Liquidity.TAKER)
        if w.state in TERMINAL:
            return
        if is_market:
            self._cancel_now(w, t, "insufficient_depth")
        else:
            w.resting = True
            bisect.insort(v.resting(order.side), w, key=attrgetter("rank"))

    def _cancel_arrives(self, w: _Working, t: int) -> None:
        """A cancel reaches the book: the order is cancelled unless it finished in the meantime."""
        if w.state in TERMINAL:
            self._counts["cancel_late"] += 1
            return
        self._cancel_now(w, t, "requested")

    # --- matching --------------------------------------------------------------------------------

    def _crossed(self, v: _Venue, side: Side) -> list[tuple[_Working, int]]:
        """How much each resting order of `side` fills against opposite levels that cross it."""
        plan: list[tuple[_Working, int]] = []
        best = v.book.best_ask_px if side is Side.BUY else v.book.best_bid_px
        if best == NO_PRICE:
            return plan
        for w in v.resting(side):
            if not w.reaches(best):
                break
            qty = sum(q for _, q in take(v.book, v.consumed, side, w.leaves, w.limit))
            if qty:
                plan.append((w, qty))
        return plan

    # --- state changes and events ----------------------------------------------------------------

    def _fill(self, w: _Working, t: int, px: int, qty: int, liquidity: Liquidity) -> None:
        """Book a fill of `qty` lots at `px` on an order and report it, with its fee."""
        order = w.order
        w.filled += qty
        self._move(w, OrderEvent.FULL_FILL if w.leaves == 0 else OrderEvent.PARTIAL_FILL)
        if w.leaves == 0:
            self._finish(w)
        inst = self._venues[order.symbol].instrument
        fee = inst.price(px) * inst.qty(qty) * self._fee_bps[liquidity] / 1e4
        self._counts["fills"] += 1
        self._counts[f"{liquidity.value}_fills"] += 1
        self._on_event(Fill(order.client_id, order.symbol, t, order.side, px, qty, fee, liquidity,
                            f"paper-{self._counts['fills']}"))

    def _cancel_now(self, w: _Working, t: int, reason: str) -> None:
        self._move(w, OrderEvent.CANCEL)
        self._finish(w)
        self._counts["cancels"] += 1
        self._on_event(OrderCanceled(w.order.client_id, w.order.symbol, t, reason, w.leaves))

    def _reject(self, w: _Working, t: int, reason: str) -> None:
        self._move(w, OrderEvent.REJECT)
        self._finish(w)
        self._count_reject(reason)
        self._on_event(OrderRejected(w.order.client_id, w.order.symbol, t, reason))

    def _finish(self, w: _Working) -> None:
        """Take an order that reached a terminal state off the live list and the resting book."""
        self._live.pop(w.order.client_id, None)
        if w.resting:
            self._venues[w.order.symbol].resting(w.order.side).remove(w)
            w.resting = False

    def _venue(self, symbol: str) -> _Venue | None:
        """The matching state of a symbol, made when the symbol's book and instrument first exist."""
        v = self._venues.get(symbol)
        if v is None and symbol in self._books and symbol in self._instruments:
            v = self._venues[symbol] = _Venue(self._books[symbol], self._instruments[symbol])
        return v

    def _move(self, w: _Working, event: OrderEvent) -> None:
        """The only place an order changes state: through the lifecycle table."""
        w.state = next_state(w.state, event, f"order {w.order.client_id}")

    def _count_reject(self, reason: str) -> None:
        self._rejects[reason] = self._rejects.get(reason, 0) + 1

    def _invalid_reason(self, order: Order) -> str | None:
        """Why an order cannot be sent at all, or None."""
        if self._venue(order.symbol) is None:
            return "unknown_symbol"
        if order.qty <= 0:
            return "invalid_qty"
        if order.order_type is OrderType.LIMIT and order.limit_px is None:
            return "missing_limit_price"
        if order.order_type is OrderType.MARKET and order.limit_px is not None:
            return "unexpected_limit_price"
        return None

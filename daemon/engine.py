"""The engine: routes events along the path, synchronously and without I/O (DESIGN: the path).

    market event -> BookSync/Book -> FeatureCalculator -> (sample tick) -> Strategy -> target
    target -> OrderIntent -> RiskGate -> Order -> Broker -> broker events -> Portfolio, Strategy

The same Engine runs live and replay; the caller owns the clock (a replay advances it to each
event's receive time before handing the event over) and the source.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from daemon.book import NO_PRICE, Book, BookState, BookSync
from daemon.brokers.base import Broker, OpenOrder
from daemon.brokers.lifecycle import OrderState
from daemon.clock import Clock
from daemon.events import (
    BookDelta,
    BookSnapshot,
    BrokerEvent,
    Fill,
    MarketEvent,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderIntent,
    OrderRejected,
    OrderType,
    Quote,
    Side,
    TargetPosition,
    Trade,
)
from daemon.features import FeatureCalculator, FeatureSample
from daemon.instruments import Instrument
from daemon.latency import Stopwatch
from daemon.portfolio import Portfolio
from daemon.risk import RiskGate, RiskView
from daemon.risk.halt import HaltActions
from strategies import Strategy

if TYPE_CHECKING:
    from daemon.model.live import ModelRuntime
    from daemon.risk.monitor import RiskMonitor

log = structlog.get_logger("depthd.engine")

_LIVE = BookState.LIVE  # enum member lookups cost ~80 ns on Python 3.11; this is the per-message path
_BUY = Side.BUY
_LIMIT = OrderType.LIMIT


@dataclass(frozen=True, slots=True)
class ExecutionPolicy:
    """How targets become orders: market orders, or limit orders joining the touch."""

    order_type: OrderType = OrderType.MARKET
    client_id_prefix: str = "dd"


class Engine:
    """One instance per daemon; call `on_market` for each decoded event, in receive-time order."""

    def __init__(self, clock: Clock, instrument: Callable[[str], Instrument], features: FeatureCalculator,
                 risk: RiskGate, portfolio: Portfolio, policy: ExecutionPolicy,
                 sample_interval_ns: int, traded_symbols: Iterable[str] = (), max_fills_kept: int = 100_000,
                 pause_after_ns: int = 60_000_000_000) -> None:
        self.clock = clock
        self.instrument = instrument
        self.features = features
        self.risk = risk
        self.portfolio = portfolio
        self.policy = policy
        self.books: dict[str, Book] = {}
        self.syncs: dict[str, BookSync] = {}
        self.strategy: Strategy | None = None
        self.broker: Broker | None = None
        self._broker_reports_sends = False
        self.traded = frozenset(traded_symbols)
        self.counts: Counter[str] = Counter()
        self.broker_rejects: Counter[str] = Counter()
        self.fills: list[Fill] = []
        self._max_fills_kept = max_fills_kept
        self._order_seq = 0
        self.client_ids: Callable[[], str] | None = None  # unique across restarts when a journal numbers them
        self._last_reject: dict[str, str] = {}
        self._last_broker_reject: dict[str, str] = {}
        self._strategy_failing = False
        self._sample_interval_ns = sample_interval_ns
        self._pause_after_ns = pause_after_ns
        self._last_market_ts = 0
        self._sampler = None
        # (symbol, sync, tick size, traded by the strategy) in symbol order, for the sampling tick
        self._sampled: list[tuple[str, BookSync, float, bool]] = []
        self._broker_on_book: Callable[..., None] | None = None
        self._broker_on_trade: Callable[[Trade], None] | None = None
        # called with every sample of every symbol (after scoring): `depthd features`, tests
        self.sample_sinks: list[Callable[[FeatureSample], None]] = []
        self.model: ModelRuntime | None = None  # scores the samples of traded symbols when configured
        self.monitor: RiskMonitor | None = None  # risk triggers; set by build_path
        # timing of the feature sample, the score and tick-to-order, with a time source the shell injects
        # (the core reads no clock of its own); None = not timed
        self.stopwatch: Stopwatch | None = None
        self.trading_stopped = False  # set on a graceful stop: no new orders from here on
        self.halt = HaltActions(self)  # what HALTED does: cancel everything, flatten if asked
        self.risk_eval_ns = 500_000_000  # the triggers are judged this often (and after every fill or error)
        self._next_risk_eval = 0

    # --- wiring ----------------------------------------------------------------------------------

    def attach(self, strategy: Strategy, broker: Broker) -> None:
        """Plug in the strategy and the broker (the broker reports back through `on_broker_event`)."""
        self.strategy = strategy
        self.broker = broker
        # A simulated broker matches against the market data; a live one ignores it.
        self._broker_on_book = getattr(broker, "on_book", None)
        self._broker_on_trade = getattr(broker, "on_trade", None)
        self._sampler = self.clock.call_every(self._sample_interval_ns, self.on_sample_tick,
                                              quiet_after_ns=self._pause_after_ns)

    def use_broker(self, broker: Broker) -> None:
        """Send to another broker from now on (a live gateway, a journaling wrapper); a simulated one
        also matches against the market data."""
        self.broker = broker
        # a live gateway tells when an order leaves it (`on_sent`), which ends its tick-to-order time
        self._broker_reports_sends = hasattr(broker, "on_sent")
        if self._broker_reports_sends:
            broker.on_sent = self._order_sent  # type: ignore[attr-defined]
        self._broker_on_book = getattr(broker, "on_book", None)
        self._broker_on_trade = getattr(broker, "on_trade", None)

    def _order_sent(self, order: Order) -> None:
        if self.stopwatch is not None:
            self.stopwatch.sent(order.client_id)

    def open_orders(self) -> list[OpenOrder]:
        """Every order working at the broker, symbol by symbol (for status, metrics and the stop)."""
        if self.broker is None:
            return []
        return [oo for symbol in sorted(self.syncs) for oo in self.broker.open_orders(symbol)]

    def stop_trading(self) -> None:
        """No new orders from now on (a graceful stop); cancels and fills still flow."""
        if not self.trading_stopped:
            self.trading_stopped = True
            log.info("trading_stopped", open_intents=self.counts["intents"])

    def detach_trading(self) -> None:
        """Sample features only: no strategy, model or broker matching (`depthd features`)."""
        self.strategy = None
        self.model = None
        self._broker_on_book = None
        self._broker_on_trade = None

    def add_symbol(self, symbol: str) -> BookSync:
        """Create the book and sync machine of a symbol (idempotent)."""
        sync = self.syncs.get(symbol)
        if sync is None:
            self.instrument(symbol)
            book = self.books[symbol] = Book(symbol)
            sync = self.syncs[symbol] = BookSync(book)
            self._sampled = [(sym, self.syncs[sym], self.instrument(sym).tick_size,
                              not self.traded or sym in self.traded) for sym in sorted(self.syncs)]
        return sync

    # --- market data -----------------------------------------------------------------------------

    def on_market(self, ev: MarketEvent) -> None:
        """Route one market event: book and features, then the paper matcher if there is one."""
        self._last_market_ts = ev.ts_recv
        sync = self.syncs.get(ev.symbol) or self.add_symbol(ev.symbol)
        monitor = self.monitor
        if monitor is not None:  # the feed's freshness and skew, inlined: this runs for every message
            last = monitor.last_event
            if ev.symbol in last:
                last[ev.symbol] = ev.ts_recv
                monitor.skew_ns[ev.symbol] = ev.ts_recv - ev.ts_venue
            else:
                monitor.on_market(ev.symbol, ev.ts_recv, ev.ts_venue)
        if type(ev) is Trade:
            self.counts["trade"] += 1
            self.features.on_trade(ev)
            if self._broker_on_trade is not None and sync.state is _LIVE:
                self._broker_on_trade(ev)
            return
        if isinstance(ev, BookDelta):
            self.counts["delta"] += 1
            self.counts["level_updates"] += ev.n_levels
            before = sync.state
            state = sync.on_delta(ev)
        elif isinstance(ev, BookSnapshot):
            self.counts["snapshot"] += 1
            self.counts["level_updates"] += ev.n_levels
            before = sync.state
            state = sync.on_snapshot(ev)
        elif type(ev) is Quote:
            self.counts["quote"] += 1
            before = sync.state
            state = sync.on_quote(ev)
            if state is before:
                return  # the venue's quote agreed with the book (or was not comparable): nothing changed
        else:
            self.counts["reset"] += 1
            before = sync.state
            state = sync.on_reset(ev)
        if state is not before:
            log.info("book_state", symbol=ev.symbol, old=str(before), new=str(state), ts=ev.ts_recv)
            if self.monitor is not None:
                self.monitor.on_book_state(ev.symbol, state is _LIVE, ev.ts_recv)
        if state is _LIVE or before is _LIVE:
            self.features.on_book(sync.book, state is _LIVE, ev.ts_recv)
            if self._broker_on_book is not None and state is _LIVE:
                self._broker_on_book(ev.symbol, snapshot=type(ev) is BookSnapshot)

    # --- sampling and strategy -------------------------------------------------------------------

    def on_sample_tick(self, ts: int) -> None:
        """The sampling cadence: mark positions, ask the strategy, pursue its targets.

        Sampling pauses once no market event has arrived for `pause_after` (a feed gap, a weekend)
        and resumes with the next one; the replay clock skips those ticks without calling here.
        """
        if ts - self._last_market_ts > self._pause_after_ns:
            self._evaluate_risk(ts)
            return
        sample_of = self.features.sample
        mark = self.portfolio.mark
        on_sample = self.strategy.on_sample if self.strategy is not None else None
        sinks = self.sample_sinks
        model = self.model
        sw = self.stopwatch
        for symbol, sync, tick_size, traded in self._sampled:
            if sw is None:
                sample = sample_of(symbol, ts)
                if model is not None and traded:
                    model.on_sample(sample)
            else:
                sample = self._timed_sample(sw, symbol, ts, model if traded else None)
            for sink in sinks:
                sink(sample)
            if on_sample is None:
                continue  # sampling features only: nothing to mark or trade
            if sync.state is _LIVE:
                mid = sync.book.mid_ticks()
                if mid is not None:
                    mark(symbol, tick_size * mid)
            if traded:
                try:
                    target = on_sample(sample)
                except Exception:
                    # A strategy bug must not take the daemon down: no target from this sample.
                    self._strategy_failed(symbol, ts, "on_sample")
                    continue
                self._strategy_failing = False
                if target is not None:
                    if sync.tradeable:
                        self.pursue(target)
                    else:  # no intent from a book that is not provably in sync
                        self.counts["targets_not_live"] += 1
        self.counts["samples"] += len(self._sampled)
        if on_sample is not None:
            self.portfolio.record_equity(ts)
        self._evaluate_risk(ts)

    def _timed_sample(self, sw: Stopwatch, symbol: str, ts: int, model: ModelRuntime | None) -> FeatureSample:
        """The sample (and its score), each stage timed into the stopwatch's histograms."""
        perf = sw.perf_ns
        t0 = perf()
        sample = self.features.sample(symbol, ts)
        t1 = perf()
        sw.stages["features"].observe_ns(t1 - t0)
        if model is not None:
            model.on_sample(sample)
            sw.stages["score"].observe_ns(perf() - t1)
        return sample

    def _evaluate_risk(self, ts: int) -> None:
        """Judge the risk triggers every `risk_eval_ns`, after the positions were marked at this tick."""
        if self.monitor is not None and ts >= self._next_risk_eval:
            self._next_risk_eval = ts + self.risk_eval_ns
            self.monitor.evaluate(ts)

    def _strategy_failed(self, symbol: str, ts: int, hook: str) -> None:
        """Count a strategy exception; log it with its traceback once per run of failures."""
        self.counts["strategy_errors"] += 1
        if not self._strategy_failing:
            log.exception("strategy_error", symbol=symbol, ts=ts, hook=hook)
        self._strategy_failing = True

    def pursue(self, target: TargetPosition) -> None:
        """Turn a target position into at most one new order, cancelling orders that work against it
        (the wrong side, more than needed, or a limit no longer at the touch)."""
        assert self.broker is not None
        symbol = target.symbol
        position = self.portfolio.position(symbol)
        want = target.target - position
        working = 0
        for oo in self.broker.open_orders(symbol):
            if oo.state is OrderState.PENDING_CANCEL:
                continue
            signed = int(oo.order.side) * oo.leaves_qty
            if (want == 0 or (signed > 0) != (want > 0) or abs(working + signed) > abs(want)
                    or not self._at_touch(oo.order)):
                self.broker.cancel(oo.order.client_id)
                self.counts["cancels_sent"] += 1
            else:
                working += signed
        delta = want - working
        if delta == 0:
            return
        side = Side.BUY if delta > 0 else Side.SELL
        intent = self._intent(symbol, side, abs(delta), target)
        if intent is not None:
            self.submit(intent)

    def _touch(self, symbol: str, side: Side) -> int:
        """The best price on an order's own side (best bid for a buy), or NO_PRICE."""
        book = self.books[symbol]
        return book.best_bid_px if side is Side.BUY else book.best_ask_px

    def _at_touch(self, order: Order) -> bool:
        """A market order, or a limit order still priced at its side's best level."""
        return order.order_type is OrderType.MARKET or order.limit_px == self._touch(order.symbol, order.side)

    def _intent(self, symbol: str, side: Side, qty: int, target: TargetPosition) -> OrderIntent | None:
        if self.policy.order_type is OrderType.MARKET:
            return OrderIntent(symbol, self.clock.now(), side, qty, OrderType.MARKET, tag=target.reason)
        touch = self._touch(symbol, side)
        if touch == NO_PRICE:
            self.counts["no_touch"] += 1
            return None
        return OrderIntent(symbol, self.clock.now(), side, qty, OrderType.LIMIT, touch, tag=target.reason)

    def risk_view(self, symbol: str, side: Side, market: bool = True) -> RiskView:
        """The facts the risk gate checks an intent of this symbol against (ticks and lots). The depth on
        the far side within the price band is only looked up for a market order, the only one it judges."""
        assert self.broker is not None
        open_buy = open_sell = n_open = 0
        own_bid = own_ask = None
        for oo in self.broker.open_orders(symbol):
            n_open += 1
            order = oo.order
            px = order.limit_px
            if order.side is _BUY:
                open_buy += oo.leaves_qty
                if px is not None and (own_bid is None or px > own_bid):
                    own_bid = px
            else:
                open_sell += oo.leaves_qty
                if px is not None and (own_ask is None or px < own_ask):
                    own_ask = px
        book = self.books[symbol]
        mid = book.mid_ticks()
        far_depth = None
        if side is _BUY:
            far = book.best_ask_px
            if market and mid is not None:
                far_depth = book.ask_depth_to(math.floor(mid * (1.0 + self.risk.limits(symbol).band)))
        else:
            far = book.best_bid_px
            if market and mid is not None:
                far_depth = book.bid_depth_from(math.ceil(mid * (1.0 - self.risk.limits(symbol).band)))
        monitor = self.monitor
        return RiskView(self.portfolio.position(symbol), open_buy, open_sell, self.syncs[symbol].tradeable,
                        far if far != NO_PRICE else None, n_open, mid, far_depth, own_bid, own_ask,
                        monitor.last_event.get(symbol) if monitor is not None else None)

    def submit(self, intent: OrderIntent) -> Order | None:
        """Risk-check an intent and send it; a refusal is counted by reason and logged, never sent."""
        assert self.broker is not None
        if self.trading_stopped:
            self.counts["intents_after_stop"] += 1
            return None
        self.counts["intents"] += 1
        view = self.risk_view(intent.symbol, intent.side, intent.order_type is not _LIMIT)
        reject = self.risk.check(intent, view)
        if reject is not None:
            _log_first_of_run(self._last_reject, intent.symbol, reject.reason, "risk_reject",
                              detail=reject.detail, ts=intent.ts)
            return None
        self._last_reject.pop(intent.symbol, None)
        self._order_seq += 1
        cid = self.client_ids() if self.client_ids is not None else f"{self.policy.client_id_prefix}-{self._order_seq}"
        order = Order.from_intent(cid, intent)
        self.counts["orders"] += 1
        if self.monitor is not None:
            self.monitor.on_order_sent(intent.ts)
        sw = self.stopwatch
        if sw is not None and sw.wall_ns is not None:  # live: tick-to-order from the last market event's receipt
            sw.triggered(cid, self._last_market_ts)
        self.broker.submit(order)
        if sw is not None and not self._broker_reports_sends:
            sw.sent(cid)  # a broker without a send hook (paper) sends as it is handed the order
        return order

    # --- broker events ---------------------------------------------------------------------------

    def on_broker_event(self, ev: BrokerEvent) -> None:
        """Fills move the portfolio and reach the strategy; rejects and cancels are counted."""
        if isinstance(ev, Fill):
            self._last_broker_reject.pop(ev.symbol, None)
            self.counts["fills"] += 1
            if len(self.fills) < self._max_fills_kept:
                self.fills.append(ev)
            self.portfolio.on_fill(ev)
            if self.monitor is not None:
                self.monitor.on_fill(ev.symbol, ev.ts)
            if self.halt.flattening():
                self.halt.flatten_symbol(ev.symbol)
            if self.strategy is not None:
                try:
                    self.strategy.on_fill(ev)
                except Exception:
                    self._strategy_failed(ev.symbol, ev.ts, "on_fill")
        elif isinstance(ev, OrderRejected):
            self.broker_rejects[ev.reason] += 1
            if self.monitor is not None:
                self.monitor.on_broker_reject(ev.ts)
            _log_first_of_run(self._last_broker_reject, ev.symbol, ev.reason, "broker_reject",
                              client_id=ev.client_id, ts=ev.ts)
        elif isinstance(ev, OrderCanceled):
            self.counts["canceled"] += 1
            if self.halt.flattening():
                self.halt.flatten_symbol(ev.symbol)
        elif isinstance(ev, OrderAccepted) and self.monitor is not None:
            self.monitor.on_broker_ok()


def _log_first_of_run(last: dict[str, str], symbol: str, reason: str, event: str, **fields: object) -> None:
    """Log the first of a run of same-reason events of a symbol at info and its repeats at debug."""
    repeat = last.get(symbol) == reason
    last[symbol] = reason
    (log.debug if repeat else log.info)(event, symbol=symbol, reason=reason, **fields)

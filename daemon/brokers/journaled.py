"""JournaledBroker: puts the journal between the engine and any broker (DESIGN rule 6: nothing lost).

Every order is written to the journal, durably, before the broker sees it; an order whose write fails
is never sent, and the engine hears an OrderRejected("journal_unavailable") instead. Every event the
broker reports is journaled before the engine hears of it: fills durably and once per (venue, trade id)
(a fill the journal already holds is not passed on again), acks, cancels and rejects as order events
with the state they leave the order in. Cancel requests are journaled too. The engine stays pure: the
journal's disk writes happen here, in a live broker's wrapper.

    journaled = JournaledBroker(journal, "paper", clock, engine.on_broker_event)
    broker = PaperBroker(clock, books, instruments, journaled.on_venue_event, ...)
    journaled.attach(broker)
    engine.attach(strategy, journaled)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from daemon.brokers.base import Broker, BrokerEventSink, OpenOrder
from daemon.brokers.lifecycle import OrderState
from daemon.clock import Clock
from daemon.events import BrokerEvent, Fill, Order, OrderAccepted, OrderCanceled, OrderRejected

if TYPE_CHECKING:
    from daemon.journal import Journal

log = structlog.get_logger("depthd.journal")


class JournaledBroker:
    """A Broker that journals orders before sending them and venue events before reporting them."""

    def __init__(self, journal: Journal, venue: str, clock: Clock, on_event: BrokerEventSink) -> None:
        self.journal = journal
        self.venue = venue
        self.clock = clock
        self.on_event = on_event
        self.inner: Broker | None = None
        self.on_book = None  # a simulated broker's market-data hooks, passed through (see attach)
        self.on_trade = None
        self._orders: dict[str, tuple[Order, int]] = {}  # client id -> (order, filled lots)
        self.unsent = 0  # orders refused because the journal could not take them
        self.duplicate_fills = 0

    def attach(self, inner: Broker) -> None:
        """The broker to send to; it must report through `on_venue_event`."""
        self.inner = inner
        self.on_book = getattr(inner, "on_book", None)
        self.on_trade = getattr(inner, "on_trade", None)

    @property
    def connected(self) -> bool:
        """The inner broker's connection (a paper broker is always connected)."""
        return bool(getattr(self.inner, "connected", True))

    def submit(self, order: Order) -> None:
        """Journal the order durably, then send it; a failed write means it is not sent."""
        from daemon.journal import JournalError

        assert self.inner is not None, "attach() a broker first"
        try:
            self.journal.record_order(order, venue=self.venue)
        except JournalError as exc:
            self.unsent += 1
            log.error("order_not_sent", client_id=order.client_id, problem=str(exc))
            self.on_event(OrderRejected(order.client_id, order.symbol, self.clock.now(), "journal_unavailable"))
            return
        self._orders[order.client_id] = (order, 0)
        self.inner.submit(order)

    def cancel(self, client_id: str) -> None:
        """Journal the cancel request, then ask the broker."""
        assert self.inner is not None, "attach() a broker first"
        if client_id in self._orders:
            self._event(client_id, "CANCEL_REQUEST", OrderState.PENDING_CANCEL, durable=False)
        self.inner.cancel(client_id)

    def open_orders(self, symbol: str | None = None) -> list[OpenOrder]:
        """The inner broker's open orders."""
        assert self.inner is not None, "attach() a broker first"
        return self.inner.open_orders(symbol)

    def on_venue_event(self, ev: BrokerEvent) -> None:
        """A broker event: journal it, then hand it to the engine (a fill already journaled is dropped)."""
        cid = ev.client_id
        if isinstance(ev, Fill):
            order, filled = self._orders.get(cid, (None, 0))
            filled += ev.qty
            state = None
            if order is not None:
                self._orders[cid] = (order, filled)
                state = str(OrderState.FILLED if filled >= order.qty else OrderState.PARTIALLY_FILLED)
            if not self.journal.record_fill(ev, self.venue, state=state).inserted:
                self.duplicate_fills += 1
                if order is not None:
                    self._orders[cid] = (order, filled - ev.qty)
                log.warning("duplicate_fill_dropped", client_id=cid, trade_id=ev.trade_id)
                return
            if order is not None and filled >= order.qty:
                self._orders.pop(cid, None)
        elif isinstance(ev, OrderAccepted):
            self._event(cid, "ACCEPT", OrderState.NEW, acked=True)
        elif isinstance(ev, OrderCanceled):
            self._event(cid, "CANCEL", OrderState.CANCELED, durable=True, reason=ev.reason)
            self._orders.pop(cid, None)
        elif isinstance(ev, OrderRejected):
            self._event(cid, "REJECT", OrderState.REJECTED, durable=True, reason=ev.reason)
            self._orders.pop(cid, None)
        self.on_event(ev)

    def _event(self, client_id: str, event: str, state: OrderState, durable: bool = False,
               acked: bool | None = None, reason: str = "") -> None:
        if client_id not in self._orders:
            return  # not an order this daemon journaled (the journal refuses events of unknown orders)
        self.journal.record_order_event(self.clock.now(), client_id, event, str(state),
                                        payload={"reason": reason} if reason else None, durable=durable,
                                        acked=acked)

"""What a live gateway writes to the journal: the `OrderJournal` protocol (`daemon.journal.Journal` implements
it, so the gateways do not import the journal and tests can watch the calls) and `TrackerJournal`, the writes
both gateways make from their OrderTracker's events."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import structlog

from daemon.brokers.orders import OrderTracker
from daemon.events import BrokerEvent, Fill, Order, OrderAccepted, OrderCanceled

log = structlog.get_logger("depthd.brokers.journal")


class OrderJournal(Protocol):
    """Orders before they are sent, their events with the state they leave, fills once per trade id."""

    def record_order(self, order: Order, venue: str = "", state: str = "PENDING_NEW") -> object:
        """Journal an order before it is sent (durable); raising means: do not send it."""
        ...

    def record_order_event(self, ts: int, client_id: str, event: str, state: str, venue_order_id: str | None = None,
                           payload: Mapping[str, object] | None = None) -> object:
        """Journal an order's event (ACCEPT, CANCEL_REQUEST, SEND_TIMEOUT, ...) and the state it leaves."""
        ...

    def record_replace(self, ts: int, client_id: str, qty: int, limit_px: int | None, state: str) -> object:
        """Journal a modification the venue confirmed: the order's new quantity and limit price (durable)."""
        ...

    def record_fill(self, fill: Fill, venue: str, state: str | None = None) -> object:
        """Journal a fill once per (venue, trade id) (durable)."""
        ...


class TrackerJournal:
    """A gateway's journal writes, each with the state the tracker leaves the order in.

    A failed write is logged and counted (`journal_error` in the gateway's stats), never raised: the event
    still reaches the engine and the reconciler finds the gap. Only `order` (before a send) raises, because
    nothing is sent that the journal does not hold.
    """

    def __init__(self, journal: OrderJournal | None, tracker: OrderTracker, venue: str, stats: Counter[str],
                 clock_now: Callable[[], int]) -> None:
        self.journal = journal
        self.now = clock_now
        self.tracker = tracker
        self.venue = venue
        self.stats = stats
        self._params = {r.order.client_id: (r.order.qty, r.order.limit_px) for r in tracker.records()}

    def order(self, order: Order) -> None:
        """Journal an order before it is sent (raises: then do not send it)."""
        self._params[order.client_id] = (order.qty, order.limit_px)
        if self.journal is not None:
            self.journal.record_order(order, self.venue)

    def event(self, ev: BrokerEvent) -> None:
        """Journal one event the tracker emitted (a modification it implies goes in first)."""
        self.params(ev.client_id)
        if isinstance(ev, Fill):
            view = self.tracker.get(ev.client_id)
            self._write(ev.client_id, self.journal.record_fill if self.journal else None, ev, self.venue,
                        state=str(view.state) if view is not None else None)
            return
        kind = "ACCEPT" if isinstance(ev, OrderAccepted) else "CANCEL" if isinstance(ev, OrderCanceled) else "REJECT"
        self.transition(ev.ts, ev.client_id, kind, None if isinstance(ev, OrderAccepted) else {"reason": ev.reason})

    def transition(self, ts: int, cid: str, event: str, payload: Mapping[str, object] | None = None) -> None:
        """Journal an order event (CANCEL_REQUEST, SEND_TIMEOUT, REPLACE_REQUEST, ...) with the order's state now."""
        view = self.tracker.get(cid)
        if view is not None and self.journal is not None:
            self._write(cid, self.journal.record_order_event, ts, cid, event, str(view.state),
                        self.tracker.venue_id(cid), payload)

    def params(self, cid: str) -> None:
        """Journal the order's quantity and limit price when the tracker's differ from the journal's (a
        modification, confirmed or implied by a fill): before any fill beyond the old quantity goes in."""
        view = self.tracker.get(cid)
        if view is None:
            return
        now = (view.order.qty, view.order.limit_px)
        if self._params.setdefault(cid, now) == now:
            return
        self._params[cid] = now
        self.stats["modified"] += 1
        if self.journal is not None:
            self._write(cid, self.journal.record_replace, self.now(), cid, now[0], now[1], str(view.state))

    def _write(self, cid: str, fn: Callable[..., object] | None, *args: Any, **kw: Any) -> None:
        if fn is None:
            return
        try:
            fn(*args, **kw)
        except Exception as exc:
            self.stats["journal_error"] += 1
            log.error("journal_failed", client_id=cid, write=getattr(fn, "__name__", "?"),
                      error=f"{type(exc).__name__}: {exc}")

"""OrderTracker: a live broker's single source of truth for the orders the daemon owns.

Pure (DESIGN rule 1): no I/O and no clock reads; every report carries its time. A gateway (ccxt,
IB) feeds it what the venue says, in whatever order and however often it arrives, and forwards the
BrokerEvents each call returns (OrderAccepted, Fill, OrderCanceled, OrderRejected) to the engine.
Each real change is returned exactly once, whatever the duplication or reordering of the reports.

Reports (one method each, all return `list[BrokerEvent]`):

- `accepted`, `rejected`, `canceled`, `expired` (an expiry reaches the engine as an OrderCanceled
  with reason "expired"), `cancel_rejected`, `not_found` (the venue confirms it has no such order),
  `send_timeout` (our create's outcome is unknown), `fill` (keyed by the venue's trade id),
  `status`, an order-status snapshot from polling or reconciliation ("X is PARTIALLY_FILLED, 3 lots
  filled"), and `replaced` / `replace_rejected` for a modification asked with `request_replace`.

Rules:

- A fill is applied once, by trade id; a repeat is ignored and counted ("duplicate_fill").
- Anything showing the venue has the order (a fill, a cancel, an expiry, a status) implies its
  acceptance: OrderAccepted is emitted first, once. That is also how an UNKNOWN order is resolved.
- Fills never exceed the order quantity: an over-fill is not applied; it is logged as an error,
  counted ("overfill") and listed as a Discrepancy. The gateway should halt trading on one.
- The venue's cumulative filled quantity (from a status or a cancel/expiry report) is never turned
  into invented fills: what the fills seen so far do not cover is listed by `fills_to_fetch` for the
  gateway to fetch by trade. A cancel or expiry the fills do not yet cover is held until they do;
  so a cancel confirmation racing the final fill ends FILLED when the fills cover the quantity.
- A late or repeated non-fill report for a finished order is ignored and counted ("late_<kind>").
  A fill with a new trade id for a finished (canceled, expired, rejected) order is still applied,
  because it is money: it is emitted, counted ("fill_after_terminal") and listed as a Discrepancy.
- Reports for client ids the tracker does not know are counted ("unknown_order") and listed as
  Discrepancies; orphans the daemon does not own are the reconciler's business.

Modify: `request_replace(qty, limit_px)` keeps the wanted quantity and price beside the order
(PENDING_REPLACE) until the venue shows the order with them (`replaced`: the tracked Order becomes the
new one) or refuses (`replace_rejected`: it keeps the old). Until then a fill may take the order up to
the larger of the two quantities, and an order filled to the old quantity while a larger one is asked
stays working until the venue's word. The venue showing the order with a quantity or price nobody
asked for (modified from TWS, or while the daemon was down) is applied too, counted ("venue_replaced").
No BrokerEvent is emitted for a modification: `open_orders` shows it.

Restart: `records()` gives each order's OrderRecord and the journal keeps every Fill; `restore` takes
both back. An order that was in flight (PENDING_NEW, or an unacknowledged PENDING_CANCEL) comes back
UNKNOWN, since the process that awaited the answer is gone: reconciliation looks it up by client id
(`needs_lookup`), then asks `status` for every open order and fetches `fills_to_fetch`.
Finished orders are kept (for late-report dedup) up to `keep_terminal`, the oldest dropped first.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import structlog

from daemon.brokers.base import OpenOrder
from daemon.brokers.lifecycle import TERMINAL, OrderEvent, OrderState, next_state
from daemon.events import BrokerEvent, Fill, Order, OrderAccepted, OrderCanceled, OrderRejected

log = structlog.get_logger("depthd.brokers.orders")

KEEP_TERMINAL = 1 << 16  # finished orders remembered for late-report dedup
KEEP_DISCREPANCIES = 1 << 12

_S = OrderState
_E = OrderEvent
_VENUE_STATES = frozenset(OrderState) - {_S.PENDING_NEW, _S.UNKNOWN}


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """What the journal keeps of one order: enough, with its fills, to rebuild the tracker."""

    order: Order
    state: OrderState
    filled_qty: int = 0
    acked: bool = False
    cancel_requested: bool = False
    venue_id: str | None = None
    venue_filled: int = 0
    pending: OrderEvent | None = None
    pending_reason: str = ""


@dataclass(frozen=True, slots=True)
class Discrepancy:
    """A venue report the tracker could not reconcile with what it knows; for the log and the operator."""

    client_id: str
    kind: str
    detail: str
    ts: int


@dataclass(slots=True, eq=False)
class _Tracked:
    order: Order
    state: OrderState = _S.PENDING_NEW
    filled: int = 0
    acked: bool = False
    cancel_requested: bool = False
    venue_id: str | None = None
    venue_filled: int = 0
    pending: OrderEvent | None = None
    pending_reason: str = ""
    trade_ids: set[str] = field(default_factory=set)
    replacement: tuple[int, int | None] | None = None  # (qty, limit_px) asked, until the venue's word

    def view(self) -> OpenOrder:
        return OpenOrder(self.order, self.filled, self.order.qty - self.filled, self.state)


class OrderTracker:
    """Applies venue reports to the daemon's orders idempotently and in any order; emits each change once."""

    def __init__(self, keep_terminal: int = KEEP_TERMINAL) -> None:
        if keep_terminal < 0:
            raise ValueError(f"keep_terminal must be >= 0, got {keep_terminal}")
        self._orders: dict[str, _Tracked] = {}
        self._finished: deque[str] = deque()
        self._keep_terminal = keep_terminal
        self._discrepancies: deque[Discrepancy] = deque(maxlen=KEEP_DISCREPANCIES)
        self.stats: Counter[str] = Counter()

    # --- building -------------------------------------------------------------------------------

    def add(self, order: Order) -> None:
        """Start tracking an order about to be sent (PENDING_NEW); a client id can be used only once."""
        if order.client_id in self._orders:
            raise ValueError(f"client id {order.client_id!r} is already tracked")
        self._orders[order.client_id] = _Tracked(order)

    @classmethod
    def restore(cls, orders: Iterable[OrderRecord], fills: Iterable[Fill],
                keep_terminal: int = KEEP_TERMINAL) -> OrderTracker:
        """Rebuild a tracker from a journal's orders and fills; in-flight orders come back UNKNOWN."""
        tracker = cls(keep_terminal)
        expected: dict[str, int] = {}
        for r in orders:
            _check_record(r)
            cid = r.order.client_id
            if cid in tracker._orders:
                raise ValueError(f"order {cid!r}: recorded twice")
            state, cancel_requested = r.state, r.cancel_requested
            if state is _S.PENDING_NEW or (state is _S.PENDING_CANCEL and not r.acked):
                cancel_requested = cancel_requested or state is _S.PENDING_CANCEL
                state = _S.UNKNOWN
            elif state is _S.PENDING_REPLACE:  # the venue's open order will say which quantity and price won
                state = _S.PARTIALLY_FILLED if r.filled_qty else _S.NEW
            tracker._orders[cid] = _Tracked(r.order, state, 0, r.acked, cancel_requested,
                                            r.venue_id, r.venue_filled, r.pending, r.pending_reason)
            expected[cid] = r.filled_qty
            if state in TERMINAL:
                tracker._finished.append(cid)
        for f in fills:
            rec = tracker._orders.get(f.client_id)
            if rec is None:
                raise ValueError(f"fill {f.trade_id!r}: order {f.client_id!r} is not among the records")
            if f.trade_id in rec.trade_ids:
                raise ValueError(f"order {f.client_id!r}: trade id {f.trade_id!r} recorded twice")
            rec.trade_ids.add(f.trade_id)
            rec.filled += f.qty
        for cid, rec in tracker._orders.items():
            if rec.filled != expected[cid]:
                raise ValueError(f"order {cid!r}: record says {expected[cid]} filled, its fills sum to {rec.filled}")
        tracker._trim()
        return tracker

    # --- our own actions ------------------------------------------------------------------------

    def request_cancel(self, client_id: str, ts: int) -> bool:
        """Note that we ask to cancel an order; True if a cancel should be sent to the venue now."""
        rec = self._find(client_id, "cancel_request", ts)
        if rec is None:
            return False
        if rec.state in TERMINAL:
            self.stats["cancel_late"] += 1
            return False
        if rec.cancel_requested or rec.state is _S.PENDING_CANCEL:
            self.stats["cancel_duplicate"] += 1
            return False
        rec.cancel_requested = True
        self._move(rec, _E.CANCEL_REQUEST)
        return True

    def send_timeout(self, client_id: str, ts: int) -> list[BrokerEvent]:
        """Our create request's outcome is unknown (timeout, connection lost): the order becomes UNKNOWN."""
        rec = self._find(client_id, "send_timeout", ts)
        if rec is None:
            return []
        if rec.state in TERMINAL:
            self.stats["late_send_timeout"] += 1
        elif rec.acked or rec.state is _S.UNKNOWN:
            self.stats["timeout_after_ack" if rec.acked else "timeout_duplicate"] += 1
        else:
            rec.cancel_requested = rec.cancel_requested or rec.state is _S.PENDING_CANCEL
            self._move(rec, _E.SEND_TIMEOUT)
        return []

    def request_replace(self, client_id: str, ts: int, qty: int, limit_px: int | None) -> bool:
        """Note that we ask the venue to modify a working order; True if the modification should be sent.

        Refused (False, counted) for an order that is not working and acknowledged, has a cancel or another
        modification outstanding, or would not change; a quantity at or below what has filled is a ValueError.
        """
        rec = self._find(client_id, "replace_request", ts)
        if rec is None:
            return False
        if qty <= rec.filled:
            raise ValueError(f"order {client_id!r}: new quantity {qty} is not above the {rec.filled} lots filled")
        if (limit_px is None) != (rec.order.limit_px is None):
            raise ValueError(f"order {client_id!r}: a modification cannot change the order type")
        if rec.state not in (_S.NEW, _S.PARTIALLY_FILLED) or not rec.acked or rec.cancel_requested:
            self.stats["replace_refused"] += 1
            return False
        if (qty, limit_px) == (rec.order.qty, rec.order.limit_px):
            self.stats["replace_unchanged"] += 1
            return False
        rec.replacement = (qty, limit_px)
        self._move(rec, _E.REPLACE_REQUEST)
        return True

    def replacing(self, client_id: str) -> tuple[int, int | None] | None:
        """The (qty, limit_px) asked of the venue and not yet confirmed or refused, if any."""
        rec = self._orders.get(client_id)
        return None if rec is None else rec.replacement

    # --- venue reports --------------------------------------------------------------------------

    def replaced(self, client_id: str, ts: int, qty: int, limit_px: int | None) -> list[BrokerEvent]:
        """The venue shows the order with this quantity and price: applied (the Order is replaced) if new."""
        rec = self._find(client_id, "replace", ts)
        if rec is None or rec.state in TERMINAL:
            return []
        if (qty, limit_px) == (rec.order.qty, rec.order.limit_px):
            return []  # an unchanged report (a modification not applied yet, or none asked)
        if qty < rec.filled:
            self._discrepancy(rec, "bad_replace", f"venue shows quantity {qty} below the {rec.filled} filled", ts)
            return []
        if rec.replacement != (qty, limit_px):
            self._discrepancy(rec, "venue_replaced", f"venue shows {qty} @ {limit_px}, depthd had "
                              f"{rec.order.qty} @ {rec.order.limit_px} (asked {rec.replacement})", ts)
        rec.order = replace(rec.order, qty=qty, limit_px=limit_px)
        rec.replacement = None
        events: list[BrokerEvent] = []
        self._accept(rec, ts, events)
        self._after_replace(rec, _E.REPLACE)
        return events

    def replace_rejected(self, client_id: str, ts: int, reason: str) -> list[BrokerEvent]:
        """The venue refused our modification: the order works on with its old quantity and price."""
        rec = self._find(client_id, "replace_reject", ts)
        if rec is None:
            return []
        if rec.replacement is None:
            self.stats["replace_reject_ignored"] += 1
            return []
        rec.replacement = None
        log.info("replace_rejected", client_id=client_id, reason=reason, ts=ts)
        if rec.state in TERMINAL:
            return []
        self._after_replace(rec, _E.REPLACE_REJECT)
        return []

    def accepted(self, client_id: str, ts: int, venue_id: str | None = None) -> list[BrokerEvent]:
        """The venue acknowledged the order (create response or order update)."""
        rec = self._find(client_id, "accept", ts)
        if rec is None:
            return []
        self._note_venue_id(rec, venue_id, ts)
        if rec.state in TERMINAL:
            self.stats["late_accept"] += 1
            return []
        if rec.acked:
            self.stats["duplicate_accept"] += 1
            return []
        events: list[BrokerEvent] = []
        self._accept(rec, ts, events)
        return events

    def rejected(self, client_id: str, ts: int, reason: str) -> list[BrokerEvent]:
        """The venue refused the order."""
        rec = self._find(client_id, "reject", ts)
        if rec is None:
            return []
        if rec.state in TERMINAL:
            self.stats["late_reject"] += 1
            return []
        if rec.acked:
            self._discrepancy(rec, "reject_after_ack", f"rejected ({reason}) after it was accepted", ts)
            return []
        self._move(rec, _E.REJECT)
        return [OrderRejected(client_id, rec.order.symbol, ts, reason)]

    def not_found(self, client_id: str, ts: int) -> list[BrokerEvent]:
        """The venue confirms it has no order with this client id: an UNKNOWN order never arrived."""
        rec = self._find(client_id, "not_found", ts)
        if rec is None:
            return []
        if rec.state in TERMINAL:
            self.stats["late_not_found"] += 1
            return []
        if rec.state is not _S.UNKNOWN or rec.acked:
            self._discrepancy(rec, "not_found_but_known", f"venue has no such order, ours is {rec.state}", ts)
            return []
        self._move(rec, _E.NOT_FOUND)
        return [OrderRejected(client_id, rec.order.symbol, ts, "not_found")]

    def canceled(self, client_id: str, ts: int, reason: str = "canceled",
                 filled_qty: int | None = None) -> list[BrokerEvent]:
        """The venue canceled the order (our request or its own); `filled_qty` is its cumulative fill if told."""
        return self._end(client_id, _E.CANCEL, ts, reason, filled_qty)

    def expired(self, client_id: str, ts: int, reason: str = "expired",
                filled_qty: int | None = None) -> list[BrokerEvent]:
        """The venue expired the order (time in force, IOC/FOK rest); reported as OrderCanceled(reason)."""
        return self._end(client_id, _E.EXPIRE, ts, reason, filled_qty)

    def cancel_rejected(self, client_id: str, ts: int, reason: str) -> list[BrokerEvent]:
        """The venue refused our cancel: the order works on (NEW or PARTIALLY_FILLED)."""
        rec = self._find(client_id, "cancel_reject", ts)
        if rec is None:
            return []
        if rec.state in TERMINAL:
            self.stats["late_cancel_reject"] += 1
        elif rec.state is not _S.PENDING_CANCEL or not rec.acked:
            self.stats["cancel_reject_ignored"] += 1
        else:
            rec.cancel_requested = False
            self._move(rec, _E.CANCEL_REJECT)
            if rec.filled:
                self._move(rec, _E.PARTIAL_FILL)
            log.info("cancel_rejected", client_id=client_id, reason=reason, ts=ts)
        return []

    def fill(self, f: Fill) -> list[BrokerEvent]:
        """An execution, applied once by its venue trade id; implies the order's acceptance."""
        rec = self._find(f.client_id, "fill", f.ts)
        if rec is None:
            return []
        if f.trade_id in rec.trade_ids:
            self.stats["duplicate_fill"] += 1
            return []
        problem = _fill_problem(rec.order, f)
        if problem:
            self._discrepancy(rec, "bad_fill", f"trade {f.trade_id!r}: {problem}", f.ts)
            return []
        wanted = rec.replacement[0] if rec.replacement is not None else 0
        if rec.order.qty < rec.filled + f.qty <= wanted:  # only the modification makes room: it took effect
            rec.order = replace(rec.order, qty=wanted, limit_px=rec.replacement[1])  # type: ignore[index]
            rec.replacement = None
            self.stats["replace_implied_by_fill"] += 1
            self._after_replace(rec, _E.REPLACE)
        if rec.filled + f.qty > rec.order.qty:
            log.error("overfill", client_id=f.client_id, trade_id=f.trade_id, qty=f.qty, filled=rec.filled,
                      order_qty=rec.order.qty)
            self._discrepancy(rec, "overfill", f"trade {f.trade_id!r} of {f.qty} on {rec.filled} filled "
                              f"exceeds the order's {rec.order.qty}; not applied", f.ts)
            return []
        rec.trade_ids.add(f.trade_id)
        if rec.state in TERMINAL:
            rec.filled += f.qty
            self._discrepancy(rec, "fill_after_terminal", f"trade {f.trade_id!r} after {rec.state}", f.ts)
            return [f]
        events: list[BrokerEvent] = []
        self._accept(rec, f.ts, events)
        rec.filled += f.qty
        rec.venue_filled = max(rec.venue_filled, rec.filled)
        self._move(rec, _E.FULL_FILL if self._complete(rec) else _E.PARTIAL_FILL)
        events.append(f)
        self._settle(rec, f.ts, events)
        return events

    def status(self, client_id: str, ts: int, state: OrderState, filled_qty: int,
               venue_id: str | None = None, reason: str = "") -> list[BrokerEvent]:
        """An order-status snapshot (polling, reconciliation, lookup by client id): the venue's state and fill."""
        if state not in _VENUE_STATES:
            raise ValueError(f"order {client_id!r}: {state} is not a state a venue reports")
        rec = self._find(client_id, "status", ts)
        if rec is None:
            return []
        self._note_venue_id(rec, venue_id, ts)
        if filled_qty < 0 or filled_qty > _max_qty(rec):
            self._discrepancy(rec, "bad_status", f"venue says {filled_qty} filled of {rec.order.qty}", ts)
            return []
        if state is _S.CANCELED:
            return self._end(client_id, _E.CANCEL, ts, reason or "canceled", filled_qty)
        if state is _S.EXPIRED:
            return self._end(client_id, _E.EXPIRE, ts, reason or "expired", filled_qty)
        if state is _S.REJECTED:
            return self.rejected(client_id, ts, reason or "rejected")
        if rec.state in TERMINAL:
            self.stats["late_status"] += 1
            return []
        if filled_qty < rec.filled:
            self.stats["stale_status"] += 1
            return []
        if state is _S.FILLED and filled_qty != rec.order.qty:
            self._discrepancy(rec, "bad_status", f"venue says FILLED with {filled_qty} of {rec.order.qty}", ts)
        rec.venue_filled = max(rec.venue_filled, filled_qty)
        events: list[BrokerEvent] = []
        self._accept(rec, ts, events)
        return events

    # --- queries --------------------------------------------------------------------------------

    def open_orders(self, symbol: str | None = None) -> list[OpenOrder]:
        """Orders not yet in a terminal state (all symbols, or one), in submission order."""
        return [r.view() for r in self._orders.values()
                if r.state not in TERMINAL and (symbol is None or r.order.symbol == symbol)]

    def get(self, client_id: str) -> OpenOrder | None:
        """The current view of one tracked order (finished ones too, while remembered)."""
        rec = self._orders.get(client_id)
        return None if rec is None else rec.view()

    def needs_lookup(self) -> list[str]:
        """Client ids of UNKNOWN orders: the gateway must look each up by client id before anything else."""
        return [cid for cid, r in self._orders.items() if r.state is _S.UNKNOWN]

    def fills_to_fetch(self) -> dict[str, int]:
        """Lots per client id the venue says filled that no fill seen so far covers."""
        return {cid: r.venue_filled - r.filled for cid, r in self._orders.items() if r.venue_filled > r.filled}

    def cancel_requested(self, client_id: str) -> bool:
        """Whether we asked to cancel this order (including while it was UNKNOWN)."""
        rec = self._orders.get(client_id)
        return rec is not None and (rec.cancel_requested or rec.state is _S.PENDING_CANCEL)

    def venue_id(self, client_id: str) -> str | None:
        """The venue's own order id, once a report has told it."""
        rec = self._orders.get(client_id)
        return None if rec is None else rec.venue_id

    def trade_ids(self, client_id: str) -> frozenset[str]:
        """The venue trade ids applied to an order."""
        rec = self._orders.get(client_id)
        return frozenset() if rec is None else frozenset(rec.trade_ids)

    def records(self) -> list[OrderRecord]:
        """Every remembered order as the journal would keep it, in submission order (see `restore`)."""
        return [OrderRecord(r.order, r.state, r.filled, r.acked, r.cancel_requested, r.venue_id, r.venue_filled,
                            r.pending, r.pending_reason) for r in self._orders.values()]

    def take_discrepancies(self) -> list[Discrepancy]:
        """The discrepancies noted since the last call (at most the latest KEEP_DISCREPANCIES)."""
        out = list(self._discrepancies)
        self._discrepancies.clear()
        return out

    # --- internals ------------------------------------------------------------------------------

    def _find(self, client_id: str, kind: str, ts: int) -> _Tracked | None:
        rec = self._orders.get(client_id)
        if rec is None:
            self.stats["unknown_order"] += 1
            self._discrepancies.append(Discrepancy(client_id, "unknown_order", f"{kind} for an untracked order", ts))
        return rec

    def _discrepancy(self, rec: _Tracked, kind: str, detail: str, ts: int) -> None:
        self.stats[kind] += 1
        self._discrepancies.append(Discrepancy(rec.order.client_id, kind, detail, ts))
        log.warning("order_discrepancy", client_id=rec.order.client_id, kind=kind, detail=detail, ts=ts)

    def _note_venue_id(self, rec: _Tracked, venue_id: str | None, ts: int) -> None:
        if venue_id is None or venue_id == rec.venue_id:
            return
        if rec.venue_id is not None:
            self._discrepancy(rec, "venue_id_changed", f"venue id {rec.venue_id!r} reported as {venue_id!r}", ts)
        rec.venue_id = venue_id

    def _accept(self, rec: _Tracked, ts: int, events: list[BrokerEvent]) -> None:
        """Make sure the order counts as accepted; emit OrderAccepted the first time."""
        if rec.acked:
            return
        rec.acked = True
        self._move(rec, _E.ACCEPT)
        if rec.cancel_requested and rec.state is _S.NEW:
            self._move(rec, _E.CANCEL_REQUEST)
        events.append(OrderAccepted(rec.order.client_id, rec.order.symbol, ts))

    @staticmethod
    def _complete(rec: _Tracked) -> bool:
        """Filled in full, unless a modification to a larger quantity awaits the venue's word."""
        return rec.filled == rec.order.qty and (rec.replacement is None or rec.replacement[0] <= rec.order.qty)

    def _after_replace(self, rec: _Tracked, event: OrderEvent) -> None:
        """End PENDING_REPLACE (REPLACE / REPLACE_REJECT back to NEW), then move on by the fills."""
        if rec.state is not _S.PENDING_REPLACE:
            return  # e.g. a cancel asked meanwhile: that now decides
        self._move(rec, event)
        if rec.filled:
            self._move(rec, _E.FULL_FILL if rec.filled == rec.order.qty else _E.PARTIAL_FILL)

    def _end(self, client_id: str, event: OrderEvent, ts: int, reason: str,
             filled_qty: int | None) -> list[BrokerEvent]:
        """A cancel or an expiry: applied now if the fills cover the venue's filled quantity, else held."""
        kind = event.lower()
        rec = self._find(client_id, kind, ts)
        if rec is None:
            return []
        if rec.state in TERMINAL:
            self.stats[f"late_{kind}"] += 1
            return []
        if filled_qty is not None:
            if filled_qty > _max_qty(rec) or filled_qty < 0:
                self._discrepancy(rec, "bad_status", f"{kind} says {filled_qty} filled of {rec.order.qty}", ts)
                return []
            if filled_qty < rec.filled:
                self._discrepancy(rec, "stale_fill_qty", f"{kind} says {filled_qty} filled, fills say {rec.filled}",
                                  ts)
            rec.venue_filled = max(rec.venue_filled, filled_qty)
        events: list[BrokerEvent] = []
        self._accept(rec, ts, events)
        if rec.pending is None:
            rec.pending, rec.pending_reason = event, reason
        else:
            self.stats[f"duplicate_{kind}"] += 1
        self._settle(rec, ts, events)
        return events

    def _settle(self, rec: _Tracked, ts: int, events: list[BrokerEvent]) -> None:
        """Apply a held cancel or expiry once the fills cover what the venue says filled."""
        if rec.pending is None or rec.filled < rec.venue_filled:
            return
        event, reason = rec.pending, rec.pending_reason
        rec.pending, rec.pending_reason = None, ""
        if rec.state in TERMINAL:
            return
        self._move(rec, event)
        events.append(OrderCanceled(rec.order.client_id, rec.order.symbol, ts, reason, rec.order.qty - rec.filled))

    def _move(self, rec: _Tracked, event: OrderEvent) -> None:
        """The only place an order changes state: through the lifecycle table."""
        rec.state = next_state(rec.state, event, f"order {rec.order.client_id}")
        if rec.state in TERMINAL:
            rec.pending, rec.pending_reason, rec.replacement = None, "", None
            self._finished.append(rec.order.client_id)
            self._trim()

    def _trim(self) -> None:
        while len(self._finished) > self._keep_terminal:
            self._orders.pop(self._finished.popleft(), None)


def _max_qty(rec: _Tracked) -> int:
    """The most the order may fill: its quantity, or a larger one asked and not yet answered."""
    return max(rec.order.qty, rec.replacement[0]) if rec.replacement is not None else rec.order.qty


def _fill_problem(order: Order, f: Fill) -> str:
    """Why a fill cannot belong to the order, or ''."""
    if not f.trade_id:
        return "no trade id"
    if f.qty <= 0:
        return f"qty {f.qty} is not positive"
    if f.symbol != order.symbol:
        return f"symbol {f.symbol!r} is not the order's {order.symbol!r}"
    if f.side is not order.side:
        return f"side {f.side.name} is not the order's {order.side.name}"
    return ""


def _check_record(r: OrderRecord) -> None:
    """Refuse a journal record that cannot describe a real order, naming the order and the problem."""
    cid, qty = r.order.client_id, r.order.qty
    problem = ""
    if not 0 <= r.filled_qty <= qty or not 0 <= r.venue_filled <= qty:
        problem = f"filled {r.filled_qty} / venue filled {r.venue_filled} outside 0..{qty}"
    elif r.state is _S.FILLED and r.filled_qty != qty:
        problem = f"FILLED with {r.filled_qty} of {qty}"
    elif r.state in (_S.NEW, _S.PARTIALLY_FILLED) and not r.acked:
        problem = f"{r.state} but never accepted"
    elif r.state in (_S.PENDING_NEW, _S.UNKNOWN) and (r.acked or r.filled_qty):
        problem = f"{r.state} but accepted or filled"
    elif (r.state is _S.NEW and r.filled_qty) or (r.state is _S.PARTIALLY_FILLED and not 0 < r.filled_qty < qty):
        problem = f"{r.state} with {r.filled_qty} of {qty} filled"
    elif r.pending not in (None, _E.CANCEL, _E.EXPIRE):
        problem = f"held event {r.pending} is neither CANCEL nor EXPIRE"
    if problem:
        raise ValueError(f"order {cid!r}: {problem}")

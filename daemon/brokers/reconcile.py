"""Reconciler: startup and periodic reconciliation of the journal with what a live venue says.

    portfolio = restore_portfolio(Portfolio(instruments), journal.recovery)
    rec = Reconciler(journal, CcxtVenueView(exchange, instruments, clock.now), portfolio, clock_now=clock.now,
                     prefix="dd1", venue="binance", cancel_orphans=True, offsets=last_report_offsets)
    result = await rec.startup()          # journal.record_reconciliation(...) written; come up HALTED unless ok
    gateway = CcxtGateway(..., tracker=rec.tracker)   # the gateway continues from the reconciled tracker
    ...
    result = await rec.periodic()         # on a timer: open orders + fills since the last pass

A pass (journal package docstring, steps 4-5): (1) startup rebuilds the OrderTracker from the journal's open
orders and their journaled fills (an in-flight order comes back UNKNOWN); (2) the venue's fills per symbol since the
journal's last fill (minus `margin_ms`: venues report out of order) are journaled with `record_fill`, and only the
inserted ones reach the tracker and the portfolio, so a fill is applied once however often it is fetched; (3) each
of our open orders gets the venue's word: listed open -> its status, else looked up by client id (found -> its
status; absent -> `not_found` for an UNKNOWN order sent more than `absent_after_ms` ago, `unknown_too_recent` if
sooner, closed "not_open_at_venue" for an acknowledged one on a venue that forgets finished orders (IB), else a
`missing_at_venue` discrepancy); each answer is journaled as an order event with the tracker's state; a fill found
by a status but not by the fetch is fetched once more; (4) venue open orders with our prefix the journal does not
have open are discrepancies; orders without it are orphans, cancelled when `cancel_orphans`, else reported (an
orphan is not a discrepancy); (5) the venue's holdings per symbol (a position, or for spot the base asset's total
balance) are compared with the portfolio: venue - offset must equal the portfolio's lots, where the offset is 0 for
positions and, for spot, the holding the daemon does not own (given as `offsets`, e.g. from the last report, or
taken on the first pass); in a periodic pass a gap counts only when a later pass finds the same gap with neither the
venue's holding nor the portfolio moved, because fills land between the fills fetch and the holdings read (until
then it is listed in the report's `unconfirmed`);
(6) the report is journaled (`record_reconciliation`, with the offsets) and the result
says `ok` or lists the unresolved discrepancies. An exception from the venue (network, ban) propagates: not ok.

`periodic()` runs (2)-(6) on the orders open now (an order still PENDING_NEW is the gateway's business) and the
fills since the last pass. It is idempotent with the user stream: a fill the stream journaled is a journal
duplicate and is not applied again, and one the pass journals first is a trade id the shared tracker has seen, so
the gateway does not emit it again. With `on_event`, what the tracker emits in a periodic pass goes there (the
engine applies fills to the portfolio); without it, inserted fills are applied to the portfolio here.

Adapters: `CcxtVenueView` (async ccxt exchange, spot balances or `positions=True`) and `IbVenueView` (a connected
IbGateway: all clients' open orders, executions by orderRef, positions; orphans cannot be cancelled from here).

Timestamps: the journal's are the daemon clock's (ns since the epoch); the venue's trade times are ms.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from daemon.brokers.base import BrokerEventSink
from daemon.brokers.client_ids import is_ours
from daemon.brokers.lifecycle import TERMINAL, OrderState
from daemon.brokers.orders import OrderRecord, OrderTracker
from daemon.brokers.venue_views import VenueOrder, VenueView
from daemon.events import BrokerEvent, Fill, Order
from daemon.journal import Journal, JournalError, Recovery
from daemon.portfolio import Portfolio

log = structlog.get_logger("depthd.brokers.reconcile")

NS_PER_MS = 1_000_000
MARGIN_MS = 60_000  # fills are fetched from this long before the journal's last one
ABSENT_AFTER_MS = 11_000  # an unacked order absent this long after its send was never booked (recvWindow + 1 s)


@dataclass(slots=True)
class ReconcileResult:
    """The outcome of one pass: `ok` when nothing is unresolved; the report as journaled."""

    ok: bool
    discrepancies: list[dict[str, Any]]
    orphans: list[dict[str, Any]]
    applied_fills: list[Fill]
    offsets: dict[str, int]
    report: dict[str, Any] = field(default_factory=dict)


def restore_tracker(journal: Journal, rec: Recovery | None = None) -> OrderTracker:
    """An OrderTracker rebuilt from the journal's open orders and their fills (in-flight ones come back UNKNOWN);
    `rec`: a recovery view already read."""
    rec = rec if rec is not None else journal.recover()
    return OrderTracker.restore(
        [OrderRecord(o.order, OrderState(o.state), o.filled_qty, o.acked, o.cancel_requested, o.venue_order_id,
                     o.venue_filled) for o in rec.open_orders], rec.open_order_fills)


class Reconciler:
    """Brings the journal, the OrderTracker and the portfolio in line with the venue; reports what it cannot."""

    def __init__(self, journal: Journal, view: VenueView, portfolio: Portfolio, *, clock_now: Callable[[], int],
                 prefix: str, venue: str, cancel_orphans: bool = False, margin_ms: int = MARGIN_MS,
                 absent_after_ms: int = ABSENT_AFTER_MS,
                 offsets: Mapping[str, int] | None = None, on_event: BrokerEventSink | None = None,
                 tracker: OrderTracker | None = None, symbols: Iterable[str] = ()) -> None:
        self.journal = journal
        self.view = view
        self.portfolio = portfolio
        self.clock_now = clock_now
        self.prefix = prefix
        self.venue = venue
        self.cancel_orphans = cancel_orphans
        self.margin_ms = margin_ms
        self.absent_after_ms = absent_after_ms
        self.offsets: dict[str, int] | None = None if offsets is None else dict(offsets)
        self.on_event = on_event
        self.tracker = tracker  # given: shared with a gateway already running (IB); else restored at startup
        self.symbols = frozenset(symbols)  # fills fetched on every pass (besides those of open orders)
        self._since_ms: dict[str, int] = {}
        self._journaled: dict[str, tuple[str, str | None]] = {}  # client id -> (state, venue id) last journaled
        self._ours = re.compile(rf"{re.escape(prefix)}-[0-9]+")
        self._live = False
        self.unconfirmed: dict[str, tuple[int, int, int]] = {}  # symbol -> (gap, venue, portfolio) to confirm
        self.journal_errors: list[dict[str, Any]] = []  # this pass's failed order-event writes (reported)

    def is_ours(self, client_id: str | None) -> bool:
        """Whether a client id is this instance's (`<prefix>-<boot>-<seq>` or the engine's `<prefix>-<n>`)."""
        return bool(client_id) and (is_ours(client_id, self.prefix) or bool(self._ours.fullmatch(client_id)))

    async def startup(self) -> ReconcileResult:
        """The startup pass: the tracker from the journal (unless given), then reconcile everything with the venue."""
        rec = self.journal.recover()
        orders = rec.open_orders
        if self.tracker is None:
            self.tracker = restore_tracker(self.journal, rec)
        self._journaled = {o.order.client_id: (o.state, o.venue_order_id) for o in orders}
        self._since_ms = {sym: max(0, m.ts // NS_PER_MS - self.margin_ms) for sym, m in rec.last_fills.items()}
        result = await self._pass("startup")
        self._live = True
        return result

    async def periodic(self) -> ReconcileResult:
        """One periodic pass (on a timer while trading): open orders, fills since the last pass, holdings."""
        if self.tracker is None:
            raise RuntimeError("Reconciler.periodic() before startup()")
        return await self._pass("periodic")

    # --- the pass -------------------------------------------------------------------------------

    async def _pass(self, kind: str) -> ReconcileResult:
        assert self.tracker is not None
        tracker = self.tracker
        tracker.take_discrepancies()
        started_ms = self.clock_now() // NS_PER_MS
        problems: list[dict[str, Any]] = []
        orphans: list[dict[str, Any]] = []
        applied: list[Fill] = []

        venue_open = await self.view.open_orders()
        listed = {o.client_id: o for o in venue_open if o.client_id}
        symbols = set(self._since_ms) | self.symbols | {v.order.symbol for v in tracker.open_orders()} | {
            o.symbol for o in venue_open}
        since = dict(self._since_ms)
        for sym in sorted(symbols):
            applied += await self._fetch_fills(sym, since.get(sym), problems)
        for view in tracker.open_orders():
            if view.state is OrderState.PENDING_NEW:
                continue  # sent by the running gateway, its answer on the way (a restored one is UNKNOWN)
            o = view.order
            answer = listed.get(o.client_id)
            how = "listed"
            if answer is None:
                how = "lookup"
                answer = await self.view.lookup(o)
            self._apply_answer(o, answer, how, problems)
        behind = {v.order.symbol for v in tracker.open_orders() if v.order.client_id in tracker.fills_to_fetch()}
        for sym in sorted(behind):  # a fill landed between the fills fetch and the status: fetch once more
            applied += await self._fetch_fills(sym, since.get(sym), problems)
        for sym in symbols:
            self._since_ms[sym] = max(self._since_ms.get(sym, 0), started_ms - self.margin_ms)
        for cid, lots in tracker.fills_to_fetch().items():
            problems.append(_problem(cid, "fills_missing", f"the venue says {lots} lots more filled than its fills"))
        self._journal_states()

        for o in venue_open:
            if o.client_id and tracker.get(o.client_id) is not None:
                continue
            if self.is_ours(o.client_id):
                problems.append(_problem(o.client_id, "unknown_own_order",
                                         f"open at the venue ({o.venue_id}) but not open in the journal"))
                continue
            orphans.append(await self._orphan(o, problems))

        problems += self.journal_errors
        self.journal_errors = []
        for d in tracker.take_discrepancies():
            problems.append(_problem(d.client_id, d.kind, d.detail))
        offsets = await self._check_holdings(problems)

        ts = self.clock_now()
        report = {"kind": kind, "ok": not problems, "discrepancies": problems, "orphans": orphans,
                  "applied_fills": [f"{f.client_id}/{f.trade_id}" for f in applied], "offsets": offsets,
                  "unconfirmed": {sym: gap for sym, (gap, _, _) in self.unconfirmed.items()},
                  "open_orders": sorted(v.order.client_id for v in tracker.open_orders())}
        self.journal.record_reconciliation(ts, report)
        if problems:
            log.error("reconciliation_unresolved", kind=kind, discrepancies=problems)
        return ReconcileResult(not problems, problems, orphans, applied, offsets, report)

    async def _fetch_fills(self, sym: str, since_ms: int | None, problems: list[dict[str, Any]]) -> list[Fill]:
        """Fetch the venue's fills on `sym` since `since_ms`; returns the ones journaled and applied now."""
        return [f for f in await self.view.fills_since(sym, since_ms) if self._take_fill(f, problems)]

    def _apply_answer(self, o: Order, answer: VenueOrder | None, how: str, problems: list[dict[str, Any]]) -> None:
        """Apply the venue's word on one of our open orders to the tracker, and journal it."""
        assert self.tracker is not None
        cid, ts = o.client_id, self.clock_now()
        if answer is None:
            view = self.tracker.get(cid)
            if view is not None and view.state is OrderState.UNKNOWN:
                age_ms = (ts - o.ts) // NS_PER_MS
                if age_ms < self.absent_after_ms:
                    wait = self.absent_after_ms - age_ms
                    problems.append(_problem(cid, "unknown_too_recent", f"sent {age_ms} ms ago: a late create may "
                                             f"still be booked for {wait} ms; look it up again"))
                    return
                self._deliver(self.tracker.not_found(cid, ts))
                self._journal_event(cid, ts, "NOT_FOUND", {"how": how})
            elif self.view.absent_is_closed:
                self._deliver(self.tracker.canceled(cid, ts, "not_open_at_venue"))
                self._journal_event(cid, ts, "RECONCILE", {"how": how, "venue_state": "absent"})
            else:
                problems.append(_problem(cid, "missing_at_venue", "acknowledged in the journal, unknown to the venue"))
            return
        if answer.state is None:
            problems.append(_problem(cid, "venue_state_unknown", "the venue reports a state depthd does not know"))
            return
        reason = "expired" if answer.state is OrderState.EXPIRED else ""
        self._deliver(self.tracker.status(cid, ts, answer.state, answer.filled, answer.venue_id, reason))
        self._journal_event(cid, ts, "RECONCILE", {"how": how, "venue_state": str(answer.state),
                                                   "venue_filled": answer.filled}, answer.filled)

    def _take_fill(self, f: Fill, problems: list[dict[str, Any]]) -> bool:
        """Journal one venue fill; apply it (tracker, portfolio) only if the journal did not have it."""
        assert self.tracker is not None
        if not self.is_ours(f.client_id):
            return False  # an orphan's (or unattributed) trade: the holdings check sees its effect
        view = self.tracker.get(f.client_id)
        state = None
        if view is not None and view.state not in TERMINAL:
            state = str(OrderState.FILLED if view.filled_qty + f.qty >= view.order.qty else OrderState.PARTIALLY_FILLED)
        want = self.tracker.replacing(f.client_id)
        if view is not None and want is not None and view.order.qty < view.filled_qty + f.qty <= want[0]:
            # the fill shows the modification took effect: the journal's order grows before the fill goes in
            self.journal.record_replace(f.ts, f.client_id, want[0], want[1], str(view.state))
        if not self.journal.record_fill(f, self.venue, state=state, event="FILL").inserted:
            return False
        if state is not None:
            self._journaled[f.client_id] = (state, self._journaled.get(f.client_id, ("", None))[1])
        events = self.tracker.fill(f)
        if view is None:
            problems.append(_problem(f.client_id, "fill_not_open", f"trade {f.trade_id} of an order not open in the "
                                     "journal; applied to the portfolio"))
            events = [f]
        if self._live and self.on_event is not None:
            self._deliver(events)
        elif any(e is f for e in events) or view is None:
            self.portfolio.on_fill(f)
        return True

    async def _orphan(self, o: VenueOrder, problems: list[dict[str, Any]]) -> dict[str, Any]:
        """An open order the daemon does not own: cancel it when configured, else report it."""
        entry: dict[str, Any] = {"client_id": o.client_id, "venue_id": o.venue_id, "symbol": o.symbol,
                                 "action": "reported"}
        if self.cancel_orphans:
            try:
                await self.view.cancel(o)
                entry["action"] = "canceled"
            except Exception as exc:
                entry["action"] = "cancel_failed"
                problems.append(_problem(o.client_id or "", "orphan_cancel_failed", f"{type(exc).__name__}: {exc}"))
        log.warning("orphan_order", **entry)
        return entry

    async def _check_holdings(self, problems: list[dict[str, Any]]) -> dict[str, int]:
        """Venue holdings minus the offset must equal the portfolio's lots; the offset is taken on the first pass."""
        held = await self.view.holdings()
        if self.view.holds_positions:
            self.offsets = {}  # a position is the daemon's alone: nothing to offset, nothing to learn
        first = self.offsets is None
        offsets = dict(self.offsets or {})
        for sym in sorted(set(held) | set(self.portfolio.open_symbols())):
            lots, mine = held.get(sym, 0), self.portfolio.position(sym)
            if first or (sym not in offsets and not self.view.holds_positions):
                offsets[sym] = lots - mine
                continue
            seen = (lots - offsets.get(sym, 0) - mine, lots, mine)
            if not seen[0]:
                self.unconfirmed.pop(sym, None)
            elif self._live and self.unconfirmed.get(sym) != seen:
                # while trading, fills (and their base-asset fees) land between the fills fetch and the
                # holdings read: a gap counts once a later pass finds the same gap with neither side moved
                self.unconfirmed[sym] = seen
                log.info("position_mismatch_unconfirmed", symbol=sym, venue=lots, offset=offsets.get(sym, 0),
                         portfolio=mine)
            else:
                self.unconfirmed.pop(sym, None)
                problems.append(_problem("", "position_mismatch",
                                         f"{sym}: venue {lots} lots - offset {offsets.get(sym, 0)} != portfolio {mine}",
                                         symbol=sym))
        self.offsets = offsets
        return offsets

    # --- journal plumbing -----------------------------------------------------------------------

    def _journal_event(self, cid: str, ts: int, event: str, payload: dict[str, Any], venue_filled: int = 0) -> None:
        """Journal the venue's answer about an order with the state the tracker left it in."""
        assert self.tracker is not None
        view = self.tracker.get(cid)
        if view is None:
            return
        vid = self.tracker.venue_id(cid)
        if event == "RECONCILE" and self._journaled.get(cid) == (str(view.state), vid):
            return  # nothing new to record
        acked = view.state not in (OrderState.UNKNOWN, OrderState.PENDING_NEW, OrderState.REJECTED) or vid is not None
        try:
            self.journal.record_order_event(ts, cid, event, str(view.state), vid, payload, durable=True,
                                            acked=acked, venue_filled=venue_filled)
        except JournalError as exc:  # e.g. an order the gateway sent without journaling it
            self.journal_errors.append(_problem(cid, "journal_error", str(exc)))
            return
        self._journaled[cid] = (str(view.state), vid)

    def _journal_states(self) -> None:
        """Journal every order whose state moved since its last journaled record (a held cancel that settled)."""
        assert self.tracker is not None
        for r in self.tracker.records():
            cid = r.order.client_id
            last = self._journaled.get(cid)
            if last is not None and last[0] != str(r.state):
                self._journal_event(cid, self.clock_now(), "RECONCILE", {"how": "settled"})

    def _deliver(self, events: list[BrokerEvent]) -> None:
        if self._live and self.on_event is not None:
            for ev in events:
                self.on_event(ev)


def _problem(client_id: str, kind: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"client_id": client_id, "kind": kind, "detail": detail, **extra}

"""IbGateway: the Interactive Brokers live broker (TWS / IB Gateway through ib_async's `IB`).

It implements the Broker port (`submit`, `cancel`, `open_orders`): both calls return at once and every
outcome reaches `on_event` as BrokerEvents, each exactly once, because every venue report goes through
an OrderTracker (`daemon.brokers.orders`), which owns the orders' state.

Identity: the daemon's client order id travels in the IB order's `orderRef`; IB's `orderId` is only
valid for one client id and session, so it is mapped back to the client id (`orderRef`) whenever a
report carries it, and `permId` (stable across sessions) is the tracker's venue id.

Reports, from ib_async's events:

- orderStatusEvent: PreSubmitted/Submitted -> `status` NEW/PARTIALLY_FILLED with IB's cumulative
  filled quantity; Filled -> `status` FILLED (the fills themselves come from executions); Cancelled /
  ApiCancelled -> `canceled(filled_qty)`, held by the tracker until the executions cover it. A Cancelled
  that ib_async infers from an error (its trade log entry carries the error code) is left to the error.
- errorEvent for an order id: 202 -> canceled; 161/10147/10148 (cancel refused, the order is not
  cancellable) -> `cancel_rejected`; any other error before the order was accepted -> `rejected`
  ("IB <code>: <text>"); after it was accepted it is logged and counted (`error_on_live_order`) and
  the next resync settles the order. Warnings (ib_async's list, 2100..2199) are only counted.
- openOrderEvent (IB's openOrder, also after a modification): the order's quantity and limit price as
  IB holds them; a change is applied to the tracker (`replaced`) and journaled (`record_replace`).
- execDetailsEvent: one Fill per execution, keyed by its execId without the correction suffix; the
  Fill waits for its commissionReport (up to `commission_wait_s`), whose commission becomes its fee
  (IB's commission currency, positive = paid). Without one in time the fee is 0 (`fill_without_commission`).
- Corrections: IB amends an execution by sending it again with the last part of the execId raised
  (`...01.01` -> `...01.02`). The trade id is the execId without that part, so a correction never
  becomes a second fill; if it changes quantity or price it is logged as an error, counted
  (`exec_correction`) and kept in `corrections` for the operator: the Fill already emitted stands.

Modify: `modify(client_id, qty, limit_px)` re-sends the order under its own orderId with the new quantity
and/or limit price (ib_async's placeOrder on an existing order). The order is PENDING_REPLACE until IB's
openOrder shows the new values (REPLACE) or an error for the order refuses it (REPLACE_REJECT: IB keeps
the old order; ib_async reads 105/321/329 as warnings, the others as errors, and either way the order
lives on). Not connected: refused at once, nothing sent.

Connection: `start()` runs a loop that connects (`connectAsync`, no startup downloads), qualifies
contracts given without conId, resynchronises, and reconnects with backoff after a drop. On a drop,
an order sent but not yet acknowledged (PENDING_NEW) becomes UNKNOWN (`send_timeout`). `submit` while
not connected and synchronised rejects the order at once ("not_connected"); nothing is sent blind.

Resync (after each connect; call `resync()` for periodic reconciliation): (1) `reqOpenOrders` (this
client id's open orders): each ours binds orderId -> client id and applies its status; (2)
`reqExecutions` since the last execution seen (minus `exec_lookback_s`; everything on a first start):
fills applied once (commission from the reply); (3) our orders that were open before the resync, are
not open at IB and are not finished by the executions: an UNKNOWN one never reached IB -> `not_found`
(REJECTED "not_found"), an accepted one ended at IB while we were away -> `canceled`
("not_open_at_venue"; IB gives no reason); (4) cancels we asked for and could not send are sent.
`fetch_open_orders` (every client's), `fetch_positions` and `fetch_executions` give the reconciler
the venue's view, including orders and fills the daemon does not own.

Journal (optional, `OrderJournal`): the order is recorded before it is sent; each emitted event and
UNKNOWN / cancel-request transitions are recorded with the tracker's state after them.

Running against an IB paper account: README.md, "From paper to live" (API settings, ports, client id,
contracts). The paper account needs trading permission for the contracts' asset class and exchange;
market orders outside regular hours are refused (error 201 -> REJECTED).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from ib_async import IB, Contract, OrderStatus, Trade
from ib_async import Fill as IbFill
from ib_async.ib import StartupFetchNONE

from daemon.brokers.base import BrokerEventSink, OpenOrder
from daemon.brokers.ib_mapping import (
    CANCEL_REFUSED,
    CONNECTIVITY_RESTORED,
    ENDED,
    ORDER_CANCELED,
    VENUE,
    WORKING,
    IbOpenOrder,
    exec_filter,
    ib_order,
    is_warning,
    open_order,
    to_fill,
    trade_id,
)
from daemon.brokers.journal_port import OrderJournal, TrackerJournal
from daemon.brokers.lifecycle import OrderState
from daemon.brokers.orders import OrderTracker
from daemon.errors import ConfigError
from daemon.events import (
    BrokerEvent,
    Fill,
    Order,
    OrderAccepted,
    OrderRejected,
)
from daemon.instruments import Instrument
from daemon.sources.backoff import Backoff

log = structlog.get_logger("depthd.brokers.ib")

_S = OrderState


class IbGateway:
    """Orders to IB through one TWS/Gateway API connection; results via `on_event`, each exactly once."""

    def __init__(self, ib: IB, contracts: Mapping[str, Contract], instruments: Callable[[str], Instrument],
                 on_event: BrokerEventSink, *, clock_now: Callable[[], int], journal: OrderJournal | None = None,
                 tracker: OrderTracker | None = None, host: str = "127.0.0.1", port: int = 7497,
                 client_id: int = 1, account: str = "", tif: str = "DAY",
                 backoff: Callable[[], Backoff] | None = None, connect_timeout: float = 4.0,
                 request_timeout: float = 10.0, commission_wait_s: float = 1.0, exec_lookback_s: float = 60.0) -> None:
        if not contracts:
            raise ValueError("contracts must name at least one symbol")
        if client_id == 0:
            raise ValueError("client_id 0 binds manual TWS orders; give the gateway its own non-zero id")
        self.ib = ib
        self.contracts = dict(contracts)
        self.tracker = tracker if tracker is not None else OrderTracker()
        self.journal = journal
        self.host, self.port, self.client_id, self.account, self.tif = host, port, client_id, account, tif
        self.connect_timeout, self.request_timeout = connect_timeout, request_timeout
        self.commission_wait_s, self.exec_lookback_s = commission_wait_s, exec_lookback_s
        self.stats: Counter[str] = Counter()
        self.errors: Counter[int] = Counter()
        self.corrections: list[tuple[str, str, str]] = []  # (client id, applied execId, correction execId)
        self._instrument, self._sink, self._now = instruments, on_event, clock_now
        self._backoff = backoff or Backoff
        self._by_order_id: dict[int, str] = {}
        self._trades: dict[str, Trade] = {}
        self._acked = {r.order.client_id for r in self.tracker.records() if r.acked}
        self.journaled = TrackerJournal(journal, self.tracker, VENUE, self.stats, clock_now)
        self.on_sent: Callable[[Order], None] | None = None  # told as each order is written to TWS
        self._execs: dict[str, tuple[str, float, float]] = {}  # trade id -> (execId, shares, price) applied
        self._awaiting: dict[str, tuple[str, IbFill, asyncio.TimerHandle]] = {}  # execId -> waiting for commission
        self._last_exec: dt.datetime | None = None
        self._stop = asyncio.Event()
        self._lost = asyncio.Event()
        self._synced = asyncio.Event()
        self._resync_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._side_tasks: set[asyncio.Task[None]] = set()

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Hook ib_async's events and start the connect / resync / reconnect loop in the background."""
        ib = self.ib
        ib.orderStatusEvent += self._on_status
        ib.openOrderEvent += self._on_open_order
        ib.execDetailsEvent += self._on_exec
        ib.commissionReportEvent += self._on_commission
        ib.errorEvent += self._on_error
        ib.disconnectedEvent += self._on_disconnected
        self._task = asyncio.create_task(self._run(), name="ib-gateway")

    async def wait_synced(self, timeout: float) -> None:
        """Wait until connected and resynchronised (TimeoutError after `timeout` s)."""
        async with asyncio.timeout(timeout):
            await self._synced.wait()

    async def close(self) -> None:
        """Stop reconnecting, apply fills still waiting for a commission, disconnect, unhook."""
        self._stop.set()
        self._flush_all()
        if self.ib.isConnected():
            self.ib.disconnect()
        if self._task is not None:
            await self._task
        ib = self.ib
        ib.orderStatusEvent -= self._on_status
        ib.openOrderEvent -= self._on_open_order
        ib.execDetailsEvent -= self._on_exec
        ib.commissionReportEvent -= self._on_commission
        ib.errorEvent -= self._on_error
        ib.disconnectedEvent -= self._on_disconnected

    @property
    def connected(self) -> bool:
        """Connected to TWS/Gateway and resynchronised: orders can be sent."""
        return self.ib.isConnected() and self._synced.is_set()

    # --- the Broker port -----------------------------------------------------------------------

    def submit(self, order: Order) -> None:
        """Journal the order, then place it with orderRef = client id; the outcome comes as events."""
        ts, cid = self._now(), order.client_id
        try:
            self.tracker.add(order)
        except ValueError:
            self.stats["duplicate_client_id"] += 1
            self._sink(OrderRejected(cid, order.symbol, ts, "duplicate_client_id"))
            return
        problem = "" if order.symbol in self.contracts else "unknown_symbol"
        try:
            self.journaled.order(order)
        except Exception as exc:  # nothing is sent that the journal does not hold
            log.error("journal_failed", client_id=cid, error=f"{type(exc).__name__}: {exc}")
            problem = problem or "journal_error"
        if not problem and not self.connected:
            problem = "not_connected"
        if not problem:
            try:
                self._bind(self.ib.placeOrder(self.contracts[order.symbol], ib_order(
                    order, self._instrument(order.symbol), self.tif, self.account)))
                if self.on_sent is not None:
                    self.on_sent(order)
                return
            except ConnectionError:
                problem = "not_connected"
        self.stats[f"reject_{problem}"] += 1
        self._emit(self.tracker.rejected(cid, ts, problem))

    def cancel(self, client_id: str) -> None:
        """Ask IB to cancel an order; sent now if connected, else at the next resync."""
        ts = self._now()
        if self.tracker.request_cancel(client_id, ts):
            self.journaled.transition(ts, client_id, "CANCEL_REQUEST")
            self._send_cancel(client_id)

    def modify(self, client_id: str, qty: int, limit_px: int | None) -> bool:
        """Ask IB to change a working order's quantity (lots) and limit price (ticks); True if sent.

        The order is PENDING_REPLACE until IB shows the new values or refuses them; `open_orders` then shows
        the order as it works. Refused without sending when the order is not working, unchanged, or IB is not
        connected; a quantity at or below the filled one, or a change of order type, is a ValueError.
        """
        ts = self._now()
        if not self.tracker.request_replace(client_id, ts, qty, limit_px):
            return False
        self.journaled.transition(ts, client_id, "REPLACE_REQUEST", {"qty": qty, "limit_px": limit_px})
        trade = self._trades.get(client_id)
        if trade is None or not self.connected:
            self._refuse_replace(client_id, "not_connected")
            return False
        inst = self._instrument(trade_symbol := self.tracker.get(client_id).order.symbol)  # type: ignore[union-attr]
        amended = copy.copy(trade.order)  # ib_async's own order stays as IB last confirmed it
        amended.totalQuantity = inst.qty(qty)
        if limit_px is not None:
            amended.lmtPrice = inst.price(limit_px)
        try:
            self.ib.placeOrder(self.contracts[trade_symbol], amended)
        except ConnectionError:
            self._refuse_replace(client_id, "not_connected")
            return False
        self.stats["modify_sent"] += 1
        return True

    def cancel_all(self) -> None:
        """Cancel every order the daemon has working (not other clients' orders)."""
        for view in self.tracker.open_orders():
            self.cancel(view.order.client_id)

    def open_orders(self, symbol: str | None = None) -> list[OpenOrder]:
        """Orders not yet in a terminal state (all symbols, or one), in submission order."""
        return self.tracker.open_orders(symbol)

    # --- reconciliation ------------------------------------------------------------------------

    async def resync(self) -> None:
        """Bring the tracker up to IB's view: open orders, executions since the last seen, lost orders."""
        async with self._resync_lock:
            before = {v.order.client_id for v in self.tracker.open_orders()}
            trades = await asyncio.wait_for(self.ib.reqOpenOrdersAsync(), self.request_timeout)
            open_at_ib = {cid for cid in map(self._bind, trades) if cid is not None}
            for trade in trades:
                self._on_open_order(trade)
                self._on_status(trade)
            since = None if self._last_exec is None else self._last_exec - dt.timedelta(seconds=self.exec_lookback_s)
            fills = await asyncio.wait_for(self.ib.reqExecutionsAsync(exec_filter(since)), self.request_timeout)
            for fill in fills:
                self._take_exec(fill, wait=False)
            self._flush_all()
            ts = self._now()
            for view in self.tracker.open_orders():
                cid = view.order.client_id
                if cid not in before or cid in open_at_ib or view.state is _S.PENDING_NEW:
                    continue
                if view.state is _S.UNKNOWN:
                    self._emit(self.tracker.not_found(cid, ts))
                else:
                    log.warning("ib_order_gone", client_id=cid, state=str(view.state), filled=view.filled_qty)
                    self._emit(self.tracker.canceled(cid, ts, "not_open_at_venue"))
            for view in self.tracker.open_orders():
                if self.tracker.cancel_requested(view.order.client_id):
                    self._send_cancel(view.order.client_id)

    async def _resync_quietly(self) -> None:
        """A resync on IB's word that its connection to its servers is back (1101/1102); a failure is logged."""
        try:
            await self.resync()
        except (ConnectionError, TimeoutError) as exc:
            log.warning("ib_resync_failed", error=f"{type(exc).__name__}: {exc}")

    async def fetch_open_orders(self) -> list[IbOpenOrder]:
        """Every open order at IB, all client ids (reqAllOpenOrders), ours or not."""
        trades = await asyncio.wait_for(self.ib.reqAllOpenOrdersAsync(), self.request_timeout)
        by_conid = self._by_conid()
        return [open_order(t, by_conid.get(t.contract.conId, "")) for t in trades]

    async def fetch_positions(self) -> dict[str, int]:
        """Positions in lots (signed) per symbol of ours; positions in other contracts are logged and counted."""
        positions = await asyncio.wait_for(self.ib.reqPositionsAsync(), self.request_timeout)
        by_conid = self._by_conid()
        out: dict[str, int] = {}
        for p in positions:
            if self.account and p.account != self.account:
                continue
            symbol = by_conid.get(p.contract.conId)
            if symbol is None:
                self.stats["foreign_position"] += 1
                log.info("ib_foreign_position", contract=str(p.contract), position=p.position)
                continue
            out[symbol] = out.get(symbol, 0) + self._instrument(symbol).lot(p.position)
        return out

    async def fetch_executions(self, since: dt.datetime | None = None) -> list[Fill]:
        """IB's executions on our contracts (since a time, or all IB keeps) as Fills, client id = orderRef."""
        fills = await asyncio.wait_for(self.ib.reqExecutionsAsync(exec_filter(since)), self.request_timeout)
        by_conid = self._by_conid()
        out = []
        for f in fills:
            symbol = by_conid.get(f.contract.conId)
            made = None if symbol is None else self._fill(f.execution.orderRef, symbol, f)
            if made is not None:
                out.append(made)
        return out

    # --- connection ----------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = self._backoff()
        while not self._stop.is_set():
            if await self._connect():
                try:
                    await self._qualify()
                    await self.resync()
                except (ConnectionError, TimeoutError) as exc:
                    log.warning("ib_resync_failed", error=f"{type(exc).__name__}: {exc}")
                    self.ib.disconnect()
                else:
                    self._synced.set()
                    backoff.reset()
                    await self._wait_lost()
            await self._sleep(backoff.next())

    async def _connect(self) -> bool:
        try:
            await self.ib.connectAsync(self.host, self.port, clientId=self.client_id, timeout=self.connect_timeout,
                                       account=self.account, fetchFields=StartupFetchNONE)
        except (OSError, TimeoutError) as exc:
            self.stats["connect_failed"] += 1
            log.warning("ib_connect_failed", host=self.host, port=self.port, error=f"{type(exc).__name__}: {exc}")
            return False
        self._lost.clear()
        self.stats["connects"] += 1
        return True

    async def _qualify(self) -> None:
        missing = [c for c in self.contracts.values() if not c.conId]
        if missing:
            await asyncio.wait_for(self.ib.qualifyContractsAsync(*missing), self.request_timeout)
            unknown = [s for s, c in self.contracts.items() if not c.conId]
            if unknown:
                self._stop.set()
                raise ConfigError(f"ib contracts: IB knows no single contract for {unknown}")

    async def _wait_lost(self) -> None:
        stop, lost = asyncio.ensure_future(self._stop.wait()), asyncio.ensure_future(self._lost.wait())
        try:
            await asyncio.wait((stop, lost), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            lost.cancel()

    async def _sleep(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)

    def _on_disconnected(self) -> None:
        """The connection ended: orders sent without an answer yet have an unknown outcome."""
        self._synced.clear()
        self._lost.set()
        self._by_order_id.clear()
        self._trades.clear()
        ts = self._now()
        for view in self.tracker.open_orders():
            if view.state is _S.PENDING_NEW or (view.state is _S.PENDING_CANCEL and view.order.client_id not in
                                                self._acked):
                self.tracker.send_timeout(view.order.client_id, ts)
                self.journaled.transition(ts, view.order.client_id, "SEND_TIMEOUT")

    # --- ib_async events -----------------------------------------------------------------------

    def _on_status(self, trade: Trade) -> None:
        cid = self._bind(trade)
        if cid is None:
            return
        st = trade.orderStatus
        if st.status in ENDED and trade.log and trade.log[-1].errorCode:
            return  # ib_async's reading of an error: _on_error decides
        filled = self._lots(cid, st.filled)
        if filled is None:
            return
        perm = str(trade.order.permId) if trade.order.permId else None
        ts = self._now()
        if st.status in WORKING:
            state = _S.PARTIALLY_FILLED if filled else _S.NEW
            self._emit(self.tracker.status(cid, ts, state, filled, perm))
        elif st.status == OrderStatus.Filled:
            self._emit(self.tracker.status(cid, ts, _S.FILLED, filled, perm))
        elif st.status in ENDED:
            self._emit(self.tracker.canceled(cid, ts, "canceled", filled))

    def _on_error(self, req_id: int, code: int, text: str, contract: Any) -> None:
        cid = self._by_order_id.get(req_id)
        if cid is None:
            if code in CONNECTIVITY_RESTORED and self.connected:
                self.errors[code] += 1
                self._side_tasks.add(task := asyncio.get_running_loop().create_task(self._resync_quietly()))
                task.add_done_callback(self._side_tasks.discard)
            return
        self.errors[code] += 1
        if self.tracker.replacing(cid) is not None and code not in CANCEL_REFUSED and code != ORDER_CANCELED:
            self._refuse_replace(cid, f"IB {code}: {text}")  # the modification failed; the order lives on
            return
        if is_warning(code):
            log.info("ib_order_warning", client_id=cid, code=code, text=text)
            return
        ts, reason = self._now(), f"IB {code}: {text}"
        if code in CANCEL_REFUSED:
            self._emit(self.tracker.cancel_rejected(cid, ts, reason))
        elif code == ORDER_CANCELED:
            self._emit(self.tracker.canceled(cid, ts, reason))
        elif cid in self._acked:
            self.stats["error_on_live_order"] += 1
            log.error("ib_error_on_live_order", client_id=cid, code=code, text=text)
        else:
            self._emit(self.tracker.rejected(cid, ts, reason))

    def _on_open_order(self, trade: Trade) -> None:
        """IB's openOrder for one of ours: its quantity and limit price as IB holds them (a modification)."""
        cid = self._bind(trade)
        view = None if cid is None else self.tracker.get(cid)
        if view is None or cid is None:
            return
        inst, o = self._instrument(view.order.symbol), trade.order
        try:
            qty = inst.lot(o.totalQuantity)
            px = inst.tick(o.lmtPrice) if view.order.limit_px is not None else None
        except ValueError as exc:
            self.stats["bad_open_order"] += 1
            log.error("ib_bad_open_order", client_id=cid, error=str(exc))
            return
        events = self.tracker.replaced(cid, self._now(), qty, px)
        self.journaled.params(cid)
        self._emit(events)

    def _refuse_replace(self, cid: str, reason: str) -> None:
        ts = self._now()
        self.stats["modify_refused"] += 1
        log.warning("ib_modify_refused", client_id=cid, reason=reason)
        self._emit(self.tracker.replace_rejected(cid, ts, reason))
        self.journaled.transition(ts, cid, "REPLACE_REJECT", {"reason": reason})

    def _on_exec(self, trade: Trade, fill: IbFill) -> None:
        self._take_exec(fill, wait=True)

    def _on_commission(self, trade: Trade, fill: IbFill, report: Any) -> None:
        waiting = self._awaiting.pop(report.execId, None)
        if waiting is None:
            if trade_id(report.execId) in self._execs:
                self.stats["late_commission"] += 1
            return
        cid, ib_fill, handle = waiting
        handle.cancel()
        self._apply(cid, ib_fill)

    # --- fills ---------------------------------------------------------------------------------

    def _take_exec(self, fill: IbFill, wait: bool) -> None:
        """One execution from any source (live, resync): applied once per trade id, with its commission."""
        ex = fill.execution
        view = self.tracker.get(ex.orderRef) if ex.orderRef else None
        if view is None:
            self.stats["foreign_execution"] += 1
            return
        if self._last_exec is None or ex.time > self._last_exec:
            self._last_exec = ex.time
        tid = trade_id(ex.execId)
        applied = self._execs.get(tid)
        waiting = self._awaiting.get(ex.execId)
        if waiting is not None:  # seen before; take this copy if it has the commission
            if fill.commissionReport.execId == ex.execId:
                self._awaiting.pop(ex.execId)[2].cancel()
                self._apply(ex.orderRef, fill)
            return
        if applied is not None:
            if applied[0] != ex.execId and (applied[1], applied[2]) != (ex.shares, ex.price):
                self.stats["exec_correction"] += 1
                self.corrections.append((ex.orderRef, applied[0], ex.execId))
                log.error("ib_exec_correction", client_id=ex.orderRef, exec_id=ex.execId, applied=applied,
                          shares=ex.shares, price=ex.price)
            else:
                self.stats["duplicate_execution"] += 1
            return
        self._execs[tid] = (ex.execId, ex.shares, ex.price)
        if fill.commissionReport.execId == ex.execId or not wait:
            self._apply(ex.orderRef, fill)
        else:
            handle = asyncio.get_running_loop().call_later(self.commission_wait_s, self._flush, ex.execId)
            self._awaiting[ex.execId] = (ex.orderRef, fill, handle)

    def _flush(self, exec_id: str) -> None:
        waiting = self._awaiting.pop(exec_id, None)
        if waiting is not None:
            waiting[2].cancel()
            self._apply(waiting[0], waiting[1])

    def _flush_all(self) -> None:
        for exec_id in list(self._awaiting):
            self._flush(exec_id)

    def _apply(self, cid: str, ib_fill: IbFill) -> None:
        view = self.tracker.get(cid)
        made = None if view is None else self._fill(cid, view.order.symbol, ib_fill)
        if made is not None:
            self._emit(self.tracker.fill(made))

    def _fill(self, cid: str, symbol: str, ib_fill: IbFill) -> Fill | None:
        """A Fill from an ib_async Fill (fee from its commission report if it has one), or None if off-grid."""
        ex, report = ib_fill.execution, ib_fill.commissionReport
        if report.execId != ex.execId:  # reqExecutions hands a fresh copy of a known execution; its report is here
            known = self.ib.wrapper.fills.get(ex.execId)
            report = known.commissionReport if known is not None else report
        fee = report.commission if report.execId == ex.execId else 0.0
        if report.execId != ex.execId:
            self.stats["fill_without_commission"] += 1
        try:
            return to_fill(ib_fill, fee, cid, symbol, self._instrument(symbol), self._now())
        except ValueError as exc:
            self.stats["bad_execution"] += 1
            log.error("ib_bad_execution", client_id=cid, exec_id=ex.execId, error=str(exc))
            return None

    # --- helpers -------------------------------------------------------------------------------

    def _bind(self, trade: Trade) -> str | None:
        """The client id (orderRef) of a trade of ours, remembering its session orderId; None if not ours."""
        cid = trade.order.orderRef
        if not cid or self.tracker.get(cid) is None:
            self.stats["foreign_order"] += 1
            return None
        self._by_order_id[trade.order.orderId] = cid
        self._trades[cid] = trade
        return cid

    def _send_cancel(self, cid: str) -> None:
        trade = self._trades.get(cid)
        if trade is None or not self.ib.isConnected():
            return  # the next resync sends it
        try:
            self.ib.cancelOrder(trade.order)
        except ConnectionError:
            self.stats["cancel_not_sent"] += 1

    def _lots(self, cid: str, qty: float) -> int | None:
        view = self.tracker.get(cid)
        try:
            return self._instrument(view.order.symbol).lot(qty) if view is not None else None
        except ValueError as exc:
            self.stats["bad_status"] += 1
            log.error("ib_bad_status", client_id=cid, error=str(exc))
            return None

    def _by_conid(self) -> dict[int, str]:
        return {c.conId: s for s, c in self.contracts.items() if c.conId}

    def _emit(self, events: list[BrokerEvent]) -> None:
        for ev in events:
            if isinstance(ev, OrderAccepted):
                self._acked.add(ev.client_id)
            self.journaled.event(ev)
            self._sink(ev)

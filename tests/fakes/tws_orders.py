"""The order side of the loopback fake TWS: orders, executions, commissions and positions.

`FakeTwsOrders` extends `FakeTws` (market data, handshake) with what ib_async's `IB` sends and
expects for trading, in the TWS API wire format of server version 178:

- placeOrder (3) -> openOrder (5) + orderStatus (3) "Submitted"; `reject_next` answers the next one
  with an error (201 by default) instead, `silent_next` takes it without a word (the answer lost).
- placeOrder for an open order's id modifies it (quantity, limit price) -> openOrder + orderStatus;
  `refuse_modify_next` answers the next modification with that error instead (e.g. 105, or 201), and a
  modification of an order that is not open gets error 104 ("Can't modify a filled order").
- cancelOrder (4) -> orderStatus "Cancelled" (+ error 202); an order that is not open -> error 10148.
- reqOpenOrders (5) / reqAllOpenOrders (16) -> openOrder + orderStatus per open order, openOrderEnd.
- reqExecutions (7) -> execDetails + commissionReport per execution matching the filter's client id
  and time ("yyyymmdd-hh:mm:ss" UTC), execDetailsEnd; the filters received are kept in `exec_filters`.
- reqPositions (61) -> position per contract from the net of the executions, positionEnd.
- reqGlobalCancel (58) -> every open order cancelled.
- `fill(order_id, qty, price)` (test-driven) -> execDetails + commissionReport + orderStatus
  (Submitted while partial, Filled at the end), optionally in another order or repeated.
- nextValidId on each connection is above every order id seen, as TWS does.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tests.fakes.tws import FakeTws, _frame

_PLACE_ORDER, _CANCEL_ORDER, _REQ_OPEN_ORDERS, _REQ_EXECUTIONS = 3, 4, 5, 7
_REQ_ALL_OPEN_ORDERS, _REQ_GLOBAL_CANCEL, _REQ_POSITIONS, _START_API = 16, 58, 61, 71
EXEC_TIME_S = 1_735_819_200  # 2025-01-02 12:00:00 UTC, the default time of an execution


@dataclass(slots=True)
class FakeOrder:
    """One order as the fake TWS holds it."""

    order_id: int
    client_id: int
    perm_id: int
    con_id: int
    symbol: str
    action: str
    qty: float
    order_type: str
    lmt_price: str
    tif: str
    order_ref: str
    status: str = "Submitted"
    filled: float = 0.0
    notional: float = 0.0

    @property
    def open(self) -> bool:
        """Still working at the venue."""
        return self.status in ("PreSubmitted", "Submitted")


@dataclass(slots=True)
class FakeExecution:
    """One execution (a fill) of a fake order."""

    exec_id: str
    order: FakeOrder
    qty: float
    price: float
    time_s: int
    cum_qty: float
    avg_price: float
    liquidity: int
    commission: float
    extra: dict = field(default_factory=dict)


class FakeTwsOrders(FakeTws):
    """A fake TWS that also takes orders; the test drives fills, rejects and lost answers."""

    def __init__(self, account: str = "DU0000001", contract_ids: dict[str, int] | None = None) -> None:
        super().__init__(account, contract_ids)
        self.orders: dict[int, FakeOrder] = {}
        self.executions: list[FakeExecution] = []
        self.exec_filters: list[list[str]] = []
        self.cancels: list[int] = []
        self.reject_next: tuple[int, str] | None = None
        self.silent_next = False
        self.refuse_modify_next: tuple[int, str] | None = None
        self.modifications: list[tuple[int, float, str]] = []  # (order id, qty, limit price) asked
        self.commission_per_share = 0.005
        self._perm = 1_000_000
        self._exec_seq = 0

    # --- test controls -------------------------------------------------------------------------

    def fill(self, order_id: int, qty: float, price: float, *, liquidity: int = 1, time_s: int = EXEC_TIME_S,
             status_first: bool = False, repeat: int = 1, commission: bool = True) -> FakeExecution:
        """Execute `qty` of an order at `price` and tell the client (execDetails, commission, status)."""
        o = self.orders[order_id]
        if not o.open or o.filled + qty > o.qty + 1e-9:
            raise ValueError(f"fake TWS: cannot fill {qty} of order {order_id} ({o.status}, {o.filled}/{o.qty})")
        self._exec_seq += 1
        o.filled += qty
        o.notional += qty * price
        if o.filled >= o.qty - 1e-9:
            o.status = "Filled"
        ex = FakeExecution(f"0000e0d5.{self._exec_seq:08x}.01.01", o, qty, price, time_s, o.filled,
                           o.notional / o.filled, liquidity, round(qty * self.commission_per_share, 6))
        self.executions.append(ex)
        status = self.status_frame(o)
        details = self.exec_frame(ex) * repeat + (self.commission_frame(ex) if commission else b"")
        self._write(status + details if status_first else details + status)
        return ex

    def correct(self, ex: FakeExecution, qty: float | None = None, price: float | None = None,
                n: int = 2) -> FakeExecution:
        """Send correction `n` of an execution (execId suffix .0n): IB's way of amending a fill."""
        base = ex.exec_id.rsplit(".", 1)[0]
        fixed = FakeExecution(f"{base}.{n:02d}", ex.order, ex.qty if qty is None else qty,
                              ex.price if price is None else price, ex.time_s, ex.cum_qty, ex.avg_price,
                              ex.liquidity, ex.commission)
        self._write(self.exec_frame(fixed) + self.commission_frame(fixed))
        return fixed

    def cancel_by_venue(self, order_id: int) -> None:
        """The venue cancels an order by itself (end of day, margin): orderStatus Cancelled."""
        o = self.orders[order_id]
        o.status = "Cancelled"
        self._write(self.status_frame(o))

    def by_ref(self, order_ref: str) -> FakeOrder:
        """The order with this orderRef (the daemon's client order id)."""
        return next(o for o in self.orders.values() if o.order_ref == order_ref)

    async def wait_order(self, order_ref: str) -> FakeOrder:
        """Wait until an order with this orderRef has been placed."""
        async with self._changed:
            await self._changed.wait_for(lambda: any(o.order_ref == order_ref for o in self.orders.values()))
        return self.by_ref(order_ref)

    async def wait_requests(self, msg_id: int, count: int) -> None:
        """Wait until `count` messages with this id have been received."""
        async with self._changed:
            await self._changed.wait_for(lambda: sum(1 for r in self.requests if r[0] == str(msg_id)) >= count)

    # --- frames --------------------------------------------------------------------------------

    def status_frame(self, o: FakeOrder) -> bytes:
        """orderStatus (3) of an order as it stands."""
        avg = o.notional / o.filled if o.filled else 0.0
        return _frame(3, o.order_id, o.status, o.filled, o.qty - o.filled, avg, o.perm_id, 0, avg, o.client_id, "",
                      "")

    def open_order_frame(self, o: FakeOrder) -> bytes:
        """openOrder (5) as TWS 178 sends it: the fields ib_async's decoder reads, most left empty."""
        head = [5, o.order_id, o.con_id, o.symbol, "STK", "", 0.0, "", "", "ISLAND", "USD", o.symbol, "NMS",
                o.action, o.qty, o.order_type, o.lmt_price, "", o.tif, "", self.account, "", 0, o.order_ref,
                o.client_id, o.perm_id, 0, 0, 0, "", "", "", "", ""]
        rest = ([""] * 29 + [""] * 7 + [0, 0, 0] + [""] * 3 + [""] + ["", "", "", "", 0] + [""]
                + ["", 0, o.status] + [""] * 14 + ["", ""] + [0] + [""] * 16 + [""] * 3 + [""] * 5)
        return _frame(*head, *rest)

    def exec_frame(self, ex: FakeExecution, req_id: int = -1) -> bytes:
        """execDetails (11) of an execution (req_id -1: a live one)."""
        o = ex.order
        return _frame(11, req_id, o.order_id, o.con_id, o.symbol, "STK", "", 0.0, "", "", "ISLAND", "USD", o.symbol,
                      "NMS", ex.exec_id, ex.time_s, self.account, "ISLAND", "BOT" if o.action == "BUY" else "SLD",
                      ex.qty, ex.price, o.perm_id, o.client_id, 0, ex.cum_qty, ex.avg_price, o.order_ref, "", "", "",
                      ex.liquidity, 0)

    def commission_frame(self, ex: FakeExecution) -> bytes:
        """commissionReport (59) of an execution."""
        return _frame(59, 1, ex.exec_id, ex.commission, "USD", "", "", "")

    # --- the protocol --------------------------------------------------------------------------

    def _answer(self, w: asyncio.StreamWriter, f: list[str]) -> None:
        msg = int(f[0])
        if msg == _START_API:
            self.client_ids.append(int(f[2]))
            self.connections += 1
            w.write(_frame(9, 1, max(self.orders, default=0) + 1) + _frame(15, 1, self.account))
        elif msg == _PLACE_ORDER:
            self._place(w, f)
        elif msg == _CANCEL_ORDER:
            self._cancel(w, int(f[2]))
        elif msg in (_REQ_OPEN_ORDERS, _REQ_ALL_OPEN_ORDERS):
            client = self.client_ids[-1] if msg == _REQ_OPEN_ORDERS else None
            w.write(b"".join(self.open_order_frame(o) + self.status_frame(o) for o in self.orders.values()
                             if o.open and client in (None, o.client_id)) + _frame(53, 1))
        elif msg == _REQ_EXECUTIONS:
            self._executions(w, f)
        elif msg == _REQ_POSITIONS:
            net: dict[tuple[int, str], float] = {}
            for ex in self.executions:
                key = (ex.order.con_id, ex.order.symbol)
                net[key] = net.get(key, 0.0) + (ex.qty if ex.order.action == "BUY" else -ex.qty)
            w.write(b"".join(_frame(61, 3, self.account, con, sym, "STK", "", 0.0, "", "", "ISLAND", "USD", sym,
                                    "NMS", qty, 0.0) for (con, sym), qty in net.items()) + _frame(62, 1))
        elif msg == _REQ_GLOBAL_CANCEL:
            for o in self.orders.values():
                if o.open:
                    self._cancel(w, o.order_id)
        else:
            super()._answer(w, f)

    def _place(self, w: asyncio.StreamWriter, f: list[str]) -> None:
        # 3, orderId, contract (12 fields), secIdType, secId, action, qty, type, lmt, aux, tif, oca, account,
        # openClose, origin, orderRef, ...
        order_id = int(f[1])
        if order_id in self.orders:
            self._modify(w, self.orders[order_id], float(f[17]), f[19])
            return
        if self.reject_next is not None:
            code, text = self.reject_next
            self.reject_next = None
            w.write(_frame(4, 2, order_id, code, text, ""))
            return
        self._perm += 1
        o = FakeOrder(order_id, self.client_ids[-1], self._perm, int(f[2] or 0), f[3], f[16], float(f[17]), f[18],
                      f[19], f[21], f[26])
        self.orders[order_id] = o
        if self.silent_next:
            self.silent_next = False
            return
        w.write(self.open_order_frame(o) + self.status_frame(o))

    def _modify(self, w: asyncio.StreamWriter, o: FakeOrder, qty: float, lmt_price: str) -> None:
        self.modifications.append((o.order_id, qty, lmt_price))
        if self.refuse_modify_next is not None or not o.open or qty < o.filled:
            code, text = self.refuse_modify_next or (104, "Can't modify a filled order")
            self.refuse_modify_next = None
            w.write(_frame(4, 2, o.order_id, code, text, ""))
            return
        o.qty, o.lmt_price = qty, lmt_price
        w.write(self.open_order_frame(o) + self.status_frame(o))

    def _cancel(self, w: asyncio.StreamWriter, order_id: int) -> None:
        self.cancels.append(order_id)
        o = self.orders.get(order_id)
        if o is None or not o.open:
            state = "unknown" if o is None else o.status
            w.write(_frame(4, 2, order_id, 10148, f"OrderId {order_id} that needs to be cancelled cannot be "
                           f"cancelled, state: {state}.", ""))
            return
        o.status = "Cancelled"
        w.write(self.status_frame(o) + _frame(4, 2, order_id, 202, "Order Canceled - reason:", ""))

    def _executions(self, w: asyncio.StreamWriter, f: list[str]) -> None:
        # 7, 3, reqId, clientId, acctCode, time, symbol, secType, exchange, side
        self.exec_filters.append(f)
        req_id, client, since = int(f[2]), int(f[3] or 0), f[5]
        since_s = int(datetime.strptime(since, "%Y%m%d-%H:%M:%S").replace(tzinfo=UTC).timestamp()) if since else 0
        out = [self.exec_frame(ex, req_id) + self.commission_frame(ex) for ex in self.executions
               if ex.time_s >= since_s and client in (0, ex.order.client_id)]
        w.write(b"".join(out) + _frame(55, 1, req_id))

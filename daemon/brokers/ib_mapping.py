"""Pure mapping between ib_async's objects and depthd's for the IB gateway: ids, error codes, orders and
executions. No I/O; the gateway (`daemon.brokers.ib_gateway`) holds the connection and the state."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from ib_async import ExecutionFilter, LimitOrder, MarketOrder, OrderStatus, Trade
from ib_async import Fill as IbFill

from daemon.events import Fill, Liquidity, Order, OrderType, Side
from daemon.instruments import Instrument

VENUE = "ib"
ORDER_CANCELED = 202
CANCEL_REFUSED = frozenset({161, 10147, 10148})
WARNINGS = frozenset({105, 110, 165, 321, 329, 399, 404, 434, 492, 10167})  # as ib_async: the order lives on
CONNECTIVITY_RESTORED = frozenset({1101, 1102})
WORKING = (OrderStatus.PreSubmitted, OrderStatus.Submitted)
ENDED = (OrderStatus.Cancelled, OrderStatus.ApiCancelled)
_CORRECTION = re.compile(r"(.+)\.\d{2}")


@dataclass(frozen=True, slots=True)
class IbOpenOrder:
    """An open order as IB reports it (any client's): for the reconciler's orphan check."""

    client_id: str  # orderRef ("" for a manual order)
    symbol: str  # "" when the contract is not one of ours
    side: Side
    qty: float
    filled: float
    limit_price: float | None
    status: str
    order_id: int
    perm_id: int
    ib_client_id: int


def is_warning(code: int) -> bool:
    """IB's message codes that leave an order working (ib_async's list and the 2100s)."""
    return code in WARNINGS or 2100 <= code < 2200


def trade_id(exec_id: str) -> str:
    """An execution's trade id: its execId without the correction suffix (".01", ".02", ...)."""
    m = _CORRECTION.fullmatch(exec_id)
    return m.group(1) if m else exec_id


def exec_filter(since: dt.datetime | None) -> ExecutionFilter:
    """reqExecutions' filter for executions since a time (IB wants "yyyymmdd-hh:mm:ss" UTC), or all."""
    return ExecutionFilter(time=since.astimezone(dt.UTC).strftime("%Y%m%d-%H:%M:%S") if since else "")


def ib_order(order: Order, inst: Instrument, tif: str, account: str) -> Any:
    """The ib_async order for a depthd Order: orderRef carries the client id, sizes off the grid."""
    action, qty = ("BUY" if order.side is Side.BUY else "SELL"), inst.qty(order.qty)
    common = {"orderRef": order.client_id, "tif": tif, "account": account}
    if order.order_type is OrderType.LIMIT:
        return LimitOrder(action, qty, inst.price(order.limit_px), **common)
    return MarketOrder(action, qty, **common)


def open_order(trade: Trade, symbol: str) -> IbOpenOrder:
    """An ib_async Trade from reqAllOpenOrders as an IbOpenOrder."""
    o = trade.order
    lmt = o.lmtPrice if o.orderType == "LMT" else None
    return IbOpenOrder(o.orderRef, symbol, Side.BUY if o.action == "BUY" else Side.SELL, float(o.totalQuantity),
                       float(trade.orderStatus.filled), lmt, trade.orderStatus.status, o.orderId, o.permId, o.clientId)


def to_fill(ib_fill: IbFill, fee: float, client_id: str, symbol: str, inst: Instrument, ts: int) -> Fill:
    """A depthd Fill from an execution (fee in IB's commission currency); ValueError when off the grid."""
    ex = ib_fill.execution
    return Fill(client_id, symbol, ts, Side.BUY if ex.side == "BOT" else Side.SELL, inst.tick(ex.price),
                inst.lot(ex.shares), float(fee), Liquidity.MAKER if ex.lastLiquidity == 1 else Liquidity.TAKER,
                trade_id(ex.execId))

"""The venues as reconciliation sees them: the `VenueView` protocol and its ccxt and IB implementations.

Every symbol is the daemon's and every quantity is in lots; `daemon.brokers.reconcile` asks these what
the venue holds (open orders, one order by client id, fills since a time, positions or balances) and
cancels orphans through them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import ccxt

from daemon.brokers import ccxt_mapping as cm
from daemon.brokers.lifecycle import OrderState
from daemon.brokers.orders import OrderTracker
from daemon.events import Fill, Order
from daemon.instruments import Instrument


@dataclass(frozen=True, slots=True)
class VenueOrder:
    """An order as the venue reports it: client id (None if it has none), daemon symbol, state and filled lots."""

    client_id: str | None
    symbol: str
    state: OrderState | None
    filled: int
    venue_id: str | None


class VenueView(Protocol):
    """What reconciliation asks a venue; every symbol is the daemon's, every quantity in lots.

    `holds_positions`: `holdings` are positions (derivatives, the daemon's alone) rather than spot balances.
    `absent_is_closed`: the venue forgets finished orders (IB), so an acknowledged order it no longer knows ended
    (canceled, "not_open_at_venue") rather than being a discrepancy.
    """

    holds_positions: bool
    absent_is_closed: bool

    async def open_orders(self) -> list[VenueOrder]:
        """Every open order on the daemon's symbols, whoever sent it."""
        ...

    async def lookup(self, order: Order) -> VenueOrder | None:
        """One order by client id; None when the venue confirms it has no such order."""
        ...

    async def fills_since(self, symbol: str, since_ms: int | None) -> list[Fill]:
        """The account's fills on `symbol` since `since_ms` (venue time); client_id '' when the venue cannot tell."""
        ...

    async def holdings(self) -> dict[str, int]:
        """Per daemon symbol, the venue's position (derivatives) or base-asset balance (spot), in lots."""
        ...

    async def cancel(self, order: VenueOrder) -> None:
        """Cancel an order (an orphan) by its venue id."""
        ...


class CcxtVenueView:
    """VenueView on an async ccxt exchange (the gateway's or its own), for the daemon's instruments."""

    def __init__(self, exchange: Any, instruments: Mapping[str, Instrument], clock_now: Callable[[], int], *,
                 positions: bool = False) -> None:
        self.exchange = exchange
        self.instruments = dict(instruments)
        self.clock_now = clock_now
        self.positions = positions
        self.holds_positions = positions
        self.absent_is_closed = False
        self.reports = cm.VenueReports(OrderTracker(), instruments)
        self._by_venue_id: dict[str, str] = {}
        self._base_fees: dict[str, dict[str, float]] = {}  # symbol -> trade id -> base-asset fee (spot)
        self._bound = False

    async def _bind(self) -> None:
        if not self._bound:
            if not getattr(self.exchange, "markets", None):
                await self.exchange.load_markets()
            self.reports.bind(self.exchange.markets, getattr(self.exchange, "markets_by_id", None))
            self._bound = True

    def _order(self, o: Mapping[str, Any], sym: str) -> VenueOrder:
        cid = cm.order_client_id(o)
        filled = cm.filled_lots(o, self.instruments[sym])
        vid = None if o.get("id") is None else str(o["id"])
        if vid is not None and cid:
            self._by_venue_id[vid] = cid
        return VenueOrder(cid, sym, cm.order_state(o, filled), filled, vid)

    async def open_orders(self) -> list[VenueOrder]:
        """Every open order on the daemon's symbols (fetch_open_orders per symbol)."""
        await self._bind()
        out: list[VenueOrder] = []
        for sym, csym in self.reports.ccxt_symbol.items():
            out += [self._order(o, sym) for o in await self.exchange.fetch_open_orders(csym)]
        return out

    async def lookup(self, order: Order) -> VenueOrder | None:
        """fetch_order by clientOrderId; None on OrderNotFound."""
        await self._bind()
        try:
            o = await self.exchange.fetch_order(None, self.reports.ccxt_symbol[order.symbol],
                                                {"clientOrderId": order.client_id})
        except ccxt.OrderNotFound:
            return None
        return self._order(o, order.symbol)

    async def fills_since(self, symbol: str, since_ms: int | None) -> list[Fill]:
        """fetch_my_trades since `since_ms`, each attributed to a client id (fetch_order for an unseen order id)."""
        await self._bind()
        csym = self.reports.ccxt_symbol[symbol]
        market = self.exchange.markets[csym]
        out: list[Fill] = []
        ts = self.clock_now()
        for t in await self.exchange.fetch_my_trades(csym, since_ms):
            vid = str(t.get("order"))
            cid = self._by_venue_id.get(vid) or cm.trade_client_id(t)
            if cid is None:
                o = await self.exchange.fetch_order(vid, csym)
                cid = cm.order_client_id(o) or ""
                self._by_venue_id[vid] = cid
            out.append(cm.to_fill(t, cid, symbol, self.instruments[symbol], market["base"], market["quote"], ts))
            fee = t.get("fee") or {}
            if not self.positions and fee.get("cost") and fee.get("currency") == market["base"]:
                self._base_fees.setdefault(symbol, {})[str(t.get("id"))] = float(fee["cost"])
        return out

    async def holdings(self) -> dict[str, int]:
        """Per symbol the position's signed contracts (`positions`) or the base asset's total balance, in lots.

        Spot: a fee charged in the base asset (Binance without BNB) leaves the balance but not the position,
        so the base-asset fees of every trade this view has fetched are added back.
        """
        await self._bind()
        out: dict[str, int] = {}
        if self.positions:
            for p in await self.exchange.fetch_positions(list(self.reports.ccxt_symbol.values())):
                sym = self.reports.daemon_symbol(p.get("symbol"))
                if sym is not None:
                    size = float(p.get("contracts") or 0) * (-1 if p.get("side") == "short" else 1)
                    out[sym] = out.get(sym, 0) + _lots(size, self.instruments[sym])
            return out
        bal = await self.exchange.fetch_balance()
        for sym, csym in self.reports.ccxt_symbol.items():
            row = bal.get(self.exchange.markets[csym]["base"]) or {}
            fees = sum(self._base_fees.get(sym, {}).values())  # paid out of the balance, not out of the position
            out[sym] = _lots(float(row.get("total") or 0) + fees, self.instruments[sym])
        return out

    async def cancel(self, order: VenueOrder) -> None:
        """cancel_order by venue id."""
        await self._bind()
        await self.exchange.cancel_order(order.venue_id, self.reports.ccxt_symbol[order.symbol])


def _lots(qty: float, inst: Instrument) -> int:
    """A venue balance in lots, rounded to the nearest lot (a balance need not sit on the order grid)."""
    return round(qty / inst.lot_size)


_IB_OPEN = frozenset({"PendingSubmit", "PreSubmitted", "Submitted", "ApiPending", "PendingCancel"})
_IB_ENDED = {"Filled": OrderState.FILLED, "Cancelled": OrderState.CANCELED, "ApiCancelled": OrderState.CANCELED}


class IbVenueView:
    """VenueView on a connected IbGateway: all clients' open orders, executions by orderRef, positions."""

    holds_positions = True
    absent_is_closed = True  # IB lists open orders and today's executions only

    def __init__(self, gateway: Any, instruments: Callable[[str], Instrument]) -> None:
        self.gateway = gateway
        self.instruments = instruments

    def _order(self, o: Any) -> VenueOrder:
        filled = self.instruments(o.symbol).lot(o.filled)
        state = _IB_ENDED.get(o.status)
        if o.status in _IB_OPEN:
            state = OrderState.PARTIALLY_FILLED if filled else OrderState.NEW
        return VenueOrder(o.client_id or None, o.symbol, state, filled, str(o.perm_id) if o.perm_id else None)

    async def open_orders(self) -> list[VenueOrder]:
        """Every open order at IB (all API clients and TWS), through `IbGateway.fetch_open_orders`."""
        return [self._order(o) for o in await self.gateway.fetch_open_orders() if o.symbol]

    async def lookup(self, order: Order) -> VenueOrder | None:
        """Open at IB -> its status; else filled in full by today's executions -> FILLED; else None (not open)."""
        for o in await self.gateway.fetch_open_orders():
            if o.client_id == order.client_id:
                return self._order(o)
        filled = sum(f.qty for f in await self.gateway.fetch_executions() if f.client_id == order.client_id)
        return VenueOrder(order.client_id, order.symbol, OrderState.FILLED, filled, None) if (
            filled == order.qty) else None

    async def fills_since(self, symbol: str, since_ms: int | None) -> list[Fill]:
        """IB's executions on `symbol` since `since_ms` (client id = orderRef)."""
        since = None if since_ms is None else dt.datetime.fromtimestamp(since_ms / 1000, dt.UTC)
        return [f for f in await self.gateway.fetch_executions(since) if f.symbol == symbol]

    async def holdings(self) -> dict[str, int]:
        """Positions in lots per symbol (`IbGateway.fetch_positions`)."""
        return dict(await self.gateway.fetch_positions())

    async def cancel(self, order: VenueOrder) -> None:
        """Not supported: another client's order can only be cancelled from that client (or TWS); reported."""
        raise NotImplementedError("IB orphans are cancelled from the client that placed them (or TWS)")

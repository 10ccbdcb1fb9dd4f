"""The Interactive Brokers venue: market depth rows (by position, not price) in, price-level deltas out.

IB's market depth (reqMktDepth) does not name price levels: it addresses rows of each side by
position (row 0 = best), with operation 0 insert (the rows from that position down move one down),
1 update (the row changes in place) and 2 delete (the rows below move one up), side 0 ask / 1 bid.
Several rows can hold the same price (market makers, exchanges under SMART depth). The feed
(`daemon.sources.ib_feed`) sends:

    "ib_depth":  [{"position": int, "operation": 0|1|2, "side": 0|1, "price": p, "size": q, "mm": str}, ...]
                 (the rows of one network read; a single object is taken as a list of one)
    "ib_trades": [{"price": p, "size": q, "exchange": str, ...}, ...]  (tick-by-tick AllLast)
    "marker":    {"event": "subscribed", "num_rows": n}  (depth requested, or IB reset it: the book starts empty)
                 {"event": "disconnected", "reason": str}

The adapter keeps each symbol's rows as arrays (ticks, lots), applies the operations with a numba
kernel, aggregates rows by price and emits a BookDelta of the levels that changed (size 0: gone).
"subscribed" gives an empty BookSnapshot (complete=False: the book is only `num_rows` deep); a
disconnect gives a BookReset. A row position beyond `num_rows`, an insert past the last row, or an
update or delete of a row that does not exist means the rows are out of step with IB (IB is known to
send those when out of step): it is counted (decode_errors), answered with a BookReset and a Resubscribe
request, and depth is ignored until the new subscription's "subscribed". A malformed row (missing
field, price off the tick grid) is a DecodeError and changes nothing. When the book is lost
downstream (crossed), the rows are kept and the next depth message is sent as a whole snapshot.

IB has no venue time on depth, and ib_async drops the tick-by-tick time, so ts_venue is the receive
time. Tick-by-tick AllLast carries no aggressor side; it is inferred from this book: a print at or
above the best ask is a buy, at or below the best bid a sell, and in between (or without a book) the
tick rule decides: above the previous print a buy, below a sell, equal the previous print's side
(the very first print with neither a book nor an earlier print is called a buy). An inferred side
is a guess, most often wrong for prints inside the spread.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit

from daemon.events import BookDelta, BookReset, BookSnapshot, MarketEvent, Side, Trade
from daemon.instruments import Instrument, OffGridError
from daemon.venues.base import CH_MARKER, BaseAdapter, DecodeError, Resubscribe
from daemon.venues.ccxt_book import level_diff
from daemon.venues.health import ResyncPolicy

CH_IB_DEPTH, CH_IB_TRADES = "ib_depth", "ib_trades"
ASK, BID = 0, 1  # IB's side codes
INSERT, UPDATE, DELETE = 0, 1, 2
_OPS = ("insert", "update", "delete")
_SIDE_NAMES = ("ask", "bid")
_EMPTY = np.zeros(0, np.int64)
_BUY, _SELL = Side.BUY, Side.SELL
_MAX_ROWS = 1000


@njit(cache=True, nogil=True)
def apply_rows(ops: np.ndarray, px: np.ndarray, qty: np.ndarray, n: np.ndarray, num_rows: int) -> int:
    """Apply IB depth operations (rows of `ops`: side, operation, position, ticks, lots) to the rows
    `px[side, :n[side]]`, `qty[...]`, at most `num_rows` a side (an insert into a full side drops the
    last row). Returns -1, or the index of the first operation that does not fit the rows."""
    for i in range(ops.shape[0]):
        s, op, p = ops[i, 0], ops[i, 1], ops[i, 2]
        m = n[s]
        if op == 0:
            if p > m or p >= num_rows:
                return i
            end = min(m + 1, num_rows)
            for j in range(end - 1, p, -1):
                px[s, j] = px[s, j - 1]
                qty[s, j] = qty[s, j - 1]
            px[s, p] = ops[i, 3]
            qty[s, p] = ops[i, 4]
            n[s] = end
        elif op == 1:
            if p >= m:
                return i
            px[s, p] = ops[i, 3]
            qty[s, p] = ops[i, 4]
        else:
            if p >= m:
                return i
            for j in range(p, m - 1):
                px[s, j] = px[s, j + 1]
                qty[s, j] = qty[s, j + 1]
            n[s] = m - 1
    return -1


def aggregate(px: np.ndarray, qty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows to price levels: unique prices ascending, sizes summed, empty levels left out."""
    if not len(px):
        return _EMPTY, _EMPTY
    out_px = np.empty(len(px), np.int64)
    out_qty = np.empty(len(px), np.int64)
    k = _aggregate_kernel(px, qty, out_px, out_qty)
    return out_px[:k], out_qty[:k]


@njit(cache=True, nogil=True)
def _aggregate_kernel(px: np.ndarray, qty: np.ndarray, out_px: np.ndarray, out_qty: np.ndarray) -> int:
    order = np.argsort(px, kind="mergesort")
    k = 0
    for i in order:
        if k and out_px[k - 1] == px[i]:
            out_qty[k - 1] += qty[i]
        else:
            out_px[k] = px[i]
            out_qty[k] = qty[i]
            k += 1
    j = 0
    for i in range(k):
        if out_qty[i] > 0:
            out_px[j] = out_px[i]
            out_qty[j] = out_qty[i]
            j += 1
    return j


class _Dom:
    """One symbol's depth rows, the levels last reported, and the last print."""

    __slots__ = ("ask_px", "ask_qty", "bid_px", "bid_qty", "last_px", "last_side", "live", "n", "num_rows",
                 "px", "qty", "snapshot_next")

    def __init__(self, num_rows: int) -> None:
        self.num_rows = num_rows
        self.px = np.zeros((2, num_rows), np.int64)
        self.qty = np.zeros((2, num_rows), np.int64)
        self.n = np.zeros(2, np.int64)
        self.live = False  # False: rows unknown, depth is ignored until "subscribed"
        self.snapshot_next = False  # the book was lost downstream: send the rows whole next time
        self.bid_px = self.bid_qty = self.ask_px = self.ask_qty = _EMPTY
        self.last_px = 0
        self.last_side = _BUY


class IbAdapter(BaseAdapter):
    """Decoder for the IB feed: position-addressed depth rows to price-level events, trades with an
    inferred side."""

    venue = "ib"

    def __init__(self, instrument: Callable[[str], Instrument], policy: ResyncPolicy | None = None) -> None:
        super().__init__(instrument, policy)
        self._doms: dict[str, _Dom] = {}
        self._handlers = {CH_IB_DEPTH: self._depth, CH_IB_TRADES: self._trades, CH_MARKER: self._marker}

    def decode(self, ts_recv: int, symbol: str, channel: str, msg: Any) -> list[MarketEvent]:
        """One feed message to its events (depth deltas, trades, a snapshot or a reset)."""
        return self._dispatch(self._handlers, ts_recv, symbol, channel, msg)

    def resync(self, symbol: str, reason: str, ts: int) -> list[MarketEvent]:
        """The book was lost downstream (crossed): IB's rows are kept, and the next depth message is
        sent as a snapshot of all of them."""
        dom = self._doms.get(symbol)
        if dom is not None and dom.live:
            dom.snapshot_next = True
        self.policy.on_resync(self.health.symbol(symbol), ts, reason)
        return []

    def rows(self, symbol: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(bid px, bid qty, ask px, ask qty) rows of a symbol in IB's order (row 0 first), ticks/lots."""
        dom = self._doms[symbol]
        nb, na = int(dom.n[BID]), int(dom.n[ASK])
        return dom.px[BID, :nb].copy(), dom.qty[BID, :nb].copy(), dom.px[ASK, :na].copy(), dom.qty[ASK, :na].copy()

    # --- depth ---------------------------------------------------------------------------------

    def _depth(self, ts: int, symbol: str, msg: Any) -> list[MarketEvent]:
        rows = [msg] if type(msg) is dict else msg
        if type(rows) is not list:
            raise DecodeError(f"{symbol}: an ib_depth message must be a list of rows, got {type(msg).__name__}")
        ops = _ops(rows, self._inst(symbol))
        dom = self._doms.get(symbol)
        if dom is None or not dom.live:
            return []
        bad = apply_rows(ops, dom.px, dom.qty, dom.n, dom.num_rows)
        if bad >= 0:
            return self._lost(ts, symbol, dom, ops[bad])
        h = self.health.symbols.get(symbol)
        if h is not None and h.untradeable:  # still in sync: given time, tradeable again
            self.policy.on_in_sync(h, ts)
        bid_px, bid_qty = aggregate(dom.px[BID, :dom.n[BID]], dom.qty[BID, :dom.n[BID]])
        ask_px, ask_qty = aggregate(dom.px[ASK, :dom.n[ASK]], dom.qty[ASK, :dom.n[ASK]])
        if dom.snapshot_next:
            dom.snapshot_next = False
            dom.bid_px, dom.bid_qty, dom.ask_px, dom.ask_qty = bid_px, bid_qty, ask_px, ask_qty
            return [BookSnapshot(symbol, ts, ts, bid_px, bid_qty, ask_px, ask_qty, 0, None, False)]
        d_bid_px, d_bid_qty = level_diff(dom.bid_px, dom.bid_qty, bid_px, bid_qty)
        d_ask_px, d_ask_qty = level_diff(dom.ask_px, dom.ask_qty, ask_px, ask_qty)
        dom.bid_px, dom.bid_qty, dom.ask_px, dom.ask_qty = bid_px, bid_qty, ask_px, ask_qty
        if not len(d_bid_px) and not len(d_ask_px):
            return []
        return [BookDelta(symbol, ts, ts, d_bid_px, d_bid_qty, d_ask_px, d_ask_qty)]

    def _lost(self, ts: int, symbol: str, dom: _Dom, op: np.ndarray) -> list[MarketEvent]:
        """The rows are out of step with IB: reset the book and ask for a new subscription."""
        side, what, pos = _SIDE_NAMES[op[0]], _OPS[op[1]], int(op[2])
        reason = (f"ib depth out of sync: {what} at {side} row {pos} with {int(dom.n[op[0]])} rows "
                  f"(num_rows {dom.num_rows})")
        h = self.health.symbol(symbol)
        h.decode_errors += 1
        self.policy.on_resync(h, ts, reason)
        self._clear(dom)
        self._requests.append(Resubscribe(symbol, reason))
        return [BookReset(symbol, ts, ts, reason)]

    @staticmethod
    def _clear(dom: _Dom) -> None:
        dom.live = dom.snapshot_next = False
        dom.n[:] = 0
        dom.bid_px = dom.bid_qty = dom.ask_px = dom.ask_qty = _EMPTY

    # --- markers and trades --------------------------------------------------------------------

    def _marker(self, ts: int, symbol: str, msg: Any) -> list[MarketEvent]:
        if type(msg) is not dict:
            raise DecodeError(f"a marker must be an object, got {type(msg).__name__}")
        event = msg.get("event")
        if event == "subscribed":
            num_rows = msg.get("num_rows")
            if type(num_rows) is not int or not 0 < num_rows <= _MAX_ROWS:
                raise DecodeError(f"{symbol}: subscribed marker needs num_rows in 1..{_MAX_ROWS}, got {num_rows!r}")
            dom = self._doms.get(symbol)
            if dom is None or dom.num_rows != num_rows:
                old, dom = dom, _Dom(num_rows)
                if old is not None:
                    dom.last_px, dom.last_side = old.last_px, old.last_side
                self._doms[symbol] = dom
            self._clear(dom)
            dom.live = True
            self.policy.on_in_sync(self.health.symbol(symbol), ts)
            return [BookSnapshot(symbol, ts, ts, _EMPTY, _EMPTY, _EMPTY, _EMPTY, 0, None, False)]
        if event != "disconnected":
            return []
        reason = str(msg.get("reason") or "disconnected")
        out: list[MarketEvent] = []
        for sym in [symbol] if symbol else list(self._doms):
            dom = self._doms.get(sym)
            if dom is not None:
                self._clear(dom)
            self.policy.on_resync(self.health.symbol(sym), ts, reason)
            out.append(BookReset(sym, ts, ts, reason))
        return out

    def _trades(self, ts: int, symbol: str, msg: Any) -> list[MarketEvent]:
        prints = [msg] if type(msg) is dict else msg
        if type(prints) is not list:
            raise DecodeError(f"{symbol}: an ib_trades message must be a list of prints, got {type(msg).__name__}")
        inst = self._inst(symbol)
        dom = self._doms.get(symbol)
        if dom is None:
            dom = self._doms[symbol] = _Dom(1)
        out: list[MarketEvent] = []
        for t in prints:
            if type(t) is not dict:
                raise DecodeError(f"{symbol}: a print must be an object, got {t!r}")
            price, size = t.get("price"), t.get("size")
            if not _positive(price) or not _positive(size):
                raise DecodeError(f"{symbol}: print price and size must be positive numbers, got {price!r}, {size!r}")
            try:
                px, qty = inst.tick(price), inst.lot(size)
            except OffGridError as exc:
                raise DecodeError(f"print: {exc}") from None
            side = _infer_side(dom, px)
            dom.last_px, dom.last_side = px, side
            out.append(Trade(symbol, ts, ts, px, qty, side))
        return out


def _infer_side(dom: _Dom, px: int) -> Side:
    """Aggressor side of a print: from the book when it is at or through a best price, else the tick rule."""
    if len(dom.ask_px) and px >= dom.ask_px[0]:
        return _BUY
    if len(dom.bid_px) and px <= dom.bid_px[-1]:
        return _SELL
    if dom.last_px:
        if px > dom.last_px:
            return _BUY
        if px < dom.last_px:
            return _SELL
    return dom.last_side


def _ops(rows: list, inst: Instrument) -> np.ndarray:
    """Validate depth rows and pack them as (side, operation, position, ticks, lots) int64 rows."""
    ops = np.zeros((len(rows), 5), np.int64)
    for i, r in enumerate(rows):
        if type(r) is not dict:
            raise DecodeError(f"{inst.symbol}: a depth row must be an object, got {r!r}")
        pos, op, side = r.get("position"), r.get("operation"), r.get("side")
        if type(pos) is not int or pos < 0:
            raise DecodeError(f"{inst.symbol}: depth row position must be an integer >= 0, got {pos!r}")
        if op not in (0, 1, 2) or type(op) is not int:
            raise DecodeError(f"{inst.symbol}: depth row operation must be 0, 1 or 2, got {op!r}")
        if side not in (0, 1) or type(side) is not int:
            raise DecodeError(f"{inst.symbol}: depth row side must be 0 (ask) or 1 (bid), got {side!r}")
        ops[i, 0], ops[i, 1], ops[i, 2] = side, op, pos
        if op == DELETE:
            continue
        price, size = r.get("price"), r.get("size")
        if not _positive(price) or not _number(size) or size < 0:
            raise DecodeError(f"{inst.symbol}: depth row needs a positive price and a size >= 0, got {price!r}, "
                              f"{size!r}")
        try:
            ops[i, 3], ops[i, 4] = inst.tick(price), inst.lot(size)
        except OffGridError as exc:
            raise DecodeError(f"depth row {r!r}: {exc}") from None
    return ops


def _number(x: object) -> bool:
    return (type(x) is float or type(x) is int) and math.isfinite(x)


def _positive(x: object) -> bool:
    return _number(x) and x > 0  # type: ignore[operator]

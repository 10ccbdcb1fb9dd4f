"""The ccxt venue: books and trades from any exchange that ccxt pro can watch, as deltas.

ccxt does the venue's own sync work (snapshots, sequence numbers, and checksums where its
implementation of the venue checks them) and hands over its whole synced book after every update.
The feed (`daemon.sources.ccxt_feed`) turns each into a message:

    "ccxt_book":   {"nonce": int|None, "timestamp": ms|None, "limit": int|None,
                    "bids": [[price, size], ...] best first, "asks": [[price, size], ...] best first}
    "ccxt_trades": [{"id": str, "timestamp": ms, "price": p, "amount": q, "side": "buy"|"sell"}, ...]
    "marker":      {"event": "disconnected", "reason": str}  (ccxt raised: the book is lost)

The first book message of a symbol, and the first after a marker or a resync, becomes a BookSnapshot
(complete=False when the feed asked ccxt for a limited depth, `limit`); every later one becomes a
BookDelta holding only the levels that differ from the previous message (a level that left gets
size 0), so the rest of the path sees deltas, not a whole book per update. A message that changes
nothing gives no event. The previous levels are kept per symbol as int64 arrays.

A ccxt trade's `side` is the taker's side. Prices and sizes go onto the instrument's grid; a value
off the grid, a malformed message or a side not sorted best-first is a DecodeError naming it (and
counted in the symbol's health); the kept levels are then untouched, so the next message diffs
against what the book downstream really holds.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain
from typing import Any

import numpy as np
from numba import njit

from daemon.events import BookDelta, BookReset, BookSnapshot, MarketEvent, Side, Trade
from daemon.instruments import Instrument, OffGridError
from daemon.venues.base import CH_MARKER, BaseAdapter, DecodeError
from daemon.venues.health import ResyncPolicy
from daemon.venues.levels import to_grid

CH_CCXT_BOOK, CH_CCXT_TRADES = "ccxt_book", "ccxt_trades"

_EMPTY = np.zeros(0, np.int64)
_LIST, _PAIR = {list}, {2}
_SIDES = {"buy": Side.BUY, "sell": Side.SELL}
def level_diff(old_px: np.ndarray, old_qty: np.ndarray, new_px: np.ndarray,
               new_qty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The levels that differ between two states of one book side (prices ascending and unique in
    both): (prices, new sizes), size 0 for a level that is gone. What a delta must carry."""
    n = len(old_px) + len(new_px)
    out_px = np.empty(n, np.int64)
    out_qty = np.empty(n, np.int64)
    k = _diff_kernel(old_px, old_qty, new_px, new_qty, out_px, out_qty)
    return out_px[:k], out_qty[:k]


@njit(cache=True, nogil=True)
def _diff_kernel(old_px: np.ndarray, old_qty: np.ndarray, new_px: np.ndarray, new_qty: np.ndarray,
                 out_px: np.ndarray, out_qty: np.ndarray) -> int:
    """Merge two ascending sides, writing the levels whose size differs; returns how many."""
    i = j = k = 0
    n_old, n_new = old_px.shape[0], new_px.shape[0]
    while i < n_old or j < n_new:
        if j >= n_new or (i < n_old and old_px[i] < new_px[j]):
            out_px[k] = old_px[i]
            out_qty[k] = 0
            k += 1
            i += 1
        elif i >= n_old or new_px[j] < old_px[i]:
            out_px[k] = new_px[j]
            out_qty[k] = new_qty[j]
            k += 1
            j += 1
        else:
            if old_qty[i] != new_qty[j]:
                out_px[k] = new_px[j]
                out_qty[k] = new_qty[j]
                k += 1
            i += 1
            j += 1
    return k


class _Levels:
    """The last book message of a symbol: both sides ascending by price (ticks, lots)."""

    __slots__ = ("ask_px", "ask_qty", "bid_px", "bid_qty", "live")

    def __init__(self) -> None:
        self.live = False  # False: the next book message is a snapshot
        self.bid_px = self.bid_qty = self.ask_px = self.ask_qty = _EMPTY


class CcxtAdapter(BaseAdapter):
    """Decoder for the ccxt feed's messages: books become a snapshot, then deltas of what changed."""

    venue = "ccxt"

    def __init__(self, instrument: Callable[[str], Instrument], policy: ResyncPolicy | None = None) -> None:
        super().__init__(instrument, policy)
        self._books: dict[str, _Levels] = {}
        self._handlers = {CH_CCXT_BOOK: self._book, CH_CCXT_TRADES: self._trades, CH_MARKER: self._marker}

    def decode(self, ts_recv: int, symbol: str, channel: str, msg: Any) -> list[MarketEvent]:
        """One feed message to its events (a snapshot or a delta, trades, a reset)."""
        return self._dispatch(self._handlers, ts_recv, symbol, channel, msg)

    def resync(self, symbol: str, reason: str, ts: int) -> list[MarketEvent]:
        """The book was lost downstream: ccxt sends its whole book every time, so the next message
        is simply taken as a snapshot (nothing to ask of the network)."""
        lv = self._books.get(symbol)
        if lv is not None:
            lv.live = False
        self.policy.on_resync(self.health.symbol(symbol), ts, reason)
        return []

    # --- books ---------------------------------------------------------------------------------

    def _book(self, ts_recv: int, symbol: str, msg: Any) -> list[MarketEvent]:
        if type(msg) is not dict:
            raise DecodeError(f"{symbol}: a ccxt_book message must be an object, got {type(msg).__name__}")
        bid_px, bid_qty, ask_px, ask_qty = _sides(msg, self._inst(symbol))
        ts_venue = _ms_to_ns(msg.get("timestamp"), ts_recv, "timestamp")
        nonce = msg.get("nonce")
        seq = nonce if type(nonce) is int and nonce > 0 else 0
        limit = msg.get("limit")
        if limit is not None and (type(limit) is not int or limit <= 0):
            raise DecodeError(f"{symbol}: limit must be a positive integer or null, got {limit!r}")
        lv = self._books.get(symbol)
        if lv is None:
            lv = self._books[symbol] = _Levels()
        if not lv.live:
            lv.bid_px, lv.bid_qty, lv.ask_px, lv.ask_qty, lv.live = bid_px, bid_qty, ask_px, ask_qty, True
            self.policy.on_in_sync(self.health.symbol(symbol), ts_recv)
            return [BookSnapshot(symbol, ts_venue, ts_recv, bid_px, bid_qty, ask_px, ask_qty, seq, None,
                                 limit is None)]
        h = self.health.symbols.get(symbol)
        if h is not None and h.untradeable:  # still in sync: given time, tradeable again
            self.policy.on_in_sync(h, ts_recv)
        d_bid_px, d_bid_qty = level_diff(lv.bid_px, lv.bid_qty, bid_px, bid_qty)
        d_ask_px, d_ask_qty = level_diff(lv.ask_px, lv.ask_qty, ask_px, ask_qty)
        lv.bid_px, lv.bid_qty, lv.ask_px, lv.ask_qty = bid_px, bid_qty, ask_px, ask_qty
        if not len(d_bid_px) and not len(d_ask_px):
            return []
        return [BookDelta(symbol, ts_venue, ts_recv, d_bid_px, d_bid_qty, d_ask_px, d_ask_qty, seq)]

    # --- trades and markers --------------------------------------------------------------------

    def _trades(self, ts_recv: int, symbol: str, msg: Any) -> list[MarketEvent]:
        if type(msg) is not list:
            raise DecodeError(f"{symbol}: a ccxt_trades message must be a list, got {type(msg).__name__}")
        inst = self._inst(symbol)
        out: list[MarketEvent] = []
        for t in msg:
            if type(t) is not dict:
                raise DecodeError(f"{symbol}: a trade must be an object, got {t!r}")
            side = _SIDES.get(t.get("side"))  # type: ignore[arg-type]
            if side is None:
                raise DecodeError(f"{symbol}: trade {t.get('id')!r} side must be 'buy' or 'sell' (the taker's), "
                                  f"got {t.get('side')!r}")
            price, amount = t.get("price"), t.get("amount")
            if not _positive(price) or not _positive(amount):
                raise DecodeError(f"{symbol}: trade {t.get('id')!r} price and amount must be positive numbers, "
                                  f"got {price!r} and {amount!r}")
            try:
                px, qty = inst.tick(price), inst.lot(amount)
            except OffGridError as exc:
                raise DecodeError(f"trade {t.get('id')!r}: {exc}") from None
            out.append(Trade(symbol, _ms_to_ns(t.get("timestamp"), ts_recv, "trade timestamp"), ts_recv, px, qty,
                             side))
        return out

    def _marker(self, ts_recv: int, symbol: str, msg: Any) -> list[MarketEvent]:
        if type(msg) is not dict:
            raise DecodeError(f"a marker must be an object, got {type(msg).__name__}")
        if msg.get("event") != "disconnected":
            return []
        reason = str(msg.get("reason") or "disconnected")
        out: list[MarketEvent] = []
        for sym in [symbol] if symbol else list(self._books):
            lv = self._books.setdefault(sym, _Levels())
            lv.live = False
            lv.bid_px = lv.bid_qty = lv.ask_px = lv.ask_qty = _EMPTY
            self.policy.on_resync(self.health.symbol(sym), ts_recv, reason)
            out.append(BookReset(sym, ts_recv, ts_recv, reason))
        return out


def _sides(msg: dict, inst: Instrument) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Both sides of a book message as ascending int64 (ticks, lots), checked in one numba pass."""
    bids, asks = _pairs(msg, "bids"), _pairs(msg, "asks")
    nb, n = len(bids), len(bids) + len(asks)
    if n == 0:
        return _EMPTY, _EMPTY, _EMPTY, _EMPTY
    try:
        flat = np.fromiter(chain(chain.from_iterable(bids), chain.from_iterable(asks)), np.float64, 2 * n)
    except (ValueError, TypeError):
        raise DecodeError(f"{inst.symbol}: 'bids'/'asks' must be lists of [price, size] number pairs") from None
    px, qty, bad, problem = to_grid(flat.reshape(n, 2), inst)
    if bad >= 0:
        key, rows, i = ("bids", bids, bad) if bad < nb else ("asks", asks, bad - nb)
        raise DecodeError(f"{inst.symbol}: {key!r} has {problem}: {rows[i]!r}")
    bid_px, bid_qty = px[nb - 1::-1] if nb else _EMPTY, qty[nb - 1::-1] if nb else _EMPTY
    ask_px, ask_qty = px[nb:], qty[nb:]
    if np.any(np.diff(bid_px) <= 0):
        raise DecodeError(f"{inst.symbol}: 'bids' must be best first, strictly descending by price")
    if np.any(np.diff(ask_px) <= 0):
        raise DecodeError(f"{inst.symbol}: 'asks' must be best first, strictly ascending by price")
    return (np.ascontiguousarray(bid_px), np.ascontiguousarray(bid_qty), ask_px, ask_qty)


def _pairs(msg: dict, key: str) -> list:
    raw = msg.get(key)
    if type(raw) is not list:
        raise DecodeError(f"{key!r} must be a list of [price, size] pairs, got {type(raw).__name__}")
    if raw and (set(map(type, raw)) != _LIST or set(map(len, raw)) != _PAIR):
        bad = next(r for r in raw if type(r) is not list or len(r) != 2)
        raise DecodeError(f"{key!r} must be a list of [price, size] pairs, found {bad!r}")
    return raw


def _ms_to_ns(ms: Any, default: int, what: str) -> int:
    """A venue time in ms to ns; None (the venue gave none) is the receive time."""
    if ms is None:
        return default
    if type(ms) is not int or ms < 0:
        raise DecodeError(f"{what} must be integer milliseconds or null, got {ms!r}")
    return ms * 1_000_000


def _positive(x: object) -> bool:
    return (type(x) is float or type(x) is int) and 0 < x < float("inf")

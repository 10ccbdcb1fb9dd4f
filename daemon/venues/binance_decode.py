"""The dict path of the Binance adapter: parsed messages to events, every field checked.

Every frame the numba fast path (`binance_fast`) does not take comes here, as do REST snapshots and
the parsed messages a live source may hand over. Each function validates what it reads and raises
`DecodeError` naming the field and the problem; nothing here keeps state.

Binance sends prices and sizes as decimal strings and times in ms; events carry ticks, lots and ns.
"""

from __future__ import annotations

from itertools import chain
from typing import Any, NamedTuple

import numpy as np

from daemon.events import BookDelta, BookSnapshot, Quote, Side, Trade
from daemon.instruments import Instrument, OffGridError
from daemon.venues.base import DecodeError
from daemon.venues.levels import to_grid

MS = 1_000_000  # ns per ms
_EMPTY = np.zeros(0, np.int64)
_BUY, _SELL = Side.BUY, Side.SELL
class Depth(NamedTuple):
    """A decoded `depthUpdate`: its delta (seq = `u`) with the first id `U` and, on USD-M, `pu`."""

    delta: BookDelta
    first: int  # U
    prev: int  # pu (USD-M), -1 (NO_ID) on spot


def payload(msg: Any) -> dict | None:
    """The event object of a websocket message: the `data` of a combined-stream envelope, or the bare
    payload; None for a subscription answer (`{"result": null, "id": n}`). A venue error is a
    DecodeError carrying its code and text."""
    if type(msg) is not dict:
        raise DecodeError(f"expected a JSON object, got {type(msg).__name__}")
    if "data" in msg:
        if type(msg.get("stream")) is not str:
            raise DecodeError(f"combined-stream envelope without a 'stream' name: {_cut(msg)}")
        data = msg["data"]
        if type(data) is not dict:
            raise DecodeError(f"'data' of stream {msg['stream']!r} is not an object")
        return data
    if "error" in msg or ("code" in msg and "msg" in msg):
        raise DecodeError(f"venue error: {venue_error(msg)}")
    if "result" in msg and "id" in msg:
        return None
    return msg


def venue_error(msg: dict) -> str:
    """The code and text of a Binance error object (websocket `{"error": {...}}` or REST `{"code", "msg"}`)."""
    err = msg.get("error", msg)
    if type(err) is dict:
        return f"code {err.get('code')!r}: {err.get('msg')!r}"
    return repr(err)


def symbol_of(data: dict) -> str:
    """The payload's symbol `s` (Binance upper case); DecodeError when it is missing or not one."""
    s = data.get("s")
    if type(s) is not str or not s:
        raise DecodeError(f"missing or invalid symbol 's': {s!r}")
    if not (s.isascii() and s.upper() == s and s.replace("_", "").replace("-", "").isalnum()):
        raise DecodeError(f"symbol 's' is not a Binance symbol: {s!r}")
    return s


def _uint(data: dict, key: str, what: str) -> int:
    v = data.get(key)
    if type(v) is not int or v < 0:
        if key not in data:
            raise DecodeError(f"{what}: missing {key!r}")
        raise DecodeError(f"{what}: {key!r} must be a non-negative integer, got {v!r}")
    return v


def _decimal(data: dict, key: str, what: str) -> float:
    v = data.get(key)
    if type(v) is not str:
        if key not in data:
            raise DecodeError(f"{what}: missing {key!r}")
        raise DecodeError(f"{what}: {key!r} must be a decimal string, got {v!r}")
    try:
        return float(v)
    except ValueError:
        raise DecodeError(f"{what}: {key!r} is not a decimal number: {v!r}") from None


def _grid(inst: Instrument, price: float, qty: float, what: str) -> tuple[int, int]:
    try:
        return inst.tick(price), inst.lot(qty)
    except OffGridError as exc:
        raise DecodeError(f"{what}: {exc}") from None


def levels(data: dict, key: str, inst: Instrument, what: str) -> tuple[np.ndarray, np.ndarray]:
    """A side's `[["price", "size"], ...]` rows as int64 ticks and lots, checked in one numba pass."""
    rows = data.get(key)
    if type(rows) is not list:
        if key not in data:
            raise DecodeError(f"{what}: missing {key!r}")
        raise DecodeError(f"{what}: {key!r} must be a list of [price, size] pairs")
    n = len(rows)
    if n == 0:
        return _EMPTY, _EMPTY
    for row in rows:
        if type(row) is not list or len(row) != 2 or type(row[0]) is not str or type(row[1]) is not str:
            raise DecodeError(f"{what}: {key!r} must be a list of [price, size] decimal-string pairs, got {row!r}")
    try:
        flat = np.fromiter(map(float, chain.from_iterable(rows)), np.float64, 2 * n)
    except ValueError:
        bad = next(r for r in rows if not _is_number(r[0]) or not _is_number(r[1]))
        raise DecodeError(f"{what}: {key!r} has a level that is not a pair of decimal numbers: {bad!r}") from None
    px, qty, bad, problem = to_grid(flat.reshape(n, 2), inst)
    if bad >= 0:
        raise DecodeError(f"{what}: {key!r} has {problem}: {rows[bad]!r}")
    return px, qty


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def depth(data: dict, symbol: str, inst: Instrument, ts_recv: int, usdm: bool) -> Depth:
    """A `depthUpdate` payload (spot: e, E, s, U, u, b, a; USD-M also T and pu)."""
    what = "depthUpdate"
    first = _uint(data, "U", what)
    last = _uint(data, "u", what)
    if first > last:
        raise DecodeError(f"{what}: first update id U {first} is after the last u {last}")
    prev = _uint(data, "pu", what) if usdm else -1
    ts_venue = _uint(data, "E", what) * MS
    bid_px, bid_qty = levels(data, "b", inst, what)
    ask_px, ask_qty = levels(data, "a", inst, what)
    return Depth(BookDelta(symbol, ts_venue, ts_recv, bid_px, bid_qty, ask_px, ask_qty, last), first, prev)


def trade(data: dict, symbol: str, inst: Instrument, ts_recv: int) -> Trade | None:
    """A `trade` or `aggTrade` payload (p, q, T, m: buyer is maker => the aggressor sold); None for a
    USD-M print that is not a market trade (`X` other than "MARKET": insurance fund, ADL)."""
    what = data["e"]
    x = data.get("X", "MARKET")
    if x != "MARKET":
        if type(x) is not str:
            raise DecodeError(f"{what}: 'X' must be a string, got {x!r}")
        return None
    price = _decimal(data, "p", what)
    qty = _decimal(data, "q", what)
    if not (price > 0 and qty > 0):
        raise DecodeError(f"{what}: price and size must be positive, got {data['p']!r} and {data['q']!r}")
    maker = data.get("m")
    if type(maker) is not bool:
        raise DecodeError(f"{what}: 'm' must be true or false, got {maker!r}")
    ts_venue = _uint(data, "T", what) * MS
    pt, ql = _grid(inst, price, qty, what)
    return Trade(symbol, ts_venue, ts_recv, pt, ql, _SELL if maker else _BUY)


def quote(data: dict, symbol: str, inst: Instrument, ts_recv: int) -> Quote:
    """A `bookTicker` payload (u, s, b, B, a, A; USD-M also e, E, T) as the venue's best bid and ask
    at update id u; spot's carries no time, so its venue time is the receive time."""
    what = "bookTicker"
    seq = _uint(data, "u", what)
    ts_venue = _uint(data, "E", what) * MS if "E" in data else ts_recv
    bp, bq = _decimal(data, "b", what), _decimal(data, "B", what)
    ap, aq = _decimal(data, "a", what), _decimal(data, "A", what)
    if not (bp > 0 and ap > 0 and bq >= 0 and aq >= 0):
        raise DecodeError(f"{what}: prices must be positive and sizes not negative: {_cut(data)}")
    bpt, bql = _grid(inst, bp, bq, what)
    apt, aql = _grid(inst, ap, aq, what)
    return Quote(symbol, ts_venue, ts_recv, bpt, bql, apt, aql, seq)


def snapshot(msg: Any, symbol: str, inst: Instrument, ts_recv: int) -> BookSnapshot:
    """A REST depth answer (lastUpdateId, bids, asks; USD-M also E, T) as a snapshot of the top of the
    book (`complete=False`: 1,000 levels a side, the stream covers the whole book)."""
    what = "depth snapshot"
    if type(msg) is not dict:
        raise DecodeError(f"{what}: expected a JSON object, got {type(msg).__name__}")
    if "code" in msg and "msg" in msg:
        raise DecodeError(f"{what}: venue error: {venue_error(msg)}")
    seq = _uint(msg, "lastUpdateId", what)
    ts_venue = _uint(msg, "E", what) * MS if "E" in msg else ts_recv
    bid_px, bid_qty = levels(msg, "bids", inst, what)
    ask_px, ask_qty = levels(msg, "asks", inst, what)
    return BookSnapshot(symbol, ts_venue, ts_recv, bid_px, bid_qty, ask_px, ask_qty, seq, None, False)


def _cut(obj: object, limit: int = 160) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[:limit] + "..."

"""The generic venue: the normalized L2 format of DESIGN.md, one JSON object a line.

    {"ts": ns, "kind": "snapshot"|"delta", "bids": [[p, q], ...], "asks": [[p, q], ...]}
    {"ts": ns, "kind": "trade", "price": p, "qty": q, "side": "buy"|"sell"}

`ts` is the local receive time; the format has no venue time, so the venue time is set to it.
Every price and size is checked (finite, positive, on the instrument's grid) before it becomes
ticks and lots.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain
from typing import Any

import numpy as np
import orjson

from daemon.events import BookDelta, BookSnapshot, MarketEvent, Side, Trade
from daemon.instruments import Instrument, OffGridError
from daemon.venues.base import BaseAdapter, DecodeError
from daemon.venues.generic_fast import (
    KIND_DELTA,
    KIND_TRADE,
    NEED_ROOM,
    OK,
    parse_line,
)
from daemon.venues.levels import to_grid

_EMPTY_I = np.zeros(0, np.int64)
_PAIR = {2}
_INF = float("inf")
_SIDES = {"buy": Side.BUY, "sell": Side.SELL}
_BUY, _SELL = Side.BUY, Side.SELL  # enum member lookups cost ~80 ns on Python 3.11


class _ParseBuffers:
    """Scratch arrays the fast path parses into; events get copies of what they need."""

    __slots__ = ("levels",)

    def __init__(self, size: int = 4096) -> None:
        self.levels = np.empty((4, size), np.int64)

    def grow(self) -> None:
        self.levels = np.empty((4, 2 * self.levels.shape[1]), np.int64)


class GenericAdapter(BaseAdapter):
    """Decoder for normalized L2 lines (no sequence numbers: nothing to resync or request)."""

    venue = "generic"

    def __init__(self, instrument: Callable[[str], Instrument]) -> None:
        super().__init__(instrument)
        self._buf = _ParseBuffers()

    def decode(self, ts_recv: int, symbol: str, channel: str, msg: Any) -> list[MarketEvent]:
        """One normalized line (parsed, or its raw bytes) to one event."""
        if type(msg) is bytes:
            return self._decode_bytes(ts_recv, symbol, channel, msg)
        if type(msg) is not dict:
            raise DecodeError(f"expected a JSON object, got {type(msg).__name__}")
        kind = msg.get("kind")
        inst = self._cache.get(symbol) or self._inst(symbol)
        if kind == "trade":
            return [_trade(msg, symbol, ts_recv, inst)]
        if kind == "delta" or kind == "snapshot":
            bid_px, bid_qty, ask_px, ask_qty = _book_levels(msg, inst)
            cls = BookDelta if kind == "delta" else BookSnapshot
            return [cls(symbol, ts_recv, ts_recv, bid_px, bid_qty, ask_px, ask_qty)]
        raise DecodeError(f"unknown kind {kind!r}; expected snapshot, delta or trade")

    def _decode_bytes(self, ts_recv: int, symbol: str, channel: str, raw: bytes) -> list[MarketEvent]:
        """The numba fast path; a line it does not take goes through JSON parsing and the dict path."""
        inst = self._cache.get(symbol) or self._inst(symbol)
        buf = self._buf
        code, kind, nb, na, price, qty, side = parse_line(raw, inst.tick_size, inst.lot_size, buf.levels)
        while code == NEED_ROOM:
            buf.grow()
            code, kind, nb, na, price, qty, side = parse_line(raw, inst.tick_size, inst.lot_size, buf.levels)
        if code != OK:
            try:
                msg = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise DecodeError(f"invalid JSON: {exc}") from None
            if type(msg) is dict and msg.get("ts") != ts_recv:
                raise DecodeError(f"ts {msg.get('ts')!r} is not the line's receive time {ts_recv}")
            return self.decode(ts_recv, symbol, channel, msg)
        if kind == KIND_TRADE:
            return [Trade(symbol, ts_recv, ts_recv, price, qty, _BUY if side == 1 else _SELL)]
        lv = buf.levels
        bids = lv[:2, :nb].copy()
        asks = lv[2:, :na].copy()
        cls = BookDelta if kind == KIND_DELTA else BookSnapshot
        return [cls(symbol, ts_recv, ts_recv, bids[0], bids[1], asks[0], asks[1])]


def _rows(msg: dict, key: str) -> list:
    raw = msg.get(key)
    if raw is None:
        raise DecodeError(f"missing {key!r}")
    if type(raw) is not list:
        raise DecodeError(f"{key!r} must be a list of [price, qty] pairs")
    try:
        if raw and set(map(len, raw)) != _PAIR:
            raise DecodeError(f"{key!r} must be a list of [price, qty] pairs")
    except TypeError:
        raise DecodeError(f"{key!r} must be a list of [price, qty] pairs") from None
    return raw


def _book_levels(msg: dict, inst: Instrument) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Both sides' [price, qty] rows to int64 ticks and lots, validated in one numba pass."""
    bids = _rows(msg, "bids")
    asks = _rows(msg, "asks")
    nb = len(bids)
    n = nb + len(asks)
    if n == 0:
        return _EMPTY_I, _EMPTY_I, _EMPTY_I, _EMPTY_I
    try:
        flat = np.fromiter(chain(chain.from_iterable(bids), chain.from_iterable(asks)), np.float64, 2 * n)
    except (ValueError, TypeError):
        raise DecodeError("'bids'/'asks' must be lists of [price, qty] number pairs") from None
    px, qty, bad, problem = to_grid(flat.reshape(n, 2), inst)
    if bad >= 0:
        key, rows, i = ("bids", bids, bad) if bad < nb else ("asks", asks, bad - nb)
        raise DecodeError(f"{key!r} has {problem}: {rows[i]!r}")
    return px[:nb], qty[:nb], px[nb:], qty[nb:]


def _trade(msg: dict, symbol: str, ts_recv: int, inst: Instrument) -> Trade:
    side = _SIDES.get(msg.get("side"))  # type: ignore[arg-type]
    if side is None:
        raise DecodeError(f"trade side must be 'buy' or 'sell', got {msg.get('side')!r}")
    price = msg.get("price")
    qty = msg.get("qty")
    if not _positive(price) or not _positive(qty):
        raise DecodeError(f"trade price and qty must be positive numbers, got {price!r} and {qty!r}")
    try:
        return Trade(symbol, ts_recv, ts_recv, inst.tick(price), inst.lot(qty), side)
    except OffGridError as exc:
        raise DecodeError(str(exc)) from None


def _positive(x: object) -> bool:
    return (type(x) is float or type(x) is int) and 0 < x < _INF

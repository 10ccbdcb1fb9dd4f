"""Binance spot (venue "binance") and USD-M futures (venue "binance_usdm") adapters, and the pure
helpers a live source needs to connect (stream names, combined-stream URL, snapshot request).

Channels (daemon.venues.base):
- "ws": a combined-stream frame `{"stream": "btcusdt@depth@100ms", "data": {...}}` or its bare
  payload: `depthUpdate` (through the symbol's sync procedure, `binance_sync`), `trade` and
  `aggTrade` (-> Trade; `m` true = the buyer is the maker, so the aggressor sold), `bookTicker`
  (-> Quote with seq=u, which BookSync checks against the book at that update id). The symbol is
  the payload's `s`; subscription answers give no event; a venue error or anything malformed is a
  DecodeError naming the problem, counted in `health.symbol(s).decode_errors` when `s` is known.
- "snapshot": the REST depth answer for `symbol` (`/api/v3/depth`, `/fapi/v1/depth`).
- "marker": `{"event": "connected", "symbols": [...]}` requests a snapshot per symbol and starts
  buffering; `{"event": "disconnected"}` loses every book (BookReset "disconnect").

Frames handed over as bytes go through a numba parser first (`binance_fast`); whatever it does not
take is parsed with orjson and decoded by the checked dict path (`binance_decode`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar
from urllib.parse import urlsplit

import numpy as np
import orjson

from daemon.errors import DepthdError
from daemon.events import BookDelta, MarketEvent, Quote, Side, Trade
from daemon.instruments import Instrument
from daemon.venues import binance_decode as dec
from daemon.venues.base import CH_MARKER, CH_SNAPSHOT, CH_WS, BaseAdapter, DecodeError
from daemon.venues.binance_decode import MS
from daemon.venues.binance_fast import (
    KIND_BOOK_TICKER,
    KIND_DEPTH,
    NEED_ROOM,
    NO_ID,
    OK,
    decimal_grid,
    parse_frame,
)
from daemon.venues.binance_sync import DEFAULT_BUFFER_LIMIT, DepthSync, SyncStats
from daemon.venues.health import ResyncPolicy

DEPTH_SPEEDS = ("", "0ms", "100ms", "250ms", "500ms", "1000ms")
TRADE_STREAMS = ("trade", "aggTrade", "")
_BUY, _SELL = Side.BUY, Side.SELL
_new = tuple.__new__  # builds a NamedTuple event in C, without its Python-level __new__


class _Symbol:
    """What the adapter keeps per symbol: its instrument and decimal grid, and its sync procedure."""

    __slots__ = ("grid", "inst", "key", "symbol", "sync")

    def __init__(self, symbol: str, inst: Instrument, sync: DepthSync) -> None:
        self.symbol = symbol
        self.key = symbol.encode()
        self.inst = inst
        tick, lot = decimal_grid(inst.tick_size), decimal_grid(inst.lot_size)
        self.grid = (*tick, *lot)
        self.sync = sync


class BinanceAdapter(BaseAdapter):
    """The Binance decoder and sync rules; the two markets differ in how depth events are linked."""

    venue = "binance"
    usdm: ClassVar[bool] = False
    DEFAULT_WS_URL: ClassVar[str] = "wss://stream.binance.com:9443"
    DEFAULT_REST_URL: ClassVar[str] = "https://api.binance.com"
    DEPTH_PATH: ClassVar[str] = "/api/v3/depth"

    def __init__(self, instrument: Callable[[str], Instrument], max_resyncs: int = 5,
                 window_ns: int = 60_000_000_000, buffer_limit: int = DEFAULT_BUFFER_LIMIT) -> None:
        super().__init__(instrument)
        self.policy = ResyncPolicy(max_resyncs, window_ns)
        self.buffer_limit = buffer_limit
        self._symbols: dict[str, _Symbol] = {}
        self._by_key: dict[bytes, _Symbol] = {}
        self._buf = np.empty(4 * 4096, np.int64)  # the fast path's scratch levels

    # --- public ----------------------------------------------------------------------------------

    def decode(self, ts_recv: int, symbol: str, channel: str, msg: Any) -> list[MarketEvent]:
        """The events in one message (raw bytes or parsed); a DecodeError says what is wrong with it.

        Raw frames of a known symbol go through the numba parser first (this is the replay's hot path,
        so it is written out here); whatever it does not take goes to the checked dict path."""
        if channel == CH_WS and type(msg) is bytes:
            ctx = self._symbols.get(symbol) if symbol else self._find(msg)
            if ctx is not None:
                buf = self._buf
                code, kind, nb, na, ev_e, ev_t, first, last, prev, x0, x1, x2, x3 = parse_frame(
                    msg, ctx.key, ctx.grid, buf)
                while code == NEED_ROOM:
                    buf = self._buf = np.empty(2 * len(buf), np.int64)
                    code, kind, nb, na, ev_e, ev_t, first, last, prev, x0, x1, x2, x3 = parse_frame(
                        msg, ctx.key, ctx.grid, buf)
                if code == OK:
                    if kind == KIND_DEPTH:
                        if prev != NO_ID or not self.usdm:
                            n2 = nb + nb
                            f = buf[:n2 + na + na].copy()
                            delta = _new(BookDelta, (ctx.symbol, ev_e * MS, ts_recv, f[:nb], f[nb:n2], f[n2:n2 + na],
                                                     f[n2 + na:], last, None, True))
                            return ctx.sync.on_depth(delta, first, prev, ts_recv)
                    elif kind == KIND_BOOK_TICKER:
                        return [Quote(ctx.symbol, ev_e * MS if ev_e != NO_ID else ts_recv, ts_recv, x0, x1, x2, x3,
                                      last)]
                    else:
                        return [Trade(ctx.symbol, ev_t * MS, ts_recv, x0, x1, _BUY if x2 == 1 else _SELL)]
            try:
                msg = orjson.loads(msg)
            except orjson.JSONDecodeError as exc:
                self._count_error(ctx.symbol if ctx is not None else symbol)
                raise DecodeError(f"invalid JSON: {exc}") from None
        if channel == CH_WS:
            return self._ws(ts_recv, symbol, msg)
        if channel == CH_SNAPSHOT:
            return self._snapshot(ts_recv, symbol, msg)
        if channel == CH_MARKER:
            return self._marker(ts_recv, msg)
        raise DecodeError(f"unknown channel {channel!r}; expected ws, snapshot or marker")

    def resync(self, symbol: str, reason: str, ts: int) -> list[MarketEvent]:
        """Downstream lost the book: wait for a new snapshot (requested), buffering from now on."""
        return self._sym(symbol).sync.on_resync(reason, ts)

    def sync_state(self, symbol: str) -> DepthSync:
        """The sync procedure of a symbol (state, buffer, last applied update id)."""
        return self._sym(symbol).sync

    def stats(self, symbol: str) -> SyncStats:
        """What the sync procedure did with a symbol's messages (buffered, dropped, duplicates...)."""
        return self._sym(symbol).sync.stats

    @classmethod
    def snapshot_request(cls, symbol: str, limit: int = 1000) -> tuple[str, dict[str, str | int], int]:
        """(path, query params, request weight) of the REST depth snapshot of `symbol`."""
        if not 1 <= limit <= 5000:
            raise ValueError(f"spot depth limit must be within 1..5000, got {limit}")
        weight = 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
        return cls.DEPTH_PATH, {"symbol": symbol.upper(), "limit": limit}, weight

    @classmethod
    def stream_url(cls, symbols: Iterable[str], ws_base: str | None = None, **streams: Any) -> str:
        """The combined-stream URL for these symbols on this market (see `combined_stream_url`)."""
        return combined_stream_url(ws_base or cls.DEFAULT_WS_URL, symbols, **streams)

    # --- websocket frames ------------------------------------------------------------------------

    def _find(self, raw: bytes) -> _Symbol | None:
        """The known symbol a raw frame names in its `"s":"..."` (the numba parser checks it again)."""
        i = raw.find(b'"s":"')
        return self._by_key.get(raw[i + 5:raw.find(b'"', i + 5)]) if i >= 0 else None

    def _ws(self, ts_recv: int, symbol: str, msg: Any) -> list[MarketEvent]:
        """The dict path: every field checked, every problem named."""
        sym = symbol
        try:
            data = dec.payload(msg)
            if data is None:
                return []
            sym = dec.symbol_of(data)
            if symbol and sym != symbol:
                raise DecodeError(f"payload symbol {sym!r} is not the message's symbol {symbol!r}")
            kind = data.get("e", "bookTicker")
            if kind == "depthUpdate":
                ctx = self._sym(sym)
                delta, first, prev = dec.depth(data, sym, ctx.inst, ts_recv, self.usdm)
                return ctx.sync.on_depth(delta, first, prev, ts_recv)
            if kind == "bookTicker":
                return [dec.quote(data, sym, self._sym(sym).inst, ts_recv)]
            if kind == "trade" or kind == "aggTrade":
                ev = dec.trade(data, sym, self._sym(sym).inst, ts_recv)
                return [ev] if ev is not None else []
            raise DecodeError(f"unknown event type {kind!r}; expected depthUpdate, trade, aggTrade or bookTicker")
        except DecodeError:
            self._count_error(sym)
            raise

    # --- snapshots and markers -------------------------------------------------------------------

    def _snapshot(self, ts_recv: int, symbol: str, msg: Any) -> list[MarketEvent]:
        if not symbol:
            raise DecodeError("a depth snapshot needs the symbol it was requested for")
        try:
            if type(msg) is bytes:
                try:
                    msg = orjson.loads(msg)
                except orjson.JSONDecodeError as exc:
                    raise DecodeError(f"depth snapshot: invalid JSON: {exc}") from None
            ctx = self._sym(symbol)
            snap = dec.snapshot(msg, ctx.symbol, ctx.inst, ts_recv)
        except DecodeError:
            self._count_error(symbol)
            raise
        return ctx.sync.on_snapshot(snap, ts_recv)

    def _marker(self, ts_recv: int, msg: Any) -> list[MarketEvent]:
        if type(msg) is bytes:
            try:
                msg = orjson.loads(msg)
            except orjson.JSONDecodeError as exc:
                raise DecodeError(f"marker: invalid JSON: {exc}") from None
        if type(msg) is not dict:
            raise DecodeError(f"marker: expected a JSON object, got {type(msg).__name__}")
        event = msg.get("event")
        if event == "connected":
            symbols = msg.get("symbols")
            if type(symbols) is not list or not all(type(s) is str and s for s in symbols):
                raise DecodeError(f"marker 'connected': 'symbols' must be a list of symbol names, got {symbols!r}")
            out: list[MarketEvent] = []
            for s in symbols:
                out.extend(self._sym(s.upper()).sync.on_connected(ts_recv))
            return out
        if event == "disconnected":
            out = []
            for ctx in self._symbols.values():
                out.extend(ctx.sync.on_disconnected(ts_recv))
            return out
        return []

    # --- helpers ---------------------------------------------------------------------------------

    def _sym(self, symbol: str) -> _Symbol:
        """The symbol's record, made on first use (its instrument looked up, its sync WAITING)."""
        ctx = self._symbols.get(symbol)
        if ctx is None:
            try:
                inst = self._instrument(symbol)
            except (DepthdError, LookupError, ValueError) as exc:
                raise DecodeError(f"no instrument for symbol {symbol!r}: {exc}") from None
            sync = DepthSync(symbol, self.usdm, self.health.symbol(symbol), self.policy, self._requests.append,
                             self.buffer_limit)
            ctx = self._symbols[symbol] = _Symbol(symbol, inst, sync)
            self._by_key[ctx.key] = ctx
        return ctx

    def _count_error(self, symbol: str) -> None:
        if symbol:
            self.health.symbol(symbol).decode_errors += 1


class BinanceSpotAdapter(BinanceAdapter):
    """Binance spot: depth events link by `U == previous u + 1`; snapshot from /api/v3/depth."""

    venue = "binance"


class BinanceUsdmAdapter(BinanceAdapter):
    """Binance USD-M futures: depth events link by `pu == previous u`; snapshot from /fapi/v1/depth."""

    venue = "binance_usdm"
    usdm = True
    DEFAULT_WS_URL = "wss://fstream.binance.com"
    DEFAULT_REST_URL = "https://fapi.binance.com"
    DEPTH_PATH = "/fapi/v1/depth"
    _WEIGHTS: ClassVar[dict[int, int]] = {5: 2, 10: 2, 20: 2, 50: 2, 100: 5, 500: 10, 1000: 20}

    @classmethod
    def snapshot_request(cls, symbol: str, limit: int = 1000) -> tuple[str, dict[str, str | int], int]:
        """(path, query params, request weight) of the REST depth snapshot of `symbol`."""
        weight = cls._WEIGHTS.get(limit)
        if weight is None:
            raise ValueError(f"USD-M depth limit must be one of {sorted(cls._WEIGHTS)}, got {limit}")
        return cls.DEPTH_PATH, {"symbol": symbol.upper(), "limit": limit}, weight


def stream_names(symbols: Iterable[str], depth_speed: str = "100ms", trades: str = "trade",
                 book_ticker: bool = True) -> list[str]:
    """The stream names to subscribe per symbol: diff depth at `depth_speed` ("" = the default
    1000 ms on spot, 250 ms on USD-M), trades (`trade`, `aggTrade` or "" for none), bookTicker."""
    if depth_speed not in DEPTH_SPEEDS:
        raise ValueError(f"depth_speed must be one of {DEPTH_SPEEDS}, got {depth_speed!r}")
    if trades not in TRADE_STREAMS:
        raise ValueError(f"trades must be one of {TRADE_STREAMS}, got {trades!r}")
    names: list[str] = []
    for symbol in symbols:
        s = symbol.lower()
        if not (s.isascii() and s.replace("_", "").isalnum()):
            raise ValueError(f"not a Binance symbol: {symbol!r}")
        names.append(f"{s}@depth@{depth_speed}" if depth_speed else f"{s}@depth")
        if trades:
            names.append(f"{s}@{trades}")
        if book_ticker:
            names.append(f"{s}@bookTicker")
    return names


def combined_stream_url(ws_base: str, symbols: Iterable[str], depth_speed: str = "100ms", trades: str = "trade",
                        book_ticker: bool = True) -> str:
    """`<ws_base>/stream?streams=a/b/c`: one connection carrying every stream of these symbols."""
    parts = urlsplit(ws_base)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"ws_base must be a ws:// or wss:// URL, got {ws_base!r}")
    names = stream_names(symbols, depth_speed, trades, book_ticker)
    if not names:
        raise ValueError("no symbols to subscribe")
    return f"{ws_base.rstrip('/')}/stream?streams={'/'.join(names)}"

"""OKX v5 public websocket: the `books` channel (400 levels a side, CRC32 checksums), `trades`, `tickers`.

    {"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": "snapshot"|"update",
     "data": [{"asks": [["30247.6", "0.23393", "0", "3"], ...], "bids": [...], "ts": "1652459227861",
               "checksum": -10135460, "seqId": 123, "prevSeqId": 122}]}
    {"arg": {"channel": "trades", "instId": ...}, "data": [{"px": ..., "sz": ..., "side": "buy", "ts": ...}]}
    {"event": "subscribe"|"unsubscribe"|"error", ...}

A level is [price, size, "0" (deprecated), orders]; size "0" deletes it. The venue keeps both sides
at 400 levels and sends a delete for a level that leaves the window, so the book is not truncated.
The checksum (CRC32 as a signed int32) is over "bid1px:bid1sz:ask1px:ask1sz:..." for the best 25
levels a side, values as OKX writes them (shortest decimal); BookSync verifies it after every message.
Newer frames carry `seqId`/`prevSeqId`: an update whose prevSeqId is not the last seqId is a gap
(BookReset "gap", resubscribe). An empty keep-alive update repeats the last seqId as both, and after
maintenance seqId may fall below prevSeqId; both satisfy the same rule. Frames without seqId (before
2023) are checked by their checksum alone. `tickers` carry no update id to compare the book with and
give no event. Times are ms strings; trades' side is the taker's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from daemon.events import BookDelta, BookSnapshot, MarketEvent, Side, Trade
from daemon.instruments import Instrument
from daemon.venues.base import DecodeError
from daemon.venues.checksum import ChecksumAdapter, check_symbols, okx_book_crc
from daemon.venues.health import ResyncPolicy

DEFAULT_WS_URL = "wss://ws.okx.com:8443/ws/v5/public"
BOOK_CHANNEL = "books"
_BOOK_CHANNELS = frozenset({"books", "books-l2-tbt", "books50-l2-tbt"})  # one format, one checksum rule
_LEVEL_WIDTH = frozenset({4})
_SIDES = {"buy": Side.BUY, "sell": Side.SELL}
_QUIET_EVENTS = frozenset({"subscribe", "unsubscribe", "login", "notice", "channel-conn-count"})


class OkxAdapter(ChecksumAdapter):
    """Decoder and sync rules of the OKX v5 public feed."""

    venue = "okx"
    levels = 25
    kernel = staticmethod(okx_book_crc)

    def __init__(self, instrument: Callable[[str], Instrument], policy: ResyncPolicy | None = None) -> None:
        super().__init__(instrument, policy)
        self._seq: dict[str, int] = {}  # last seqId per symbol, when the venue sends them

    def _decode_frame(self, ts_recv: int, msg: Any) -> list[MarketEvent]:
        if type(msg) is not dict:
            raise DecodeError(f"okx: expected a JSON object, got {type(msg).__name__}")
        event = msg.get("event")
        if event is not None:
            return _event(msg, event)
        arg = msg.get("arg")
        if type(arg) is not dict:
            raise DecodeError("okx: a frame needs 'event' or 'arg'")
        symbol = arg.get("instId")
        if type(symbol) is not str or not symbol:
            raise DecodeError(f"okx: 'arg' has no instId: {arg!r}")
        data = msg.get("data")
        if type(data) is not list:
            raise DecodeError(f"okx {symbol}: 'data' must be a list")
        channel = arg.get("channel")
        if channel in _BOOK_CHANNELS:
            return self._book(ts_recv, symbol, msg.get("action"), data)
        if channel == "trades":
            return self._trades(ts_recv, symbol, data)
        if channel == "tickers":
            return []
        raise DecodeError(f"okx {symbol}: unexpected channel {channel!r}")

    def _book(self, ts_recv: int, symbol: str, action: Any, data: list) -> list[MarketEvent]:
        if action != "snapshot" and action != "update":
            raise DecodeError(f"okx {symbol}: book action must be 'snapshot' or 'update', got {action!r}")
        if len(data) != 1 or type(data[0]) is not dict:
            raise DecodeError(f"okx {symbol}: book 'data' must hold one object, got {len(data)} items")
        d = data[0]
        inst = self._inst(symbol)
        bid_px, bid_qty = self._levels(d.get("bids"), inst, "bids", _LEVEL_WIDTH)
        ask_px, ask_qty = self._levels(d.get("asks"), inst, "asks", _LEVEL_WIDTH)
        ts_venue = _ms(d.get("ts"), symbol)
        checksum = d.get("checksum")
        if checksum is not None and (type(checksum) is not int or not -(2**31) <= checksum < 2**32):
            raise DecodeError(f"okx {symbol}: checksum must be a 32-bit integer, got {checksum!r}")
        seq, prev = d.get("seqId"), d.get("prevSeqId")
        if seq is not None and (type(seq) is not int or type(prev) is not int):
            raise DecodeError(f"okx {symbol}: seqId and prevSeqId must be integers, got {seq!r} and {prev!r}")
        if action == "snapshot":
            self._snapshot_arrived(symbol, ts_recv)
            if seq is None:
                self._seq.pop(symbol, None)
            else:
                self._seq[symbol] = seq
            return [BookSnapshot(symbol, ts_venue, ts_recv, bid_px, bid_qty, ask_px, ask_qty, seq or 0, checksum)]
        if not self._update_passes(symbol, ts_recv):
            return []
        if seq is not None:
            last = self._seq.get(symbol)
            if last is not None and prev != last:
                return [self._gap(symbol, ts_venue, ts_recv)]
            self._seq[symbol] = seq
        return [BookDelta(symbol, ts_venue, ts_recv, bid_px, bid_qty, ask_px, ask_qty, seq or 0, checksum)]

    def _trades(self, ts_recv: int, symbol: str, data: list) -> list[MarketEvent]:
        inst = self._inst(symbol)
        out: list[MarketEvent] = []
        for t in data:
            if type(t) is not dict:
                raise DecodeError(f"okx {symbol}: a trade must be an object, got {t!r}")
            side = _SIDES.get(t.get("side"))
            if side is None:
                raise DecodeError(f"okx {symbol}: trade side must be 'buy' or 'sell', got {t.get('side')!r}")
            price, qty = self._price_size(inst, t.get("px"), t.get("sz"), "trade")
            out.append(Trade(symbol, _ms(t.get("ts"), symbol), ts_recv, price, qty, side))
        return out

    def _on_disconnect(self) -> None:
        self._seq.clear()


def _event(msg: dict, event: Any) -> list[MarketEvent]:
    if event in _QUIET_EVENTS:
        return []
    if event == "error" or (type(event) is str and event.endswith("error")):
        raise DecodeError(f"okx: venue error {msg.get('code')!r}: {msg.get('msg')!r} ({event})")
    raise DecodeError(f"okx: unknown event {event!r}")


def _ms(ts: Any, symbol: str) -> int:
    """An OKX time (ms since the epoch, as a string) in ns."""
    if type(ts) is not str or not (ts.isascii() and ts.isdigit()):
        raise DecodeError(f"okx {symbol}: 'ts' must be a string of ms digits, got {ts!r}")
    return int(ts) * 1_000_000


def subscribe_frames(symbols: list[str]) -> list[dict]:
    """The frames that subscribe the books and trades of `symbols` (instIds such as "BTC-USDT")."""
    check_symbols(symbols)
    args = [{"channel": BOOK_CHANNEL, "instId": s} for s in symbols]
    args += [{"channel": "trades", "instId": s} for s in symbols]
    return [{"op": "subscribe", "args": args}]


def resubscribe_frames(symbol: str) -> list[dict]:
    """Unsubscribe and subscribe one symbol's book, so the venue sends a fresh snapshot."""
    check_symbols([symbol])
    arg = [{"channel": BOOK_CHANNEL, "instId": symbol}]
    return [{"op": "unsubscribe", "args": arg}, {"op": "subscribe", "args": arg}]

"""Kraken websocket v1: `book-<depth>` (CRC32 checksums) and `trade`.

    [992, {"as": [["354.15000000", "5.00000000", "1618678133.365913"], ...], "bs": [...]}, "book-1000", "XMR/USD"]
    [992, {"a": [[price, volume, time(, "r")], ...]}(, {"b": [...]}), "book-1000", "XMR/USD"]   # "c" in the last
    [993, [[price, volume, time, "b"|"s", ordertype, misc], ...], "trade", "XMR/USD"]
    {"event": "heartbeat"|"systemStatus"|"subscriptionStatus"|"error", ...}

The first book frame of a subscription is the snapshot ("as"/"bs"); then updates, volume 0 deleting
a level, "r" marking a level republished as it re-enters the window. The venue keeps the book at the
subscribed depth without sending deletes for levels pushed out, so BookSync truncates to
`max_depth` after every update. The checksum "c" (an unsigned CRC32 as a decimal string) is over the
top 10 asks (ascending) then the top 10 bids (descending), each price and volume written at the
pair's fixed decimals without "." and leading zeros; the decimals are learnt from each snapshot's
strings. Checksums come only with updates. Times are seconds with a decimal fraction; a book event's
venue time is its latest level time. A trade's side is the taker's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from daemon.events import BookDelta, BookSnapshot, MarketEvent, Side, Trade
from daemon.instruments import Instrument
from daemon.venues.base import DecodeError
from daemon.venues.checksum import BookChecksum, ChecksumAdapter, check_symbols, kraken_book_crc
from daemon.venues.health import ResyncPolicy

DEFAULT_WS_URL = "wss://ws.kraken.com"
DEPTHS = (10, 25, 100, 500, 1000)
DEFAULT_DEPTH = 1000
_LEVEL_WIDTHS = frozenset({3, 4})
_TRADE_WIDTH = frozenset({6})
_SIDES = {"b": Side.BUY, "s": Side.SELL}
_QUIET_EVENTS = frozenset({"heartbeat", "systemStatus", "pong"})
_UPDATE_KEYS = frozenset({"a", "b", "c"})


class KrakenAdapter(ChecksumAdapter):
    """Decoder and sync rules of the Kraken v1 public feed, with books `depth` levels deep."""

    venue = "kraken"
    levels = 10
    kernel = staticmethod(kraken_book_crc)

    def __init__(self, instrument: Callable[[str], Instrument], depth: int = DEFAULT_DEPTH,
                 policy: ResyncPolicy | None = None) -> None:
        _check_depth(depth)
        super().__init__(instrument, policy)
        self.depth = depth
        self.book_channel = f"book-{depth}"

    def max_depth(self, symbol: str) -> int:
        """The subscribed depth: BookSync truncates each side to it after every update."""
        return self.depth

    def checksum(self, symbol: str) -> BookChecksum:
        """The pair's BookChecksum; until a snapshot shows the pair's decimals, the instrument's."""
        ck = self._checksums.get(symbol)
        if ck is None:
            ck = super().checksum(symbol)
            ck.set_decimals(int(ck.fmt[1]), int(ck.fmt[4]))
        return ck

    def _decode_frame(self, ts_recv: int, msg: Any) -> list[MarketEvent]:
        if type(msg) is dict:
            return _event(msg)
        if type(msg) is not list or len(msg) not in (4, 5):
            raise DecodeError(f"kraken: expected an event object or a 4-5 element channel array, got {msg!r:.200}")
        name, pair = msg[-2], msg[-1]
        if type(pair) is not str or not pair or type(name) is not str:
            raise DecodeError(f"kraken: channel name and pair must be strings, got {name!r} and {pair!r}")
        if name == "trade":
            if len(msg) != 4:
                raise DecodeError(f"kraken {pair}: a trade frame has 4 elements, got {len(msg)}")
            return self._trades(ts_recv, pair, msg[1])
        if name.startswith("book-"):
            if name != self.book_channel:
                raise DecodeError(f"kraken {pair}: {name} frame, but the subscribed book is {self.book_channel}")
            return self._book(ts_recv, pair, msg[1:-2])
        raise DecodeError(f"kraken {pair}: unexpected channel {name!r}")

    def _book(self, ts_recv: int, pair: str, parts: list) -> list[MarketEvent]:
        if any(type(p) is not dict for p in parts):
            raise DecodeError(f"kraken {pair}: book payloads must be objects")
        inst = self._inst(pair)
        first = parts[0]
        if "as" in first or "bs" in first:
            if len(parts) != 1 or not first.keys() <= {"as", "bs"}:
                raise DecodeError(f"kraken {pair}: a snapshot is one object with 'as' and 'bs', got {parts!r:.200}")
            asks, bids = first.get("as", []), first.get("bs", [])
            ask_px, ask_qty = self._levels(asks, inst, "as", _LEVEL_WIDTHS)
            bid_px, bid_qty = self._levels(bids, inst, "bs", _LEVEL_WIDTHS)
            ts_venue = _latest(asks, bids, pair, ts_recv)
            sample = asks[0] if asks else bids[0] if bids else None
            decimals = (_decimals(sample[0], pair), _decimals(sample[1], pair)) if sample is not None else None
            self._snapshot_arrived(pair, ts_recv)
            if decimals is not None:
                self.checksum(pair).set_decimals(*decimals)
            return [BookSnapshot(pair, ts_venue, ts_recv, bid_px, bid_qty, ask_px, ask_qty)]
        asks, bids = [], []
        checksum = None
        for p in parts:
            if not p.keys() <= _UPDATE_KEYS:
                raise DecodeError(f"kraken {pair}: unexpected keys in a book update: {sorted(p.keys() - _UPDATE_KEYS)}")
            for key, rows in (("a", asks), ("b", bids)):
                got = p.get(key)
                if got is not None:
                    if type(got) is not list:
                        raise DecodeError(f"kraken {pair}: {key!r} must be a list of levels")
                    rows += got
            if "c" in p:
                checksum = _crc(p["c"], pair)
        ask_px, ask_qty = self._levels(asks, inst, "a", _LEVEL_WIDTHS)
        bid_px, bid_qty = self._levels(bids, inst, "b", _LEVEL_WIDTHS)
        ts_venue = _latest(asks, bids, pair, ts_recv)
        if not self._update_passes(pair, ts_recv):
            return []
        return [BookDelta(pair, ts_venue, ts_recv, bid_px, bid_qty, ask_px, ask_qty, 0, checksum)]

    def _trades(self, ts_recv: int, pair: str, rows: Any) -> list[MarketEvent]:
        if type(rows) is not list or any(type(r) is not list or len(r) not in _TRADE_WIDTH for r in rows):
            raise DecodeError(f"kraken {pair}: trades must be [price, volume, time, side, type, misc] lists")
        inst = self._inst(pair)
        out: list[MarketEvent] = []
        for r in rows:
            side = _SIDES.get(r[3])
            if side is None:
                raise DecodeError(f"kraken {pair}: trade side must be 'b' or 's', got {r[3]!r}")
            price, qty = self._price_size(inst, r[0], r[1], "trade")
            out.append(Trade(pair, seconds_ns(r[2], pair), ts_recv, price, qty, side))
        return out


def _event(msg: dict) -> list[MarketEvent]:
    event = msg.get("event")
    if event in _QUIET_EVENTS:
        return []
    if event == "subscriptionStatus":
        status = msg.get("status")
        if status == "subscribed" or status == "unsubscribed":
            return []
        raise DecodeError(f"kraken: subscription {status!r} for {msg.get('pair')!r}: {msg.get('errorMessage')!r}")
    if event == "error":
        raise DecodeError(f"kraken: venue error: {msg.get('errorMessage')!r}")
    raise DecodeError(f"kraken: unknown event {event!r}")


def seconds_ns(ts: Any, pair: str) -> int:
    """A Kraken time ("1618678133.365913", seconds since the epoch) in ns, exactly."""
    if type(ts) is str:
        whole, _, frac = ts.partition(".")
        if whole.isascii() and whole.isdigit() and (not frac or (frac.isascii() and frac.isdigit())):
            return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])
    raise DecodeError(f"kraken {pair}: time must be a string of decimal seconds, got {ts!r}")


def _latest(asks: list, bids: list, pair: str, default: int) -> int:
    """The latest level time of a book message, in ns (`default` for a message without levels)."""
    rows = asks + bids
    if not rows:
        return default
    if len(rows) == 1:
        return seconds_ns(rows[0][2], pair)
    try:
        latest = max(rows, key=lambda r: float(r[2]))
    except (TypeError, ValueError):
        raise DecodeError(f"kraken {pair}: level times must be decimal seconds") from None
    return seconds_ns(latest[2], pair)


def _crc(c: Any, pair: str) -> int:
    if type(c) is not str or not (c.isascii() and c.isdigit()) or int(c) >= 2**32:
        raise DecodeError(f"kraken {pair}: checksum 'c' must be an unsigned 32-bit integer string, got {c!r}")
    return int(c)


def _decimals(value: Any, pair: str) -> int:
    """Decimals a Kraken value string is written with ("354.15000000" -> 8)."""
    if type(value) is not str or len(value.partition(".")[2]) > 18:
        raise DecodeError(f"kraken {pair}: snapshot values must be decimal strings, got {value!r}")
    return len(value.partition(".")[2])


def subscribe_frames(symbols: list[str], depth: int = DEFAULT_DEPTH) -> list[dict]:
    """The frames that subscribe the books (`depth` levels) and trades of `symbols` (pairs such as "XMR/USD")."""
    check_symbols(symbols)
    _check_depth(depth)
    return [{"event": "subscribe", "pair": list(symbols), "subscription": {"name": "book", "depth": depth}},
            {"event": "subscribe", "pair": list(symbols), "subscription": {"name": "trade"}}]


def resubscribe_frames(symbol: str, depth: int = DEFAULT_DEPTH) -> list[dict]:
    """Unsubscribe and subscribe one pair's book, so the venue sends a fresh snapshot."""
    check_symbols([symbol])
    _check_depth(depth)
    return [{"event": "unsubscribe", "pair": [symbol], "subscription": {"name": "book", "depth": depth}},
            {"event": "subscribe", "pair": [symbol], "subscription": {"name": "book", "depth": depth}}]


def _check_depth(depth: int) -> None:
    if depth not in DEPTHS:
        raise ValueError(f"kraken book depth must be one of {DEPTHS}, got {depth!r}")

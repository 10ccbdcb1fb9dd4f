"""What the checksum venues (OKX, Kraken) share: the venue's book strings re-made from ticks and lots
with their CRC32, and the resubscribe sync rules.

Checksums. The venue hashes the text of the top of its book ("bid1px:bid1sz:ask1px:..." on OKX,
the digits of the top 10 asks then bids on Kraken). The Book holds int ticks and lots, so the text
is re-created from them: a value is `n * mult * 10**-scale` (`grid_format` of the instrument's step)
and is written either as the shortest decimal (`STRIP`, OKX: no trailing zeros, no "." for a whole
number) or as its digits at a fixed number of decimals without "." and leading zeros (Kraken, which
quotes every pair at fixed decimals). A numba kernel writes the text into a byte buffer and takes
the CRC32 in the same call, with no Python object per level.

Sync rules. Neither venue has a REST snapshot to straddle: the book starts with the snapshot the
venue pushes on subscription, and a lost book (gap, checksum mismatch, crossed) is repaired by
unsubscribing and subscribing again. Per symbol the adapter is in one state of `TRANSITIONS`:
WAIT (no book: not subscribed yet, or disconnected), LIVE, RESYNC (a `Resubscribe` is out; updates
are dropped until its snapshot).
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import numpy as np
import orjson
from numba import njit

from daemon.book.book import Book
from daemon.errors import IllegalTransition
from daemon.events import BookReset, MarketEvent
from daemon.instruments import Instrument, OffGridError
from daemon.venues.base import CH_MARKER, CH_WS, BaseAdapter, DecodeError, Resubscribe
from daemon.venues.health import ResyncPolicy
from daemon.venues.levels import to_grid

STRIP = -1  # `out` of a value written as the shortest decimal (OKX)
_POW10 = np.array([10**k for k in range(19)], np.int64)
_MAX_VALUE_BYTES = 24  # 19 digits, ".", a separator, slack
_DOT, _COLON, _ZERO = 46, 58, 48
_INF = float("inf")


def _crc_tables() -> np.ndarray:
    """Slicing-by-8 tables of zlib's CRC32: row 0 is the bytewise table, row k advances k bytes more."""
    t = np.zeros((8, 256), np.int64)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        t[0, i] = c
    for k in range(1, 8):
        for i in range(256):
            t[k, i] = (t[k - 1, i] >> 8) ^ t[0, t[k - 1, i] & 0xFF]
    return t


_CRC = _crc_tables()
_PAIRS = np.frombuffer("".join(f"{i:02d}" for i in range(100)).encode(), np.uint8).copy()  # "000102...99"


# --- kernels ---------------------------------------------------------------------------------------


@njit(cache=True, nogil=True, error_model="numpy")
def crc32(buf: np.ndarray, n: int) -> int:
    """CRC32 (zlib's, unsigned) of buf[:n], eight bytes a step."""
    c = 0xFFFFFFFF
    i = 0
    while i + 8 <= n:
        lo = c ^ (np.int64(buf[i]) | np.int64(buf[i + 1]) << 8 | np.int64(buf[i + 2]) << 16
                  | np.int64(buf[i + 3]) << 24)
        c = (_CRC[7, lo & 0xFF] ^ _CRC[6, (lo >> 8) & 0xFF] ^ _CRC[5, (lo >> 16) & 0xFF] ^ _CRC[4, lo >> 24]
             ^ _CRC[3, buf[i + 4]] ^ _CRC[2, buf[i + 5]] ^ _CRC[1, buf[i + 6]] ^ _CRC[0, buf[i + 7]])
        i += 8
    while i < n:
        c = _CRC[0, (c ^ buf[i]) & 0xFF] ^ (c >> 8)
        i += 1
    return c ^ 0xFFFFFFFF


@njit(cache=True, nogil=True, error_model="numpy")
def write_values(vals: np.ndarray, count: int, fmt: np.ndarray, sep: int, buf: np.ndarray) -> int:
    """Write vals[:count] (level values n, alternately a price and a size) as the venue does into buf,
    `sep` between two values (-1: nothing); returns the length. See the module docstring for `fmt`."""
    pos = 0
    for k in range(count):
        j = 3 * (k & 1)
        scale, out = fmt[j + 1], fmt[j + 2]
        v = max(vals[k] * fmt[j], 0)  # a book holds no negative price or size; clamp so the loops stay bounded
        width = scale + 1  # STRIP: at least one digit before the point
        if out != STRIP:
            v = v * _POW10[out - scale] if out >= scale else v // _POW10[scale - out]
            width = 0
        n = 1
        while n < 19 and v >= _POW10[n]:
            n += 1
        end = pos + max(n, width)
        for i in range(pos, end - n):
            buf[i] = _ZERO
        i = end
        while v >= 100:  # two digits a step
            q = v // 100
            r = 2 * (v - 100 * q)
            i -= 2
            buf[i] = _PAIRS[r]
            buf[i + 1] = _PAIRS[r + 1]
            v = q
        if v >= 10:
            buf[i - 2] = _PAIRS[2 * v]
            buf[i - 1] = _PAIRS[2 * v + 1]
        else:
            buf[i - 1] = _ZERO + v
        if out == STRIP and scale > 0:
            dot = end - scale
            for i in range(end, dot, -1):  # make room for the point
                buf[i] = buf[i - 1]
            buf[dot] = _DOT
            end += 1
            while buf[end - 1] == _ZERO:  # no trailing zeros, and no point for a whole number
                end -= 1
            if end - 1 == dot:
                end -= 1
        pos = end
        if sep >= 0 and k + 1 < count:
            buf[pos] = sep
            pos += 1
    return pos


@njit(cache=True, nogil=True, error_model="numpy")
def okx_book_crc(bid_px: np.ndarray, bid_qty: np.ndarray, n_bid: int, ask_key: np.ndarray, ask_qty: np.ndarray,
                 n_ask: int, levels: int, fmt: np.ndarray, vals: np.ndarray, buf: np.ndarray) -> tuple[int, int]:
    """(CRC32, text length) of "bid1px:bid1sz:ask1px:ask1sz:..." over the best `levels` a side; where
    one side runs out the other continues alone. Arrays are a Book's (best level last)."""
    k = 0
    nb = min(levels, n_bid)
    na = min(levels, n_ask)
    for i in range(max(nb, na)):
        if i < nb:
            vals[k] = bid_px[n_bid - 1 - i]
            vals[k + 1] = bid_qty[n_bid - 1 - i]
            k += 2
        if i < na:
            vals[k] = -ask_key[n_ask - 1 - i]
            vals[k + 1] = ask_qty[n_ask - 1 - i]
            k += 2
    n = write_values(vals, k, fmt, _COLON, buf)
    return crc32(buf, n), n


@njit(cache=True, nogil=True, error_model="numpy")
def kraken_book_crc(bid_px: np.ndarray, bid_qty: np.ndarray, n_bid: int, ask_key: np.ndarray, ask_qty: np.ndarray,
                    n_ask: int, levels: int, fmt: np.ndarray, vals: np.ndarray, buf: np.ndarray) -> tuple[int, int]:
    """(CRC32, text length) of the best `levels` asks (ascending) then bids (descending), price and
    size of each written back to back. Arrays are a Book's (best level last)."""
    k = 0
    for i in range(min(levels, n_ask)):
        vals[k] = -ask_key[n_ask - 1 - i]
        vals[k + 1] = ask_qty[n_ask - 1 - i]
        k += 2
    for i in range(min(levels, n_bid)):
        vals[k] = bid_px[n_bid - 1 - i]
        vals[k + 1] = bid_qty[n_bid - 1 - i]
        k += 2
    n = write_values(vals, k, fmt, -1, buf)
    return crc32(buf, n), n


# --- the checksum rule of one symbol ---------------------------------------------------------------


def grid_format(step: float) -> tuple[int, int]:
    """(mult, scale) with step == mult * 10**-scale exactly as written (0.1 -> (1, 1), 0.0025 -> (25, 4),
    5 -> (5, 0)): a value of n steps is the integer n * mult at `scale` decimals."""
    sign, digits, exp = Decimal(repr(float(step))).normalize().as_tuple()
    if sign or not isinstance(exp, int) or step <= 0:
        raise ValueError(f"grid step must be a positive finite number, got {step!r}")
    mult = int("".join(map(str, digits)))
    if exp >= 0:
        return mult * 10**exp, 0
    if -exp > 18:
        raise ValueError(f"grid step {step!r} has more than 18 decimals")
    return mult, -exp


Kernel = Callable[..., tuple[int, int]]


class BookChecksum:
    """One symbol's checksum rule, callable as BookSync's `verify(book, checksum)`.

    `fmt` is [price mult, price scale, price out, size mult, size scale, size out] (out: decimals
    written, or STRIP); Kraken's adapter sets the outs from each snapshot's strings.
    """

    __slots__ = ("buf", "fmt", "kernel", "levels", "vals")

    def __init__(self, kernel: Kernel, levels: int, inst: Instrument, price_out: int, qty_out: int) -> None:
        px_mult, px_scale = grid_format(inst.tick_size)
        q_mult, q_scale = grid_format(inst.lot_size)
        self.kernel = kernel
        self.levels = levels
        self.fmt = np.array([px_mult, px_scale, price_out, q_mult, q_scale, qty_out], np.int64)
        self.vals = np.zeros(4 * levels, np.int64)  # the values to write, in order
        self.buf = np.zeros(4 * levels * _MAX_VALUE_BYTES + 64, np.uint8)

    def set_decimals(self, price_out: int, qty_out: int) -> None:
        """The venue writes prices and sizes at these fixed decimals (Kraken: learnt per snapshot)."""
        if not (0 <= price_out <= 18 and 0 <= qty_out <= 18):
            raise ValueError(f"decimals must be within 0..18, got {price_out} and {qty_out}")
        self.fmt[2] = price_out
        self.fmt[5] = qty_out

    def crc(self, book: Book) -> int:
        """The unsigned CRC32 the venue would send for this book."""
        return self.kernel(book.bid_px, book.bid_qty, book.n_bid, book.ask_key, book.ask_qty, book.n_ask,
                           self.levels, self.fmt, self.vals, self.buf)[0]

    def text(self, book: Book) -> str:
        """The text the CRC32 is taken over (for tests and for a log line on a mismatch)."""
        _, n = self.kernel(book.bid_px, book.bid_qty, book.n_bid, book.ask_key, book.ask_qty, book.n_ask,
                           self.levels, self.fmt, self.vals, self.buf)
        return self.buf[:n].tobytes().decode()

    def __call__(self, book: Book, checksum: int) -> bool:
        """Does the book match the venue's checksum (signed or unsigned 32-bit, as the venue sent it)?"""
        crc, _ = self.kernel(book.bid_px, book.bid_qty, book.n_bid, book.ask_key, book.ask_qty, book.n_ask,
                             self.levels, self.fmt, self.vals, self.buf)
        return crc == checksum & 0xFFFFFFFF


# --- resubscribe sync rules ------------------------------------------------------------------------


class FeedState(enum.StrEnum):
    WAIT = "WAIT"
    LIVE = "LIVE"
    RESYNC = "RESYNC"


class FeedEvent(enum.StrEnum):
    SNAPSHOT = "snapshot"
    UPDATE = "update"
    GAP = "gap"
    LOST = "lost"
    DISCONNECT = "disconnect"


S, E = FeedState, FeedEvent
TRANSITIONS: dict[FeedState, dict[FeedEvent, FeedState]] = {
    S.WAIT: {E.SNAPSHOT: S.LIVE, E.UPDATE: S.WAIT, E.LOST: S.RESYNC, E.DISCONNECT: S.WAIT},
    S.LIVE: {E.SNAPSHOT: S.LIVE, E.UPDATE: S.LIVE, E.GAP: S.RESYNC, E.LOST: S.RESYNC, E.DISCONNECT: S.WAIT},
    S.RESYNC: {E.SNAPSHOT: S.LIVE, E.UPDATE: S.RESYNC, E.LOST: S.RESYNC, E.DISCONNECT: S.WAIT},
}
del S, E
_LIVE, _WAIT, _RESYNC = FeedState.LIVE, FeedState.WAIT, FeedState.RESYNC


class ChecksumAdapter(BaseAdapter):
    """Base of the OKX and Kraken adapters: frame parsing, the per-symbol sync table, resync requests,
    health counting and the checksum verifiers. Subclasses decode their frames (`_decode_frame`)."""

    venue = "checksum"
    levels = 25  # levels a side the venue's checksum covers
    kernel = staticmethod(okx_book_crc)

    def __init__(self, instrument: Callable[[str], Instrument], policy: ResyncPolicy | None = None) -> None:
        super().__init__(instrument, policy)
        self.states: dict[str, FeedState] = {}
        self.dropped: Counter[str] = Counter()  # updates dropped while a symbol waited for a snapshot
        self.decode_errors = 0
        self._checksums: dict[str, BookChecksum] = {}

    # --- the adapter protocol ---

    def decode(self, ts_recv: int, symbol: str, channel: str, msg: Any) -> list[MarketEvent]:
        """The events in one websocket frame (raw bytes or text, or parsed) or connection marker; `symbol`,
        when the source knows it, is only used to count a bad frame against its symbol."""
        try:
            if channel == CH_WS:
                if isinstance(msg, bytes | str | bytearray | memoryview):
                    try:
                        msg = orjson.loads(msg)
                    except orjson.JSONDecodeError as exc:
                        raise DecodeError(f"{self.venue}: invalid JSON: {exc}") from None
                return self._decode_frame(ts_recv, msg)
            if channel == CH_MARKER:
                return self._marker(ts_recv, msg)
            raise DecodeError(f"{self.venue}: unknown channel {channel!r}; expected 'ws' or 'marker'")
        except DecodeError:
            self.decode_errors += 1
            if symbol:
                self.health.symbol(symbol).decode_errors += 1
            raise

    def resync(self, symbol: str, reason: str, ts: int) -> list[MarketEvent]:
        """BookSync lost the book (checksum, crossed): resubscribe and drop updates until the snapshot."""
        if reason == "checksum":
            self.health.symbol(symbol).checksum_failures += 1
        self._lose(symbol, reason, ts, FeedEvent.LOST)
        return []

    def verifier(self, symbol: str) -> Callable[[Book, int], bool]:
        """The venue's checksum rule for the symbol's book."""
        return self.checksum(symbol)

    def state(self, symbol: str) -> FeedState:
        """Where the symbol is in the sync table (WAIT before its first snapshot)."""
        return self.states.get(symbol, _WAIT)

    def checksum(self, symbol: str) -> BookChecksum:
        """The symbol's BookChecksum, made on first use."""
        ck = self._checksums.get(symbol)
        if ck is None:
            ck = self._checksums[symbol] = BookChecksum(self.kernel, self.levels, self._inst(symbol), STRIP,
                                                        STRIP)
        return ck

    # --- for subclasses ---

    def _decode_frame(self, ts_recv: int, msg: Any) -> list[MarketEvent]:
        raise NotImplementedError

    def _levels(self, rows: Any, inst: Instrument, where: str, widths: frozenset[int]) -> tuple[np.ndarray,
                                                                                                 np.ndarray]:
        """[price, size, ...] string rows to int64 ticks and lots; a DecodeError names the bad row."""
        if type(rows) is not list:
            raise DecodeError(f"{self.venue} {inst.symbol}: {where} must be a list of levels, got "
                              f"{type(rows).__name__}")
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        if set(map(type, rows)) != {list} or not set(map(len, rows)) <= widths:
            bad = next(r for r in rows if type(r) is not list or len(r) not in widths)
            raise DecodeError(f"{self.venue} {inst.symbol}: {where} level {bad!r} is not a list of "
                              f"{' or '.join(map(str, sorted(widths)))} fields")
        try:
            flat = np.array([x for r in rows for x in (r[0], r[1])], dtype=np.float64)
        except (ValueError, TypeError):
            bad = next(r for r in rows if not _numeric(r[0]) or not _numeric(r[1]))
            raise DecodeError(f"{self.venue} {inst.symbol}: {where} level {bad!r} has a price or size that "
                              f"is not a number") from None
        n = len(rows)
        px, qty, bad, problem = to_grid(flat.reshape(n, 2), inst)
        if bad >= 0:
            raise DecodeError(f"{self.venue} {inst.symbol}: {where} level {rows[bad]!r} has {problem}")
        return px, qty

    def _price_size(self, inst: Instrument, px: Any, sz: Any, where: str) -> tuple[int, int]:
        """A trade's price and size strings to ticks and lots; a DecodeError names the bad value."""
        try:
            p, q = float(px), float(sz)
        except (TypeError, ValueError):
            raise DecodeError(f"{self.venue} {inst.symbol}: {where} price {px!r} or size {sz!r} "
                              "is not a number") from None
        if not (0.0 < p < _INF and 0.0 < q < _INF):
            raise DecodeError(f"{self.venue} {inst.symbol}: {where} price {px!r} and size {sz!r} must be positive")
        try:
            return inst.tick(p), inst.lot(q)
        except OffGridError as exc:
            raise DecodeError(f"{self.venue} {inst.symbol}: {where}: {exc}") from None

    def _snapshot_arrived(self, symbol: str, ts: int) -> None:
        """A snapshot starts the symbol's book: LIVE, and in sync as far as the venue's rules go."""
        self._step(symbol, FeedEvent.SNAPSHOT)
        self.policy.on_in_sync(self.health.symbol(symbol), ts)

    def _update_passes(self, symbol: str, ts: int) -> bool:
        """True when an update may go to BookSync; else it is dropped (and counted) until a snapshot.
        A symbol given up on hears that it is still in sync, so it becomes tradeable again in time."""
        if self.states.get(symbol) is _LIVE:
            h = self.health.symbols.get(symbol)
            if h is not None and h.untradeable:
                self.policy.on_in_sync(h, ts)
            return True
        self._step(symbol, FeedEvent.UPDATE)
        self.dropped[symbol] += 1
        return False

    def _gap(self, symbol: str, ts_venue: int, ts_recv: int) -> BookReset:
        """The venue's sequence broke: the book is lost until a resubscription's snapshot."""
        self.health.symbol(symbol).gaps += 1
        self._lose(symbol, "gap", ts_recv, FeedEvent.GAP)
        return BookReset(symbol, ts_venue, ts_recv, "gap")

    def _on_disconnect(self) -> None:
        """Forget per-connection state (subclasses)."""

    # --- internals ---

    def _lose(self, symbol: str, reason: str, ts: int, event: FeedEvent) -> None:
        self.policy.on_resync(self.health.symbol(symbol), ts, reason)
        before = self.state(symbol)
        self._step(symbol, event)
        if before is not _RESYNC:  # one resubscription at a time: its snapshot repairs the book
            self._requests.append(Resubscribe(symbol, reason))

    def _step(self, symbol: str, event: FeedEvent) -> FeedState:
        state = self.states.get(symbol, _WAIT)
        new = TRANSITIONS[state].get(event)
        if new is None:
            raise IllegalTransition(f"{self.venue}[{symbol}]", state, event)
        self.states[symbol] = new
        return new

    def _marker(self, ts_recv: int, msg: Any) -> list[MarketEvent]:
        event = msg.get("event") if type(msg) is dict else None
        if event == "connected":
            return []
        if event != "disconnected":
            raise DecodeError(f"{self.venue}: a marker must be {{'event': 'connected'|'disconnected'}}, got {msg!r}")
        self._on_disconnect()
        out: list[MarketEvent] = []
        for symbol, state in sorted(self.states.items()):
            if state is not _WAIT:
                self._step(symbol, FeedEvent.DISCONNECT)
                self.health.symbol(symbol).in_sync = False
                out.append(BookReset(symbol, ts_recv, ts_recv, "disconnect"))
        return out


def _numeric(x: Any) -> bool:
    try:
        float(x)
    except (TypeError, ValueError):
        return False
    return True


def check_symbols(symbols: list[str]) -> None:
    """Raise ValueError unless `symbols` is a non-empty list of non-empty strings (for subscribe frames)."""
    if not symbols or not all(type(s) is str and s for s in symbols):
        raise ValueError(f"symbols must be a non-empty list of venue symbols, got {symbols!r}")

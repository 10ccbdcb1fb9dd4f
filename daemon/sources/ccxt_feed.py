"""CcxtFeed: live books and trades from any ccxt pro exchange, as plain messages for the ccxt adapter.

One task per symbol loops `watch_order_book(symbol, limit)`; each book ccxt resolves becomes a
"ccxt_book" message holding the top `limit` levels of ccxt's own synced book (ccxt does the venue's
snapshots and sequencing, and checksums where it implements them). Another task per symbol loops
`watch_trades(symbol)` into "ccxt_trades" messages. The messages go to `sink(ts_recv, channel,
symbol, msg)` (the live session records them and routes them through
`daemon.venues.ccxt_book.CcxtAdapter`), so a replay runs the same adapter on the same messages.
See the adapter's docstring for the message shapes.

A symbol whose book has not come for `stale_after_s` is a silent connection: the same marker goes out
and the exchange's connections are closed, so the next watch reconnects and resubscribes.
When ccxt raises for a symbol's book (a network error, its own InvalidNonce/ChecksumError resync, an
exchange error), a "marker" message `{"event": "disconnected", "reason": ...}` goes out for that symbol
(once per outage: only when a book had come through since the last one) and the watch is retried
after a backoff delay; ccxt reconnects and resubscribes by itself, and its next book is a fresh
snapshot. Errors that no retry can mend (an unknown symbol, a feature the exchange lacks, bad
credentials) end `run()` with that error.

The exchange is built by the caller (`build_ccxt_feed` builds it from the `[feed]` config: exchange id,
sandbox, url overrides) and closed by `close()`. The ccxt adapter never asks the network for anything
(ccxt sends its whole book every time), so `request` only logs what it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import ccxt
import structlog

from daemon.config import FeedSettings
from daemon.errors import ConfigError
from daemon.sources.backoff import Backoff
from daemon.venues.base import CH_MARKER, FeedRequest
from daemon.venues.ccxt_book import CH_CCXT_BOOK, CH_CCXT_TRADES
from daemon.venues.health import FeedHealth

log = structlog.get_logger("depthd.ccxt_feed")

Sink = Callable[[int, str, str, Any], None]
# no retry mends these: a wrong symbol, a missing feature, bad or missing credentials
FATAL = (ccxt.BadSymbol, ccxt.NotSupported, ccxt.AuthenticationError, ccxt.ArgumentsRequired,
         ccxt.InvalidProxySettings)


def book_message(book: Any, limit: int | None) -> dict:
    """The "ccxt_book" message of a ccxt order book: its top `limit` levels a side, best first."""
    bids = book["bids"] if limit is None else book["bids"][:limit]
    asks = book["asks"] if limit is None else book["asks"][:limit]
    return {"nonce": book.get("nonce"), "timestamp": book.get("timestamp"), "limit": limit,
            "bids": [[lv[0], lv[1]] for lv in bids], "asks": [[lv[0], lv[1]] for lv in asks]}


def trades_message(trades: list) -> list[dict]:
    """The "ccxt_trades" message of ccxt trade structures (side = the taker's side)."""
    return [{"id": t.get("id"), "timestamp": t.get("timestamp"), "price": t.get("price"),
             "amount": t.get("amount"), "side": t.get("side")} for t in trades]


class CcxtFeed:
    """Watches books (and trades) of `symbols` on a ccxt pro exchange and hands messages to `sink`."""

    def __init__(self, exchange: Any, symbols: list[str], *, sink: Sink, health: FeedHealth,
                 now: Callable[[], int] = time.time_ns, limit: int | None = None, trades: bool = True,
                 backoff: Callable[[], Backoff] | None = None, stale_after_s: float | None = None) -> None:
        if not symbols or len(set(symbols)) != len(symbols):
            raise ValueError(f"symbols must be a non-empty list without repeats, got {symbols!r}")
        if limit is not None and (type(limit) is not int or limit <= 0):
            raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
        self.exchange = exchange
        self.symbols = list(symbols)
        self.limit = limit
        self.trades = trades
        self.health = health
        self.errors: dict[str, int] = {}  # ccxt error class name -> count
        self._sink = sink
        self._now = now
        self._backoff = backoff or Backoff
        self.stale_after_s = stale_after_s  # no book for this long: the connection is silent, start over
        self._stop = asyncio.Event()
        self._has_book = dict.fromkeys(self.symbols, False)
        self._tasks: list[asyncio.Task] = []

    async def run(self) -> None:
        """Watch every symbol until `close()`; an error no retry can mend ends it (and raises)."""
        loops = [self._book_loop(s) for s in self.symbols]
        if self.trades:
            loops += [self._trade_loop(s) for s in self.symbols]
        self._tasks = [asyncio.ensure_future(c) for c in loops]
        try:
            await asyncio.gather(*self._tasks)
        except asyncio.CancelledError:
            if not self._stop.is_set():
                raise
        finally:
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def request(self, req: FeedRequest) -> None:
        """Nothing to do: ccxt resynchronises by itself and the adapter takes the next book whole."""
        log.warning("ccxt_request_ignored", request=str(req))

    async def close(self) -> None:
        """Stop the watch loops and close the exchange's connections."""
        self._stop.set()
        for t in self._tasks:
            t.cancel()
        await self.exchange.close()

    async def _book_loop(self, symbol: str) -> None:
        backoff = self._backoff()
        while not self._stop.is_set():
            try:
                book = await asyncio.wait_for(self.exchange.watch_order_book(symbol, self.limit),
                                              self.stale_after_s)
            except FATAL:
                raise
            except TimeoutError:
                # connected but silent (ccxt's reader can also stop quietly after a bad frame): a fault
                if self._stop.is_set():
                    return
                self.health.stale_reconnects += 1
                self._book_failed(symbol, TimeoutError(f"no book for {self.stale_after_s:g} s"))
                with contextlib.suppress(Exception):
                    await self.exchange.close()  # the next watch opens a fresh connection and subscribes
                continue
            except Exception as exc:  # a network error, ccxt's own resync, an exchange error: retry
                if self._stop.is_set():
                    return
                self._book_failed(symbol, exc)
                await self._sleep(backoff.next())
                continue
            ts = self._now()
            msg = book_message(book, self.limit)
            if not self._has_book[symbol]:
                self._has_book[symbol] = True
                backoff.reset()
                self._connected(ts)
            self._received(ts)
            self._sink(ts, CH_CCXT_BOOK, symbol, msg)

    async def _trade_loop(self, symbol: str) -> None:
        backoff = self._backoff()
        while not self._stop.is_set():
            try:
                trades = await self.exchange.watch_trades(symbol)
            except FATAL:
                raise
            except Exception as exc:  # the book loop reports the outage; trades just come back
                if self._stop.is_set():
                    return
                self._count(exc)
                await self._sleep(backoff.next())
                continue
            backoff.reset()
            if trades:
                ts = self._now()
                self._received(ts)
                self._sink(ts, CH_CCXT_TRADES, symbol, trades_message(trades))

    def _book_failed(self, symbol: str, exc: Exception) -> None:
        """Count the error; the first one after a book was received is an outage: marker, health."""
        self._count(exc)
        reason = f"{type(exc).__name__}: {exc}"[:300]
        log.warning("ccxt_watch_failed", exchange=getattr(self.exchange, "id", "?"), symbol=symbol, reason=reason)
        if not self._has_book[symbol]:
            return
        self._has_book[symbol] = False
        self._sink(self._now(), CH_MARKER, symbol, {"event": "disconnected", "reason": reason})
        h = self.health
        if h.connected and not any(self._has_book.values()):
            h.connected = False
            h.disconnects += 1

    def _connected(self, ts: int) -> None:
        h = self.health
        if not h.connected:
            h.connected = True
            h.connects += 1
            h.connected_since_ns = ts

    def _received(self, ts: int) -> None:
        h = self.health
        h.messages += 1
        h.last_message_ns = ts

    def _count(self, exc: Exception) -> None:
        name = type(exc).__name__
        self.errors[name] = self.errors.get(name, 0) + 1

    async def _sleep(self, delay: float) -> None:
        """Wait `delay` seconds, or less when the feed is closed meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)


def build_ccxt_feed(settings: FeedSettings, health: FeedHealth, sink: Sink, now: Callable[[], int]) -> CcxtFeed:
    """The ccxt feed of a `[feed]` config section (venue = "ccxt"): a ccxt pro exchange by id, in sandbox
    mode if asked, with `ws_url` / `rest_url` replacing its public endpoints when they are single URLs."""
    import ccxt.pro

    cls = getattr(ccxt.pro, settings.ccxt_exchange, None)
    if cls is None or settings.ccxt_exchange not in ccxt.pro.exchanges:
        raise ConfigError(f"ccxt_exchange: ccxt pro has no exchange {settings.ccxt_exchange!r}")
    exchange = cls()
    if settings.ccxt_sandbox:
        exchange.set_sandbox_mode(True)
    for key, url, kind in (("ws_url", settings.ws_url, "ws"), ("rest_url", settings.rest_url, "rest")):
        if not url:
            continue
        api = exchange.urls.get("api")
        if not isinstance(api, dict) or not isinstance(api.get(kind), str):
            raise ConfigError(f"{key}: ccxt's {settings.ccxt_exchange} has no single {kind} URL to replace")
        api[kind] = url
    return CcxtFeed(exchange, list(settings.symbols), sink=sink, health=health, now=now,
                    limit=settings.ccxt_depth or None, stale_after_s=settings.stale_after_s,
                    trades=settings.trades != "none",
                    backoff=lambda: Backoff(settings.reconnect_initial_s, settings.reconnect_max_s))

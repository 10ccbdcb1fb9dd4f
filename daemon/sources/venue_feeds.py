"""Live feeds of the websocket venues (Binance spot and USD-M, OKX, Kraken): the I/O around a pure adapter.

A feed owns one websocket connection (and, for Binance, a REST client for depth snapshots). It hands
every frame, REST answer and connection marker to `sink(ts_recv, channel, symbol, msg)` at once, in
receive order, with the raw bytes as received; the live session records them and routes them through
the adapter. The adapter's requests come back through `request`: a Binance snapshot is fetched over
REST (retrying timeouts, 5xx and 429 after Retry-After, within the venue's weight limit), an OKX or
Kraken resubscription is sent on the socket.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from daemon.config import FeedSettings
from daemon.sources.backoff import Backoff
from daemon.sources.rest import RateLimited, RestClient, RestError
from daemon.sources.ws import WsConnection
from daemon.venues import CH_MARKER, CH_SNAPSHOT, CH_WS, FeedRequest, Resubscribe, SnapshotRequest, VenueAdapter
from daemon.venues.health import FeedHealth

log = structlog.get_logger("depthd.feed")

Sink = Callable[[int, str, str, Any], None]

# The symbol of a frame, read off its bytes before anything parses it (the recorder files it under it).
_BINANCE_STREAM = re.compile(rb'^\{"stream":"([a-z0-9_]+)@')
_OKX_INST = re.compile(rb'"instId":"([^"]+)"')
_KRAKEN_PAIR = re.compile(rb',"([^"]+)"\]\s*$')


class Feed(Protocol):
    """What the live session needs of a feed."""

    health: FeedHealth

    async def run(self) -> None:
        """Connect and deliver until closed, reconnecting as needed."""

    def request(self, req: FeedRequest) -> None:
        """Carry out an adapter's request (asynchronously; the answer arrives through the sink)."""

    async def close(self) -> None:
        """Stop delivering and close connections."""


class WsVenueFeed:
    """One websocket venue: subscription, frames, markers, and the adapter's requests."""

    def __init__(self, settings: FeedSettings, adapter: VenueAdapter, sink: Sink, now: Callable[[], int]) -> None:
        self.settings = settings
        self.adapter = adapter
        self.health = health = adapter.health
        self.sink = sink
        self.now = now
        self.venue = settings.venue
        self.symbols = list(settings.symbols)
        self._by_lower = {s.lower(): s for s in self.symbols}
        self._tasks: set[asyncio.Task[None]] = set()
        self._fetching: set[str] = set()
        backoff = Backoff(settings.reconnect_initial_s, settings.reconnect_max_s)
        self.ws = WsConnection(self._url(), health=health, on_frame=self._on_frame, on_marker=self._on_marker,
                               subscribe=self._subscribe_frames, now=now, ping_interval_s=settings.ping_interval_s,
                               ping_timeout_s=settings.ping_timeout_s, stale_after_s=settings.stale_after_s,
                               backoff=backoff, name=self.venue)
        self.rest: RestClient | None = None
        if self.venue in ("binance", "binance_usdm"):
            default_limit = 6000 if self.venue == "binance" else 2400
            limit = settings.rest_weight_limit or int(default_limit * 0.8)
            self.rest = RestClient(settings.rest_url or type(adapter).DEFAULT_REST_URL,
                                   health=health, now=now, timeout_s=settings.rest_timeout_s,
                                   weight_limit_per_min=limit)

    def _module(self) -> Any:
        import importlib

        name = {"binance": "binance", "binance_usdm": "binance", "okx": "okx", "kraken": "kraken"}[self.venue]
        return importlib.import_module(f"daemon.venues.{name}")

    def _url(self) -> str:
        mod = self._module()
        s = self.settings
        if self.venue in ("binance", "binance_usdm"):
            return mod.combined_stream_url(s.ws_url or type(self.adapter).DEFAULT_WS_URL, self.symbols,
                                           depth_speed=s.depth_speed, trades="" if s.trades == "none" else s.trades,
                                           book_ticker=s.book_ticker)
        return s.ws_url or mod.DEFAULT_WS_URL

    def _subscribe_frames(self) -> list[Any]:
        if self.venue in ("binance", "binance_usdm"):
            return []  # the combined-stream URL names the streams
        return list(self._module().subscribe_frames(self.symbols))

    def frame_symbol(self, raw: bytes) -> str:
        """The symbol a frame is about, from its first bytes ("" when it is about none)."""
        if self.venue in ("binance", "binance_usdm"):
            m = _BINANCE_STREAM.match(raw)
            return self._by_lower.get(m.group(1).decode(), "") if m else ""
        m = (_OKX_INST if self.venue == "okx" else _KRAKEN_PAIR).search(raw)
        return m.group(1).decode() if m else ""

    def _on_frame(self, ts: int, raw: bytes) -> None:
        self.sink(ts, CH_WS, self.frame_symbol(raw), raw)

    def _on_marker(self, ts: int, event: dict[str, Any]) -> None:
        self.sink(ts, CH_MARKER, "", {**event, "symbols": self.symbols})

    async def run(self) -> None:
        """Run the websocket until closed."""
        await self.ws.run()

    def request(self, req: FeedRequest) -> None:
        """A snapshot fetch (Binance) or a resubscription (OKX, Kraken), carried out in the background."""
        if isinstance(req, SnapshotRequest):
            if req.symbol in self._fetching:
                return  # one fetch per symbol at a time; its answer serves this request too
            self._fetching.add(req.symbol)
            self._spawn(self._fetch_snapshot(req))
        elif isinstance(req, Resubscribe):
            self._spawn(self._resubscribe(req))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fetch_snapshot(self, req: SnapshotRequest) -> None:
        assert self.rest is not None
        path, params, weight = type(self.adapter).snapshot_request(req.symbol, self.settings.snapshot_limit)
        backoff = Backoff(self.settings.reconnect_initial_s, self.settings.reconnect_max_s)
        try:
            while True:
                try:
                    resp = await self.rest.get_with_retry(path, params, weight, backoff=backoff)
                except RateLimited as exc:
                    if exc.banned:
                        log.error("snapshot_banned", venue=self.venue, symbol=req.symbol,
                                  retry_after_s=exc.retry_after_s)
                    await asyncio.sleep(max(exc.retry_after_s, backoff.next()))
                    continue
                except RestError as exc:
                    log.warning("snapshot_failed", venue=self.venue, symbol=req.symbol, kind=exc.kind,
                                detail=exc.detail)
                    await asyncio.sleep(backoff.next())
                    continue
                break
        finally:
            self._fetching.discard(req.symbol)
        self.sink(resp.ts_recv, CH_SNAPSHOT, req.symbol, resp.body)

    async def _resubscribe(self, req: Resubscribe) -> None:
        for frame in self._module().resubscribe_frames(req.symbol):
            if not await self.ws.send(frame):
                return  # not connected: the reconnect subscribes afresh

    async def close(self) -> None:
        """Close the socket, the REST client and any fetch in flight."""
        for task in list(self._tasks):
            task.cancel()
        await self.ws.close()
        if self.rest is not None:
            await self.rest.close()


def build_feed(settings: FeedSettings, adapter: VenueAdapter, sink: Sink, now: Callable[[], int]) -> Feed:
    """The feed of the configured venue, delivering to `sink` and keeping the adapter's health."""
    adapter.health.live = True
    if settings.venue == "ccxt":
        from daemon.sources.ccxt_feed import build_ccxt_feed

        return build_ccxt_feed(settings, adapter.health, sink, now)
    if settings.venue == "ib":
        from daemon.sources.ib_feed import build_ib_feed

        return build_ib_feed(settings, adapter.health, sink, now)
    return WsVenueFeed(settings, adapter, sink, now)

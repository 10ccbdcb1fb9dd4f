"""FeedRouter: from raw venue messages to the engine, the same way in a live session and a replay.

It owns the link between a venue adapter and the engine's books: each symbol's BookSync gets the
venue's checksum rule, depth limit and feed-health record, and a book lost for a content reason
(crossed, checksum, quote mismatch) is handed back to the adapter to resynchronise. A message is
decoded and its events routed, then whatever the resync produced (the caller has moved the clock to
the message's receive time: the replay loop, or the live session's `LiveClock.pin`).
The adapter's requests (fetch a snapshot, resubscribe) are for the live source: `take_requests`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import structlog

from daemon.engine import Engine
from daemon.events import BookReset, MarketEvent
from daemon.venues import CH_MARKER, DecodeError, FeedRequest, VenueAdapter
from daemon.venues.base import parsed

RESYNC_MARKER = "resync"

log = structlog.get_logger("depthd.feed")


class FeedRouter:
    """Routes one venue's messages into the engine; `route` is called once per received message."""

    def __init__(self, engine: Engine, adapter: VenueAdapter, symbols: Iterable[str] = (),
                 drop_requests: bool = False) -> None:
        self.engine = engine
        self.adapter = adapter
        self.decode_errors = 0
        # a replay drops the adapter's requests: the recording holds the answers the live session got
        self.drop_requests = drop_requests
        self.requests_dropped = 0
        self._pending: list[MarketEvent] = []
        self._wired: set[str] = set()
        self.wire(symbols)

    def wire(self, symbols: Iterable[str]) -> None:
        """Give each symbol's BookSync the venue's rules and the adapter's resync (idempotent)."""
        for symbol in symbols:
            if symbol in self._wired:
                continue
            sync = self.engine.add_symbol(symbol)
            sync.verify = self.adapter.verifier(symbol)
            sync.max_depth = self.adapter.max_depth(symbol)
            sync.health = self.adapter.health.symbol(symbol)
            sync.on_lost = self._lost
            self._wired.add(symbol)

    def _lost(self, symbol: str, reason: str, ts: int) -> None:
        """BookSync threw the book away: the adapter starts over (events it returns follow the message)."""
        log.warning("book_lost", venue=self.adapter.venue, symbol=symbol, reason=reason, ts=ts)
        self._pending.extend(self.adapter.resync(symbol, reason, ts))

    def route(self, ts_recv: int, symbol: str, channel: str, msg: Any) -> list[MarketEvent]:
        """Decode one message and route its events; a DecodeError propagates after being counted."""
        try:
            events = self.decode(ts_recv, symbol, channel, msg)
        except DecodeError:
            self.decode_errors += 1
            raise
        self.route_events(events)
        return events

    def decode(self, ts_recv: int, symbol: str, channel: str, msg: Any) -> list[MarketEvent]:
        """The adapter's events of one message; a `resync` marker (the live session decided to rebuild
        a book, and recorded that it did) restarts the symbol here, so a replay does the same."""
        if channel == CH_MARKER:
            marker = parsed(msg)
            if type(marker) is dict and marker.get("event") == RESYNC_MARKER:
                sym, reason = marker.get("symbol"), marker.get("reason")
                if type(sym) is not str or not sym or type(reason) is not str:
                    raise DecodeError(f"resync marker needs 'symbol' and 'reason' strings, got {marker!r}")
                return self.refresh(sym, reason, ts_recv)
        return self.adapter.decode(ts_recv, symbol, channel, msg)

    def refresh(self, symbol: str, reason: str, ts: int) -> list[MarketEvent]:
        """Throw away a LIVE book that can no longer be proven (its top left the snapshot's depth) and
        have the adapter rebuild it from a new snapshot."""
        log.info("book_refresh", venue=self.adapter.venue, symbol=symbol, reason=reason, ts=ts)
        return [BookReset(symbol, ts, ts, reason), *self.adapter.resync(symbol, reason, ts)]

    def route_events(self, events: list[MarketEvent]) -> None:
        """Hand decoded events to the engine, then the events of any resync they caused."""
        on_market = self.engine.on_market
        wired = self._wired
        for ev in events:
            if ev.symbol not in wired:
                self.wire((ev.symbol,))
            on_market(ev)
        while self._pending:
            pending, self._pending = self._pending, []
            for ev in pending:
                on_market(ev)
        if self.drop_requests:
            dropped = self.adapter.take_requests()
            if dropped:
                self.requests_dropped += len(dropped)

    def take_requests(self) -> list[FeedRequest]:
        """What the adapter asked of the network since the last call."""
        return self.adapter.take_requests()

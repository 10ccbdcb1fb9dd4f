"""The adapter protocol every venue implements, and lookup of an adapter by venue name.

An adapter is pure (DESIGN rule 1): raw messages with their receive time in, market events out.
A venue with sequence numbers keeps its own per-symbol sync state machine here (buffering, snapshot
straddling, continuity) and says when it is broken with a `BookReset`. What it needs from the
network it asks for with requests (`take_requests`: fetch a snapshot, resubscribe a symbol) that
the live source carries out; the answers come back through `decode` like any other message, and
are recorded, so a replay takes the same decisions from the same messages.

Channels a source hands to `decode` (and the recorder writes as `ch`):
- "ws": a websocket frame (parsed JSON; the adapter finds the symbol in it when `symbol` is "");
- "snapshot": a REST depth snapshot answer for `symbol`;
- "marker": a connection event from the source, `{"event": "connected"|"disconnected", ...}`: a
  disconnect loses every book of the connection (the adapter answers with BookResets);
- other venue-specific channels (ccxt, ib) are named by their adapter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import orjson

from daemon.book.book import Book
from daemon.errors import DepthdError, VenueError
from daemon.events import MarketEvent
from daemon.instruments import Instrument
from daemon.venues.health import FeedHealth, ResyncPolicy

CH_WS, CH_SNAPSHOT, CH_MARKER = "ws", "snapshot", "marker"


class DecodeError(VenueError):
    """A venue message that cannot be turned into an event; the message says what is wrong."""


def parsed(msg: Any) -> Any:
    """A message as parsed JSON: raw bytes (as received, or read from a recording) are parsed here."""
    if isinstance(msg, bytes | bytearray | memoryview | str):
        try:
            return orjson.loads(msg)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"invalid JSON: {exc}") from None
    return msg


class SnapshotRequest(NamedTuple):
    """Fetch a REST depth snapshot of `symbol` and hand the answer to `decode(channel="snapshot")`."""

    symbol: str
    reason: str


class Resubscribe(NamedTuple):
    """Unsubscribe and subscribe `symbol`'s book again, so the venue sends a fresh snapshot."""

    symbol: str
    reason: str


FeedRequest = SnapshotRequest | Resubscribe


class VenueAdapter(Protocol):
    """Turns one raw message (as received, parsed) into market events. Pure."""

    venue: str
    health: FeedHealth

    def decode(self, ts_recv: int, symbol: str, channel: str, msg: Any) -> list[MarketEvent]:
        """The events in one message; a DecodeError says what is wrong with it."""

    def resync(self, symbol: str, reason: str, ts: int) -> list[MarketEvent]:
        """The book of `symbol` was lost downstream (crossed, checksum, quote mismatch): start over.
        Returns events to route (none, usually: the book is already invalid)."""

    def take_requests(self) -> list[FeedRequest]:
        """Requests for the live source since the last call (a replay drops them: the recording
        holds the answers the live session got)."""

    def verifier(self, symbol: str) -> Callable[[Book, int], bool] | None:
        """The venue's checksum rule for BookSync (`verify(book, checksum)`), or None."""

    def max_depth(self, symbol: str) -> int:
        """Levels a side the venue keeps the book to (0 = unlimited)."""


class BaseAdapter:
    """Defaults for a venue without sequence rules: nothing to resync, request or verify; and what
    every adapter needs: the instruments, the resync policy, the requests, the health record."""

    venue = "base"

    def __init__(self, instrument: Callable[[str], Instrument], policy: ResyncPolicy | None = None) -> None:
        self._instrument = instrument
        self._cache: dict[str, Instrument] = {}
        self._requests: list[FeedRequest] = []
        self.policy = policy or ResyncPolicy()
        self.health = FeedHealth(self.venue)

    def _inst(self, symbol: str) -> Instrument:
        """The symbol's instrument (looked up once); a symbol without one is a DecodeError."""
        inst = self._cache.get(symbol)
        if inst is None:
            try:
                inst = self._cache[symbol] = self._instrument(symbol)
            except (DepthdError, LookupError, ValueError) as exc:
                raise DecodeError(f"{self.venue}: no instrument for {symbol!r}: {exc}") from None
        return inst

    def _dispatch(self, handlers: dict[str, Callable[[int, str, Any], list[MarketEvent]]], ts_recv: int,
                  symbol: str, channel: str, msg: Any) -> list[MarketEvent]:
        """Hand a parsed message to its channel's handler; a DecodeError is counted on the symbol."""
        handler = handlers.get(channel)
        if handler is None:
            raise DecodeError(f"unknown channel {channel!r}; expected {', '.join(handlers)}")
        try:
            return handler(ts_recv, symbol, parsed(msg))
        except DecodeError:
            self.health.symbol(symbol).decode_errors += 1
            raise

    def decode(self, ts_recv: int, symbol: str, channel: str, msg: Any) -> list[MarketEvent]:
        """The events in one message (each venue's own)."""
        raise NotImplementedError

    def resync(self, symbol: str, reason: str, ts: int) -> list[MarketEvent]:
        """Nothing to do without sequence rules: the next snapshot in the stream repairs the book."""
        return []

    def take_requests(self) -> list[FeedRequest]:
        """The requests made since the last call."""
        if not self._requests:
            return []
        out = self._requests.copy()
        self._requests.clear()  # in place: sync machines hold `self._requests.append`
        return out

    def verifier(self, symbol: str) -> Callable[[Book, int], bool] | None:
        """No checksum."""
        return None

    def max_depth(self, symbol: str) -> int:
        """No depth limit."""
        return 0


AdapterFactory = Callable[[Callable[[str], Instrument]], VenueAdapter]


# venue name -> (module, class); imported on use so a replay loads only the adapters it needs
ADAPTERS: dict[str, tuple[str, str]] = {
    "generic": ("daemon.venues.generic", "GenericAdapter"),
    "binance": ("daemon.venues.binance", "BinanceSpotAdapter"),
    "binance_usdm": ("daemon.venues.binance", "BinanceUsdmAdapter"),
    "okx": ("daemon.venues.okx", "OkxAdapter"),
    "kraken": ("daemon.venues.kraken", "KrakenAdapter"),
    "ccxt": ("daemon.venues.ccxt_book", "CcxtAdapter"),
    "ib": ("daemon.venues.ib", "IbAdapter"),
}


def adapter_for(venue: str, instrument: Callable[[str], Instrument]) -> VenueAdapter:
    """The adapter for a venue name; an unknown venue is a DecodeError naming the known ones."""
    import importlib

    spec = ADAPTERS.get(venue)
    if spec is None:
        raise DecodeError(f"no adapter for venue {venue!r}; known: {', '.join(sorted(ADAPTERS))}")
    factory: AdapterFactory = getattr(importlib.import_module(spec[0]), spec[1])
    return factory(instrument)

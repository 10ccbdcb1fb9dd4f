"""Feed health: what a venue connection and its sync rules have been through, for metrics and risk.

Pure counters and flags (no clock reads): the source fills in the connection facts (connected,
reconnects, last message time, REST errors), the adapter the sync facts (gaps, resyncs, stale
snapshots, decode errors) and `ResyncPolicy` decides when a symbol that keeps losing its book is
untradeable. The risk monitor and the metrics collector read it.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field


@dataclass
class SymbolHealth:
    """One symbol's sync history on its feed."""

    gaps: int = 0  # sequence breaks seen by the venue's rules
    resyncs: int = 0  # times the book was thrown away and rebuilt from a new snapshot
    stale_snapshots: int = 0  # snapshots refused as older than the buffered stream
    checksum_failures: int = 0
    decode_errors: int = 0
    untradeable: bool = False  # too many resyncs in the window: no trading on it
    untradeable_reason: str = ""
    in_sync: bool = False  # the venue's sequence rules hold (the book may still fail a content check)
    resync_times: deque[int] = field(default_factory=deque)  # recent resync starts, ns


@dataclass
class FeedHealth:
    """One venue feed: connection facts and every symbol's sync facts."""

    venue: str
    live: bool = False  # a network feed (a replay's adapters keep sync facts only)
    connected: bool = False
    connects: int = 0
    disconnects: int = 0
    last_message_ns: int = 0  # receive time of the last frame (0: none yet)
    connected_since_ns: int = 0
    messages: int = 0
    bytes: int = 0
    stale_reconnects: int = 0  # reconnects because the connection went silent
    rest_errors: Counter[str] = field(default_factory=Counter)  # by kind: timeout, http_5xx, rate_limited, ...
    rate_limited_until_ns: int = 0  # a 429/418 asked us to wait until then
    banned: bool = False  # the venue answered 418 (IP ban)
    started_ns: int = 0  # when the feed started (a live session sets it)
    grace_ns: int = 0  # a live feed down for less than this (starting, reconnecting) is not yet a problem
    symbols: dict[str, SymbolHealth] = field(default_factory=dict)

    def symbol(self, symbol: str) -> SymbolHealth:
        """The health record of a symbol, created on first use."""
        h = self.symbols.get(symbol)
        if h is None:
            h = self.symbols[symbol] = SymbolHealth()
        return h

    def silent_ns(self, now_ns: int) -> int:
        """How long the connection has been silent ("connected but silent" is a fault); 0 if never."""
        since = self.last_message_ns or self.connected_since_ns
        return max(0, now_ns - since) if since else 0

    def untradeable(self) -> list[str]:
        """Symbols the sync rules gave up on."""
        return sorted(s for s, h in self.symbols.items() if h.untradeable)

    def problem(self, now_ns: int) -> str | None:
        """What is wrong with this feed for risk, or None: an IP ban, a live feed down, a symbol given up."""
        if self.banned:
            return f"{self.venue}: the venue banned our IP (HTTP 418)"
        if self.live and not self.connected:
            since = self.last_message_ns or self.connected_since_ns or self.started_ns
            if now_ns - since > self.grace_ns:
                return f"{self.venue}: feed down for {(now_ns - since) / 1e9:.1f} s"
        for sym in self.untradeable():
            return f"{self.venue} {sym} untradeable: {self.symbols[sym].untradeable_reason}"
        return None


class ResyncPolicy:
    """Marks a symbol untradeable after more than `max_resyncs` resyncs within `window_ns`, and
    tradeable again once its book has stayed in sync for a whole window since the last one."""

    def __init__(self, max_resyncs: int = 5, window_ns: int = 60_000_000_000) -> None:
        if max_resyncs < 1 or window_ns <= 0:
            raise ValueError("max_resyncs must be >= 1 and window_ns > 0")
        self.max_resyncs = max_resyncs
        self.window_ns = window_ns

    def on_resync(self, h: SymbolHealth, ts: int, reason: str) -> bool:
        """Count a resync of this symbol at ts; True when it has just become untradeable."""
        h.resyncs += 1
        h.in_sync = False
        times = h.resync_times
        times.append(ts)
        while times and times[0] <= ts - self.window_ns:
            times.popleft()
        if len(times) > self.max_resyncs and not h.untradeable:
            h.untradeable = True
            h.untradeable_reason = f"{len(times)} resyncs within {self.window_ns / 1e9:g} s (last: {reason})"
            return True
        return False

    def on_in_sync(self, h: SymbolHealth, ts: int) -> bool:
        """The symbol's book is in sync at ts; True when it has just become tradeable again."""
        h.in_sync = True
        if h.untradeable and (not h.resync_times or ts - h.resync_times[-1] >= self.window_ns):
            h.untradeable = False
            h.untradeable_reason = ""
            return True
        return False

"""Binance's documented local order book procedure for one symbol, as a transition table.

The diff-depth stream is only usable on top of a REST snapshot it continues:
- until a snapshot arrives (`WAITING`) depth events are buffered, up to a bound (the oldest is
  dropped and counted past it); the buffer holds one unbroken run (a gap inside it drops what
  came before the gap);
- on the snapshot (`lastUpdateId` L) buffered events it already contains are dropped (spot
  `u <= L`, USD-M `u < L`); the first one left must straddle it (spot `U <= L+1 <= u`, USD-M
  `U <= L <= u`, or `pu == L`): then the snapshot (`seq=L`) and every buffered event are emitted and
  the book is `LIVE`. A hole between L and the first buffered event means the snapshot is stale:
  it is counted and another is requested. With nothing newer buffered yet the snapshot is emitted
  and the symbol is `BRIDGING`: the next newer event must straddle, else the snapshot was stale;
- while LIVE every event must continue the last (spot `U == u' + 1`, USD-M `pu == u'`): an entirely
  old one is a duplicate (dropped, counted), any other break a gap: `BookReset(reason="gap")`, a new
  snapshot is requested and the event that showed the gap starts the new buffer;
- a snapshot that comes when the symbol has one (`BRIDGING`, `LIVE`) is ignored and counted;
- a (re)connection, a disconnection and a resync asked from downstream (crossed book, quote
  mismatch) go back to `WAITING` with an empty buffer; a symbol that had a book gets a BookReset.
Every start of a resync goes through `ResyncPolicy.on_resync`, and `on_in_sync` hears of every
LIVE update while the symbol is flagged, so a symbol that keeps failing becomes untradeable.

Events emitted for buffered updates carry the receive time of the message that released them (the
snapshot), so receive times never go backwards downstream; their venue time stays their own.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from daemon.errors import IllegalTransition
from daemon.events import BookDelta, BookReset, BookSnapshot, MarketEvent
from daemon.venues.base import SnapshotRequest
from daemon.venues.binance_decode import Depth
from daemon.venues.health import ResyncPolicy, SymbolHealth

DEFAULT_BUFFER_LIMIT = 10_000


class SyncState(enum.StrEnum):
    WAITING = "WAITING"  # no book: buffering depth events until a snapshot arrives
    BRIDGING = "BRIDGING"  # a snapshot's book: the next newer event must straddle it
    LIVE = "LIVE"  # every event continues the last


class SyncEvent(enum.StrEnum):
    DEPTH_BUFFERED = "depth_buffered"
    DEPTH_OLD = "depth_old"  # already in the snapshot
    DEPTH_APPLIED = "depth_applied"
    DEPTH_DUPLICATE = "depth_duplicate"  # already applied (or buffered)
    DEPTH_GAP = "depth_gap"
    SNAPSHOT_BRIDGED = "snapshot_bridged"  # buffered events continue it
    SNAPSHOT_AHEAD = "snapshot_ahead"  # newer than every buffered event
    SNAPSHOT_STALE = "snapshot_stale"  # a hole between it and the stream
    SNAPSHOT_IGNORED = "snapshot_ignored"  # not awaited
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    RESYNC = "resync"


S, E = SyncState, SyncEvent
_RESTART = {E.CONNECTED: S.WAITING, E.DISCONNECTED: S.WAITING, E.RESYNC: S.WAITING}
TRANSITIONS: dict[SyncState, dict[SyncEvent, SyncState]] = {
    S.WAITING: {E.DEPTH_BUFFERED: S.WAITING, E.DEPTH_DUPLICATE: S.WAITING, E.DEPTH_GAP: S.WAITING,
                E.SNAPSHOT_BRIDGED: S.LIVE, E.SNAPSHOT_AHEAD: S.BRIDGING, E.SNAPSHOT_STALE: S.WAITING, **_RESTART},
    S.BRIDGING: {E.DEPTH_OLD: S.BRIDGING, E.DEPTH_APPLIED: S.LIVE, E.SNAPSHOT_STALE: S.WAITING,
                 E.SNAPSHOT_IGNORED: S.BRIDGING, **_RESTART},
    S.LIVE: {E.DEPTH_APPLIED: S.LIVE, E.DEPTH_DUPLICATE: S.LIVE, E.DEPTH_GAP: S.WAITING,
             E.SNAPSHOT_IGNORED: S.LIVE, **_RESTART},
}
del S, E, _RESTART

_WAITING, _BRIDGING, _LIVE = SyncState.WAITING, SyncState.BRIDGING, SyncState.LIVE
_APPLIED = SyncEvent.DEPTH_APPLIED
_LIVE_APPLIED = TRANSITIONS[_LIVE][_APPLIED]  # the hot path's one transition, looked up once


@dataclass
class SyncStats:
    """What the procedure did with one symbol's messages (beside the health counters)."""

    buffered: int = 0  # depth events put in the buffer
    dropped: int = 0  # events already contained in the snapshot
    duplicates: int = 0  # events already applied or buffered
    overflow: int = 0  # buffered events dropped because the buffer was full
    applied: int = 0  # deltas emitted
    snapshots: int = 0  # snapshots emitted
    ignored_snapshots: int = 0  # snapshots that came when none was awaited


class DepthSync:
    """One symbol's sync procedure; `linked_by_pu` selects the USD-M rules (`pu` links events)."""

    __slots__ = ("buffer", "health", "last_u", "linked_by_pu", "policy", "request", "state", "stats", "symbol")

    def __init__(self, symbol: str, linked_by_pu: bool, health: SymbolHealth, policy: ResyncPolicy,
                 request: Callable[[SnapshotRequest], None], buffer_limit: int = DEFAULT_BUFFER_LIMIT) -> None:
        if buffer_limit < 1:
            raise ValueError(f"buffer_limit must be >= 1, got {buffer_limit}")
        self.symbol = symbol
        self.linked_by_pu = linked_by_pu
        self.health = health
        self.policy = policy
        self.request = request
        self.state = _WAITING
        self.last_u = 0  # the book's update id (BRIDGING: the snapshot's; LIVE: the last applied u)
        self.buffer: deque[Depth] = deque(maxlen=buffer_limit)
        self.stats = SyncStats()

    # --- depth events ------------------------------------------------------------------------------

    def on_depth(self, delta: BookDelta, first: int, prev: int, ts: int) -> list[MarketEvent]:
        """A decoded depthUpdate (its delta with seq=u, U and pu, -1 on spot): the deltas it releases,
        or a BookReset when it breaks the stream. The LIVE case is the hot path, written out."""
        if self.state is _LIVE:
            last = self.last_u
            if (prev == last) if self.linked_by_pu else (first == last + 1):
                self.last_u = delta.seq
                self.state = _LIVE_APPLIED
                self.stats.applied += 1
                h = self.health
                if not h.in_sync or h.untradeable:
                    self.policy.on_in_sync(h, ts)
                return [delta]
            if delta.seq <= last:
                self.stats.duplicates += 1
                self._step(SyncEvent.DEPTH_DUPLICATE)
                return []
            return self._gap(Depth(delta, first, prev), ts)
        if self.state is _BRIDGING:
            return self._bridge(Depth(delta, first, prev), ts)
        return self._buffer(Depth(delta, first, prev))

    def _buffer(self, ev: Depth) -> list[MarketEvent]:
        """WAITING: keep one unbroken run of events; a gap inside it drops what came before."""
        buf = self.buffer
        if buf:
            last = buf[-1].delta.seq
            if not self._continues(ev, last):
                if ev.delta.seq <= last:
                    self.stats.duplicates += 1
                    self._step(SyncEvent.DEPTH_DUPLICATE)
                    return []
                self.health.gaps += 1
                buf.clear()
                self._step(SyncEvent.DEPTH_GAP)
        if len(buf) == buf.maxlen:
            self.stats.overflow += 1
        buf.append(ev)
        self.stats.buffered += 1
        self._step(SyncEvent.DEPTH_BUFFERED)
        return []

    def _bridge(self, ev: Depth, ts: int) -> list[MarketEvent]:
        """BRIDGING: drop what the snapshot holds; the first newer event must straddle it."""
        snap_u = self.last_u
        if self._contained(ev, snap_u):
            self.stats.dropped += 1
            self._step(SyncEvent.DEPTH_OLD)
            return []
        if self._straddles(ev, snap_u):
            self.last_u = ev.delta.seq
            self._step(_APPLIED)
            self.stats.applied += 1
            self.policy.on_in_sync(self.health, ts)
            return [ev.delta]
        reset = BookReset(self.symbol, ev.delta.ts_venue, ts, "stale_snapshot")
        self._stale(ts)
        self.buffer.append(ev)
        self.stats.buffered += 1
        return [reset]

    def _gap(self, ev: Depth, ts: int) -> list[MarketEvent]:
        """LIVE: the stream broke; the book is lost until a new snapshot, which the event will continue."""
        self.health.gaps += 1
        self.policy.on_resync(self.health, ts, "gap")
        self.request(SnapshotRequest(self.symbol, "gap"))
        self.buffer.clear()
        self.buffer.append(ev)
        self.stats.buffered += 1
        self._step(SyncEvent.DEPTH_GAP)
        return [BookReset(self.symbol, ev.delta.ts_venue, ts, "gap")]

    # --- snapshots ---------------------------------------------------------------------------------

    def on_snapshot(self, snap: BookSnapshot, ts: int) -> list[MarketEvent]:
        """A REST snapshot: the book and the buffered events that continue it, or nothing when it is
        stale (another is requested) or not awaited (ignored, counted)."""
        if self.state is not _WAITING:
            self.stats.ignored_snapshots += 1
            self._step(SyncEvent.SNAPSHOT_IGNORED)
            return []
        snap_u = snap.seq
        buf = self.buffer
        while buf and self._contained(buf[0], snap_u):
            buf.popleft()
            self.stats.dropped += 1
        if not buf:
            self.last_u = snap_u
            self.stats.snapshots += 1
            self._step(SyncEvent.SNAPSHOT_AHEAD)
            return [snap]
        if not self._straddles(buf[0], snap_u):
            self._stale(ts)
            return []
        out: list[MarketEvent] = [snap]
        for ev in buf:
            out.append(ev.delta._replace(ts_recv=ts))
        self.last_u = buf[-1].delta.seq
        self.stats.snapshots += 1
        self.stats.applied += len(buf)
        buf.clear()
        self._step(SyncEvent.SNAPSHOT_BRIDGED)
        self.policy.on_in_sync(self.health, ts)
        return out

    def _stale(self, ts: int) -> None:
        """The snapshot is older than the stream: count it and ask for another; keep buffering."""
        self.health.stale_snapshots += 1
        self.policy.on_resync(self.health, ts, "stale_snapshot")
        self.request(SnapshotRequest(self.symbol, "stale_snapshot"))
        self._step(SyncEvent.SNAPSHOT_STALE)

    # --- connection and downstream -----------------------------------------------------------------

    def on_connected(self, ts: int) -> list[MarketEvent]:
        """A new connection: request a snapshot and buffer; a book from before it is lost."""
        out = self._restart(SyncEvent.CONNECTED, "reconnect", ts)
        self.request(SnapshotRequest(self.symbol, "connected"))
        return out

    def on_disconnected(self, ts: int) -> list[MarketEvent]:
        """The connection is gone, and the book with it; wait for the next connection's snapshot."""
        return self._restart(SyncEvent.DISCONNECTED, "disconnect", ts)

    def on_resync(self, reason: str, ts: int) -> list[MarketEvent]:
        """Downstream lost the book (crossed, quote mismatch): start over from a new snapshot."""
        self.buffer.clear()
        self.policy.on_resync(self.health, ts, reason)
        self.request(SnapshotRequest(self.symbol, reason))
        self._step(SyncEvent.RESYNC)
        return []

    def _restart(self, event: SyncEvent, reason: str, ts: int) -> list[MarketEvent]:
        """Back to WAITING with an empty buffer; a BookReset (and a counted resync) if there was a book."""
        had_book = self.state is not _WAITING
        self.buffer.clear()
        if had_book:
            self.policy.on_resync(self.health, ts, reason)
        self.health.in_sync = False
        self._step(event)
        return [BookReset(self.symbol, ts, ts, reason)] if had_book else []

    # --- rules -------------------------------------------------------------------------------------

    def _continues(self, ev: Depth, last_u: int) -> bool:
        """The event follows the one with update id last_u (spot U == u'+1, USD-M pu == u')."""
        return ev.prev == last_u if self.linked_by_pu else ev.first == last_u + 1

    def _contained(self, ev: Depth, snap_u: int) -> bool:
        """The snapshot with lastUpdateId snap_u already holds the event (spot u <= L, USD-M u < L)."""
        u = ev.delta.seq
        return u < snap_u if self.linked_by_pu else u <= snap_u

    def _straddles(self, ev: Depth, snap_u: int) -> bool:
        """The event is the first to apply on the snapshot (spot U <= L+1 <= u; USD-M U <= L <= u,
        or pu == L)."""
        u = ev.delta.seq
        if self.linked_by_pu:
            return ev.first <= snap_u <= u or ev.prev == snap_u
        return ev.first <= snap_u + 1 <= u

    def _step(self, event: SyncEvent) -> None:
        new = TRANSITIONS[self.state].get(event)
        if new is None:
            raise IllegalTransition(f"BinanceSync[{self.symbol}]", self.state, event)
        self.state = new

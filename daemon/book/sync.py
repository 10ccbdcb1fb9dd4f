"""BookSync: the per-symbol state machine that decides whether a book may be trusted.

Rules for the generic venue (a venue adapter with sequence numbers or checksums adds its own):
- there is no book until a snapshot arrives (`INIT`);
- a delta before any snapshot, or a snapshot or delta that leaves the book crossed or locked,
  makes the book `INVALID`; deltas are then dropped until the next snapshot;
- only a `LIVE` book may be traded on.
The transitions are the table `TRANSITIONS`; an event the table does not allow in a state raises
IllegalTransition naming both.
"""

from __future__ import annotations

import enum

from daemon.book.book import Book
from daemon.errors import IllegalTransition
from daemon.events import BookDelta, BookSnapshot


class BookState(enum.StrEnum):
    INIT = "INIT"
    LIVE = "LIVE"
    INVALID = "INVALID"


class SyncEvent(enum.StrEnum):
    SNAPSHOT = "snapshot"
    SNAPSHOT_CROSSED = "snapshot_crossed"
    DELTA = "delta"
    DELTA_CROSSED = "delta_crossed"
    DELTA_WITHOUT_BOOK = "delta_without_book"


S, E = BookState, SyncEvent
TRANSITIONS: dict[BookState, dict[SyncEvent, BookState]] = {
    S.INIT: {E.SNAPSHOT: S.LIVE, E.SNAPSHOT_CROSSED: S.INVALID, E.DELTA_WITHOUT_BOOK: S.INVALID},
    S.LIVE: {E.SNAPSHOT: S.LIVE, E.SNAPSHOT_CROSSED: S.INVALID, E.DELTA: S.LIVE,
             E.DELTA_CROSSED: S.INVALID},
    S.INVALID: {E.SNAPSHOT: S.LIVE, E.SNAPSHOT_CROSSED: S.INVALID, E.DELTA_WITHOUT_BOOK: S.INVALID},
}
del S, E

# Enum member lookups cost ~80 ns each on Python 3.11; the per-message path uses these aliases.
_LIVE, _INVALID = BookState.LIVE, BookState.INVALID
_SNAPSHOT, _SNAPSHOT_CROSSED = SyncEvent.SNAPSHOT, SyncEvent.SNAPSHOT_CROSSED
_DELTA, _DELTA_CROSSED, _DELTA_WITHOUT_BOOK = SyncEvent.DELTA, SyncEvent.DELTA_CROSSED, SyncEvent.DELTA_WITHOUT_BOOK


class BookSync:
    """Feeds snapshots and deltas of one symbol into its Book and tracks whether it is in sync."""

    def __init__(self, book: Book) -> None:
        self.book = book
        self.state = BookState.INIT
        self.state_counts: dict[BookState, int] = dict.fromkeys(BookState, 0)
        self.event_counts: dict[SyncEvent, int] = dict.fromkeys(SyncEvent, 0)
        self.crossed = 0
        self.transitions = 0
        self.last_update_ts = 0

    @property
    def live(self) -> bool:
        """Only a LIVE book may be traded on."""
        return self.state is _LIVE

    def on_snapshot(self, snap: BookSnapshot) -> BookState:
        """Replace the book; LIVE unless the snapshot itself is crossed."""
        self.book.apply_snapshot(snap.bid_px, snap.bid_qty, snap.ask_px, snap.ask_qty)
        if self.book.is_crossed():
            return self._step(_SNAPSHOT_CROSSED)
        self.last_update_ts = snap.ts_recv
        return self._step(_SNAPSHOT)

    def on_delta(self, delta: BookDelta) -> BookState:
        """Apply the delta to a LIVE book; without a trusted book the delta is dropped."""
        if self.state is not _LIVE:
            return self._step(_DELTA_WITHOUT_BOOK)
        self.book.apply_delta(delta.bid_px, delta.bid_qty, delta.ask_px, delta.ask_qty)
        if self.book.is_crossed():
            return self._step(_DELTA_CROSSED)
        self.last_update_ts = delta.ts_recv
        return self._step(_DELTA)

    def _step(self, event: SyncEvent) -> BookState:
        new = TRANSITIONS[self.state].get(event)
        if new is None:
            raise IllegalTransition(f"BookSync[{self.book.symbol}]", self.state, event)
        if event is _SNAPSHOT_CROSSED or event is _DELTA_CROSSED:
            self.crossed += 1
        if new is _INVALID:
            self.book.clear()
        if new is not self.state:
            self.transitions += 1
        self.state = new
        self.state_counts[new] += 1
        self.event_counts[event] += 1
        return new

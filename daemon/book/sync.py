"""BookSync: the per-symbol state machine that decides whether a book may be trusted.

Rules every venue shares (a venue's own sequence rules live in its adapter, which says when they
are broken with a BookReset event):
- there is no book until a snapshot arrives (`INIT`);
- a delta before any snapshot, or a snapshot or delta that leaves the book crossed or locked,
  makes the book `INVALID`; deltas are then dropped until the next snapshot;
- a venue checksum (`BookDelta.checksum`, checked by the adapter's `verify`) that does not match
  the book, or a venue best bid/ask (`Quote`) at the book's own update id that differs from the
  book, makes it `INVALID` too;
- a `BookReset` (the adapter saw a gap, a disconnect, a stale snapshot) makes it `INVALID`;
- only a `LIVE` book may be traded on.
When the book is lost for a reason the adapter cannot know (crossed, checksum, quote mismatch),
`on_lost(symbol, reason, ts)` is called so the source can resynchronise the symbol.
The transitions are the table `TRANSITIONS`; an event the table does not allow in a state raises
IllegalTransition naming both.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from daemon.book.book import Book
from daemon.errors import IllegalTransition
from daemon.events import BookDelta, BookReset, BookSnapshot, Quote

if TYPE_CHECKING:
    from daemon.venues.health import SymbolHealth


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
    CHECKSUM_MISMATCH = "checksum_mismatch"
    QUOTE_MISMATCH = "quote_mismatch"
    RESET = "reset"


S, E = BookState, SyncEvent
TRANSITIONS: dict[BookState, dict[SyncEvent, BookState]] = {
    S.INIT: {E.SNAPSHOT: S.LIVE, E.SNAPSHOT_CROSSED: S.INVALID, E.DELTA_WITHOUT_BOOK: S.INVALID,
             E.CHECKSUM_MISMATCH: S.INVALID, E.RESET: S.INIT},
    S.LIVE: {E.SNAPSHOT: S.LIVE, E.SNAPSHOT_CROSSED: S.INVALID, E.DELTA: S.LIVE,
             E.DELTA_CROSSED: S.INVALID, E.CHECKSUM_MISMATCH: S.INVALID, E.QUOTE_MISMATCH: S.INVALID,
             E.RESET: S.INVALID},
    S.INVALID: {E.SNAPSHOT: S.LIVE, E.SNAPSHOT_CROSSED: S.INVALID, E.DELTA_WITHOUT_BOOK: S.INVALID,
                E.CHECKSUM_MISMATCH: S.INVALID, E.RESET: S.INVALID},
}
del S, E

# Enum member lookups cost ~80 ns each on Python 3.11; the per-message path uses these aliases.
_LIVE, _INVALID = BookState.LIVE, BookState.INVALID
_SNAPSHOT, _SNAPSHOT_CROSSED = SyncEvent.SNAPSHOT, SyncEvent.SNAPSHOT_CROSSED
_DELTA, _DELTA_CROSSED, _DELTA_WITHOUT_BOOK = SyncEvent.DELTA, SyncEvent.DELTA_CROSSED, SyncEvent.DELTA_WITHOUT_BOOK
_CHECKSUM_MISMATCH, _QUOTE_MISMATCH, _RESET = SyncEvent.CHECKSUM_MISMATCH, SyncEvent.QUOTE_MISMATCH, SyncEvent.RESET
_LOST_REASON = {_SNAPSHOT_CROSSED: "crossed", _DELTA_CROSSED: "crossed", _CHECKSUM_MISMATCH: "checksum",
                _QUOTE_MISMATCH: "quote_mismatch"}

Verifier = Callable[[Book, int], bool]
LostHook = Callable[[str, str, int], None]


class BookSync:
    """Feeds snapshots and deltas of one symbol into its Book and tracks whether it is in sync.

    `verify(book, checksum)` is the venue's checksum rule (set by whoever wires the adapter);
    `max_depth` truncates the book after every update for venues whose book is that deep;
    `on_lost(symbol, reason, ts)` hears of a book lost for a content reason.
    """

    def __init__(self, book: Book) -> None:
        self.book = book
        self.state = BookState.INIT
        self.state_counts: dict[BookState, int] = dict.fromkeys(BookState, 0)
        self.event_counts: dict[SyncEvent, int] = dict.fromkeys(SyncEvent, 0)
        self.crossed = 0
        self.transitions = 0
        self.last_update_ts = 0
        self.last_seq = 0
        self.verify: Verifier | None = None
        self.max_depth = 0
        self.on_lost: LostHook | None = None
        self.health: SymbolHealth | None = None  # the feed's record of this symbol (untradeable?)
        self.checksum_checks = 0
        self.checksum_failures = 0
        self.quote_checks = 0
        self.quote_mismatches = 0
        self.resets: Counter[str] = Counter()

    @property
    def live(self) -> bool:
        """Only a LIVE book may be traded on."""
        return self.state is _LIVE

    @property
    def tradeable(self) -> bool:
        """LIVE, its best bid and ask within the snapshot's trusted depth, and the feed has not given
        up on the symbol (too many resyncs in a window)."""
        return (self.state is _LIVE and (self.health is None or not self.health.untradeable)
                and self.book.top_trusted())

    def on_snapshot(self, snap: BookSnapshot) -> BookState:
        """Replace the book; LIVE unless the snapshot itself is crossed or fails its checksum."""
        self.book.apply_snapshot(snap.bid_px, snap.bid_qty, snap.ask_px, snap.ask_qty, snap.complete)
        if self.max_depth:
            self.book.truncate(self.max_depth)
        if self.book.is_crossed():
            return self._lost(_SNAPSHOT_CROSSED, snap.ts_recv)
        if snap.checksum is not None and self.verify is not None and not self._checksum_ok(snap.checksum):
            return self._lost(_CHECKSUM_MISMATCH, snap.ts_recv)
        self.last_update_ts = snap.ts_recv
        self.last_seq = snap.seq
        return self._step(_SNAPSHOT)

    def on_delta(self, delta: BookDelta) -> BookState:
        """Apply the delta to a LIVE book; without a trusted book the delta is dropped."""
        if self.state is not _LIVE:
            return self._step(_DELTA_WITHOUT_BOOK)
        book = self.book
        book.apply_delta(delta.bid_px, delta.bid_qty, delta.ask_px, delta.ask_qty)
        if self.max_depth and (book.n_bid > self.max_depth or book.n_ask > self.max_depth):
            book.truncate(self.max_depth)
        if book.is_crossed():
            return self._lost(_DELTA_CROSSED, delta.ts_recv)
        if delta.checksum is not None and self.verify is not None and not self._checksum_ok(delta.checksum):
            return self._lost(_CHECKSUM_MISMATCH, delta.ts_recv)
        self.last_update_ts = delta.ts_recv
        self.last_seq = delta.seq
        return self._step(_DELTA)

    def on_quote(self, quote: Quote) -> BookState:
        """Compare the venue's best bid/ask with a LIVE book at the same update id; else ignore it."""
        if self.state is not _LIVE or quote.seq != self.last_seq or quote.seq == 0:
            return self.state
        self.quote_checks += 1
        if self.book.best_bid() == (quote.bid_px, quote.bid_qty) and self.book.best_ask() == (quote.ask_px,
                                                                                            quote.ask_qty):
            return self.state
        self.quote_mismatches += 1
        return self._lost(_QUOTE_MISMATCH, quote.ts_recv)

    def on_reset(self, reset: BookReset) -> BookState:
        """The adapter lost the book (gap, disconnect, stale snapshot): unknown until a snapshot."""
        self.resets[reset.reason] += 1
        return self._step(_RESET)

    def _checksum_ok(self, checksum: int) -> bool:
        assert self.verify is not None
        self.checksum_checks += 1
        if self.verify(self.book, checksum):
            return True
        self.checksum_failures += 1
        return False

    def _lost(self, event: SyncEvent, ts: int) -> BookState:
        """Step on a content failure and tell the source, which resynchronises the symbol."""
        state = self._step(event)
        if self.on_lost is not None:
            self.on_lost(self.book.symbol, _LOST_REASON[event], ts)
        return state

    def _step(self, event: SyncEvent) -> BookState:
        new = TRANSITIONS[self.state].get(event)
        if new is None:
            raise IllegalTransition(f"BookSync[{self.book.symbol}]", self.state, event)
        if event is _SNAPSHOT_CROSSED or event is _DELTA_CROSSED:
            self.crossed += 1
        if new is _INVALID or event is _RESET:
            self.book.clear()
        if new is not self.state:
            self.transitions += 1
        self.state = new
        self.state_counts[new] += 1
        self.event_counts[event] += 1
        return new

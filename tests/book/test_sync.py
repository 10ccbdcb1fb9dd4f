"""BookSync: the state machine that decides whether a book may be traded on."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from daemon.book import NO_PRICE, Book, BookState, BookSync
from daemon.book.sync import TRANSITIONS, SyncEvent
from daemon.errors import IllegalTransition
from daemon.events import BookDelta, BookSnapshot

Levels = Sequence[tuple[int, int]]


def _cols(levels: Levels) -> tuple[np.ndarray, np.ndarray]:
    return (np.asarray([p for p, _ in levels], dtype=np.int64),
            np.asarray([q for _, q in levels], dtype=np.int64))


def snap(bids: Levels, asks: Levels, ts: int = 1) -> BookSnapshot:
    return BookSnapshot("TEST", ts, ts, *_cols(bids), *_cols(asks))


def delta(bids: Levels = (), asks: Levels = (), ts: int = 2) -> BookDelta:
    return BookDelta("TEST", ts, ts, *_cols(bids), *_cols(asks))


GOOD = snap([(99, 10), (98, 20)], [(101, 10), (102, 20)])


@pytest.fixture
def sync() -> BookSync:
    return BookSync(Book("TEST"))


@pytest.fixture
def live(sync: BookSync) -> BookSync:
    sync.on_snapshot(GOOD)
    return sync


@pytest.fixture
def invalid(live: BookSync) -> BookSync:
    live.on_delta(delta(bids=[(101, 1)]))
    return live


def test_starts_in_init_without_a_book(sync: BookSync) -> None:
    assert sync.state is BookState.INIT
    assert not sync.live
    assert sync.book.n_bid == 0
    assert sync.book.n_ask == 0
    assert sync.transitions == 0


def test_snapshot_makes_book_live(sync: BookSync) -> None:
    state = sync.on_snapshot(GOOD)

    assert state is BookState.LIVE
    assert sync.live
    assert sync.book.best_bid() == (99, 10)
    assert sync.book.best_ask() == (101, 10)


def test_delta_before_snapshot_invalidates_and_is_dropped(sync: BookSync) -> None:
    state = sync.on_delta(delta(bids=[(99, 5)], asks=[(101, 5)]))

    assert state is BookState.INVALID
    assert sync.book.n_bid == 0
    assert sync.book.n_ask == 0
    assert sync.book.level_updates == 0


def test_delta_on_live_book_is_applied(live: BookSync) -> None:
    state = live.on_delta(delta(bids=[(100, 3)], asks=[(101, 0)], ts=7))

    assert state is BookState.LIVE
    assert live.book.best_bid() == (100, 3)
    assert live.book.best_ask() == (102, 20)
    assert live.last_update_ts == 7


def test_crossed_delta_invalidates_and_clears_book(live: BookSync) -> None:
    state = live.on_delta(delta(bids=[(102, 1)]))

    assert state is BookState.INVALID
    assert not live.live
    assert live.book.best_bid_px == NO_PRICE
    assert live.book.best_ask_px == NO_PRICE


def test_locked_delta_invalidates(live: BookSync) -> None:
    state = live.on_delta(delta(asks=[(99, 1)]))

    assert state is BookState.INVALID


def test_deltas_after_invalid_are_dropped(invalid: BookSync) -> None:
    updates = invalid.book.level_updates

    state = invalid.on_delta(delta(bids=[(97, 1)], asks=[(103, 1)]))

    assert state is BookState.INVALID
    assert invalid.book.n_bid == 0
    assert invalid.book.n_ask == 0
    assert invalid.book.level_updates == updates


def test_snapshot_after_invalid_makes_book_live_again(invalid: BookSync) -> None:
    state = invalid.on_snapshot(snap([(50, 1)], [(60, 1)]))
    after = invalid.on_delta(delta(bids=[(51, 2)]))

    assert state is BookState.LIVE
    assert after is BookState.LIVE
    assert invalid.book.best_bid() == (51, 2)
    assert invalid.book.best_ask() == (60, 1)


def test_crossed_snapshot_is_invalid(sync: BookSync) -> None:
    state = sync.on_snapshot(snap([(102, 1)], [(101, 1)]))

    assert state is BookState.INVALID
    assert sync.book.n_bid == 0
    assert sync.book.n_ask == 0


def test_locked_snapshot_is_invalid(sync: BookSync) -> None:
    state = sync.on_snapshot(snap([(101, 1)], [(101, 1)]))

    assert state is BookState.INVALID


def test_crossed_snapshot_on_live_book_invalidates_and_clears_it(live: BookSync) -> None:
    state = live.on_snapshot(snap([(102, 1)], [(101, 1)]))

    assert state is BookState.INVALID
    assert live.book.n_bid == 0
    assert live.book.n_ask == 0


def test_crossed_snapshot_while_invalid_leaves_no_book(invalid: BookSync) -> None:
    invalid.on_snapshot(snap([(102, 1)], [(101, 1)]))

    assert invalid.book.n_bid == 0
    assert invalid.book.n_ask == 0


def test_one_sided_snapshot_is_live(sync: BookSync) -> None:
    state = sync.on_snapshot(snap([(99, 1)], []))

    assert state is BookState.LIVE


def test_counters_track_states_events_crossings_and_transitions(sync: BookSync) -> None:
    sync.on_snapshot(GOOD)  # INIT -> LIVE
    sync.on_delta(delta(bids=[(99, 11)]))  # LIVE
    sync.on_delta(delta(asks=[(98, 1)]))  # LIVE -> INVALID (crossed)
    sync.on_delta(delta(bids=[(99, 1)]))  # INVALID, dropped
    sync.on_snapshot(snap([(102, 1)], [(101, 1)]))  # INVALID (crossed)
    sync.on_snapshot(GOOD)  # INVALID -> LIVE

    assert sync.state_counts == {BookState.INIT: 0, BookState.LIVE: 3, BookState.INVALID: 3}
    assert sync.event_counts == {**dict.fromkeys(SyncEvent, 0), SyncEvent.SNAPSHOT: 2,
                                 SyncEvent.SNAPSHOT_CROSSED: 1, SyncEvent.DELTA: 1, SyncEvent.DELTA_CROSSED: 1,
                                 SyncEvent.DELTA_WITHOUT_BOOK: 1}
    assert sync.crossed == 2
    assert sync.transitions == 3


def test_last_update_ts_is_receive_time_of_last_message_that_left_the_book_in_sync(live: BookSync) -> None:
    live.on_delta(delta(bids=[(99, 1)], ts=40))
    live.on_delta(delta(asks=[(98, 1)], ts=41))  # crossed: the book is dropped, nothing to trust
    live.on_delta(delta(bids=[(99, 1)], ts=42))  # dropped

    assert live.last_update_ts == 40


ALLOWED = [(s, e) for s, table in TRANSITIONS.items() for e in table]
ILLEGAL = [(s, e) for s in BookState for e in SyncEvent if e not in TRANSITIONS[s]]


def test_table_covers_every_state() -> None:
    assert set(TRANSITIONS) == set(BookState)
    assert ILLEGAL


@pytest.mark.parametrize(("state", "event"), ALLOWED, ids=[f"{s}-{e}" for s, e in ALLOWED])
def test_allowed_step_moves_to_table_state(sync: BookSync, state: BookState, event: SyncEvent) -> None:
    sync.state = state

    new = sync._step(event)

    assert new is TRANSITIONS[state][event]
    assert sync.state is new


@pytest.mark.parametrize(("state", "event"), ILLEGAL, ids=[f"{s}-{e}" for s, e in ILLEGAL])
def test_step_not_in_table_raises_illegal_transition_naming_both(sync: BookSync, state: BookState,
                                                                 event: SyncEvent) -> None:
    sync.state = state

    with pytest.raises(IllegalTransition) as err:
        sync._step(event)

    assert err.value.state == state
    assert err.value.event == event
    assert str(state) in str(err.value)
    assert str(event) in str(err.value)
    assert sync.state is state
    assert sync.transitions == 0

"""BookSync with a venue's rules: resets, checksums, venue quotes, depth limits, the lost-book hook and
tradeability, and a property test that no sequence of events is an illegal transition."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.book import Book, BookState, BookSync
from daemon.book.sync import TRANSITIONS, SyncEvent
from daemon.events import BookDelta, BookReset, BookSnapshot, Quote
from daemon.venues.health import SymbolHealth

Levels = Sequence[tuple[int, int]]
SYM = "TEST"
INIT, LIVE, INVALID = BookState.INIT, BookState.LIVE, BookState.INVALID
BAD = 666  # the checksum the test verifier refuses


def _cols(levels: Levels) -> tuple[np.ndarray, np.ndarray]:
    return (np.asarray([p for p, _ in levels], dtype=np.int64),
            np.asarray([q for _, q in levels], dtype=np.int64))


def snap(bids: Levels = ((99, 10), (98, 20)), asks: Levels = ((101, 10), (102, 20)), ts: int = 1, seq: int = 0,
         checksum: int | None = None, complete: bool = True) -> BookSnapshot:
    return BookSnapshot(SYM, ts, ts, *_cols(bids), *_cols(asks), seq, checksum, complete)


def delta(bids: Levels = (), asks: Levels = (), ts: int = 2, seq: int = 0, checksum: int | None = None) -> BookDelta:
    return BookDelta(SYM, ts, ts, *_cols(bids), *_cols(asks), seq, checksum)


def quote(bid: tuple[int, int] = (99, 10), ask: tuple[int, int] = (101, 10), seq: int = 1, ts: int = 3) -> Quote:
    return Quote(SYM, ts, ts, bid[0], bid[1], ask[0], ask[1], seq)


def reset(reason: str = "gap", ts: int = 4) -> BookReset:
    return BookReset(SYM, ts, ts, reason)


def levels(book: Book) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(bids best first, asks best first)."""
    bp, bq, ap, aq = book.top(10**6)
    return list(zip(bp.tolist(), bq.tolist(), strict=True)), list(zip(ap.tolist(), aq.tolist(), strict=True))


class Verifier:
    """A checksum rule that refuses BAD and records what it was shown."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[list, list], int]] = []

    def __call__(self, book: Book, checksum: int) -> bool:
        self.calls.append((levels(book), checksum))
        return checksum != BAD


class Rig:
    """A BookSync with a recording verifier and lost-book hook."""

    def __init__(self, verify: bool = True, max_depth: int = 0) -> None:
        self.sync = BookSync(Book(SYM))
        self.verifier = Verifier()
        if verify:
            self.sync.verify = self.verifier
        self.sync.max_depth = max_depth
        self.lost: list[tuple[str, str, int, BookState, int]] = []
        self.sync.on_lost = self._lost

    def _lost(self, symbol: str, reason: str, ts: int) -> None:
        self.lost.append((symbol, reason, ts, self.sync.state, self.sync.book.n_bid + self.sync.book.n_ask))

    @property
    def reasons(self) -> list[str]:
        return [reason for _, reason, _, _, _ in self.lost]

    def live(self, **kw: object) -> Rig:
        assert self.sync.on_snapshot(snap(**kw)) is LIVE  # type: ignore[arg-type]
        return self

    def invalid(self) -> Rig:
        self.live()
        self.sync.on_reset(reset("setup"))
        assert self.sync.state is INVALID
        self.lost.clear()
        return self


@pytest.fixture
def rig() -> Rig:
    return Rig()


# --- RESET ------------------------------------------------------------------------------------------


def test_reset_in_init_stays_init_and_counts_the_reason(rig: Rig) -> None:
    state = rig.sync.on_reset(reset("disconnect"))

    assert state is INIT
    assert rig.sync.resets == Counter({"disconnect": 1})
    assert rig.sync.event_counts[SyncEvent.RESET] == 1
    assert rig.sync.transitions == 0
    assert rig.lost == [], "the adapter that sent the reset already knows"


def test_reset_of_a_live_book_invalidates_and_clears_it(rig: Rig) -> None:
    rig.live()

    state = rig.sync.on_reset(reset("gap"))

    assert state is INVALID and not rig.sync.live and not rig.sync.tradeable
    assert (rig.sync.book.n_bid, rig.sync.book.n_ask) == (0, 0)
    assert rig.sync.resets["gap"] == 1
    assert rig.lost == []


def test_reset_of_an_invalid_book_stays_invalid(rig: Rig) -> None:
    rig.invalid()

    assert rig.sync.on_reset(reset("stale_snapshot")) is INVALID
    assert rig.sync.resets == Counter({"setup": 1, "stale_snapshot": 1})
    assert rig.lost == []


def test_resets_are_counted_by_reason_and_a_snapshot_repairs_the_book(rig: Rig) -> None:
    for reason in ("gap", "disconnect", "gap"):
        rig.live()
        rig.sync.on_reset(reset(reason))

    assert rig.sync.resets == Counter({"gap": 2, "disconnect": 1})
    assert rig.sync.on_snapshot(snap()) is LIVE


def test_deltas_after_a_reset_are_dropped_without_telling_the_source(rig: Rig) -> None:
    rig.live()
    rig.sync.on_reset(reset())

    assert rig.sync.on_delta(delta(bids=[(99, 5)])) is INVALID
    assert rig.sync.book.n_bid == 0
    assert rig.lost == []


def test_a_delta_before_any_snapshot_does_not_call_on_lost(rig: Rig) -> None:
    assert rig.sync.on_delta(delta(bids=[(99, 5)])) is INVALID
    assert rig.lost == []


# --- checksums --------------------------------------------------------------------------------------


def test_verify_sees_the_book_after_the_snapshot_and_its_checksum(rig: Rig) -> None:
    rig.sync.on_snapshot(snap(checksum=12345))

    assert rig.verifier.calls == [(([(99, 10), (98, 20)], [(101, 10), (102, 20)]), 12345)]
    assert (rig.sync.checksum_checks, rig.sync.checksum_failures) == (1, 0)


def test_verify_sees_the_book_after_the_delta_and_its_checksum(rig: Rig) -> None:
    rig.live()

    rig.sync.on_delta(delta(bids=[(99, 0), (97, 5)], asks=[(100, 1)], checksum=-7))

    assert rig.verifier.calls == [(([(98, 20), (97, 5)], [(100, 1), (101, 10), (102, 20)]), -7)]
    assert rig.sync.state is LIVE


def test_verify_sees_the_book_after_truncation_to_max_depth() -> None:
    rig = Rig(max_depth=1)
    rig.sync.on_snapshot(snap(checksum=1))
    rig.sync.on_delta(delta(bids=[(100, 3)], checksum=2))

    assert [book for book, _ in rig.verifier.calls] == [([(99, 10)], [(101, 10)]), ([(100, 3)], [(101, 10)])]


def test_no_checksum_in_the_message_means_no_verify(rig: Rig) -> None:
    rig.live()
    rig.sync.on_delta(delta(bids=[(99, 1)]))

    assert rig.verifier.calls == []
    assert rig.sync.checksum_checks == 0


def test_a_checksum_without_a_verifier_is_not_checked() -> None:
    rig = Rig(verify=False)
    rig.sync.on_snapshot(snap(checksum=BAD))
    rig.sync.on_delta(delta(bids=[(99, 1)], checksum=BAD))

    assert rig.sync.state is LIVE
    assert (rig.sync.checksum_checks, rig.sync.checksum_failures) == (0, 0)


def test_a_zero_checksum_is_still_a_checksum(rig: Rig) -> None:
    rig.sync.on_snapshot(snap(checksum=0))

    assert rig.verifier.calls[0][1] == 0
    assert rig.sync.checksum_checks == 1


def test_a_snapshot_failing_its_checksum_is_invalid_and_reported_lost(rig: Rig) -> None:
    state = rig.sync.on_snapshot(snap(ts=50, checksum=BAD))

    assert state is INVALID
    assert (rig.sync.checksum_checks, rig.sync.checksum_failures) == (1, 1)
    assert rig.lost == [(SYM, "checksum", 50, INVALID, 0)], "the hook hears after the book is thrown away"
    assert rig.sync.event_counts[SyncEvent.CHECKSUM_MISMATCH] == 1


def test_a_delta_failing_its_checksum_invalidates_a_live_book(rig: Rig) -> None:
    rig.live(seq=10)

    state = rig.sync.on_delta(delta(bids=[(99, 1)], ts=60, seq=11, checksum=BAD))

    assert state is INVALID and rig.sync.book.n_bid == 0
    assert rig.lost == [(SYM, "checksum", 60, INVALID, 0)]
    assert rig.sync.last_seq == 10, "a failed update is not the book's update id"
    assert rig.sync.last_update_ts == 1


def test_a_snapshot_failing_its_checksum_on_an_invalid_book_stays_invalid(rig: Rig) -> None:
    rig.invalid()

    assert rig.sync.on_snapshot(snap(checksum=BAD)) is INVALID
    assert rig.reasons == ["checksum"]


def test_a_live_book_failing_a_snapshot_checksum_is_invalid(rig: Rig) -> None:
    rig.live()

    assert rig.sync.on_snapshot(snap(checksum=BAD)) is INVALID
    assert rig.reasons == ["checksum"]


def test_a_crossed_book_is_reported_as_crossed_without_checking_its_checksum(rig: Rig) -> None:
    rig.live()

    state = rig.sync.on_delta(delta(bids=[(101, 1)], ts=70, checksum=BAD))

    assert state is INVALID
    assert rig.lost == [(SYM, "crossed", 70, INVALID, 0)]
    assert rig.sync.checksum_checks == 0 and rig.sync.crossed == 1


def test_a_crossed_snapshot_is_reported_as_crossed(rig: Rig) -> None:
    state = rig.sync.on_snapshot(snap(bids=[(101, 1)], asks=[(101, 1)], ts=80, checksum=1))

    assert state is INVALID
    assert rig.lost == [(SYM, "crossed", 80, INVALID, 0)]
    assert rig.verifier.calls == []


def test_a_delta_dropped_without_a_book_is_not_verified(rig: Rig) -> None:
    rig.sync.on_delta(delta(bids=[(99, 1)], checksum=BAD))

    assert rig.verifier.calls == [] and rig.lost == []


def test_checksum_counters_add_up_over_a_session(rig: Rig) -> None:
    rig.sync.on_snapshot(snap(checksum=1))
    for i in range(3):
        rig.sync.on_delta(delta(bids=[(99, i + 1)], checksum=1))
    rig.sync.on_delta(delta(bids=[(99, 9)], checksum=BAD))
    rig.sync.on_snapshot(snap(checksum=1))

    assert (rig.sync.checksum_checks, rig.sync.checksum_failures) == (6, 1)
    assert rig.sync.state is LIVE


# --- venue quotes -----------------------------------------------------------------------------------


def test_a_quote_at_the_books_update_id_that_agrees_changes_nothing(rig: Rig) -> None:
    rig.live(seq=5)

    assert rig.sync.on_quote(quote(seq=5)) is LIVE
    assert (rig.sync.quote_checks, rig.sync.quote_mismatches) == (1, 0)
    assert rig.lost == []


@pytest.mark.parametrize("bid, ask", [((99, 11), (101, 10)), ((98, 10), (101, 10)), ((99, 10), (101, 9)),
                                      ((99, 10), (102, 10))])
def test_a_quote_at_the_books_update_id_that_disagrees_loses_the_book(rig: Rig, bid: tuple[int, int],
                                                                       ask: tuple[int, int]) -> None:
    rig.live(seq=5)

    state = rig.sync.on_quote(quote(bid, ask, seq=5, ts=90))

    assert state is INVALID and rig.sync.book.n_bid == 0
    assert (rig.sync.quote_checks, rig.sync.quote_mismatches) == (1, 1)
    assert rig.lost == [(SYM, "quote_mismatch", 90, INVALID, 0)]
    assert rig.sync.event_counts[SyncEvent.QUOTE_MISMATCH] == 1


def test_a_quote_at_another_update_id_is_ignored(rig: Rig) -> None:
    rig.live(seq=5)

    assert rig.sync.on_quote(quote((1, 1), (2, 2), seq=4)) is LIVE
    assert rig.sync.on_quote(quote((1, 1), (2, 2), seq=6)) is LIVE
    assert rig.sync.quote_checks == 0


def test_a_quote_with_update_id_zero_is_never_compared(rig: Rig) -> None:
    rig.live(seq=0)

    assert rig.sync.on_quote(quote((1, 1), (2, 2), seq=0)) is LIVE
    assert rig.sync.quote_checks == 0


def test_quotes_are_ignored_without_a_live_book(rig: Rig) -> None:
    assert rig.sync.on_quote(quote(seq=0)) is INIT
    assert rig.sync.on_quote(quote((1, 1), (2, 2), seq=0)) is INIT
    rig.invalid()
    rig.sync.last_seq = 7
    assert rig.sync.on_quote(quote((1, 1), (2, 2), seq=7)) is INVALID
    assert rig.sync.quote_checks == 0 and rig.lost == []


def test_the_update_id_follows_the_deltas(rig: Rig) -> None:
    rig.live(seq=5)
    rig.sync.on_delta(delta(bids=[(99, 3)], seq=6))

    assert rig.sync.on_quote(quote((99, 10), (101, 10), seq=5)) is LIVE, "an old quote is not compared"
    assert rig.sync.on_quote(quote((99, 3), (101, 10), seq=6)) is LIVE
    assert rig.sync.quote_checks == 1
    assert rig.sync.on_quote(quote((99, 10), (101, 10), seq=6)) is INVALID


def test_a_quote_for_a_side_the_book_lacks_is_a_mismatch(rig: Rig) -> None:
    rig.live(asks=(), seq=3)

    assert rig.sync.on_quote(quote(seq=3)) is INVALID
    assert rig.reasons == ["quote_mismatch"]


# --- max_depth --------------------------------------------------------------------------------------


def test_max_depth_truncates_a_snapshot_and_every_delta() -> None:
    rig = Rig(max_depth=2)
    rig.sync.on_snapshot(snap(bids=[(99, 1), (98, 1), (97, 1)], asks=[(101, 1), (102, 1), (103, 1)]))
    first = levels(rig.sync.book)
    rig.sync.on_delta(delta(bids=[(100, 2)], asks=[(105, 1)]))

    assert first == ([(99, 1), (98, 1)], [(101, 1), (102, 1)])
    assert levels(rig.sync.book) == ([(100, 2), (99, 1)], [(101, 1), (102, 1)])


def test_a_level_reentering_the_window_after_a_delete_is_kept() -> None:
    rig = Rig(max_depth=2)
    rig.sync.on_snapshot(snap(bids=[(99, 1), (98, 1)], asks=[(101, 1), (102, 1)]))

    rig.sync.on_delta(delta(bids=[(99, 0), (97, 4)]))

    assert levels(rig.sync.book)[0] == [(98, 1), (97, 4)]


def test_max_depth_zero_keeps_every_level() -> None:
    rig = Rig(max_depth=0)
    rig.sync.on_snapshot(snap(bids=[(99 - i, 1) for i in range(50)], asks=[(101 + i, 1) for i in range(50)]))
    rig.sync.on_delta(delta(bids=[(10, 1)]))

    assert (rig.sync.book.n_bid, rig.sync.book.n_ask) == (51, 50)


def test_an_incomplete_snapshot_sets_the_books_trusted_depth(rig: Rig) -> None:
    rig.sync.on_snapshot(snap(complete=False))
    rig.sync.on_delta(delta(bids=[(90, 1)]))

    assert rig.sync.book.trusted_levels() == (2, 2)


# --- tradeable --------------------------------------------------------------------------------------


def test_tradeable_needs_a_live_book_and_a_feed_that_has_not_given_up(rig: Rig) -> None:
    health = SymbolHealth()
    rig.sync.health = health
    before = rig.sync.tradeable
    rig.live()
    live = rig.sync.tradeable
    health.untradeable = True
    given_up = (rig.sync.live, rig.sync.tradeable)
    health.untradeable = False

    assert (before, live, given_up, rig.sync.tradeable) == (False, True, (True, False), True)


def test_tradeable_without_a_health_record_is_live(rig: Rig) -> None:
    assert not rig.sync.tradeable
    rig.live()
    assert rig.sync.tradeable
    rig.sync.on_reset(reset())
    assert not rig.sync.tradeable


def test_an_untradeable_symbol_whose_book_is_lost_stays_untradeable() -> None:
    rig = Rig()
    rig.sync.health = SymbolHealth(untradeable=True)
    rig.live()
    rig.sync.on_reset(reset())

    assert not rig.sync.tradeable
    rig.sync.health.untradeable = False
    assert not rig.sync.tradeable, "the book is still INVALID"


# --- no sequence of events is illegal ---------------------------------------------------------------

KINDS = ["snapshot", "snapshot_crossed", "snapshot_bad_checksum", "delta", "delta_crossed", "delta_bad_checksum",
         "quote_match", "quote_mismatch", "quote_other_seq", "reset"]
LOST_BY_KIND = {"snapshot_crossed": "crossed", "delta_crossed": "crossed", "snapshot_bad_checksum": "checksum",
                "delta_bad_checksum": "checksum", "quote_mismatch": "quote_mismatch"}


def model_step(state: BookState, kind: str) -> tuple[BookState, str | None]:
    """The state a plain reading of the rules predicts, and the on_lost reason (None: not called)."""
    if kind == "snapshot":
        return LIVE, None
    if kind in ("snapshot_crossed", "snapshot_bad_checksum"):
        return INVALID, LOST_BY_KIND[kind]
    if kind == "reset":
        return (INIT if state is INIT else INVALID), None
    if kind.startswith("delta"):
        if state is not LIVE:
            return INVALID, None
        return (LIVE, None) if kind == "delta" else (INVALID, LOST_BY_KIND[kind])
    if kind == "quote_mismatch" and state is LIVE:
        return INVALID, "quote_mismatch"
    return state, None


def event_for(kind: str, sync: BookSync, i: int) -> BookSnapshot | BookDelta | Quote | BookReset:
    """An event of this kind that fits the book as it is now."""
    seq = i + 1
    bid = sync.book.best_bid() or (99, 10)
    ask = sync.book.best_ask() or (101, 10)
    if kind == "snapshot":
        return snap(ts=i, seq=seq, checksum=1 if i % 2 else None, complete=bool(i % 3))
    if kind == "snapshot_crossed":
        return snap(bids=[(105, 1)], ts=i, seq=seq)
    if kind == "snapshot_bad_checksum":
        return snap(ts=i, seq=seq, checksum=BAD)
    if kind == "delta":  # move the bid size, add a deep level: never crosses
        return delta(bids=[(bid[0], i + 1), (50 - i % 40, 1)], ts=i, seq=seq, checksum=1 if i % 2 else None)
    if kind == "delta_crossed":
        return delta(bids=[(ask[0] + 1, 1)], ts=i, seq=seq)
    if kind == "delta_bad_checksum":
        return delta(asks=[(ask[0], i + 1)], ts=i, seq=seq, checksum=BAD)
    if kind == "quote_match":
        return quote(bid, ask, seq=sync.last_seq, ts=i)
    if kind == "quote_mismatch":
        return quote((bid[0], bid[1] + 1), ask, seq=sync.last_seq, ts=i)
    if kind == "quote_other_seq":
        return quote((1, 1), (2, 2), seq=sync.last_seq + 1, ts=i)
    return reset(("gap", "disconnect", "stale_snapshot")[i % 3], ts=i)


def feed(sync: BookSync, ev: BookSnapshot | BookDelta | Quote | BookReset) -> BookState:
    if type(ev) is BookSnapshot:
        return sync.on_snapshot(ev)
    if type(ev) is BookDelta:
        return sync.on_delta(ev)
    if type(ev) is Quote:
        return sync.on_quote(ev)
    assert type(ev) is BookReset
    return sync.on_reset(ev)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(kinds=st.lists(st.sampled_from(KINDS), max_size=40), max_depth=st.sampled_from([0, 1, 3]))
def test_no_sequence_of_events_is_an_illegal_transition(kinds: list[str], max_depth: int) -> None:
    rig = Rig(max_depth=max_depth)
    sync = rig.sync
    sync.health = SymbolHealth()
    expected_lost: list[str] = []
    checksum_failures = quote_checks = 0
    for i, kind in enumerate(kinds):
        ev = event_for(kind, sync, i)
        before = sync.state
        state = feed(sync, ev)  # an IllegalTransition here fails the test
        expected_state, reason = model_step(before, kind)
        if reason is not None:
            expected_lost.append(reason)
        checksum_failures += kind == "snapshot_bad_checksum" or (kind == "delta_bad_checksum" and before is LIVE)
        quote_checks += kind in ("quote_match", "quote_mismatch") and before is LIVE

        assert state is sync.state is expected_state, (kind, before)
        if state is not LIVE:
            assert (sync.book.n_bid, sync.book.n_ask) == (0, 0), "a book not LIVE holds no levels"
        else:
            assert not sync.book.is_crossed()
            if max_depth:
                assert sync.book.n_bid <= max_depth and sync.book.n_ask <= max_depth
        assert sync.tradeable == (state is LIVE)
    assert rig.reasons == expected_lost
    assert sync.checksum_failures == checksum_failures
    assert (sync.quote_checks, sync.quote_mismatches) == (quote_checks, expected_lost.count("quote_mismatch"))
    assert sync.resets.total() == kinds.count("reset")
    assert sum(sync.event_counts.values()) == sum(sync.state_counts.values())


def test_every_state_has_a_row_for_every_event_that_can_reach_it() -> None:
    """The events BookSync can step in a state are exactly the table's (the property test relies on it)."""
    reachable = {INIT: {SyncEvent.SNAPSHOT, SyncEvent.SNAPSHOT_CROSSED, SyncEvent.DELTA_WITHOUT_BOOK,
                        SyncEvent.CHECKSUM_MISMATCH, SyncEvent.RESET},
                 LIVE: {SyncEvent.SNAPSHOT, SyncEvent.SNAPSHOT_CROSSED, SyncEvent.DELTA, SyncEvent.DELTA_CROSSED,
                        SyncEvent.CHECKSUM_MISMATCH, SyncEvent.QUOTE_MISMATCH, SyncEvent.RESET},
                 INVALID: {SyncEvent.SNAPSHOT, SyncEvent.SNAPSHOT_CROSSED, SyncEvent.DELTA_WITHOUT_BOOK,
                           SyncEvent.CHECKSUM_MISMATCH, SyncEvent.RESET}}

    assert {state: set(row) for state, row in TRANSITIONS.items()} == reachable

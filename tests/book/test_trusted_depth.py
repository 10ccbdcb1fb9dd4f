"""Book trusted depth (a snapshot of only the top of the book) and truncation to a venue's depth."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.book import NO_PRICE, Book, kernels

Levels = Sequence[tuple[int, int]]


def cols(levels: Levels) -> tuple[np.ndarray, np.ndarray]:
    """(prices, sizes) int64 arrays from (price, size) pairs."""
    return (np.asarray([p for p, _ in levels], dtype=np.int64),
            np.asarray([q for _, q in levels], dtype=np.int64))


def snapshot(book: Book, bids: Levels, asks: Levels, complete: bool = True) -> None:
    book.apply_snapshot(*cols(bids), *cols(asks), complete=complete)


def delta(book: Book, bids: Levels = (), asks: Levels = ()) -> None:
    book.apply_delta(*cols(bids), *cols(asks))


def sides(book: Book) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(bids best first, asks best first) as (price, size) pairs."""
    bp, bq, ap, aq = book.top(10**6)
    return list(zip(bp.tolist(), bq.tolist(), strict=True)), list(zip(ap.tolist(), aq.tolist(), strict=True))


TOP_BIDS = [(99, 1), (98, 2), (97, 3)]
TOP_ASKS = [(101, 1), (102, 2), (103, 3)]


@pytest.fixture
def partial() -> Book:
    """A book from a top-of-book snapshot: bids 97..99, asks 101..103, trusted to 97 and 103."""
    b = Book("TEST")
    snapshot(b, TOP_BIDS, TOP_ASKS, complete=False)
    return b


# --- trusted depth ----------------------------------------------------------------------------------


def test_a_fresh_book_trusts_everything_it_has() -> None:
    b = Book("TEST")

    assert b.trusted_levels() == (0, 0)
    assert (b.trust_bid_px, b.trust_ask_px) == (NO_PRICE, NO_PRICE)


def test_a_complete_snapshot_trusts_every_level_and_later_deep_levels() -> None:
    b = Book("TEST")
    snapshot(b, TOP_BIDS, TOP_ASKS)
    delta(b, bids=[(50, 1)], asks=[(150, 1)])

    assert b.trusted_levels() == (4, 4)


def test_an_incomplete_snapshot_trusts_down_to_its_worst_bid_and_up_to_its_worst_ask(partial: Book) -> None:
    assert (partial.trust_bid_px, partial.trust_ask_px) == (97, 103)
    assert partial.trusted_levels() == (3, 3)


def test_the_trust_bounds_come_from_unsorted_snapshot_levels() -> None:
    b = Book("TEST")
    snapshot(b, [(98, 1), (96, 1), (99, 1)], [(104, 1), (101, 1), (102, 1)], complete=False)

    assert (b.trust_bid_px, b.trust_ask_px) == (96, 104)
    assert b.trusted_levels() == (3, 3)


def test_levels_added_beyond_the_snapshot_depth_are_not_trusted(partial: Book) -> None:
    delta(partial, bids=[(96, 5), (90, 5)], asks=[(104, 5), (110, 5)])

    assert (partial.n_bid, partial.n_ask) == (5, 5)
    assert partial.trusted_levels() == (3, 3)


def test_levels_added_inside_the_snapshot_depth_are_trusted() -> None:
    b = Book("TEST")
    snapshot(b, [(99, 1), (97, 1)], [(101, 1), (103, 1)], complete=False)
    delta(b, bids=[(98, 5)], asks=[(102, 5)])

    assert b.trusted_levels() == (3, 3)


def test_a_new_best_level_on_each_side_is_trusted() -> None:
    b = Book("TEST")
    snapshot(b, [(98, 1), (97, 1)], [(103, 1), (104, 1)], complete=False)
    delta(b, bids=[(100, 5), (99, 5)], asks=[(102, 5), (101, 5)])

    assert b.trusted_levels() == (4, 4)


def test_a_level_at_the_trust_bound_itself_is_trusted(partial: Book) -> None:
    delta(partial, bids=[(97, 0)], asks=[(103, 0)])
    delta(partial, bids=[(97, 7)], asks=[(103, 7)])

    assert partial.trusted_levels() == (3, 3)


def test_deletes_inside_the_snapshot_depth_reduce_the_trusted_count(partial: Book) -> None:
    delta(partial, bids=[(96, 5)], asks=[(104, 5)])  # untrusted levels beyond the bounds
    delta(partial, bids=[(98, 0)], asks=[(101, 0), (102, 0)])

    assert (partial.n_bid, partial.n_ask) == (3, 2)
    assert partial.trusted_levels() == (2, 1)


def test_deletes_beyond_the_snapshot_depth_leave_the_trusted_count(partial: Book) -> None:
    delta(partial, bids=[(96, 5), (95, 5)], asks=[(104, 5)])
    delta(partial, bids=[(95, 0)], asks=[(104, 0)])

    assert partial.trusted_levels() == (3, 3)


def test_an_emptied_side_trusts_nothing_until_levels_come_back_inside(partial: Book) -> None:
    delta(partial, bids=[(99, 0), (98, 0), (97, 0)])

    assert partial.trusted_levels() == (0, 3)
    delta(partial, bids=[(90, 1), (98, 1)])
    assert partial.trusted_levels() == (1, 3)


def test_an_empty_side_of_an_incomplete_snapshot_is_the_whole_side() -> None:
    b = Book("TEST")
    snapshot(b, [], TOP_ASKS, complete=False)
    delta(b, bids=[(90, 1), (80, 1)], asks=[(200, 1)])

    assert (b.trust_bid_px, b.trust_ask_px) == (NO_PRICE, 103)
    assert b.trusted_levels() == (2, 3), "no bids in the top of the book: there were none at all"


def test_a_complete_snapshot_after_an_incomplete_one_trusts_everything_again(partial: Book) -> None:
    snapshot(partial, TOP_BIDS, TOP_ASKS, complete=True)
    delta(partial, bids=[(50, 1)], asks=[(150, 1)])

    assert partial.trusted_levels() == (4, 4)
    assert (partial.trust_bid_px, partial.trust_ask_px) == (NO_PRICE, NO_PRICE)


def test_a_new_incomplete_snapshot_moves_the_bounds(partial: Book) -> None:
    snapshot(partial, [(99, 1), (90, 1)], [(101, 1)], complete=False)
    delta(partial, bids=[(95, 1), (85, 1)], asks=[(102, 1)])

    assert (partial.trust_bid_px, partial.trust_ask_px) == (90, 101)
    assert partial.trusted_levels() == (3, 1)


def test_clear_forgets_the_bounds(partial: Book) -> None:
    partial.clear()
    delta(partial, bids=[(50, 1)], asks=[(150, 1)])

    assert (partial.trust_bid_px, partial.trust_ask_px) == (NO_PRICE, NO_PRICE)
    assert partial.trusted_levels() == (1, 1)


def test_truncate_keeps_the_trust_bounds(partial: Book) -> None:
    delta(partial, bids=[(96, 1)], asks=[(104, 1)])
    partial.truncate(2)

    assert partial.trusted_levels() == (2, 2)
    assert (partial.trust_bid_px, partial.trust_ask_px) == (97, 103)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(snap_bids=st.lists(st.integers(1, 60), min_size=1, max_size=8, unique=True),
       snap_asks=st.lists(st.integers(61, 120), min_size=1, max_size=8, unique=True),
       changes=st.lists(st.tuples(st.booleans(), st.integers(1, 120), st.integers(0, 3)), max_size=30))
def test_trusted_levels_equal_a_count_of_levels_within_the_bounds(snap_bids: list[int], snap_asks: list[int],
                                                                   changes: list[tuple[bool, int, int]]) -> None:
    b = Book("TEST")
    snapshot(b, [(p, 1) for p in snap_bids], [(p, 1) for p in snap_asks], complete=False)
    for is_bid, px, qty in changes:
        if is_bid and px <= 60:
            delta(b, bids=[(px, qty)])
        elif not is_bid and px > 60:
            delta(b, asks=[(px, qty)])
    bids, asks = sides(b)

    expected = (sum(p >= min(snap_bids) for p, _ in bids), sum(p <= max(snap_asks) for p, _ in asks))
    assert b.trusted_levels() == expected


# --- truncate ---------------------------------------------------------------------------------------


def deep_book(n: int = 5) -> Book:
    """Bids 100-n+1..100 and asks 101..100+n, size = distance from the touch + 1."""
    b = Book("TEST")
    snapshot(b, [(100 - i, i + 1) for i in range(n)], [(101 + i, i + 1) for i in range(n)])
    return b


def test_truncate_keeps_the_best_levels_of_each_side() -> None:
    b = deep_book(5)
    b.truncate(2)

    assert sides(b) == ([(100, 1), (99, 2)], [(101, 1), (102, 2)])
    assert (b.n_bid, b.n_ask) == (2, 2)


def test_truncate_sets_the_edit_log_overflow_and_mirrors_the_level_counts() -> None:
    b = deep_book(5)
    b.counters[kernels.LOG_OVERFLOW] = 0  # a reader has caught up with the log

    b.truncate(3)

    assert b.counters[kernels.LOG_OVERFLOW] == 1, "the log holds no record of the removed levels"
    assert (b.counters[kernels.N_BID], b.counters[kernels.N_ASK]) == (3, 3)


def test_truncate_within_the_depth_changes_nothing() -> None:
    b = deep_book(3)
    b.counters[kernels.LOG_OVERFLOW] = 0
    before = sides(b)
    counters = b.counters.copy()

    b.truncate(3)
    b.truncate(10)

    assert sides(b) == before
    assert np.array_equal(b.counters, counters)
    assert b.counters[kernels.LOG_OVERFLOW] == 0


def test_truncate_cuts_only_the_side_that_is_too_deep() -> None:
    b = Book("TEST")
    snapshot(b, [(100, 1), (99, 1), (98, 1), (97, 1)], [(101, 1)])
    b.counters[kernels.LOG_OVERFLOW] = 0

    b.truncate(2)

    assert sides(b) == ([(100, 1), (99, 1)], [(101, 1)])
    assert b.counters[kernels.LOG_OVERFLOW] == 1
    assert (b.counters[kernels.N_BID], b.counters[kernels.N_ASK]) == (2, 1)


def test_a_truncated_book_takes_deltas_like_any_other() -> None:
    b = deep_book(5)
    b.truncate(2)

    delta(b, bids=[(99, 0), (98, 7)], asks=[(103, 4), (101, 0)])

    assert sides(b) == ([(100, 1), (98, 7)], [(102, 2), (103, 4)])
    assert b.best_bid() == (100, 1) and b.best_ask() == (102, 2)


def test_truncate_to_zero_empties_the_book() -> None:
    b = deep_book(3)
    b.truncate(0)

    assert (b.n_bid, b.n_ask) == (0, 0)
    assert b.best_bid() is None and not b.two_sided


def test_truncate_of_an_empty_book_changes_nothing() -> None:
    b = Book("TEST")
    b.counters[kernels.LOG_OVERFLOW] = 0

    b.truncate(1)

    assert (b.n_bid, b.n_ask) == (0, 0)
    assert b.counters[kernels.LOG_OVERFLOW] == 0

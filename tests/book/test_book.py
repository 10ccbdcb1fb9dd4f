"""Book: snapshot load, deltas, reads, capacity growth, and a property test against a dict model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.book import NO_PRICE, Book

Levels = Sequence[tuple[int, int]]


def arr(*values: int) -> np.ndarray:
    """An int64 array, as events carry."""
    return np.asarray(values, dtype=np.int64)


def cols(levels: Levels) -> tuple[np.ndarray, np.ndarray]:
    """(prices, sizes) int64 arrays from (price, size) pairs."""
    return arr(*(p for p, _ in levels)), arr(*(q for _, q in levels))


def snapshot(book: Book, bids: Levels, asks: Levels) -> None:
    book.apply_snapshot(*cols(bids), *cols(asks))


def delta(book: Book, bids: Levels = (), asks: Levels = ()) -> None:
    book.apply_delta(*cols(bids), *cols(asks))


def bids_of(book: Book) -> Levels:
    """Every bid level, ascending price, read straight from the documented arrays."""
    n = book.n_bid
    return list(zip(book.bid_px[:n].tolist(), book.bid_qty[:n].tolist(), strict=True))


def asks_of(book: Book) -> Levels:
    """Every ask level, ascending price, read straight from the documented arrays (keys negated)."""
    n = book.n_ask
    return list(zip((-book.ask_key[:n][::-1]).tolist(), book.ask_qty[:n][::-1].tolist(), strict=True))


@pytest.fixture
def book() -> Book:
    """Bids 97..99 and asks 101..103, sizes 10/20/30 from the touch outward."""
    b = Book("TEST")
    snapshot(b, [(99, 10), (98, 20), (97, 30)], [(101, 10), (102, 20), (103, 30)])
    return b


# --- snapshot ----------------------------------------------------------------------------------


def test_snapshot_sorts_unsorted_levels() -> None:
    b = Book("TEST")

    snapshot(b, [(98, 2), (100, 1), (99, 3)], [(103, 3), (101, 1), (102, 2)])

    assert bids_of(b) == [(98, 2), (99, 3), (100, 1)]
    assert asks_of(b) == [(101, 1), (102, 2), (103, 3)]
    assert b.best_bid_px == 100
    assert b.best_ask_px == 101


def test_snapshot_duplicate_price_keeps_last_size() -> None:
    b = Book("TEST")

    snapshot(b, [(99, 1), (98, 5), (99, 7)], [(101, 4), (101, 2)])

    assert bids_of(b) == [(98, 5), (99, 7)]
    assert asks_of(b) == [(101, 2)]


def test_snapshot_duplicate_price_whose_last_size_is_zero_is_absent() -> None:
    b = Book("TEST")

    snapshot(b, [(99, 1), (99, 0), (98, 5)], [])

    assert bids_of(b) == [(98, 5)]


def test_snapshot_ignores_size_zero_levels() -> None:
    b = Book("TEST")

    snapshot(b, [(99, 0), (98, 5)], [(101, 0), (102, 0)])

    assert bids_of(b) == [(98, 5)]
    assert asks_of(b) == []
    assert b.best_ask_px == NO_PRICE


def test_snapshot_replaces_every_previous_level(book: Book) -> None:
    snapshot(book, [(50, 1)], [(60, 2)])

    assert bids_of(book) == [(50, 1)]
    assert asks_of(book) == [(60, 2)]


def test_snapshot_counts_its_levels_as_level_updates() -> None:
    b = Book("TEST")

    snapshot(b, [(99, 1), (98, 0)], [(101, 1)])

    assert b.level_updates == 3
    assert b.absent_deletes == 0


# --- deltas ------------------------------------------------------------------------------------


def test_delta_inserts_new_levels_in_price_order(book: Book) -> None:
    delta(book, bids=[(100, 5), (96, 6), (95, 7)], asks=[(100, 8), (104, 9)])

    assert bids_of(book) == [(95, 7), (96, 6), (97, 30), (98, 20), (99, 10), (100, 5)]
    assert asks_of(book) == [(100, 8), (101, 10), (102, 20), (103, 30), (104, 9)]


def test_delta_updates_size_of_existing_level(book: Book) -> None:
    delta(book, bids=[(98, 21)], asks=[(103, 31)])

    assert bids_of(book) == [(97, 30), (98, 21), (99, 10)]
    assert asks_of(book) == [(101, 10), (102, 20), (103, 31)]


def test_delta_size_zero_deletes_level(book: Book) -> None:
    delta(book, bids=[(99, 0)], asks=[(102, 0)])

    assert bids_of(book) == [(97, 30), (98, 20)]
    assert asks_of(book) == [(101, 10), (103, 30)]
    assert book.best_bid_px == 98
    assert book.absent_deletes == 0


def test_delete_of_absent_level_is_counted_and_changes_nothing(book: Book) -> None:
    before_bids, before_asks = bids_of(book), asks_of(book)

    delta(book, bids=[(50, 0)], asks=[(100, 0), (150, 0)])

    assert bids_of(book) == before_bids
    assert asks_of(book) == before_asks
    assert book.absent_deletes == 3


def test_delta_changes_to_one_price_apply_in_message_order(book: Book) -> None:
    delta(book, bids=[(100, 5), (100, 0), (100, 0), (96, 0), (96, 4), (99, 0), (99, 11)])

    assert bids_of(book) == [(96, 4), (97, 30), (98, 20), (99, 11)]
    assert book.absent_deletes == 2


def test_delta_counts_every_change_as_level_update(book: Book) -> None:
    before = book.level_updates

    delta(book, bids=[(99, 1), (50, 0)], asks=[(104, 2)])

    assert book.level_updates == before + 3


def test_delta_applies_many_unordered_changes_as_one_by_one() -> None:
    b = Book("TEST")
    snapshot(b, [(p, p + 1) for p in range(0, 200, 2)], [])
    rng = np.random.default_rng(7)
    prices = rng.integers(0, 200, 100)
    sizes = np.where(rng.random(100) < 0.5, 0, rng.integers(1, 99, 100))
    expected = {p: p + 1 for p in range(0, 200, 2)}
    absent = 0
    for p, q in zip(prices.tolist(), sizes.tolist(), strict=True):
        if q:
            expected[p] = q
        elif expected.pop(p, None) is None:
            absent += 1

    b.apply_delta(prices.astype(np.int64), sizes.astype(np.int64), arr(), arr())

    assert bids_of(b) == sorted(expected.items())
    assert b.absent_deletes == absent


def test_delta_rejects_prices_and_sizes_of_different_length(book: Book) -> None:
    with pytest.raises(ValueError, match="length"):
        book.apply_delta(arr(99, 98), arr(1), arr(), arr())


def test_clear_forgets_every_level(book: Book) -> None:
    book.clear()

    assert bids_of(book) == []
    assert asks_of(book) == []
    assert not book.two_sided


# --- reads -------------------------------------------------------------------------------------


def test_best_prices_of_empty_book_are_no_price_and_none() -> None:
    b = Book("TEST")

    assert b.best_bid_px == NO_PRICE
    assert b.best_ask_px == NO_PRICE
    assert b.best_bid() is None
    assert b.best_ask() is None
    assert b.mid_ticks() is None
    assert not b.is_crossed()


def test_best_bid_and_ask_give_price_and_size(book: Book) -> None:
    assert book.best_bid() == (99, 10)
    assert book.best_ask() == (101, 10)
    assert book.mid_ticks() == 100.0


def test_best_ask_is_no_price_when_only_asks_are_empty() -> None:
    b = Book("TEST")
    snapshot(b, [(99, 1)], [])

    assert b.best_bid_px == 99
    assert b.best_ask_px == NO_PRICE
    assert b.best_ask() is None


def test_top_returns_levels_best_first(book: Book) -> None:
    bp, bq, ap, aq = book.top(2)

    assert bp.tolist() == [99, 98]
    assert bq.tolist() == [10, 20]
    assert ap.tolist() == [101, 102]
    assert aq.tolist() == [10, 20]


def test_top_returns_at_most_the_levels_present(book: Book) -> None:
    delta(book, asks=[(101, 0), (102, 0)])

    bp, bq, ap, aq = book.top(5)

    assert bp.tolist() == [99, 98, 97]
    assert bq.tolist() == [10, 20, 30]
    assert ap.tolist() == [103]
    assert aq.tolist() == [30]


def test_top_returns_copies_not_views(book: Book) -> None:
    bp, bq, _, aq = book.top(3)
    bp[:] = 0
    bq[:] = 0
    aq[:] = 0

    assert book.best_bid() == (99, 10)
    assert book.best_ask() == (101, 10)


def test_bid_depth_from_sums_bids_at_or_above_price(book: Book) -> None:
    assert book.bid_depth_from(98) == 30
    assert book.bid_depth_from(97) == 60
    assert book.bid_depth_from(100) == 0
    assert book.bid_depth_from(0) == 60


def test_ask_depth_to_sums_asks_at_or_below_price(book: Book) -> None:
    assert book.ask_depth_to(102) == 30
    assert book.ask_depth_to(103) == 60
    assert book.ask_depth_to(100) == 0
    assert book.ask_depth_to(10**9) == 60


def test_sweep_asks_walks_from_best_ask(book: Book) -> None:
    assert book.sweep_asks(25) == (25, 101 * 10 + 102 * 15)


def test_sweep_asks_never_takes_beyond_depth_shown(book: Book) -> None:
    assert book.sweep_asks(1000) == (60, 101 * 10 + 102 * 20 + 103 * 30)


def test_sweep_asks_stops_at_max_price(book: Book) -> None:
    assert book.sweep_asks(1000, max_px=102) == (30, 101 * 10 + 102 * 20)


def test_sweep_bids_walks_from_best_bid(book: Book) -> None:
    assert book.sweep_bids(15) == (15, 99 * 10 + 98 * 5)


def test_sweep_bids_never_takes_beyond_depth_shown(book: Book) -> None:
    assert book.sweep_bids(1000) == (60, 99 * 10 + 98 * 20 + 97 * 30)


def test_sweep_bids_stops_at_min_price(book: Book) -> None:
    assert book.sweep_bids(1000, min_px=99) == (10, 99 * 10)


def test_sweep_of_empty_side_takes_nothing() -> None:
    b = Book("TEST")

    assert b.sweep_asks(5) == (0, 0.0)
    assert b.sweep_bids(5) == (0, 0.0)


def test_vwap_to_fill_averages_the_levels_walked(book: Book) -> None:
    assert book.vwap_to_fill(True, 20) == pytest.approx((101 * 10 + 102 * 10) / 20)
    assert book.vwap_to_fill(False, 30) == pytest.approx((99 * 10 + 98 * 20) / 30)


def test_vwap_to_fill_is_none_when_book_too_thin(book: Book) -> None:
    assert book.vwap_to_fill(True, 61) is None
    assert book.vwap_to_fill(False, 61) is None
    assert Book("TEST").vwap_to_fill(True, 1) is None


# --- capacity ----------------------------------------------------------------------------------


def test_snapshot_grows_capacity_past_1024_levels() -> None:
    b = Book("TEST")
    bids = [(p, p + 1) for p in range(5000)]
    asks = [(p, 1) for p in range(10_000, 15_000)]

    snapshot(b, bids, asks)

    assert bids_of(b) == bids
    assert asks_of(b) == asks
    assert b.best_bid() == (4999, 5000)
    assert b.best_ask() == (10_000, 1)


def test_deltas_grow_capacity_past_1024_levels() -> None:
    b = Book("TEST")
    snapshot(b, [], [])

    for start in range(0, 5000, 500):
        prices = list(range(start, start + 500))
        delta(b, bids=[(p, 1) for p in prices], asks=[(10_000 + p, 2) for p in prices[::-1]])

    assert bids_of(b) == [(p, 1) for p in range(5000)]
    assert asks_of(b) == [(10_000 + p, 2) for p in range(5000)]
    assert b.best_bid_px == 4999
    assert b.best_ask_px == 10_000


# --- crossed / locked --------------------------------------------------------------------------


def test_is_crossed_when_best_bid_above_best_ask(book: Book) -> None:
    delta(book, bids=[(102, 1)])

    assert book.is_crossed()


def test_is_crossed_when_locked(book: Book) -> None:
    delta(book, asks=[(99, 1)])

    assert book.is_crossed()


def test_is_not_crossed_with_a_spread_or_one_side(book: Book) -> None:
    assert not book.is_crossed()
    delta(book, asks=[(101, 0), (102, 0), (103, 0)])
    assert not book.is_crossed()


# --- the Book equals a dict model after every delta --------------------------------------------


class DictBook:
    """Reference model: one dict price -> size per side, applied change by change."""

    def __init__(self) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.absent_deletes = 0
        self.level_updates = 0

    def snapshot(self, bids: Levels, asks: Levels) -> None:
        self.bids, self.asks = {}, {}
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for p, q in levels:
                if q:
                    side[p] = q
                else:
                    side.pop(p, None)
        self.level_updates += len(bids) + len(asks)

    def delta(self, bids: Levels, asks: Levels) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for p, q in levels:
                if q:
                    side[p] = q
                elif side.pop(p, None) is None:
                    self.absent_deletes += 1
        self.level_updates += len(bids) + len(asks)


PRICE = st.integers(min_value=-3, max_value=30)
SIZE = st.one_of(st.just(0), st.integers(min_value=1, max_value=10**12))


@st.composite
def side_changes(draw: st.DrawFn, max_size: int) -> Levels:
    """(price, size) changes of one side; venues list a side in price order, so often sorted."""
    levels = draw(st.lists(st.tuples(PRICE, SIZE), max_size=max_size))
    order = draw(st.sampled_from(["as drawn", "ascending", "descending"]))
    if order != "as drawn":
        levels.sort(key=lambda pq: pq[0], reverse=order == "descending")
    return levels


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snap=st.tuples(side_changes(40), side_changes(40)),
       deltas=st.lists(st.tuples(side_changes(40), side_changes(40)), max_size=25))
def test_book_matches_dict_model_after_every_delta(snap: tuple[Levels, Levels],
                                                   deltas: list[tuple[Levels, Levels]]) -> None:
    book, model = Book("PROP"), DictBook()
    snapshot(book, *snap)
    model.snapshot(*snap)

    for bids, asks in deltas:
        delta(book, bids, asks)
        model.delta(bids, asks)

        assert bids_of(book) == sorted(model.bids.items())
        assert asks_of(book) == sorted(model.asks.items())
        assert book.best_bid_px == max(model.bids, default=NO_PRICE)
        assert book.best_ask_px == min(model.asks, default=NO_PRICE)
        assert book.absent_deletes == model.absent_deletes
        assert book.level_updates == model.level_updates


def test_deep_book_matches_dict_model_over_random_deltas() -> None:
    rng = np.random.default_rng(11)
    book, model = Book("DEEP"), DictBook()
    bids = [(p, 1) for p in range(0, 6000, 3)]
    asks = [(p, 2) for p in range(6001, 12_000, 3)]
    snapshot(book, bids, asks)
    model.snapshot(bids, asks)

    for _ in range(300):
        changes: list[Levels] = []
        for lo, hi in ((0, 6000), (6001, 12_000)):
            k = int(rng.integers(0, 120))
            prices = rng.integers(lo, hi, k)
            sizes = np.where(rng.random(k) < 0.4, 0, rng.integers(1, 50, k))
            changes.append(list(zip(prices.tolist(), sizes.tolist(), strict=True)))
        delta(book, *changes)
        model.delta(*changes)

        assert bids_of(book) == sorted(model.bids.items())
        assert asks_of(book) == sorted(model.asks.items())
    assert book.absent_deletes == model.absent_deletes

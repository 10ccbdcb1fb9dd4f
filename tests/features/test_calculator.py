"""FeatureCalculator: book-state features equal an exact offline recomputation; NaN, copies, the schema.

The full 56-feature comparison against an independent slow reference is in test_reference_parity.py.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.book import Book
from daemon.features import NAMES, FeatureCalculator, FeatureSample, bands, kernels, schema
from daemon.instruments import Instrument

SYM = "SIM"
TICK = Fraction(1, 100)
LOT = Fraction(1, 1000)
INST = Instrument(SYM, tick_size=0.01, lot_size=0.001)
Levels = list[tuple[int, int]]


def cols(levels: Levels) -> tuple[np.ndarray, np.ndarray]:
    return (np.asarray([p for p, _ in levels], dtype=np.int64),
            np.asarray([q for _, q in levels], dtype=np.int64))


def calculator() -> FeatureCalculator:
    return FeatureCalculator({SYM: INST})


def book_with(bids: Levels, asks: Levels) -> Book:
    book = Book(SYM)
    book.apply_snapshot(*cols(bids), *cols(asks))
    return book


def sample_of(book: Book, live: bool = True, ts: int = 1) -> FeatureSample:
    calc = calculator()
    calc.on_book(book, live, ts)
    return calc.sample(SYM, ts)


# --- the offline recomputation: a dict book and exact arithmetic, independent of the kernel -------


def apply_levels(side: dict[int, int], levels: Levels) -> None:
    """Set each (price, size) in order; size 0 deletes the level."""
    for px, qty in levels:
        if qty:
            side[px] = qty
        else:
            side.pop(px, None)


ORACLE = ("mid", "microprice", "spread_bps", "imb_l1", "imb_5", "imb_10", "bid_qty_100bp", "ask_qty_100bp",
          "depth_ratio_100bp")


def offline_features(bids: dict[int, int], asks: dict[int, int]) -> dict[str, float]:
    """A set of book features from a dict book (ticks -> lots), computed exactly with Fractions."""
    if not bids or not asks:
        return dict.fromkeys(ORACLE, math.nan)
    bid_levels = sorted(bids.items(), reverse=True)  # best (highest) first
    ask_levels = sorted(asks.items())  # best (lowest) first
    bb, bq = (Fraction(v) for v in bid_levels[0])
    ba, aq = (Fraction(v) for v in ask_levels[0])
    mid = (bb + ba) / 2 * TICK
    bid_price, ask_price = bb * TICK, ba * TICK

    def ratio(num: Fraction, den: Fraction) -> float:
        return float(num / den) if den else math.nan

    def imbalance(n: int) -> float:
        b = sum(q for _, q in bid_levels[:n])
        a = sum(q for _, q in ask_levels[:n])
        return ratio(Fraction(b - a), Fraction(b + a))

    bid_band = sum(q for px, q in bid_levels if px * TICK >= mid * Fraction(99, 100))
    ask_band = sum(q for px, q in ask_levels if px * TICK <= mid * Fraction(101, 100))
    return {
        "mid": float(mid),
        "microprice": float((bid_price * aq + ask_price * bq) / (bq + aq)),
        "spread_bps": float((ask_price - bid_price) / mid * 10_000),
        "imb_l1": ratio(bq - aq, bq + aq),
        "imb_5": imbalance(5),
        "imb_10": imbalance(10),
        "bid_qty_100bp": float(bid_band * LOT),
        "ask_qty_100bp": float(ask_band * LOT),
        "depth_ratio_100bp": ratio(Fraction(bid_band), Fraction(ask_band)),
    }


def assert_matches(sample: FeatureSample, expected: dict[str, float]) -> None:
    assert set(expected) == set(ORACLE)
    for name in ORACLE:
        got, want = sample[name], expected[name]
        if math.isnan(want):
            assert math.isnan(got), f"{name}: expected NaN, got {got}"
        else:
            assert got == pytest.approx(want, rel=1e-12, abs=1e-12), name


# Bids and asks on disjoint price ranges, so no book is ever crossed; wide enough that the 1% band
# (about 11 ticks around a mid near 1100) cuts through the book, and deep enough for imb_10.
BID_PX = st.integers(850, 1099)
ASK_PX = st.integers(1100, 1350)
QTY = st.integers(1, 5_000)
bid_snapshot = st.lists(st.tuples(BID_PX, QTY), min_size=0, max_size=30)
ask_snapshot = st.lists(st.tuples(ASK_PX, QTY), min_size=0, max_size=30)
# A delta line: changes to both sides, size 0 deletes (also of absent levels), repeats allowed.
DELTA_QTY = st.one_of(st.just(0), QTY)
deltas = st.lists(
    st.tuples(st.lists(st.tuples(BID_PX, DELTA_QTY), max_size=8),
              st.lists(st.tuples(ASK_PX, DELTA_QTY), max_size=8)),
    max_size=25,
)


# --- streaming == offline ------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bids=bid_snapshot, asks=ask_snapshot, changes=deltas)
def test_streaming_features_equal_offline_recomputation(bids: Levels, asks: Levels,
                                                         changes: list[tuple[Levels, Levels]]) -> None:
    book = Book(SYM)
    calc = calculator()
    model_bids: dict[int, int] = {}
    model_asks: dict[int, int] = {}
    book.apply_snapshot(*cols(bids), *cols(asks))
    apply_levels(model_bids, bids)
    apply_levels(model_asks, asks)
    calc.on_book(book, live=True, ts=1)
    assert_matches(calc.sample(SYM, 0), offline_features(model_bids, model_asks))

    for i, (bid_changes, ask_changes) in enumerate(changes, start=1):
        book.apply_delta(*cols(bid_changes), *cols(ask_changes))
        apply_levels(model_bids, bid_changes)
        apply_levels(model_asks, ask_changes)
        calc.on_book(book, live=True, ts=1)

        sample = calc.sample(SYM, i)

        assert sample.ts == i and sample.live
        assert_matches(sample, offline_features(model_bids, model_asks))


def test_known_book_gives_hand_computed_features() -> None:
    # bid 99.00 x 3.000, ask 101.00 x 1.000: mid 100, spread 200 bps, 1% band = [99.00, 101.00]
    book = book_with([(9900, 3000), (9899, 1000), (9800, 5000)], [(10100, 1000), (10101, 2000)])

    s = sample_of(book)

    assert s["mid"] == pytest.approx(100.0)
    assert s["microprice"] == pytest.approx((99.0 * 1 + 101.0 * 3) / 4)
    assert s["spread_bps"] == pytest.approx(200.0)
    assert s["imb_l1"] == pytest.approx(0.5)
    assert s["imb_5"] == pytest.approx((9 - 3) / 12)
    assert s["bid_qty_100bp"] == pytest.approx(3.0)  # 99.00 is exactly 1% below; 98.99 is not
    assert s["ask_qty_100bp"] == pytest.approx(1.0)  # 101.00 is exactly 1% above; 101.01 is not
    assert s["depth_ratio_100bp"] == pytest.approx(3.0)
    assert s["bid_levels_100bp"] == 1 and s["ask_levels_100bp"] == 1
    assert s["spread_ticks"] == 200
    assert s["imb_3"] == pytest.approx((9 - 3) / 12)


def test_imbalances_sum_over_best_five_and_ten_levels() -> None:
    # 12 bid levels of 1 lot, 12 ask levels of 2, 3, ... lots
    bids = [(1000 - i, 1) for i in range(12)]
    asks = [(1001 + i, 2 + i) for i in range(12)]
    book = book_with(bids, asks)

    s = sample_of(book)

    a5 = sum(range(2, 7))
    a10 = sum(range(2, 12))
    assert s["imb_5"] == pytest.approx((5 - a5) / (5 + a5))
    assert s["imb_10"] == pytest.approx((10 - a10) / (10 + a10))


def test_offline_recomputation_agrees_with_book_top_levels() -> None:
    bids = [(1050, 7), (1049, 3), (1040, 11), (1000, 2)]
    asks = [(1100, 5), (1101, 9), (1120, 4)]
    book = book_with(bids, asks)
    bid_px, bid_qty, ask_px, ask_qty = book.top(10)

    expected = offline_features(dict(zip(bid_px.tolist(), bid_qty.tolist(), strict=True)),
                                dict(zip(ask_px.tolist(), ask_qty.tolist(), strict=True)))

    assert_matches(sample_of(book), expected)


# --- NaN, never 0 ------------------------------------------------------------------------------


@pytest.mark.parametrize(("bids", "asks"), [([(99, 1)], []), ([], [(101, 1)]), ([], [])],
                         ids=["no_asks", "no_bids", "empty"])
def test_every_feature_is_nan_when_a_side_is_empty(bids: Levels, asks: Levels) -> None:
    s = sample_of(book_with(bids, asks))

    assert np.isnan(s.values).all()


def test_every_feature_is_nan_when_the_book_is_not_live() -> None:
    book = book_with([(99, 1)], [(101, 1)])

    s = sample_of(book, live=False)

    assert not s.live
    assert np.isnan(s.values).all()


def test_features_become_nan_when_a_live_book_stops_being_live() -> None:
    book = book_with([(99, 1)], [(101, 1)])
    calc = calculator()
    calc.on_book(book, live=True, ts=1)

    calc.on_book(book, live=False, ts=1)

    assert np.isnan(calc.sample(SYM, 2).values).all()


def test_depth_ratio_is_nan_not_zero_when_no_ask_is_within_one_percent() -> None:
    # mid 100.00; the only ask, 110.00, is beyond 101.00
    book = book_with([(9000, 1)], [(11000, 1)])

    s = sample_of(book)

    assert s["ask_qty_100bp"] == 0.0
    assert math.isnan(s["depth_ratio_100bp"])


def test_sample_before_any_book_is_nan_and_not_live() -> None:
    s = calculator().sample(SYM, 5)

    assert not s.live
    assert np.isnan(s.values).all()


# --- samples are copies ----------------------------------------------------------------------------


def test_mutating_a_sample_does_not_change_the_calculator() -> None:
    calc = calculator()
    calc.on_book(book_with([(99, 1)], [(101, 1)]), live=True, ts=1)
    first = calc.sample(SYM, 1)
    before = first.values.copy()

    first.values[:] = -123.0

    assert np.array_equal(calc.sample(SYM, 1).values, before, equal_nan=True)


def test_a_sample_does_not_follow_later_book_changes() -> None:
    calc = calculator()
    book = book_with([(99, 1)], [(101, 1)])
    calc.on_book(book, live=True, ts=1)
    first = calc.sample(SYM, 1)

    book.apply_delta(*cols([(100, 5)]), *cols([]))
    calc.on_book(book, live=True, ts=1)

    assert first["mid"] == pytest.approx(1.0)
    assert calc.sample(SYM, 2)["mid"] == pytest.approx(1.005)


def test_sample_as_dict_is_in_schema_order() -> None:
    s = sample_of(book_with([(99, 1)], [(101, 1)]))

    d = s.as_dict()

    assert list(d) == list(NAMES)
    assert d["mid"] == pytest.approx(1.0)


# --- schema ----------------------------------------------------------------------------------------


def test_schema_names_are_unique() -> None:
    assert len(set(schema.NAMES)) == len(schema.NAMES)


def test_book_kernel_writes_exactly_the_book_block_of_the_schema() -> None:
    book = book_with([(99, 1), (98, 2)], [(101, 1), (102, 3)])
    out = np.full(len(schema.NAMES), -7.0)
    band_i = np.zeros(bands.INT_SLOTS, np.int64)
    band_f = np.zeros(bands.FLOAT_SLOTS)
    bands.recompute(book.bid_px, book.bid_qty, book.n_bid, 0, 100.0, band_i, band_f)
    bands.recompute(book.ask_key, book.ask_qty, book.n_ask, 1, 100.0, band_i, band_f)

    kernels.book_features(book.bid_px, book.bid_qty, book.n_bid, book.ask_key, book.ask_qty, book.n_ask,
                          0.01, 0.001, 0.001, out, band_i, band_f, np.zeros(14))

    assert schema.NAMES[kernels.N_BOOK_FEATURES - 1] == "cost_sell_bps"
    assert (out[: kernels.N_BOOK_FEATURES] != -7.0).all()
    assert (out[kernels.N_BOOK_FEATURES:] == -7.0).all()


def test_schema_has_at_least_48_described_features() -> None:
    assert len(schema.FEATURES) >= 48
    assert all(f.unit and f.description for f in schema.FEATURES)
    assert [d["name"] for d in schema.describe()] == list(schema.NAMES)


def test_index_of_is_the_position_in_the_schema() -> None:
    assert [schema.index_of(n) for n in schema.NAMES] == list(range(len(schema.NAMES)))


def test_index_of_unknown_name_lists_known_names() -> None:
    with pytest.raises(KeyError) as exc:
        schema.index_of("imb_7")

    message = str(exc.value)
    assert "imb_7" in message
    assert all(name in message for name in schema.NAMES)

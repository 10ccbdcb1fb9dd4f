"""The checksum kernels: the venue's text re-made from ticks and lots, checked against a Decimal reference
built from strings, and the CRC32 against zlib."""

from __future__ import annotations

import zlib
from decimal import Decimal

import numpy as np
import pytest

from daemon.book.book import Book
from daemon.instruments import Instrument
from daemon.venues.checksum import (
    STRIP,
    TRANSITIONS,
    BookChecksum,
    FeedEvent,
    FeedState,
    crc32,
    grid_format,
    kraken_book_crc,
    okx_book_crc,
)

GRIDS = [(0.1, 1e-8), (0.5, 0.001), (5.0, 1.0), (0.0025, 10.0), (1e-9, 1e-8), (0.01, 0.0001)]


def random_book(rng: np.random.Generator, n_bid: int, n_ask: int, max_lots: int = 10**9) -> Book:
    """A book of distinct random levels around 1,000,000 ticks."""
    prices = rng.choice(np.arange(900_000, 1_100_000), n_bid + n_ask, replace=False)
    prices.sort()
    book = Book("X")
    book.apply_snapshot(prices[:n_bid], rng.integers(1, max_lots, n_bid),
                        prices[n_bid:] + 1, rng.integers(1, max_lots, n_ask))
    return book


def decimal_levels(book: Book, inst: Instrument, n: int) -> tuple[list, list]:
    """Best n bids and asks as exact Decimals (price, size), best first."""
    tick, lot = Decimal(repr(inst.tick_size)), Decimal(repr(inst.lot_size))
    bp, bq, ap, aq = book.top(n)
    bids = [(int(p) * tick, int(q) * lot) for p, q in zip(bp, bq, strict=True)]
    asks = [(int(p) * tick, int(q) * lot) for p, q in zip(ap, aq, strict=True)]
    return bids, asks


def shortest(d: Decimal) -> str:
    """How OKX writes a value: no trailing zeros, no point for a whole number."""
    return format(d.normalize(), "f")


def okx_reference(bids: list, asks: list) -> str:
    parts: list[str] = []
    for i in range(max(len(bids), len(asks))):
        for side in (bids, asks):
            if i < len(side):
                parts += [shortest(side[i][0]), shortest(side[i][1])]
    return ":".join(parts)


def kraken_reference(bids: list, asks: list, dp: int, dq: int) -> str:
    def digits(d: Decimal, places: int) -> str:
        return f"{d:.{places}f}".replace(".", "").lstrip("0")

    return "".join(digits(p, dp) + digits(q, dq) for p, q in asks + bids)


def test_crc32_kernel_equals_zlib() -> None:
    rng = np.random.default_rng(7)
    buf = rng.integers(0, 256, 4096).astype(np.uint8)

    for n in [*range(0, 40), 799, 1000, 4096]:
        assert crc32(buf, n) == zlib.crc32(buf[:n].tobytes()), n


@pytest.mark.parametrize(
    ("step", "expected"),
    [(0.1, (1, 1)), (0.0025, (25, 4)), (5.0, (5, 0)), (10.0, (10, 0)), (1e-8, (1, 8)), (0.5, (5, 1)), (1.0, (1, 0))],
)
def test_grid_format_writes_the_step_as_an_integer_and_decimals(step: float, expected: tuple[int, int]) -> None:
    assert grid_format(step) == expected


@pytest.mark.parametrize("step", [0.0, -0.1, float("nan"), float("inf"), 1e-19])
def test_grid_format_refuses_a_step_it_cannot_write(step: float) -> None:
    with pytest.raises(ValueError, match="grid step"):
        grid_format(step)


@pytest.mark.parametrize(("tick", "lot"), GRIDS)
def test_okx_text_is_the_shortest_decimals_interleaved(tick: float, lot: float) -> None:
    rng = np.random.default_rng(1)
    inst = Instrument("X", tick, lot)
    ck = BookChecksum(okx_book_crc, 25, inst, STRIP, STRIP)
    for _ in range(20):
        book = random_book(rng, 40, 40)
        bids, asks = decimal_levels(book, inst, 25)
        text = okx_reference(bids, asks)

        assert ck.text(book) == text
        assert ck.crc(book) == zlib.crc32(text.encode())


def test_okx_text_continues_with_the_longer_side_alone() -> None:
    rng = np.random.default_rng(2)
    inst = Instrument("X", 0.1, 1e-8)
    ck = BookChecksum(okx_book_crc, 25, inst, STRIP, STRIP)
    book = random_book(rng, 3, 30)
    bids, asks = decimal_levels(book, inst, 25)

    assert len(bids) == 3 and len(asks) == 25
    assert ck.text(book) == okx_reference(bids, asks)


def test_okx_text_of_whole_numbers_has_no_point() -> None:
    book = Book("X")
    book.apply_snapshot(np.array([302360]), np.array([100_000_000]), np.array([302361]), np.array([5]))
    ck = BookChecksum(okx_book_crc, 25, Instrument("X", 0.1, 1e-8), STRIP, STRIP)

    assert ck.text(book) == "30236:1:30236.1:0.00000005"


def test_an_empty_book_hashes_the_empty_text() -> None:
    ck = BookChecksum(okx_book_crc, 25, Instrument("X", 0.1, 1e-8), STRIP, STRIP)

    assert ck.text(Book("X")) == ""
    assert ck(Book("X"), 0)


@pytest.mark.parametrize(("tick", "lot", "dp", "dq"),
                         [(0.01, 1e-8, 8, 8), (1e-9, 1e-8, 9, 8), (0.1, 1e-8, 5, 8), (0.01, 1e-8, 2, 10)])
def test_kraken_text_is_fixed_decimals_without_point_and_leading_zeros(tick: float, lot: float, dp: int,
                                                                        dq: int) -> None:
    rng = np.random.default_rng(3)
    inst = Instrument("X", tick, lot)
    ck = BookChecksum(kraken_book_crc, 10, inst, dp, dq)
    for _ in range(20):
        book = random_book(rng, 15, 15)
        bids, asks = decimal_levels(book, inst, 10)
        text = kraken_reference(bids, asks, dp, dq)

        assert ck.text(book) == text
        assert ck.crc(book) == zlib.crc32(text.encode())


def test_kraken_writes_fewer_decimals_than_the_tick_when_values_allow() -> None:
    inst = Instrument("X", 0.001, 1e-8)  # a finer grid than the 2 decimals the venue writes
    book = Book("X")
    book.apply_snapshot(np.array([354_150]), np.array([500_000_000]), np.array([354_480]), np.array([1]))
    ck = BookChecksum(kraken_book_crc, 10, inst, 2, 8)

    assert ck.text(book) == "354481" + "35415500000000"


def test_verify_accepts_the_checksum_signed_or_unsigned() -> None:
    rng = np.random.default_rng(4)
    ck = BookChecksum(okx_book_crc, 25, Instrument("X", 0.1, 1e-8), STRIP, STRIP)
    book = random_book(rng, 30, 30)
    crc = ck.crc(book)
    signed = crc - (1 << 32) if crc >= 1 << 31 else crc

    assert ck(book, crc) and ck(book, signed)
    assert not ck(book, crc ^ 1)


def test_set_decimals_refuses_what_the_kernel_cannot_write() -> None:
    ck = BookChecksum(kraken_book_crc, 10, Instrument("X", 0.01, 1e-8), 2, 8)

    with pytest.raises(ValueError, match="decimals"):
        ck.set_decimals(19, 8)


def test_every_sync_state_takes_a_snapshot_a_loss_and_a_disconnect() -> None:
    for state, row in TRANSITIONS.items():
        assert row[FeedEvent.SNAPSHOT] is FeedState.LIVE, state
        assert row[FeedEvent.LOST] is FeedState.RESYNC, state
        assert row[FeedEvent.DISCONNECT] is FeedState.WAIT, state
    assert FeedEvent.GAP not in TRANSITIONS[FeedState.WAIT]  # updates are dropped there before any gap check

"""Real Binance sessions (hftbacktest collector files) through reader -> adapter -> BookSync -> Book.

The venue's own bookTicker is the referee: every ticker whose `u` is the `u` of an applied depth event
must equal the book's best bid and ask right after that event. BookSync checks a ticker only when the
book is at its update id when it arrives; on spot the ticker is sent before the 100 ms depth event
carrying the same `u`, so the test also keeps the book's best levels per applied `u` and checks every
ticker against them, whichever came first.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from daemon.book.book import Book
from daemon.book.sync import BookSync
from daemon.events import BookDelta, BookReset, BookSnapshot, Quote, Trade
from daemon.instruments import Instrument
from daemon.sources import merge_by_receive_time, open_replay_input
from daemon.venues import DecodeError, adapter_for

SYM = "BTCUSDT"


@dataclass
class Session:
    """What a replayed session left behind."""

    venue: str
    adapter: object
    sync: BookSync
    events: dict[str, int] = field(default_factory=dict)
    best_at: dict[int, tuple] = field(default_factory=dict)  # applied u -> (best bid, best ask) after it
    quotes: list[Quote] = field(default_factory=list)


def replay(paths: list[Path], tick: float, lot: float) -> Session:
    """Feed the files, merged by receive time, through one adapter and one BookSync (as the replay does)."""
    opened = [open_replay_input(p, None, None) for p in paths]
    venue = opened[0][0]
    assert all(o[0] == venue and o[1] == [SYM] for o in opened)
    adapter = adapter_for(venue, lambda s: Instrument(s, tick, lot))
    sync = BookSync(Book(SYM))
    sync.on_lost = lambda symbol, reason, ts: pending.extend(adapter.resync(symbol, reason, ts))
    pending: list = []
    s = Session(venue, adapter, sync)
    for rec in merge_by_receive_time([o[2] for o in opened]):
        events = adapter.decode(rec.ts_recv, rec.symbol, rec.channel, rec.msg)
        while events:
            for ev in events:
                name = type(ev).__name__
                s.events[name] = s.events.get(name, 0) + 1
                if type(ev) is BookDelta:
                    sync.on_delta(ev)
                    s.best_at[ev.seq] = (sync.book.best_bid(), sync.book.best_ask())
                elif type(ev) is BookSnapshot:
                    sync.on_snapshot(ev)
                    s.best_at[ev.seq] = (sync.book.best_bid(), sync.book.best_ask())
                elif type(ev) is Quote:
                    sync.on_quote(ev)
                    s.quotes.append(ev)
                elif type(ev) is BookReset:
                    sync.on_reset(ev)
                else:
                    assert type(ev) is Trade
            events, pending[:] = list(pending), []
    return s


def expected_book(folder: Path) -> dict:
    """The folder's expected_final_book.txt: depth and the top 5 (price, qty) a side, best first."""
    lines = (folder / "expected_final_book.txt").read_text().splitlines()
    out: dict = {"asks": [], "bids": []}
    side = None
    for line in lines:
        if line.startswith("final_depth:"):
            parts = dict(p.split("=") for p in line.split(":", 1)[1].split())
            out["depth"] = (int(parts["bids"]), int(parts["asks"]))
        elif line.startswith("deletes_of_absent_levels:"):
            out["absent_deletes"] = int(line.split(":")[1])
        elif line.startswith("level_updates_applied:"):
            out["level_updates"] = int(line.split(":")[1])
        elif line.startswith("final top 5"):
            side = line.split()[3]
        elif line.startswith("  ") and side:
            px, qty = line.split()
            out[side].append((float(px), float(qty)))
    return out


def top5(book: Book, inst: Instrument) -> tuple[list, list]:
    bp, bq, ap, aq = book.top(5)
    bids = [(inst.price(p), inst.qty(q)) for p, q in zip(bp.tolist(), bq.tolist(), strict=True)]
    asks = [(inst.price(p), inst.qty(q)) for p, q in zip(ap.tolist(), aq.tolist(), strict=True)]
    return bids, asks


def check_quotes(s: Session) -> int:
    """Every ticker at an applied u equals the book right after that u; returns how many were checked."""
    checked = 0
    for q in s.quotes:
        best = s.best_at.get(q.seq)
        if best is not None:
            assert best == ((q.bid_px, q.bid_qty), (q.ask_px, q.ask_qty)), f"bookTicker u={q.seq}"
            checked += 1
    return checked


@functools.cache
def replayed(paths: tuple[Path, ...], tick: float, lot: float) -> Session:
    """Each session is replayed once for all the tests that look at it."""
    return replay(list(paths), tick, lot)


@pytest.fixture
def spot(shared_data: Path) -> tuple[Session, Path]:
    folder = shared_data / "binance_spot_btcusdt"
    return replayed((folder / "btcusdt_20240808.gz", folder / "btcusdt_20240809.gz"), 0.01, 1e-8), folder


@pytest.fixture
def usdm(shared_data: Path) -> tuple[Session, Path]:
    folder = shared_data / "binance_usdm_btcusdt"
    return replayed((folder / "btcusdt_20240808.gz",), 0.1, 0.001), folder


def test_spot_session_over_two_files_syncs_once_and_never_breaks(spot) -> None:
    s, _ = spot
    stats, health = s.adapter.stats(SYM), s.adapter.health.symbol(SYM)

    assert s.venue == "binance"
    assert (stats.buffered, stats.dropped, stats.applied, stats.snapshots) == (3, 2, 6493, 1)
    assert (health.gaps, health.resyncs, health.stale_snapshots, health.decode_errors) == (0, 0, 0, 0)
    assert s.events == {"BookSnapshot": 1, "BookDelta": 6493, "Quote": 73174, "Trade": 19904}
    assert s.sync.live and s.sync.crossed == 0 and sum(s.sync.resets.values()) == 0


def test_spot_book_agrees_with_every_book_ticker_at_an_applied_update_id(spot) -> None:
    s, _ = spot

    assert check_quotes(s) == 1072
    assert (s.sync.quote_checks, s.sync.quote_mismatches) == (0, 0)  # tickers come before their depth event


def test_spot_final_book_is_the_expected_one(spot) -> None:
    s, folder = spot
    want = expected_book(folder)
    book = s.sync.book

    assert (book.n_bid, book.n_ask) == want["depth"] == (1971, 2962)
    assert top5(book, Instrument(SYM, 0.01, 1e-8)) == (want["bids"], want["asks"])
    assert book.absent_deletes == want["absent_deletes"]
    assert book.level_updates == want["level_updates"]
    assert book.trusted_levels() != (book.n_bid, book.n_ask)  # the stream went beyond the snapshot's depth


def test_usdm_session_links_by_pu_and_never_breaks(usdm) -> None:
    s, _ = usdm
    stats, health = s.adapter.stats(SYM), s.adapter.health.symbol(SYM)

    assert s.venue == "binance_usdm"
    assert (stats.buffered, stats.dropped, stats.applied, stats.snapshots) == (6, 4, 6547, 1)
    assert (health.gaps, health.resyncs, health.stale_snapshots, health.decode_errors) == (0, 0, 0, 0)
    assert s.events == {"BookSnapshot": 1, "BookDelta": 6547, "Quote": 66089, "Trade": 21313}
    assert s.sync.live and s.sync.crossed == 0


def test_usdm_book_agrees_with_every_book_ticker_at_an_applied_update_id(usdm) -> None:
    s, _ = usdm

    assert check_quotes(s) == 629
    assert (s.sync.quote_checks, s.sync.quote_mismatches) == (126, 0)


def test_usdm_final_book_is_the_expected_one(usdm) -> None:
    s, folder = usdm
    want = expected_book(folder)
    book = s.sync.book

    assert (book.n_bid, book.n_ask) == want["depth"] == (5018, 4578)
    assert top5(book, Instrument(SYM, 0.1, 0.001)) == (want["bids"], want["asks"])
    assert book.absent_deletes == want["absent_deletes"]
    assert book.level_updates == want["level_updates"]


def test_spot_book_sizes_are_finer_than_the_trading_lot(shared_data: Path) -> None:
    """BTCUSDT's order lot is 0.00001, but a few resting sizes in the book have 6-8 decimals
    (25.426189 at 200,000.00): a book instrument needs lot 1e-8."""
    _, _, records = open_replay_input(shared_data / "binance_spot_btcusdt" / "btcusdt_20240808.gz", None, None)
    adapter = adapter_for("binance", lambda s: Instrument(s, 0.01, 0.00001))
    refused = []
    for rec in records:
        try:
            adapter.decode(rec.ts_recv, rec.symbol, rec.channel, rec.msg)
        except DecodeError as exc:
            refused.append(str(exc))

    assert refused and all("off the lot grid 1e-05" in r for r in refused)
    assert any("25.42618900" in r for r in refused)

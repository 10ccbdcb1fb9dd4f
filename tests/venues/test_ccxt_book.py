"""CcxtAdapter: ccxt's whole books in, a snapshot then deltas of what changed out; trades; resets."""

from __future__ import annotations

import numpy as np
import pytest

from daemon.book.book import Book
from daemon.book.sync import BookSync
from daemon.events import BookDelta, BookReset, BookSnapshot, Side, Trade
from daemon.instruments import Instrument
from daemon.venues import DecodeError, adapter_for
from daemon.venues.ccxt_book import CcxtAdapter, level_diff

INST = Instrument("BTC/USDT", 0.1, 0.001)
S = "BTC/USDT"


def book(bids, asks, nonce=7, ts=1_700_000_000_000, limit=None) -> dict:
    return {"nonce": nonce, "timestamp": ts, "limit": limit, "bids": bids, "asks": asks}


@pytest.fixture
def adapter() -> CcxtAdapter:
    return CcxtAdapter(lambda s: INST)


def test_is_the_ccxt_venue_adapter() -> None:
    assert isinstance(adapter_for("ccxt", lambda s: INST), CcxtAdapter)


def test_first_book_is_a_snapshot_in_ticks_and_lots_with_the_venue_time(adapter) -> None:
    (ev,) = adapter.decode(5, S, "ccxt_book", book([[100.1, 1.5], [100.0, 2]], [[100.2, 0.25]]))

    assert isinstance(ev, BookSnapshot) and ev.complete
    assert ev.bid_px.tolist() == [1000, 1001] and ev.bid_qty.tolist() == [2000, 1500]
    assert ev.ask_px.tolist() == [1002] and ev.ask_qty.tolist() == [250]
    assert (ev.ts_venue, ev.ts_recv, ev.seq) == (1_700_000_000_000_000_000, 5, 7)


def test_a_limited_book_gives_an_incomplete_snapshot(adapter) -> None:
    (ev,) = adapter.decode(5, S, "ccxt_book", book([[100.0, 1]], [[100.2, 1]], limit=10))

    assert not ev.complete


def test_later_books_give_only_the_changed_levels_and_zero_for_removed_ones(adapter) -> None:
    adapter.decode(1, S, "ccxt_book", book([[100.1, 1], [100.0, 2]], [[100.2, 1], [100.3, 3]]))

    (ev,) = adapter.decode(2, S, "ccxt_book", book([[100.1, 1], [99.9, 4]], [[100.2, 5], [100.3, 3]], nonce=8))

    assert isinstance(ev, BookDelta) and ev.seq == 8
    assert ev.bid_px.tolist() == [999, 1000] and ev.bid_qty.tolist() == [4000, 0]
    assert ev.ask_px.tolist() == [1002] and ev.ask_qty.tolist() == [5000]


def test_a_book_that_did_not_change_gives_no_event(adapter) -> None:
    msg = book([[100.1, 1]], [[100.2, 1]])
    adapter.decode(1, S, "ccxt_book", msg)

    assert adapter.decode(2, S, "ccxt_book", msg) == []


def test_raw_json_bytes_decode_like_parsed_messages(adapter) -> None:
    (ev,) = adapter.decode(5, S, "ccxt_book", b'{"nonce":null,"timestamp":null,"bids":[[100.1,1.5]],"asks":[]}')

    assert isinstance(ev, BookSnapshot) and ev.bid_px.tolist() == [1001] and ev.ts_venue == 5 and ev.seq == 0


def test_disconnect_marker_resets_the_symbol_and_the_next_book_is_a_snapshot(adapter) -> None:
    adapter.decode(1, S, "ccxt_book", book([[100.1, 1]], [[100.2, 1]]))

    (reset,) = adapter.decode(2, S, "marker", {"event": "disconnected", "reason": "NetworkError: closed"})
    (ev,) = adapter.decode(3, S, "ccxt_book", book([[100.1, 1]], [[100.2, 1]]))

    assert reset == BookReset(S, 2, 2, "NetworkError: closed")
    assert isinstance(ev, BookSnapshot)
    assert adapter.health.symbol(S).resyncs == 1


def test_a_marker_without_symbol_resets_every_symbol(adapter) -> None:
    adapter.decode(1, "A", "ccxt_book", book([[100.1, 1]], [[100.2, 1]]))
    adapter.decode(1, "B", "ccxt_book", book([[100.1, 1]], [[100.2, 1]]))

    events = adapter.decode(2, "", "marker", {"event": "disconnected", "reason": "x"})

    assert sorted(e.symbol for e in events) == ["A", "B"]
    assert adapter.decode(3, "A", "marker", {"event": "connected"}) == []


def test_resync_takes_the_next_book_as_a_snapshot_without_asking_the_network(adapter) -> None:
    adapter.decode(1, S, "ccxt_book", book([[100.1, 1]], [[100.2, 1]]))

    assert adapter.resync(S, "crossed", 2) == []
    (ev,) = adapter.decode(3, S, "ccxt_book", book([[100.1, 1]], [[100.2, 1]]))

    assert isinstance(ev, BookSnapshot) and adapter.take_requests() == []


def test_trades_carry_the_taker_side_and_the_trade_time(adapter) -> None:
    msg = [{"id": "1", "timestamp": 1000, "price": 100.1, "amount": 0.5, "side": "buy"},
           {"id": "2", "timestamp": 1001, "price": 100.0, "amount": 2, "side": "sell"}]

    events = adapter.decode(9, S, "ccxt_trades", msg)

    assert events == [Trade(S, 1_000_000_000, 9, 1001, 500, Side.BUY),
                      Trade(S, 1_001_000_000, 9, 1000, 2000, Side.SELL)]


@pytest.mark.parametrize(("channel", "msg", "problem"), [
    ("ccxt_book", [], "must be an object"),
    ("ccxt_book", b"{", "invalid JSON"),
    ("ccxt_book", {"bids": [], "timestamp": 1}, "'asks' must be a list"),
    ("ccxt_book", book([[100.1]], []), "pairs, found"),
    ("ccxt_book", book([[100.15, 1]], []), "price off the tick grid 0.1"),
    ("ccxt_book", book([[100.1, 0.0005]], []), "size off the lot grid"),
    ("ccxt_book", book([[100.1, -1]], []), "negative"),
    ("ccxt_book", book([["x", 1]], []), "number pairs"),
    ("ccxt_book", book([[100.0, 1], [100.1, 1]], []), "'bids' must be best first"),
    ("ccxt_book", book([], [[100.2, 1], [100.2, 1]]), "'asks' must be best first"),
    ("ccxt_book", book([], [], ts="now"), "timestamp must be integer milliseconds"),
    ("ccxt_book", book([], [], limit=0), "limit must be a positive integer"),
    ("ccxt_trades", {}, "must be a list"),
    ("ccxt_trades", [{"id": "1", "price": 1.0, "amount": 1, "side": None}], "side must be 'buy' or 'sell'"),
    ("ccxt_trades", [{"id": "1", "price": 0, "amount": 1, "side": "buy"}], "positive numbers"),
    ("ccxt_trades", [{"id": "1", "price": 100.05, "amount": 1, "side": "buy"}], "tick_size"),
    ("nope", {}, "unknown channel 'nope'"),
])
def test_bad_messages_are_decode_errors_naming_the_problem(adapter, channel, msg, problem) -> None:
    with pytest.raises(DecodeError, match=problem):
        adapter.decode(1, S, channel, msg)


def test_a_bad_book_leaves_the_kept_levels_alone_and_is_counted(adapter) -> None:
    adapter.decode(1, S, "ccxt_book", book([[100.1, 1]], [[100.2, 1]]))

    with pytest.raises(DecodeError):
        adapter.decode(2, S, "ccxt_book", book([[100.15, 1]], [[100.2, 1]]))
    (ev,) = adapter.decode(3, S, "ccxt_book", book([[100.1, 2]], [[100.2, 1]]))

    assert isinstance(ev, BookDelta) and ev.bid_qty.tolist() == [2000] and len(ev.ask_px) == 0
    assert adapter.health.symbol(S).decode_errors == 1


def test_deltas_rebuild_every_book_of_a_random_walk(adapter) -> None:
    rng = np.random.default_rng(3)
    sync = BookSync(Book(S))
    for t in range(300):
        bid_px = np.sort(rng.choice(np.arange(900, 1000), rng.integers(0, 30), replace=False))[::-1]
        ask_px = np.sort(rng.choice(np.arange(1001, 1100), rng.integers(0, 30), replace=False))
        bids = [[INST.price(p), float(rng.integers(1, 4))] for p in bid_px]
        asks = [[INST.price(p), float(rng.integers(1, 4))] for p in ask_px]
        for ev in adapter.decode(t, S, "ccxt_book", book(bids, asks)):
            sync.on_snapshot(ev) if isinstance(ev, BookSnapshot) else sync.on_delta(ev)
        got = sync.book.top(100)
        assert got[0].tolist() == bid_px.tolist() and got[2].tolist() == ask_px.tolist()
        assert got[1].tolist() == [INST.lot(q) for _, q in bids] and got[3].tolist() == [INST.lot(q) for _, q in asks]


def test_level_diff_matches_a_dict_reference() -> None:
    rng = np.random.default_rng(5)
    for _ in range(200):
        old = {int(p): int(rng.integers(1, 3)) for p in rng.choice(50, rng.integers(0, 20), replace=False)}
        new = {int(p): int(rng.integers(1, 3)) for p in rng.choice(50, rng.integers(0, 20), replace=False)}
        op, nq = np.array(sorted(old), np.int64), np.array([old[p] for p in sorted(old)], np.int64)
        np_, nq2 = np.array(sorted(new), np.int64), np.array([new[p] for p in sorted(new)], np.int64)

        px, qty = level_diff(op, nq, np_, nq2)

        want = {p: new.get(p, 0) for p in old.keys() | new.keys() if old.get(p) != new.get(p)}
        assert dict(zip(px.tolist(), qty.tolist(), strict=True)) == want and px.tolist() == sorted(want)

"""IbAdapter: IB's position-addressed depth rows in, price-level deltas out; trades with an inferred side."""

from __future__ import annotations

import numpy as np
import pytest

from daemon.book.book import Book
from daemon.book.sync import BookSync
from daemon.events import BookDelta, BookReset, BookSnapshot, Side, Trade
from daemon.instruments import Instrument
from daemon.venues import DecodeError, Resubscribe, adapter_for
from daemon.venues.ib import ASK, BID, DELETE, INSERT, UPDATE, IbAdapter

INST = Instrument("AAPL", 0.01, 1)
S = "AAPL"


def row(pos, op, side, price=0.0, size=0.0, mm="") -> dict:
    return {"position": pos, "operation": op, "side": side, "price": price, "size": size, "mm": mm}


@pytest.fixture
def adapter() -> IbAdapter:
    a = IbAdapter(lambda s: INST)
    a.decode(0, S, "marker", {"event": "subscribed", "num_rows": 3})
    return a


def levels(ev) -> tuple[list, list]:
    bids = list(zip(ev.bid_px.tolist(), ev.bid_qty.tolist(), strict=True))
    return bids, list(zip(ev.ask_px.tolist(), ev.ask_qty.tolist(), strict=True))


def test_is_the_ib_venue_adapter() -> None:
    assert isinstance(adapter_for("ib", lambda s: INST), IbAdapter)


def test_subscribed_gives_an_empty_incomplete_snapshot() -> None:
    a = IbAdapter(lambda s: INST)

    (ev,) = a.decode(5, S, "marker", {"event": "subscribed", "num_rows": 10})

    assert isinstance(ev, BookSnapshot) and ev.n_levels == 0 and not ev.complete and ev.ts_recv == 5


def test_inserts_become_a_delta_of_levels(adapter) -> None:
    (ev,) = adapter.decode(1, S, "ib_depth", [row(0, INSERT, BID, 100.0, 5), row(0, INSERT, ASK, 100.05, 3),
                                               row(1, INSERT, BID, 99.99, 2)])

    assert isinstance(ev, BookDelta) and (ev.ts_venue, ev.ts_recv) == (1, 1)
    assert levels(ev) == ([(9999, 2), (10000, 5)], [(10005, 3)])


def test_an_insert_shifts_the_rows_below_down_and_a_full_side_drops_its_last_row(adapter) -> None:
    adapter.decode(1, S, "ib_depth", [row(0, INSERT, BID, 100.0, 1), row(1, INSERT, BID, 99.0, 2),
                                      row(2, INSERT, BID, 98.0, 3)])

    (ev,) = adapter.decode(2, S, "ib_depth", row(1, INSERT, BID, 99.5, 4))

    assert adapter.rows(S)[0].tolist() == [10000, 9950, 9900]
    assert levels(ev) == ([(9800, 0), (9950, 4)], [])


def test_a_delete_shifts_the_rows_below_up(adapter) -> None:
    adapter.decode(1, S, "ib_depth", [row(0, INSERT, ASK, 101.0, 1), row(1, INSERT, ASK, 102.0, 2),
                                      row(2, INSERT, ASK, 103.0, 3)])

    (ev,) = adapter.decode(2, S, "ib_depth", row(0, DELETE, ASK))

    assert adapter.rows(S)[2].tolist() == [10200, 10300] and adapter.rows(S)[3].tolist() == [2, 3]
    assert levels(ev) == ([], [(10100, 0)])


def test_an_update_changes_a_row_in_place(adapter) -> None:
    adapter.decode(1, S, "ib_depth", [row(0, INSERT, BID, 100.0, 1), row(1, INSERT, BID, 99.0, 2)])

    (ev,) = adapter.decode(2, S, "ib_depth", row(1, UPDATE, BID, 99.5, 7))

    assert levels(ev) == ([(9900, 0), (9950, 7)], [])


def test_rows_at_one_price_from_several_market_makers_are_one_level(adapter) -> None:
    (ev,) = adapter.decode(1, S, "ib_depth", [row(0, INSERT, BID, 100.0, 1, "NSDQ"),
                                               row(1, INSERT, BID, 100.0, 2, "ARCA")])
    (ev2,) = adapter.decode(2, S, "ib_depth", row(0, DELETE, BID, 100.0, 0, "NSDQ"))

    assert levels(ev) == ([(10000, 3)], []) and levels(ev2) == ([(10000, 2)], [])


def test_rows_that_change_nothing_give_no_event(adapter) -> None:
    adapter.decode(1, S, "ib_depth", [row(0, INSERT, BID, 100.0, 1)])

    assert adapter.decode(2, S, "ib_depth", [row(0, UPDATE, BID, 100.0, 1)]) == []


@pytest.mark.parametrize("bad", [
    row(2, INSERT, BID, 98.0, 1),  # past the last row (there is one)
    row(3, INSERT, BID, 100.0, 1),  # beyond num_rows
    row(0, UPDATE, ASK, 100.0, 1),  # no such row
    row(0, DELETE, ASK),
])
def test_a_row_out_of_step_resets_the_book_and_asks_to_resubscribe(adapter, bad) -> None:
    adapter.decode(1, S, "ib_depth", [row(0, INSERT, BID, 99.0, 1)])

    (ev,) = adapter.decode(2, S, "ib_depth", [bad])

    assert isinstance(ev, BookReset) and "out of sync" in ev.reason
    assert adapter.take_requests() == [Resubscribe(S, ev.reason)]
    assert adapter.health.symbol(S).decode_errors == 1 and adapter.health.symbol(S).resyncs == 1
    assert adapter.decode(3, S, "ib_depth", [row(0, INSERT, BID, 99.0, 1)]) == []  # ignored until subscribed
    (snap,) = adapter.decode(4, S, "marker", {"event": "subscribed", "num_rows": 3})
    assert isinstance(snap, BookSnapshot)
    assert isinstance(adapter.decode(5, S, "ib_depth", [row(0, INSERT, BID, 99.0, 1)])[0], BookDelta)


def test_depth_before_any_subscription_is_ignored() -> None:
    a = IbAdapter(lambda s: INST)

    assert a.decode(1, S, "ib_depth", [row(0, INSERT, BID, 99.0, 1)]) == []


@pytest.mark.parametrize(("msg", "problem"), [
    (5, "must be a list of rows"),
    (b"[{", "invalid JSON"),
    ([1], "must be an object"),
    ([row(-1, INSERT, BID, 1.0, 1)], "position must be an integer >= 0"),
    ([row(0, 3, BID, 1.0, 1)], "operation must be 0, 1 or 2"),
    ([row(0, INSERT, 2, 1.0, 1)], "side must be 0 \\(ask\\) or 1 \\(bid\\)"),
    ([row(0, INSERT, BID, 0.0, 1)], "positive price"),
    ([row(0, INSERT, BID, 1.0, -1)], "size >= 0"),
    ([row(0, INSERT, BID, 100.005, 1)], "tick_size"),
    ([row(0, INSERT, BID, 100.0, 1.5)], "lot_size"),
])
def test_malformed_rows_are_decode_errors_and_change_nothing(adapter, msg, problem) -> None:
    adapter.decode(1, S, "ib_depth", [row(0, INSERT, BID, 99.0, 1)])

    with pytest.raises(DecodeError, match=problem):
        adapter.decode(2, S, "ib_depth", [row(1, INSERT, BID, 98.0, 1), *msg] if isinstance(msg, list) else msg)

    assert adapter.rows(S)[0].tolist() == [9900] and adapter.health.symbol(S).decode_errors == 1


def test_raw_json_bytes_decode_like_parsed_messages(adapter) -> None:
    (ev,) = adapter.decode(1, S, "ib_depth", b'[{"position":0,"operation":0,"side":1,"price":99.0,"size":2.0,"mm":""}]')

    assert levels(ev) == ([(9900, 2)], [])


def test_bad_markers_and_channels_are_decode_errors(adapter) -> None:
    with pytest.raises(DecodeError, match="num_rows"):
        adapter.decode(1, S, "marker", {"event": "subscribed"})
    with pytest.raises(DecodeError, match="unknown channel"):
        adapter.decode(1, S, "ws", {})


def test_disconnect_resets_the_book_and_depth_waits_for_a_new_subscription(adapter) -> None:
    adapter.decode(1, S, "ib_depth", [row(0, INSERT, BID, 99.0, 1)])

    (ev,) = adapter.decode(2, S, "marker", {"event": "disconnected", "reason": "socket closed"})

    assert ev == BookReset(S, 2, 2, "socket closed")
    assert adapter.decode(3, S, "ib_depth", [row(0, UPDATE, BID, 99.0, 2)]) == []
    assert [e.symbol for e in adapter.decode(4, "", "marker", {"event": "disconnected"})] == [S]


def test_after_a_downstream_resync_the_next_depth_is_a_snapshot_of_all_rows(adapter) -> None:
    adapter.decode(1, S, "ib_depth", [row(0, INSERT, BID, 99.0, 1), row(0, INSERT, ASK, 99.0, 1)])

    assert adapter.resync(S, "crossed", 2) == []
    (ev,) = adapter.decode(3, S, "ib_depth", [row(0, UPDATE, ASK, 99.5, 1)])

    assert isinstance(ev, BookSnapshot) and levels(ev) == ([(9900, 1)], [(9950, 1)])
    assert adapter.take_requests() == []


def test_trade_side_is_inferred_from_the_book_then_the_tick_rule(adapter) -> None:
    adapter.decode(1, S, "ib_depth", [row(0, INSERT, BID, 100.0, 5), row(0, INSERT, ASK, 100.10, 5)])
    prints = [{"price": p, "size": 10} for p in (100.10, 100.0, 100.05, 100.07, 100.07, 100.02, 100.20, 99.0)]

    events = adapter.decode(2, S, "ib_trades", prints)

    assert [e.side for e in events] == [Side.BUY, Side.SELL, Side.BUY, Side.BUY, Side.BUY, Side.SELL, Side.BUY,
                                        Side.SELL]
    assert events[0] == Trade(S, 2, 2, 10010, 10, Side.BUY)


def test_without_a_book_the_tick_rule_decides_and_the_first_print_is_a_buy() -> None:
    a = IbAdapter(lambda s: INST)

    events = a.decode(1, S, "ib_trades", [{"price": p, "size": 1} for p in (10.0, 9.99, 9.99, 10.01)])

    assert [e.side for e in events] == [Side.BUY, Side.SELL, Side.SELL, Side.BUY]


@pytest.mark.parametrize("bad", [{"price": 0, "size": 1}, {"price": 1.0, "size": 0}, {"price": 1.001, "size": 1}, 5])
def test_bad_prints_are_decode_errors(adapter, bad) -> None:
    with pytest.raises(DecodeError):
        adapter.decode(1, S, "ib_trades", [bad])


def test_random_row_operations_match_a_list_model_of_ibs_rules() -> None:
    """IB's rules written the plain way (Python lists, insert/del) against the adapter's kernel."""
    rng = np.random.default_rng(11)
    num_rows = 5
    a = IbAdapter(lambda s: INST)
    sync = BookSync(Book(S))
    sync.on_snapshot(a.decode(0, S, "marker", {"event": "subscribed", "num_rows": num_rows})[0])
    model: dict[int, list] = {BID: [], ASK: []}
    for t in range(1, 2000):
        batch = []
        for _ in range(rng.integers(1, 4)):
            side = int(rng.integers(0, 2))
            rows = model[side]
            op = int(rng.integers(0, 3)) if rows else INSERT
            pos = int(rng.integers(0, len(rows) + (1 if op == INSERT and len(rows) < num_rows else 0)))
            base = 10000 if side == BID else 10100
            price = (base - int(rng.integers(0, 8))) if side == BID else (base + int(rng.integers(0, 8)))
            size = int(rng.integers(1, 5))
            if op == INSERT:
                rows.insert(pos, (price, size))
                del rows[num_rows:]
            elif op == UPDATE:
                rows[pos] = (price, size)
            else:
                del rows[pos]
            batch.append(row(pos, op, side, INST.price(price), size))
        for ev in a.decode(t, S, "ib_depth", batch):
            sync.on_delta(ev)
        bid_px, bid_qty, ask_px, ask_qty = a.rows(S)
        assert list(zip(bid_px.tolist(), bid_qty.tolist(), strict=True)) == model[BID]
        assert list(zip(ask_px.tolist(), ask_qty.tolist(), strict=True)) == model[ASK]
        for side, (px, qty, n) in ((BID, (sync.book.bid_px, sync.book.bid_qty, sync.book.n_bid)),
                                   (ASK, (-sync.book.ask_key, sync.book.ask_qty, sync.book.n_ask))):
            want: dict[int, int] = {}
            for p, q in model[side]:
                want[p] = want.get(p, 0) + q
            assert dict(zip(px[:n].tolist(), qty[:n].tolist(), strict=True)) == want
